"""The contract between :class:`lamina.client.calls.BaseClient` (and the CLI's context) and a
transport: :class:`Transport`, one method, as httpx's ``_transports/base.py``.

It lives apart from what the implementations share at run time (:mod:`lamina.client.base`:
:class:`~lamina.client.base.TransportError`, the ``User-Agent``) because a ``typing.Protocol``
needs :mod:`typing`, which neither transport loads otherwise: its consumers import it for
annotations only.
"""

from __future__ import annotations

from typing import Protocol

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.http import Request, Response

__all__ = ["Transport"]


class Transport(Protocol):
    def handle(self, request: Request) -> Response: ...
