"""What every transport shares, importing no transport: :class:`TransportError` and the
``User-Agent`` lamina sends.  Implementations (:mod:`lamina.client.transport`,
:mod:`lamina.client.unix`) import this module; it imports none of them.  The :class:`Transport`
protocol they implement is :mod:`lamina.client.api`'s (re-exported here on first use).
"""

from __future__ import annotations

from lamina import __version__

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.client.api import Transport

__all__ = ["Transport", "TransportError", "USER_AGENT"]

USER_AGENT = f"lamina-cli/{__version__}"


class TransportError(Exception):
    """The daemon could not be reached (no socket, refused, broken protocol)."""


def __getattr__(name: str) -> object:
    if name == "Transport":
        from lamina.client.api import Transport

        return Transport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
