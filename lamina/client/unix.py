"""HTTP/1.1 over an AF_UNIX socket: a small client written on :mod:`socket` alone.

``http.client`` costs ~25 ms to import (``email``, ``ssl``, ``datetime``, ...), a fifth of a
short command; this module needs only :mod:`socket` and what :mod:`lamina.api.http` already
loads.  One connection per request, closed when the answer's body is consumed or closed.

The wire format handled (RFC 9112):

* Request: ``METHOD target HTTP/1.1``, then ``Accept-Encoding: identity`` (unless the request
  has one), the framing header, and the request's headers with ``Host: docker`` and
  ``User-Agent: lamina-cli/VERSION`` added when missing.  Header lines holding CR or LF are
  refused (``ValueError``).  Body framing: a ``bytes`` body goes out with ``Content-Length``; so
  does a regular file (an open file object, from its current offset), sent with ``sendfile``
  when the connection has no timeout; another stream (anything with ``read``, read 64 KiB at a
  time, or an iterable of ``bytes`` pieces) with
  ``Transfer-Encoding: chunked``, one chunk per non-empty piece (upper-case hex sizes, no
  extensions, no trailers) and the last chunk ``0``; no body: ``Content-Length: 0`` for POST,
  PUT and PATCH, nothing otherwise.  A ``Content-Length`` or ``Transfer-Encoding`` the caller set
  is sent as given, with the body unframed.
* Answer head: interim ``1xx`` heads (``100 Continue``) are read and dropped, except ``101``;
  then the status line ``HTTP/d.d NNN reason`` and header lines ``Name: value`` ending in CRLF
  (a bare LF is accepted; an obsolete folded line is joined to the previous value with a
  space).  ``Response.headers`` keeps the last of repeated names.  All heads of one answer
  together may take 64 KiB; a longer, malformed or missing head raises
  :class:`lamina.client.base.TransportError`, as does a failed connect ("Cannot connect to
  the daemon at unix://PATH: REASON. Is the daemon running?").
* Answer body: none for HEAD, 1xx, 204 and 304; else chunked when the last transfer coding is
  ``chunked`` (chunk extensions ignored, trailers read and dropped); else read until the daemon
  closes when it names another transfer coding; else ``Content-Length`` bytes (a list of equal
  values is accepted, differing or non-numeric values raise ``TransportError``); else read
  until close.  The body is an iterator of chunks of at most 64 KiB, each what is buffered or
  what one ``recv`` returns, so archives are never held in memory.  A body cut short (the
  stream ends before ``Content-Length`` bytes or before the last chunk, a malformed chunk, a
  socket error) raises :class:`lamina.api.http.StreamAborted`.

When sending the request fails (the daemon answered an error and closed before reading the
whole upload), the daemon's answer is read and returned; only when there is none is the
sending error reported.

Hijacking (:func:`hijack`, used for requests that ask for ``Upgrade: tcp``: attach, exec
start): the request goes out with a ``Content-Length`` body (read whole, it is small JSON); on
101 (or a 200 plain hijack, whose ``Content-Type`` names ``vnd.docker``) the connected socket
itself becomes the response's ``hijacked`` duplex, and bytes that arrived with the head are
given out first.  Any other status is an ordinary response with its body.

Not supported: keep-alive and pipelining (one connection per request), TCP and TLS, proxies,
content codings (a compressed body is handed out as received), sending ``Expect:
100-continue``.
"""

from __future__ import annotations

import _socket  # the C socket type: socket.py's enum conversions cost ~3 ms at start-up
import os
import stat
from collections.abc import Callable, Iterable, Iterator

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.client.base import USER_AGENT, TransportError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["HijackedSocket", "hijack", "send"]

# bytes received at a time: more is slower (above glibc's 128 KiB mmap threshold each
# buffer is mapped and unmapped, a save through serve took 2x as long with 256 KiB)
_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 4096
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_BLANKS = " \t"

_Field = tuple[str, str]


