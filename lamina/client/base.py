"""What every transport shares, importing no transport: :class:`TransportError` and the
``User-Agent`` lamina sends.  Implementations (:mod:`lamina.client.transport`,
:mod:`lamina.client.unix`) import this module; it imports none of them.  The :class:`Transport`
protocol they implement is :mod:`lamina.client.api`'s.
"""

from __future__ import annotations

from lamina import __version__

__all__ = ["TransportError", "USER_AGENT"]

USER_AGENT = f"lamina-cli/{__version__}"


class TransportError(Exception):
    """The daemon could not be reached (no socket, refused, broken protocol)."""
