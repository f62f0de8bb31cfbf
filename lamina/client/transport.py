"""Transports: how an Engine API request reaches a router.

* :class:`InProcessTransport` (the default, daemonless): hands the request to a
  :class:`lamina.api.router.Router` in this process, whose services are built from the
  :class:`~lamina.config.EngineConfig` on first use (:func:`lamina.api.router.engine_services`,
  imported only then, so ``lamina --help`` never loads the engine).
* :class:`UnixSocketTransport`: HTTP/1.1 over an AF_UNIX socket to ``lamina serve`` or any
  Docker-compatible daemon, streaming both ways (:mod:`lamina.client.unix`, imported on first
  use so the in-process path never loads the socket code).

:func:`select_transport` picks one: ``-H`` / ``LAMINA_HOST`` / ``DOCKER_HOST`` (``unix://``
only), else in-process.  Connection failures raise :class:`TransportError`.  The protocol
is :mod:`lamina.client.api`'s, the error :mod:`lamina.client.base`'s (which imports no transport).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lamina import errdefs
from lamina.config import EngineConfig

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.call import Services, ServicesFactory
    from lamina.api.http import Request, Response
    from lamina.api.router import Router
    from lamina.client.api import Transport

__all__ = [
    "InProcessTransport", "UnixSocketTransport", "select_transport", "build_default_services", "HOST_ENVIRONMENT",
]

HOST_ENVIRONMENT = ("LAMINA_HOST", "DOCKER_HOST")


def build_default_services(config: EngineConfig) -> Services:
    """The engine's services for ``config`` (imports the engine only when called); each
    service is built when a request first needs it, so a command pays only for its own."""
    from lamina.api.router import engine_services

    return engine_services(config)


class InProcessTransport:
    def __init__(self, config: EngineConfig,
                 services_factory: ServicesFactory | None = None, *, router: Router | None = None) -> None:
        """A router of its own, whose services ``services_factory`` (default: the engine of
        ``config``) builds; or ``router``, one that serves already (``lamina serve``'s)."""
        self.config = config
        if router is None:
            from lamina.api.router import Router

            factory = services_factory if services_factory is not None else (lambda: build_default_services(config))
            router = Router(factory)
        self.router: Router = router

    @property
    def description(self) -> str:
        return f"in-process (data root {self.config.data_root})"

    def handle(self, request: Request) -> Response:
        return self.router.handle(request)


class UnixSocketTransport:
    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def description(self) -> str:
        return f"unix://{self.path}"

    def handle(self, request: Request) -> Response:
        # the socket code loads only when a request goes out on a socket
        if request.wants_upgrade():
            from lamina.client.unix import hijack

            return hijack(self.path, request, timeout=self.timeout)
        from lamina.client.unix import send

        return send(self.path, request, timeout=self.timeout)


def select_transport(host: str | None, config: EngineConfig | Callable[[], EngineConfig]) -> Transport:
    """``host`` (from ``-H``), else ``LAMINA_HOST``, else ``DOCKER_HOST``, else in-process.
    ``config`` may be a function, called only for the in-process transport (a rootless user
    talking to a daemon needs no exec root of its own)."""
    if not host:
        for name in HOST_ENVIRONMENT:
            if os.environ.get(name):
                host = os.environ[name]
                break
    if not host:
        return InProcessTransport(config if isinstance(config, EngineConfig) else config())
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path:
            raise errdefs.InvalidArgument(f"invalid host {host!r}: no socket path")
        return UnixSocketTransport(path)
    scheme = host.split("://", 1)[0] if "://" in host else ""
    if scheme:
        raise errdefs.InvalidArgument(
            f"host {host!r}: {scheme}:// is not supported; lamina speaks to daemons over unix:// sockets only")
    raise errdefs.InvalidArgument(f"invalid host {host!r}: expected unix:///path/to/socket")