class _Wire:
    """The connected socket and the bytes received from it that were not consumed yet."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.position = 0

    def _receive(self) -> bool:
        """Append one ``recv`` to the buffer; False at the end of the stream."""
        data = self.sock.recv(_CHUNK)
        if not data:
            return False
        self.buffer = self.buffer[self.position:] + data if self.position < len(self.buffer) else data
        self.position = 0
        return True

    def read_line(self, limit: int) -> bytes | None:
        """The next line with its LF; what is left when the stream ends first (no LF, maybe
        empty); None when no LF comes within ``limit`` bytes."""
        searched = 0
        while True:
            end = self.buffer.find(b"\n", self.position + searched, self.position + limit)
            if end >= 0:
                line = self.buffer[self.position:end + 1]
                self.position = end + 1
                return line
            searched = len(self.buffer) - self.position
            if searched >= limit:
                return None
            if not self._receive():
                return self.take_buffered()

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes: the buffered ones, else one ``recv``; b"" at the end."""
        if self.position < len(self.buffer):
            data = self.buffer[self.position:self.position + size]
            self.position += len(data)
            return data
        return self.sock.recv(size)

    def take_buffered(self) -> bytes:
        data = self.buffer[self.position:]
        self.buffer = b""
        self.position = 0
        return data


class _Truncated(Exception):
    """The body ended early or its chunked framing is broken."""


class _SocketBody:
    """A response body read from the socket as it arrives; closing it closes the connection
    (also when it was never iterated, unlike a generator's ``finally``)."""

    def __init__(self, path: str, wire: _Wire, *, chunked: bool, length: int | None) -> None:
        self.path = path
        self.wire = wire
        self.chunked = chunked
        self.remaining = length  # not chunked: bytes left of the body (None: until close)
        self.chunk_left = 0  # chunked: bytes left of the current chunk
        self.chunk_open = False  # chunked: the current chunk's data ended, its CRLF is unread
        self.closed = False
        if not chunked and length == 0:
            self.close()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            raise StopIteration
        try:
            data = self._read_chunked() if self.chunked else self._read_plain()
        except (OSError, _Truncated) as exc:
            self.close()
            raise StreamAborted(500, f"the stream from unix://{self.path} ended early "
                                     f"(the transfer is incomplete): {exc}") from exc
        if not data:
            self.close()
            raise StopIteration
        return data

    def _read_plain(self) -> bytes:
        if self.remaining is None:
            return self.wire.read(_CHUNK)
        data = self.wire.read(min(self.remaining, _CHUNK))
        if not data:
            raise _Truncated(f"{self.remaining} more bytes of the body were expected")
        self.remaining -= len(data)
        if not self.remaining:
            self.close()  # the body is complete: release the connection now
        return data

    def _read_chunked(self) -> bytes:
        if not self.chunk_left:
            if self.chunk_open:
                if self.wire.read_line(2) not in (b"\r\n", b"\n"):
                    raise _Truncated("a chunk's data was not followed by CRLF")
                self.chunk_open = False
            self.chunk_left = self._chunk_size()
            if not self.chunk_left:
                self._skip_trailers()
                return b""
            self.chunk_open = True
        data = self.wire.read(min(self.chunk_left, _CHUNK))
        if not data:
            raise _Truncated(f"the stream ended inside a chunk, {self.chunk_left} bytes before its end")
        self.chunk_left -= len(data)
        return data

    def _chunk_size(self) -> int:
        line = self.wire.read_line(_MAX_CHUNK_LINE)
        if line is None:
            raise _Truncated(f"a chunk size line is longer than {_MAX_CHUNK_LINE} bytes")
        if not line.endswith(b"\n"):
            raise _Truncated("the stream ended before the last chunk")
        size = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not size or size.strip(_HEX_DIGITS):
            raise _Truncated(f"bad chunk size line {line!r}")
        return int(size, 16)

    def _skip_trailers(self) -> None:
        budget = _MAX_HEAD
        while True:
            line = self.wire.read_line(budget)
            if line is None:
                raise _Truncated(f"the trailers are larger than {_MAX_HEAD} bytes")
            if not line.endswith(b"\n"):
                raise _Truncated("the stream ended inside the trailers")
            if line in (b"\r\n", b"\n"):
                return
            budget -= len(line)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.wire.sock.close()


class HijackedSocket:
    """A connected socket after an upgrade, with the bytes read past the answer's head
    (a :class:`lamina.stdcopy.Duplex`)."""

    def __init__(self, sock: _socket.socket, buffered: bytes) -> None:
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


# -- requests ----------------------------------------------------------------------------------

def _headers(request: Request) -> Headers:
    headers = Headers(request.headers)
    headers.setdefault("Host", "docker")
    headers.setdefault("User-Agent", USER_AGENT)
    return headers


