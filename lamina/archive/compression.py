"""Detecting and undoing the compression of a layer or image archive.

:func:`detect` names the compression from the first bytes of a stream (magic numbers: gzip
``1f 8b``, zstd ``28 b5 2f fd``, bzip2 ``BZh``, xz ``fd 37 7a 58 5a 00``).  :func:`decompressed`
returns a readable stream (with ``readinto``) of the uncompressed bytes; gzip goes through
``isal`` when importable (several times faster than zlib), zstd through ``zstandard``.  With
``threaded=True`` the decompression runs in a background thread that feeds a small bounded
queue, so that on two cores it overlaps with hashing and extraction; the memory held is bounded
by the queue (a few MiB).  Corrupt input surfaces as :class:`errdefs.InvalidArgument`
("corrupt gzip stream: ...") from the read that meets it.
"""

from __future__ import annotations

import bz2
import io
import lzma
import queue
import threading
import zlib
from typing import BinaryIO

from lamina import errdefs

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip  # type: ignore[no-redef]

__all__ = ["detect", "decompressed", "read_up_to", "PrefixedStream", "MAGIC_LENGTH"]

MAGIC_LENGTH = 6
_CHUNK = 1 << 20
_QUEUE_DEPTH = 4


def detect(prefix: bytes) -> str | None:
    """``"gzip"``, ``"zstd"``, ``"bzip2"``, ``"xz"`` or None (not compressed, e.g. a plain tar)."""
    if prefix.startswith(b"\x1f\x8b"):
        return "gzip"
    if prefix.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if prefix.startswith(b"BZh"):
        return "bzip2"
    if prefix.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


class PrefixedStream(io.RawIOBase):
    """The bytes already peeked from ``source``, then the rest of ``source`` (closing this
    stream leaves ``source`` open)."""

    def __init__(self, prefix: bytes, source: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        readinto = getattr(self._source, "readinto", None)
        if readinto is not None:
            return readinto(buffer) or 0
        data = self._source.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _errors_for(kind: str) -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, zlib.error, OSError, ValueError, lzma.LZMAError]
    bad_gzip = getattr(_gzip, "BadGzipFile", None)
    if bad_gzip is not None:
        errors.append(bad_gzip)
    try:
        from isal import isal_zlib
        errors.append(isal_zlib.error)
    except ImportError:  # pragma: no cover
        pass
    if kind == "zstd":
        import zstandard
        errors.append(zstandard.ZstdError)
    return tuple(errors)


class _CheckedStream(io.RawIOBase):
    """Translates a decompressor's exceptions into InvalidArgument."""

    def __init__(self, inner: BinaryIO, kind: str) -> None:
        self._inner = inner
        self._kind = kind
        self._errors = _errors_for(kind)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._inner.readinto(buffer) or 0
        except errdefs.LaminaError:
            raise
        except self._errors as exc:
            raise errdefs.InvalidArgument(f"corrupt {self._kind} stream: {exc}") from exc

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


class _ThreadedStream(io.RawIOBase):
    """Reads ``inner`` in a background thread into a bounded queue of chunks."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._queue: queue.Queue[bytearray | BaseException | None] = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._current = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, name="lamina-decompress", daemon=True)
        self._thread.start()

    def _put(self, item: bytearray | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                buffer = bytearray(_CHUNK)
                count = self._inner.readinto(buffer)
                if not count:
                    break
                del buffer[count:]
                if not self._put(buffer):  # type: ignore[arg-type]
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)
            return
        self._put(None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._current:
            if self._done:
                return 0
            item = self._queue.get()
            if item is None:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._current = memoryview(item)
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._inner.close()
        finally:
            super().close()


def read_up_to(source: BinaryIO, size: int) -> bytes:
    """``size`` bytes of ``source``, fewer only at its end (a read may return less than asked)."""
    data = b""
    while len(data) < size:
        chunk = source.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def decompressed(source: BinaryIO, *, threaded: bool = True) -> BinaryIO:
    """A readable stream of the uncompressed content of ``source`` (plain input passes through).

    Closing the returned stream stops the background thread; it does not close ``source``.
    """
    prefix = read_up_to(source, MAGIC_LENGTH)
    kind = detect(prefix)
    stream: BinaryIO = PrefixedStream(prefix, source)  # type: ignore[assignment]
    if kind is None:
        return stream
    if kind == "gzip":
        inner = _gzip.GzipFile(fileobj=stream, mode="rb")
    elif kind == "zstd":
        import zstandard
        inner = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True,
                                                           closefd=False)
    elif kind == "bzip2":
        inner = bz2.BZ2File(stream)
    else:
        inner = lzma.LZMAFile(stream)
    checked: BinaryIO = _CheckedStream(inner, kind)  # type: ignore[assignment]
    if threaded:
        return _ThreadedStream(checked)  # type: ignore[return-value]
    return checked
