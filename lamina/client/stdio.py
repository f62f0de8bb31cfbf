"""A container's stdio as the client sees it: multiplexed frames decoded incrementally, and the
hijacked connection of attach / exec start.

Frames (``application/vnd.docker.multiplexed-stream``): ``[stream, 0, 0, 0, size (uint32 big
endian)] + payload``, stream 0 stdin, 1 stdout, 2 stderr, 3 system error.  A raw stream
(``application/vnd.docker.raw-stream``, containers with a TTY) is reported as stdout.

:class:`Attachment` wraps the hijacked :class:`lamina.services.api.Duplex`: ``output()``
yields (stream, payload) pairs until the container's output ends, ``send()`` writes to the
container's stdin and ``close_stdin()`` half-closes it (the container sees end of file).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from lamina.services.api import Duplex

__all__ = [
    "MULTIPLEXED_STREAM",
    "RAW_STREAM",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SYSTEM_ERROR",
    "Attachment",
    "FrameDecoder",
    "decode_frames",
    "is_multiplexed",
]

STDIN, STDOUT, STDERR, SYSTEM_ERROR = 0, 1, 2, 3
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
_HEADER = struct.Struct(">BxxxL")
_READ_SIZE = 64 * 1024


def is_multiplexed(content_type: str, *, default: bool) -> bool:
    """Whether a stdio stream with this content type is multiplexed (docker before API 1.42
    sent ``raw-stream`` for both: then the caller's knowledge of the TTY decides)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == MULTIPLEXED_STREAM:
        return True
    return default if kind in ("", RAW_STREAM) else False


class FrameDecoder:
    """Feed bytes, get complete (stream, payload) frames; payloads of a frame that arrives in
    pieces are given out as they arrive (so a big write is not held back)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._stream = -1
        self._remaining = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._pending += data
        while True:
            if self._remaining:
                if not self._pending:
                    return
                piece = bytes(self._pending[: self._remaining])
                del self._pending[: len(piece)]
                self._remaining -= len(piece)
                yield self._stream, piece
                continue
            if len(self._pending) < _HEADER.size:
                return
            stream, size = _HEADER.unpack_from(self._pending)
            if stream not in (STDIN, STDOUT, STDERR, SYSTEM_ERROR):
                raise ValueError(f"invalid stream type {stream} in a multiplexed stream")
            del self._pending[: _HEADER.size]
            self._stream, self._remaining = stream, size

    @property
    def incomplete(self) -> bool:
        return bool(self._pending) or bool(self._remaining)


def decode_frames(chunks: Iterable[bytes], *, multiplexed: bool) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) pairs from a body's chunks."""
    if not multiplexed:
        for chunk in chunks:
            if chunk:
                yield STDOUT, chunk
        return
    decoder = FrameDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


class Attachment:
    """The hijacked stdio connection of a container or exec."""

    def __init__(self, duplex: Duplex, *, multiplexed: bool) -> None:
        self.duplex = duplex
        self.multiplexed = multiplexed
        self._stdin_closed = False
        self._closed = False

    def fileno(self) -> int:
        return self.duplex.fileno()

    def output(self) -> Iterator[tuple[int, bytes]]:
        """(stream, payload) pairs until the other side ends the stream."""
        decoder = FrameDecoder() if self.multiplexed else None
        while True:
            try:
                data = self.duplex.recv(_READ_SIZE)
            except (ConnectionResetError, BrokenPipeError):
                return
            except OSError:
                if self._closed:
                    return
                raise
            if not data:
                return
            if decoder is None:
                yield STDOUT, data
            else:
                yield from decoder.feed(data)

    def send(self, data: bytes) -> None:
        self.duplex.sendall(data)

    def close_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            import socket

            try:
                self.duplex.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the other side is gone: there is no stdin left to close

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.duplex.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
