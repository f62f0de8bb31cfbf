"""A container's stdio as the client sees it: multiplexed frames decoded incrementally, and the
hijacked connection of attach / exec start.

Frames (``application/vnd.docker.multiplexed-stream``) are decoded by
:class:`lamina.stdcopy.FrameDecoder`.  A raw stream (``application/vnd.docker.raw-stream``,
containers with a TTY) is reported as stdout.

:class:`Attachment` wraps the hijacked :class:`lamina.stdcopy.Duplex`: ``output()``
yields (stream, payload) pairs until the container's output ends, ``send()`` writes to the
container's stdin and ``close_stdin()`` half-closes it (the container sees end of file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lamina.stdcopy import MULTIPLEXED_STREAM, RAW_STREAM, STDOUT, FrameDecoder

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Self

    from lamina.stdcopy import Duplex

__all__ = ["Attachment", "decode_frames", "is_multiplexed"]

_READ_SIZE = 64 * 1024


def is_multiplexed(content_type: str, *, default: bool) -> bool:
    """Whether a stdio stream with this content type is multiplexed (docker before API 1.42
    sent ``raw-stream`` for both: then the caller's knowledge of the TTY decides)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == MULTIPLEXED_STREAM:
        return True
    return default if kind in ("", RAW_STREAM) else False


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
    decoder.close()


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
