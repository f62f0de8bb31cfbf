"""HTTP/1.1 over an AF_UNIX socket (``http.client`` with a unix-socket connect).

Request bodies that are streams go out with chunked encoding in 64 KiB pieces; response bodies
are read incrementally (``read1``, with ``http.client``'s chunked decoding), so archives are
never held in memory.  One connection per request, closed when the body is consumed or
closed.  A body cut short raises :class:`lamina.api.http.StreamAborted`.

Hijacking (:func:`hijack`, used for requests that ask for ``Upgrade: tcp``: attach, exec
start): the request goes out with a ``Content-Length`` body, the answer's head is parsed here
(``http.client`` would buffer bytes past it), and on 101 (or a 200 plain hijack) the
connected socket itself becomes the response's ``hijacked`` duplex; bytes that arrived with
the head are given out first.  Any other status is an ordinary response with its body.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import BinaryIO

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.client.transport import USER_AGENT, TransportError

__all__ = ["HijackedSocket", "hijack", "send"]

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


_MAX_HEAD = 64 * 1024


class HijackedSocket:
    """A connected socket after an upgrade, with the bytes read past the answer's head
    (a :class:`lamina.services.api.Duplex`)."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._buffered = buffered

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def has_buffered(self) -> bool:
        return bool(self._buffered)

    def recv(self, size: int) -> bytes:
        if self._buffered:
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            return data
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def _read_body(body: BinaryIO | None) -> bytes:
    if body is None:
        return b""
    return body.read()


def _parse_head(head: bytes, path: str) -> tuple[int, Headers]:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise TransportError(f"bad HTTP answer from unix://{path}: {lines[0]!r}")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise TransportError(f"bad HTTP header from unix://{path}: {line!r}")
        headers[name.strip()] = value.strip()
    return int(parts[1]), headers


def hijack(path: str, request: Request, *, timeout: float | None = None) -> Response:
    """Send ``request`` and, if the daemon upgrades the connection, return the socket as the
    response's ``hijacked`` duplex."""
    body = _read_body(request.body)
    headers = Headers(request.headers)
    headers.setdefault("Host", "docker")
    headers.setdefault("User-Agent", USER_AGENT)
    headers["Content-Length"] = str(len(body))
    lines = [f"{request.method} {request.target()} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise TransportError(f"Cannot connect to the daemon at unix://{path}: {exc.strerror or exc}. "
                             "Is the daemon running?") from exc
    try:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                raise TransportError(f"unix://{path} closed the connection before answering")
            received += chunk
            if len(received) > _MAX_HEAD:
                raise TransportError(f"unix://{path} sent an HTTP head larger than {_MAX_HEAD} bytes")
        head, _, rest = received.partition(b"\r\n\r\n")
        status, answer_headers = _parse_head(head, path)
        content_type = answer_headers.get("Content-Type", "")
        upgraded = status == 101 or (status == 200 and "vnd.docker" in content_type)
        if upgraded:
            sock.settimeout(None)
            return Response(status, answer_headers, b"", hijacked=HijackedSocket(sock, rest))
        return Response(status, answer_headers, _read_rest(sock, rest, answer_headers, path))
    except OSError as exc:
        sock.close()
        raise TransportError(f"error talking to unix://{path}: {exc}") from exc
    except BaseException:
        sock.close()
        raise


def _read_rest(sock: socket.socket, rest: bytes, headers: Headers, path: str) -> bytes:
    """The body of a non-upgraded answer (an error, a detached exec start); closes the socket."""
    try:
        length = headers.get("Content-Length")
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = rest
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data.endswith(b"0\r\n\r\n"):
                    break
            return _dechunk(data)
        if length is not None and length.isdigit():
            wanted = int(length)
            data = rest
            while len(data) < wanted:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data[:wanted]
        return rest
    finally:
        sock.close()


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)
