"""HTTP/1.1 over an AF_UNIX socket (``http.client`` with a unix-socket connect).

Request bodies that are streams go out with chunked encoding in 64 KiB pieces; response bodies
are read incrementally (``read1``, with ``http.client``'s chunked decoding), so archives are
never held in memory.  One connection per request, closed when the body is consumed or
closed.  A body cut short raises :class:`lamina.api.http.StreamAborted`.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.client.transport import USER_AGENT, TransportError

__all__ = ["send"]

_CHUNK = 64 * 1024


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


def send(path: str, request: Request, *, timeout: float | None = None) -> Response:
    """Send ``request`` on a new connection to the socket at ``path``; the response body is
    read from the socket as the caller iterates it (closing it closes the connection)."""
    connection = _UnixConnection(path, timeout)
    headers = Headers(request.headers)
    headers.setdefault("Host", "docker")
    headers.setdefault("User-Agent", USER_AGENT)
    try:
        connection.connect()
    except OSError as exc:
        connection.close()
        raise TransportError(f"Cannot connect to the daemon at unix://{path}: {exc.strerror or exc}. "
                             "Is the daemon running?") from exc
    try:
        try:
            connection.request(request.method, request.target(), body=request.body,
                               headers=dict(headers.items()))
        except OSError as send_error:
            # The daemon may have answered (an error) and closed before reading the whole
            # upload; its answer says more than the broken pipe.
            try:
                answer = connection.getresponse()
            except (OSError, http.client.HTTPException):
                raise TransportError(f"error sending the request to unix://{path}: {send_error}") from send_error
        else:
            answer = connection.getresponse()
    except http.client.HTTPException as exc:
        connection.close()
        raise TransportError(f"bad HTTP answer from unix://{path}: {exc!r}") from exc
    except BaseException:
        connection.close()
        raise
    return Response(answer.status, Headers(answer.getheaders()), _SocketBody(path, connection, answer))


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
