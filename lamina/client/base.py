"""What every transport shares, importing no transport: the :class:`Transport` protocol (one
method, as httpx's ``_transports/base.py``), :class:`TransportError` and the ``User-Agent``
lamina sends.  Implementations (:mod:`lamina.client.transport`, :mod:`lamina.client.unix`)
import this module; it imports none of them.
"""

from __future__ import annotations

from typing import Protocol

from lamina import __version__
from lamina.api.http import Request, Response

__all__ = ["Transport", "TransportError", "USER_AGENT"]

USER_AGENT = f"lamina-cli/{__version__}"


class Transport(Protocol):
    def handle(self, request: Request) -> Response: ...


class TransportError(Exception):
    """The daemon could not be reached (no socket, refused, broken protocol)."""