def _head(request: Request, headers: Headers, framing: list[str]) -> bytes:
    lines = [f"{request.method} {request.target()} HTTP/1.1", *framing]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"invalid HTTP request line or header {line!r}")
    lines += ["", ""]
    return "\r\n".join(lines).encode("iso-8859-1")


def _pieces(body: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(body, "read", None)
    if read is None:
        yield from body  # type: ignore[misc]
        return
    while data := read(_CHUNK):
        yield data.encode("iso-8859-1") if isinstance(data, str) else data


def _file_extent(body: object, timeout: float | None) -> tuple[int, int, int] | None:
    """A regular file's descriptor, offset and bytes left, to send with ``sendfile`` and a
    ``Content-Length`` (no copy through this process, no chunk framing); None for anything
    else, or when the socket has a timeout (sendfile would need polling)."""
    if timeout is not None:
        return None
    try:
        fd = body.fileno()  # type: ignore[attr-defined]
        offset = body.tell()  # type: ignore[attr-defined]
        status = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(status.st_mode) or status.st_size < offset:
        return None
    return fd, offset, status.st_size - offset


def _send_file(sock: _socket.socket, head: bytes, fd: int, offset: int, count: int) -> None:
    sock.sendall(head)
    while count:
        sent = os.sendfile(sock.fileno(), fd, offset, min(count, 1 << 30))
        if sent == 0:
            raise OSError(f"the file being sent ended {count} bytes before the size it had")
        offset += sent
        count -= sent


def _send_stream(sock: _socket.socket, head: bytes, pieces: Iterator[bytes], chunked: bool) -> None:
    pending = head  # the head goes out with the first piece
    for piece in pieces:
        if piece:
            sock.sendall(b"".join((pending, b"%X\r\n" % len(piece), piece, b"\r\n"))
                         if chunked else pending + piece)
            pending = b""
    sock.sendall(pending + b"0\r\n\r\n" if chunked else pending)


class _ClosedOnFailure:
    """``with``: closes ``sock`` if the block fails, and turns an OSError into a
    :class:`TransportError` whose message ``describe`` makes."""

    def __init__(self, sock: _socket.socket, describe: Callable[[OSError], str]) -> None:
        self.sock = sock
        self.describe = describe

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        if error is None:
            return
        self.sock.close()
        if isinstance(error, OSError):
            raise TransportError(self.describe(error)) from error


def _talking(sock: _socket.socket, path: str) -> _ClosedOnFailure:
    return _ClosedOnFailure(sock, lambda error: f"error talking to unix://{path}: {error}")


def _connect(path: str, timeout: float | None) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    with _ClosedOnFailure(sock, lambda error: f"Cannot connect to the daemon at unix://{path}: "
                                              f"{error.strerror or error}. Is the daemon running?"):
        sock.settimeout(timeout)
        sock.connect(path)
    return sock


# -- answers -----------------------------------------------------------------------------------

def _read_head(wire: _Wire, path: str) -> tuple[int, list[_Field]]:
    """The final answer's status and header fields (interim 1xx answers skipped)."""
    budget = _MAX_HEAD
    while True:
        lines: list[bytes] = []
        while True:
            line = wire.read_line(budget)
            if line is None:
                raise TransportError(f"unix://{path} sent an HTTP head larger than {_MAX_HEAD} bytes")
            budget -= len(line)
            if not line.endswith(b"\n"):
                if not lines and not line:
                    raise TransportError(f"unix://{path} closed the connection before answering")
                raise TransportError(f"unix://{path} closed the connection in the middle of its answer's head")
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not line and lines:
                break
            lines.append(line)
        status = _parse_status(lines[0], path)
        if status == 101 or status >= 200:
            return status, _parse_fields(lines[1:], path)


def _parse_status(line: bytes, path: str) -> int:
    version, _, rest = line.decode("iso-8859-1").partition(" ")
    code = rest.partition(" ")[0]
    if not (len(version) == 8 and version.startswith("HTTP/") and version[5].isdigit() and version[6] == "."
            and version[7].isdigit() and len(code) == 3 and code.isascii() and code.isdigit() and code >= "100"):
        raise TransportError(f"bad HTTP answer from unix://{path}: {line!r}")
    return int(code)


def _parse_fields(lines: list[bytes], path: str) -> list[_Field]:
    fields: list[_Field] = []
    for line in lines:
        text = line.decode("iso-8859-1")
        if text[0] in " \t":  # an obsolete folded line continues the previous value
            if not fields:
                raise TransportError(f"bad HTTP header from unix://{path}: {line!r}")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip(_BLANKS)}".strip(_BLANKS))
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or " " in name or "\t" in name:
            raise TransportError(f"bad HTTP header from unix://{path}: {line!r}")
        fields.append((name, value.strip(_BLANKS)))
    return fields


