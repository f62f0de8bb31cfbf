"""The bytes of one HTTP/1.1 connection as ``lamina serve`` reads them: request heads for h11,
request bodies decoded here.

h11 parses heads and keeps the connection's state, but feeding it a body costs three copies of
every byte and a few Python calls per chunk (``docker load`` sends 32 KiB chunks): a load
through the server took 1.4-1.8x the in-process load.  So :class:`SocketInput` hands h11 only
a request's head (up to the first blank line, found the way h11 finds it: ``\\n\\r?\\n``) and
keeps what follows; :class:`RequestBody` then decodes the body's framing itself, reading
straight into the reader's buffer where it can (``recv_into``; inside a chunked body it takes
as much as the socket has, several chunks with their heads, and cuts the heads out in place:
no receive or Python call per chunk), and at the body's end tells
h11 that the message ended (``0\\r\\n\\r\\n`` for a chunked body, the same thing h11 would have
seen last; for a ``Content-Length`` body, by marking h11's length reader exhausted, see
:func:`h11_skips_length_bodies`).  What follows the body (a pipelined request) stays here for
the next head.

The framing accepted is h11's (RFC 9112): ``Content-Length`` bodies of exactly that many bytes;
chunked bodies of ``HEX[;extensions]CRLF data CRLF`` chunks (a bare LF ends a size line too,
extensions are ignored, a size line is at most :data:`MAX_CHUNK_LINE` bytes), a last chunk
``0``, then trailer lines (ignored, :data:`MAX_TRAILER_BYTES` in all) up to a blank line.
Malformed framing raises :class:`~lamina.errdefs.InvalidArgument` ("malformed request body:
..."), the client closing before the end raises it too; the connection is not reused then.
"""

from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Callable

import h11

from lamina import errdefs

__all__ = ["MAX_CHUNK_LINE", "MAX_TRAILER_BYTES", "RECEIVE_SIZE", "RequestBody", "SocketInput",
           "h11_skips_length_bodies"]

RECEIVE_SIZE = 64 * 1024  # more is slower: see lamina.client.unix
MAX_CHUNK_LINE = 4096
MAX_TRAILER_BYTES = 64 * 1024
_HEAD_END = re.compile(rb"\n\r?\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}[ \t]*(?:;[^\r\n]*)?\r?\n\Z")
# a chunk's head as it usually arrives, whole in the buffer: the previous chunk's CRLF (when
# one ended) and the size line, matched at once (docker load sends 32 KiB chunks)
_CHUNK_HEAD = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]{0,4000})?\r?\n")
_FOOTER_AND_CHUNK_HEAD = re.compile(rb"\r?\n([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]{0,4000})?\r?\n")


def h11_skips_length_bodies(connection: h11.Connection) -> bool:
    """Whether h11's reader of a ``Content-Length`` body can be told the body was read
    elsewhere: h11 has no public call for it, so this checks the one private attribute used
    (``ContentLengthReader._remaining``, as h11 0.16 has it).  Without it h11 is fed
    placeholder bytes of the body's length to count (slower, same result)."""
    reader = getattr(connection, "_reader", None)
    return type(reader).__name__ == "ContentLengthReader" and isinstance(getattr(reader, "_remaining", None), int)


