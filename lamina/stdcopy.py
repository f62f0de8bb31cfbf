"""Docker's stdio stream format, the one home of both its ends (as moby's ``api/pkg/stdcopy``).

A container without a TTY sends its stdout and stderr over one byte stream
(``application/vnd.docker.multiplexed-stream``: attach, logs, exec start) as frames::

    [stream type: 1 byte] [0, 0, 0] [payload length: uint32 big endian] [payload]

stream type 0 stdin, 1 stdout, 2 stderr, 3 system error (an error message from the engine
that ends the stream).  A container with a TTY sends raw bytes instead
(``application/vnd.docker.raw-stream``), which readers report as stdout.

:func:`frame` encodes one frame.  :class:`FrameDecoder` decodes incrementally: feed it bytes
as they arrive from a socket and it yields ``(stream, payload)`` pieces as soon as they are
there (a big frame that arrives in pieces is given out piece by piece, so output is not held
back; an empty frame gives one empty payload), and :meth:`FrameDecoder.close` says whether the
stream ended inside a frame.  :func:`demultiplex` splits a complete stream into whole frames.
Malformed input (an unknown stream type, a stream that ends inside a frame) raises
:class:`lamina.errdefs.InvalidArgument`.

:class:`Duplex` is the channel the stream travels on after attach or exec start hijacked the
connection: the engine produces one (a socket to the container's monitor), the API hands it
over in a hijacked response, the server splices it to the client's connection, the client
reads the frames from it.  It lives here, the lowest place all of them may import.
"""

from __future__ import annotations

import struct

from lamina import errdefs
from lamina.protocols import Protocol

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MULTIPLEXED_STREAM",
    "RAW_STREAM",
    "STDERR",
    "STDIN",
    "STDOUT",
    "STREAM_TYPES",
    "SYSTEM_ERROR",
    "Duplex",
    "FrameDecoder",
    "HEADER_SIZE",
    "demultiplex",
    "frame",
]

STDIN, STDOUT, STDERR, SYSTEM_ERROR = 0, 1, 2, 3
STREAM_TYPES = frozenset({STDIN, STDOUT, STDERR, SYSTEM_ERROR})
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

_HEADER = struct.Struct(">BxxxL")
HEADER_SIZE = _HEADER.size
_MAX_PAYLOAD = 0xFFFFFFFF


class Duplex(Protocol):
    """A hijacked connection to a container's (or exec's) stdio, as Docker's attach gives it:
    after the upgrade the engine sends stdout/stderr (frames of this module when the container
    has no TTY, raw bytes with a TTY) and reads raw stdin; the client's half-close
    (``shutdown(SHUT_WR)``) ends stdin.  A connected ``socket.socket`` satisfies it."""

    def fileno(self) -> int: ...

    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def shutdown(self, how: int) -> None: ...

    def close(self) -> None: ...


def frame(stream: int, payload: bytes) -> bytes:
    """One frame: the 8-byte header and ``payload``."""
    if stream not in STREAM_TYPES:
        raise errdefs.InvalidArgument(f"invalid stream type {stream}")
    if len(payload) > _MAX_PAYLOAD:
        raise errdefs.InvalidArgument("a frame payload must be under 4 GiB")
    return _HEADER.pack(stream, len(payload)) + payload


class FrameDecoder:
    """Feed bytes, get ``(stream, payload)`` pieces as soon as they are complete enough."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._stream = -1
        self._remaining = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """The pieces ``data`` completes.  Consume the iterator before the next feed."""
        self._pending += data
        pending, offset = self._pending, 0
        try:
            while True:
                if self._remaining:
                    if offset == len(pending):
                        return
                    piece = bytes(pending[offset:offset + self._remaining])
                    offset += len(piece)
                    self._remaining -= len(piece)
                    yield self._stream, piece
                    continue
                if len(pending) - offset < HEADER_SIZE:
                    return
                stream, size = _HEADER.unpack_from(pending, offset)
                if stream not in STREAM_TYPES:
                    raise errdefs.InvalidArgument(f"invalid stream type {stream} in a multiplexed stream")
                offset += HEADER_SIZE
                if size == 0:
                    yield stream, b""
                    continue
                self._stream, self._remaining = stream, size
        finally:
            del pending[:offset]

    @property
    def incomplete(self) -> bool:
        """Whether the bytes fed so far end inside a frame."""
        return bool(self._pending) or bool(self._remaining)

    def close(self) -> None:
        """The stream ended: refuse it if it ended inside a frame."""
        if self._remaining:
            raise errdefs.InvalidArgument(
                f"truncated frame payload in a multiplexed stream ({self._remaining} bytes missing)")
        if self._pending:
            raise errdefs.InvalidArgument(
                f"truncated frame header in a multiplexed stream ({len(self._pending)} of {HEADER_SIZE} bytes)")


def demultiplex(data: bytes) -> Iterator[tuple[int, bytes]]:
    """A complete multiplexed stream as whole (stream, payload) frames."""
    decoder = FrameDecoder()
    frames = list(decoder.feed(data))
    decoder.close()
    yield from frames