def _framing(method: str, status: int, fields: list[_Field], path: str) -> tuple[bool, int | None]:
    """Whether the body is chunked, and its length (None: until close), per RFC 9112 §6.3."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return False, 0
    codings = [coding.strip().lower() for name, value in fields if name.lower() == "transfer-encoding"
               for coding in value.split(",") if coding.strip()]
    if codings:
        return codings[-1] == "chunked", None
    lengths = {length.strip() for name, value in fields if name.lower() == "content-length"
               for length in value.split(",")}
    if not lengths:
        return False, None
    length = lengths.pop()
    if lengths or not (length.isascii() and length.isdigit()):
        raise TransportError(f"bad HTTP answer from unix://{path}: Content-Length "
                             f"{', '.join(sorted(lengths | {length}))!r}")
    return False, int(length)


def _exchange(wire: _Wire, path: str, write: Callable[[], None]) -> tuple[int, list[_Field]]:
    """Send the request with ``write`` and read the answer's head."""
    try:
        write()
    except OSError as send_error:
        # The daemon may have answered (an error) and closed before reading the whole
        # upload; its answer says more than the broken pipe.
        try:
            return _read_head(wire, path)
        except (OSError, TransportError):
            raise TransportError(f"error sending the request to unix://{path}: {send_error}") from send_error
    return _read_head(wire, path)


def send(path: str, request: Request, *, timeout: float | None = None) -> Response:
    """Send ``request`` on a new connection to the socket at ``path``; the response body is
    read from the socket as the caller iterates it (closing it closes the connection)."""
    headers = _headers(request)
    framing = [] if "Accept-Encoding" in headers else ["Accept-Encoding: identity"]
    framed = "Content-Length" in headers or "Transfer-Encoding" in headers
    body = request.body
    payload = b""
    pieces: Iterator[bytes] | None = None
    if body is None:
        if not framed and request.method in _METHODS_WITH_BODY:
            framing.append("Content-Length: 0")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        payload = bytes(body)
        if not framed:
            framing.append(f"Content-Length: {len(payload)}")
    extent = None if body is None or isinstance(body, (bytes, bytearray, memoryview)) or framed \
        else _file_extent(body, timeout)
    if extent is not None:
        framing.append(f"Content-Length: {extent[2]}")
    elif body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
        pieces = _pieces(body)
        if not framed:
            framing.append("Transfer-Encoding: chunked")
    head = _head(request, headers, framing)
    sock = _connect(path, timeout)
    wire = _Wire(sock)

    def write() -> None:
        if extent is not None:
            _send_file(sock, head, *extent)
        elif pieces is None:
            sock.sendall(head + payload)
        else:
            _send_stream(sock, head, pieces, chunked=not framed)

    with _talking(sock, path):
        status, fields = _exchange(wire, path, write)
        chunked, length = _framing(request.method, status, fields, path)
    return Response(status, Headers(fields), _SocketBody(path, wire, chunked=chunked, length=length))


def _read_body(body: BinaryIO | None) -> bytes:
    if body is None:
        return b""
    return body.read()


def hijack(path: str, request: Request, *, timeout: float | None = None) -> Response:
    """Send ``request`` and, if the daemon upgrades the connection, return the socket as the
    response's ``hijacked`` duplex."""
    body = _read_body(request.body)
    headers = _headers(request)
    headers["Content-Length"] = str(len(body))
    data = _head(request, headers, []) + body
    sock = _connect(path, timeout)
    wire = _Wire(sock)
    with _talking(sock, path):
        status, fields = _exchange(wire, path, lambda: sock.sendall(data))
        answer_headers = Headers(fields)
        upgraded = status == 101 or (status == 200 and "vnd.docker" in answer_headers.get("Content-Type", ""))
        if upgraded:
            sock.settimeout(None)
            return Response(status, answer_headers, b"", hijacked=HijackedSocket(sock, wire.take_buffered()))
        chunked, length = _framing(request.method, status, fields, path)
        return Response(status, answer_headers, _SocketBody(path, wire, chunked=chunked, length=length))
