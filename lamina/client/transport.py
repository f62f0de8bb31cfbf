"""Transports: how an Engine API request reaches a router.

* :class:`InProcessTransport` (the default, daemonless): hands the request to a
  :class:`lamina.api.router.Router` in this process, whose services are built from the
  :class:`~lamina.config.EngineConfig` on first use (``lamina.services.compose``, imported only
  then, so ``lamina --help`` never loads the engine).
* :class:`UnixSocketTransport`: HTTP/1.1 over an AF_UNIX socket to ``lamina serve`` or any
  Docker-compatible daemon.  Request bodies that are streams are sent with chunked encoding
  in 64 KiB pieces; response bodies are read incrementally (chunked decoding by
  ``http.client``), so archives are never held in memory.  One connection per request.

:func:`select_transport` picks one: ``-H`` / ``LAMINA_HOST`` / ``DOCKER_HOST`` (``unix://``
only), else in-process.  Connection failures raise :class:`TransportError`.
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from lamina import __version__, errdefs
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.config import EngineConfig

if TYPE_CHECKING:
    from lamina.api.router import Router
    from lamina.services.api import Services

__all__ = [
    "Transport", "TransportError", "InProcessTransport", "UnixSocketTransport",
    "select_transport", "build_default_services", "USER_AGENT", "HOST_ENVIRONMENT",
]

USER_AGENT = f"lamina-cli/{__version__}"
HOST_ENVIRONMENT = ("LAMINA_HOST", "DOCKER_HOST")
_CHUNK = 64 * 1024


class Transport(Protocol):
    def handle(self, request: Request) -> Response: ...


class TransportError(Exception):
    """The daemon could not be reached (no socket, refused, broken protocol)."""


def build_default_services(config: EngineConfig) -> "Services":
    """The engine's services for ``config`` (imports the engine only when called)."""
    from lamina.services.compose import build_services

    return build_services(config)


class InProcessTransport:
    def __init__(self, config: EngineConfig,
                 services_factory: Callable[[], "Services"] | None = None) -> None:
        from lamina.api.router import Router

        self.config = config
        factory = services_factory if services_factory is not None else (lambda: build_default_services(config))
        self.router: "Router" = Router(factory)

    @property
    def description(self) -> str:
        return f"in-process (data root {self.config.data_root})"

    def handle(self, request: Request) -> Response:
        return self.router.handle(request)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=_CHUNK)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class UnixSocketTransport:
    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def description(self) -> str:
        return f"unix://{self.path}"

    def handle(self, request: Request) -> Response:
        connection = _UnixConnection(self.path, self.timeout)
        headers = Headers(request.headers)
        headers.setdefault("Host", "docker")
        headers.setdefault("User-Agent", USER_AGENT)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise TransportError(
                f"Cannot connect to the daemon at unix://{self.path}: {exc.strerror or exc}. "
                "Is the daemon running?") from exc
        try:
            try:
                connection.request(request.method, request.target(), body=request.body,
                                   headers=dict(headers.items()))
            except OSError as send_error:
                # The daemon may have answered (an error) and closed before reading the
                # whole upload; its answer says more than the broken pipe.
                try:
                    answer = connection.getresponse()
                except (OSError, http.client.HTTPException):
                    raise TransportError(
                        f"error sending the request to unix://{self.path}: {send_error}") from send_error
            else:
                answer = connection.getresponse()
        except http.client.HTTPException as exc:
            connection.close()
            raise TransportError(f"bad HTTP answer from unix://{self.path}: {exc!r}") from exc
        except BaseException:
            connection.close()
            raise
        return Response(answer.status, Headers(answer.getheaders()), self._body(connection, answer))

    def _body(self, connection: _UnixConnection, answer: http.client.HTTPResponse) -> "_SocketBody":
        return _SocketBody(self.path, connection, answer)


class _SocketBody:
    """A response body read from the socket as it arrives; closing it closes the connection
    (also when it was never iterated, unlike a generator's ``finally``)."""

    def __init__(self, path: str, connection: _UnixConnection, answer: http.client.HTTPResponse) -> None:
        self.path = path
        self.connection = connection
        self.answer = answer
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            raise StopIteration
        try:
            data = self.answer.read1(_CHUNK)
            if not data and self.answer.length:
                # A Content-Length body cut short: read1 just returns b"".
                raise http.client.IncompleteRead(b"", self.answer.length)
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise StreamAborted(500, f"the stream from unix://{self.path} ended early "
                                     f"(the transfer is incomplete): {exc!r}") from exc
        if not data:
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.answer.close()
            self.connection.close()


def select_transport(host: str | None, config: EngineConfig) -> Transport:
    """``host`` (from ``-H``), else ``LAMINA_HOST``, else ``DOCKER_HOST``, else in-process."""
    if not host:
        for name in HOST_ENVIRONMENT:
            if os.environ.get(name):
                host = os.environ[name]
                break
    if not host:
        return InProcessTransport(config)
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
