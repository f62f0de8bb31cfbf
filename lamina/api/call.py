"""What a handler receives: :class:`Call` (the request, its path parameters, the negotiated API
version and the services), and the handler's type.  Handler modules and
:mod:`lamina.api.unsupported` import it from here, so that :mod:`lamina.api.router`, which
imports them, is imported by none of them.
"""

from __future__ import annotations

from collections.abc import Callable

from lamina.api.http import Request, Response

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.services.api import Services as Services

__all__ = ["Call", "Handler", "ServicesFactory"]

#: Builds the engine's services when a request first needs them.
ServicesFactory = Callable[[], "Services"]


class Call:
    """One request as a handler sees it: the request, the path parameters, the services."""

    def __init__(self, request: Request, params: dict[str, str], api_version: str,
                 services: ServicesFactory) -> None:
        self.request = request
        self.params = params
        self.api_version = api_version
        self._services = services

    @property
    def services(self) -> Services:
        return self._services()


Handler = Callable[[Call], Response]