class SocketInput:
    """The connection's received bytes that h11 has not been given yet, and the socket.

    ``on_data`` is called (without arguments) whenever bytes arrive from the client."""

    def __init__(self, sock: socket.socket, on_data: Callable[[], None]) -> None:
        self.sock = sock
        self._on_data = on_data
        self._buffer = b""
        self._position = 0
        self._head_tail = b""  # the last bytes of the current head given to h11 (a blank line may straddle reads)
        self.lock = threading.Lock()  # one reader at a time (a handler's worker may read a body)

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._position

    def take_buffered(self) -> bytes:
        data = self._buffer[self._position:]
        self._buffer = b""
        self._position = 0
        return data

    def _receive(self, *, raise_timeout: bool = False) -> bytes:
        try:
            data = self.sock.recv(RECEIVE_SIZE)
        except TimeoutError:
            if raise_timeout:
                raise
            return b""
        except OSError:
            return b""
        if data:
            self._on_data()
        return data

    def fill(self) -> bool:
        """Receive more bytes into the buffer; False at the end of the stream."""
        data = self._receive()
        if not data:
            return False
        self._buffer = self._buffer[self._position:] + data if self._position < len(self._buffer) else data
        self._position = 0
        return True

    def head_bytes(self, *, raise_timeout: bool = False) -> bytes:
        """The next bytes for h11 while it reads a head: what is buffered (else one receive;
        a socket timeout is raised with ``raise_timeout``), up to the end of the head; b"" at
        the end of the stream.  What follows the head stays buffered."""
        if not self.buffered:
            data = self._receive(raise_timeout=raise_timeout)
            if not data:
                return b""
            self._buffer, self._position = data, 0
        start, tail = self._position, self._head_tail
        if tail:  # a blank line may begin in the bytes given before (a match never lies in them alone)
            match = _HEAD_END.search(tail + self._buffer[start:])
            end = len(self._buffer) if match is None else start + match.end() - len(tail)
        else:
            match = _HEAD_END.search(self._buffer, start)
            end = len(self._buffer) if match is None else match.end()
        data = self._buffer[start:end]
        self._position = end
        self._head_tail = b"" if match is not None else (tail + data)[-2:]
        return data

    def take_match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """``pattern`` matched at the start of the buffered bytes, which it then consumes;
        None (nothing consumed) when it does not match there."""
        match = pattern.match(self._buffer, self._position)
        if match is not None:
            self._position = match.end()
        return match

    def read_line(self, limit: int) -> bytes | None:
        """The next line with its LF; what is left when the stream ends first (no LF, maybe
        empty); None when no LF comes within ``limit`` bytes."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", self._position + searched, self._position + limit)
            if end >= 0:
                line = self._buffer[self._position:end + 1]
                self._position = end + 1
                return line
            searched = self.buffered
            if searched >= limit:
                return None
            if not self.fill():
                return self.take_buffered()

    def push_back(self, data: bytes) -> None:
        """Put ``data`` back before the buffered bytes (received past what a reader could use)."""
        self._buffer = data + self._buffer[self._position:] if self.buffered else data
        self._position = 0

    def readinto(self, buffer: memoryview) -> int:
        """Bytes into ``buffer``: the buffered ones, else straight from the socket; 0 at the end."""
        if self.buffered:
            size = min(len(buffer), self.buffered)
            buffer[:size] = self._buffer[self._position:self._position + size]
            self._position += size
            return size
        try:
            size = self.sock.recv_into(buffer)
        except OSError:
            return 0
        if size:
            self._on_data()
        return size


class RequestBody(io.RawIOBase):
    """A request body read from the connection on demand (wrap it in a BufferedReader).

    ``length`` is its ``Content-Length``, None when it is chunked; ``received`` counts the
    body's bytes taken so far.  ``before_read`` runs before the first read (it sends
    ``100 Continue`` when the client waits for it); ``on_end`` runs once when the body ended
    (it tells h11)."""

    def __init__(self, source: SocketInput, length: int | None, *, before_read: Callable[[], None],
                 on_end: Callable[[], None]) -> None:
        super().__init__()
        self._source = source
        self._before_read = before_read
        self._on_end = on_end
        self._started = False
        self._done = False
        self._chunk_left = 0       # bytes of the current chunk still to read (chunked)
        self._chunk_footer = False  # the CRLF after a chunk's data is still to read (chunked)
        self._at_end = False        # the last chunk and the trailer were read (chunked)
        self.length = length
        self.received = 0

    def readable(self) -> bool:
        return True

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def unreceived(self) -> int | None:
        """Bytes of the body still to come from the client; None when unknown (chunked)."""
        return None if self.length is None else self.length - self.received

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done or not len(buffer):
            return 0
        if not self._started:
            self._started = True
            self._before_read()
        view = memoryview(buffer).cast("B")
        with self._source.lock:
            size = self._read_length(view) if self.length is not None else self._read_chunked(view)
        self.received += size
        if self._at_end or (self.length is not None and self.received >= self.length):
            self._done = True
            self._on_end()
        return size

    def _read_length(self, view: memoryview) -> int:
        assert self.length is not None
        left = self.length - self.received
        size = self._source.readinto(view[:left])
        if size == 0:
            raise errdefs.InvalidArgument("the client closed the connection before the end of the request body")
        return size

    def _read_chunked(self, view: memoryview) -> int:
        """What is buffered of the body (across chunks) into ``view``, else one receive."""
        source = self._source
        written = 0
        while written < len(view):
            if self._chunk_left == 0:
                # with bytes in hand, return them rather than wait for the next chunk's head
                follows = self._next_chunk(wait=not written)
                if follows is None:
                    break
                if not follows:
                    self._at_end = True
                    break
            elif written and not source.buffered:
                break
            if source.buffered:
                size = source.readinto(view[written:written + min(self._chunk_left, len(view) - written)])
                self._chunk_left -= size
                self._chunk_footer = self._chunk_left == 0
            else:
                size = self._receive_chunks(view, written)
            if size == 0:
                raise errdefs.InvalidArgument("the client closed the connection before the end of the request body")
            written += size
        return written

    def _receive_chunks(self, view: memoryview, start: int) -> int:
        """Receive into ``view[start:]`` (inside a chunk's data, nothing buffered) as much as
        the socket has, then decode the framing in place: each complete chunk head in what
        came is cut out by moving the data that follows it down.  Bytes from a head that is
        not complete, or not a plain data chunk head (the last chunk, a malformed or overlong
        line), go back to the buffer, where :meth:`_next_chunk` reads them.  Returns the data
        bytes now at ``view[start:]``; 0 when the client closed."""
        end = start + self._source.readinto(view[start:])
        if end == start:
            return 0
        position = written = start
        while True:
            size = min(self._chunk_left, end - position)
            if written != position:
                view[written:written + size] = view[position:position + size]
            written += size
            position += size
            self._chunk_left -= size
            if self._chunk_left:
                break
            self._chunk_footer = True
            match = _FOOTER_AND_CHUNK_HEAD.match(view, position, end)
            if match is None or not (size := int(match.group(1), 16)):
                break
            self._chunk_left = size
            self._chunk_footer = False
            position = match.end()
        if position < end:
            self._source.push_back(bytes(view[position:end]))
        return written - start

    def _line(self, limit: int, what: str) -> bytes:
        line = self._source.read_line(limit)
        if line is None:
            raise errdefs.InvalidArgument(f"malformed request body: {what} longer than {limit} bytes")
        if not line.endswith(b"\n"):
            raise errdefs.InvalidArgument("the client closed the connection before the end of the request body")
        return line

    def _next_chunk(self, *, wait: bool) -> bool | None:
        """Read up to the next chunk's data (the previous chunk's CRLF, the size line, and at
        the last chunk the trailer section); False when that was the last chunk, None (when
        not ``wait``) when that is not buffered yet."""
        match = self._source.take_match(_FOOTER_AND_CHUNK_HEAD if self._chunk_footer else _CHUNK_HEAD)
        if match is not None:
            self._chunk_footer = False
            size = int(match.group(1), 16)
            if size:
                self._chunk_left = size
                return True
            return self._read_trailer()
        if not wait:
            return None
        if self._chunk_footer:
            line = self._line(2, "the CRLF after a chunk")
            if line not in (b"\r\n", b"\n"):
                raise errdefs.InvalidArgument(f"malformed request body: expected CRLF after a chunk, got {line!r}")
            self._chunk_footer = False
        line = self._line(MAX_CHUNK_LINE, "a chunk size line")
        if not _CHUNK_SIZE.match(line):
            raise errdefs.InvalidArgument(f"malformed request body: illegal chunk header {line[:80]!r}")
        size = int(line.split(b";", 1)[0].strip(b" \t\r\n"), 16)
        if size:
            self._chunk_left = size
            return True
        return self._read_trailer()

    def _read_trailer(self) -> bool:
        """The trailer section after the last chunk, up to its blank line (dropped); False."""
        budget = MAX_TRAILER_BYTES
        while (trailer := self._line(budget, "the trailer section")) not in (b"\r\n", b"\n"):
            budget -= len(trailer)
        return False
