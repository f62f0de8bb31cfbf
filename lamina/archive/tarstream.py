"""A hand-written streaming tar reader and writer.

Format (POSIX.1-2001 / GNU, as Go's ``archive/tar`` reads it, which is what Docker uses):

- The stream is a sequence of 512-byte header blocks, each followed by the entry's content
  padded with zeros to a multiple of 512 bytes.  Two zero blocks mark the end of the archive;
  bytes after them ("trailing data", often more zero blocks) are allowed up to a limit.
- The header block's layout, its number formats and the PAX records are
  :mod:`lamina.archive.tarheader`'s (both directions).
- Meta entries describe the next real entry: ``x`` (PAX records ``"<len> <key>=<value>\\n"``),
  ``g`` (global PAX records), ``L`` / ``K`` (GNU long name / long link name).  Their content is
  limited to 1 MiB here (like Go); sparse files (``S``, ``GNU.sparse.*``) are rejected.

Every byte read from the source goes through ``hasher.update`` exactly once (so after
:meth:`TarReader.finish` the hasher holds the diff_id of the stream), and every byte that is not
entry content goes to the tar-split ``recorder`` in the order tar-split itself records it.

Global PAX records (``g``) are applied to the following entries for metadata only (uid, gid,
uname, gname, mtime, atime, xattrs), never for path, linkpath or size.

The writer emits the headers :func:`lamina.archive.tarheader.encode_header` makes, each entry's
content and padding, and the end-of-archive marker; output is a pure function of the entries
written.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from lamina import errdefs, fsutil
from lamina.archive.api import EntryType, TarEntry
from lamina.archive.tarheader import (
    BLOCK_SIZE,
    END_OF_ARCHIVE,
    MAX_SPECIAL_SIZE,
    TYPES,
    ZERO_BLOCK,
    HeaderError,
    c_string,
    decode_header,
    encode_header,
    entry_from_header,
    is_sparse_record,
    normalize_name,
    parse_pax_records,
)

if TYPE_CHECKING:
    from lamina.archive.tarsplit import TarSplitWriter
    from lamina.digest import Hasher

__all__ = ["TarReader", "TarWriter", "ChunkReader", "entry_chunks", "normalize_name",
           "END_OF_ARCHIVE", "BLOCK_SIZE", "MAX_SPECIAL_SIZE"]

_BUFFER_SIZE = 1 << 20

_STATE_ENTRIES = 0     # headers are still being read
_STATE_ENDED = 1       # the end-of-archive marker (or a clean EOF) was read
_STATE_FINISHED = 2    # trailing data consumed


class ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (a diff tar, a copied archive),
    for :class:`TarReader` or a layer store's ``register``."""

    def __init__(self, chunks: Iterator[bytes | memoryview]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = bytes(next(self._chunks))
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class TarReader:
    """Streams the entries of a tar archive read from ``source`` (anything with ``readinto``).

    Iterating yields :class:`TarEntry` values; the content of the current entry is read with
    :meth:`copy_content_to`, :meth:`read_content` or :meth:`skip_content` (whatever is left
    unread is skipped when the next entry is requested).  Root entries (``./``) and global PAX
    headers are consumed (and recorded) but not yielded.  After iteration, :meth:`finish`
    consumes the trailing data; it is also safe to call before the end (remaining entries are
    then skipped).
    """

    def __init__(self, source: BinaryIO, *, recorder: TarSplitWriter | None = None,
                 hasher: Hasher | None = None, max_trailing: int = 1 << 20) -> None:
        readinto = getattr(source, "readinto", None)
        if readinto is None:
            def readinto(buffer: memoryview, read=source.read) -> int:
                data = read(len(buffer))
                buffer[:len(data)] = data
                return len(data)
        self._readinto = readinto
        self._recorder = recorder
        self._hasher = hasher
        self._max_trailing = max_trailing
        self._buffer = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0
        self._source_done = False
        self._offset = 0                    # bytes consumed from the stream so far
        self._state = _STATE_ENTRIES
        self._segment = bytearray()         # raw non-content bytes not yet given to the recorder
        self._content_remaining = 0
        self._padding_remaining = 0
        self._pending_file: bytes | None = None   # raw name of the entry whose record waits for its CRC
        self._pending_size = 0
        self._crc = 0
        self._crc64: Any = None
        if recorder is not None:  # CRC-64s only for a tar-split record (fastcrc loads then)
            import fastcrc

            self._crc64 = fastcrc.crc64.go_iso
        self._global_records: dict[str, bytes] = {}
        self.current_raw_name = ""

    # -- low-level buffer handling -------------------------------------------------------

    def _fill(self) -> int:
        """Read more bytes from the source into the buffer; 0 at end of stream."""
        if self._source_done:
            return 0
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == _BUFFER_SIZE:
            kept = self._end - self._start
            self._buffer[:kept] = bytes(self._view[self._start:self._end])   # regions may overlap
            self._start, self._end = 0, kept
        try:
            count = self._readinto(self._view[self._end:])
        except errdefs.LaminaError:
            raise
        except OSError as exc:
            raise fsutil.system_error("reading the tar stream", exc) from exc
        if not count:
            self._source_done = True
            return 0
        if self._hasher is not None:
            self._hasher.update(self._view[self._end:self._end + count])
        self._end += count
        return count

    def _take_raw(self, count: int) -> bytes:
        """Consume up to ``count`` (<= buffer size) bytes as non-content; short only at EOF."""
        while self._end - self._start < count:
            if not self._fill():
                break
        taken = min(count, self._end - self._start)
        data = bytes(self._view[self._start:self._start + taken])
        self._start += taken
        self._offset += taken
        self._segment += data
        return data

    def _read_special(self, size: int, what: str) -> bytes:
        """Read the content (and padding) of a PAX / GNU meta entry, recorded as segment bytes."""
        if size > MAX_SPECIAL_SIZE:
            raise errdefs.InvalidArgument(
                f"tar {what} record at offset {self._offset} is {size} bytes, larger than the "
                f"{MAX_SPECIAL_SIZE}-byte limit")
        data = self._take_raw(size)
        if len(data) < size:
            raise errdefs.InvalidArgument(
                f"truncated tar stream: {what} record at offset {self._offset} ends after "
                f"{len(data)} of {size} bytes")
        self._padding_remaining = -size % BLOCK_SIZE
        return data

    def _consume_padding(self) -> None:
        if self._padding_remaining:
            # A stream that ends inside the padding of its last entry is accepted, like Go does.
            self._take_raw(self._padding_remaining)
            self._padding_remaining = 0

    def _flush_segment(self) -> None:
        if self._segment:
            if self._recorder is not None:
                self._recorder.segment(self._segment)
            self._segment = bytearray()

    # -- content ----------------------------------------------------------------------

    def _truncated(self) -> errdefs.InvalidArgument:
        done = self._pending_size - self._content_remaining
        return errdefs.InvalidArgument(
            f"truncated tar stream: the content of {self.current_raw_name!r} ends after {done} of "
            f"{self._pending_size} bytes")

    def _next_content_chunk(self, limit: int) -> memoryview:
        if self._start == self._end and not self._fill():
            raise self._truncated()
        count = min(self._end - self._start, self._content_remaining, limit)
        chunk = self._view[self._start:self._start + count]
        self._start += count
        self._offset += count
        self._content_remaining -= count
        if self._pending_file is not None:
            self._crc = self._crc64(chunk, self._crc)
        return chunk

    def _content_done(self) -> None:
        if self._pending_file is not None and self._content_remaining == 0:
            assert self._recorder is not None
            self._recorder.file(self._pending_file, self._pending_size, self._crc.to_bytes(8, "big"))
            self._pending_file = None

    def copy_content_to(self, fd: int) -> int:
        """Write the (rest of the) current entry's content to ``fd``; returns the bytes written."""
        total = 0
        write = os.write
        while self._content_remaining:
            chunk = self._next_content_chunk(_BUFFER_SIZE)
            try:
                while chunk:
                    written = write(fd, chunk)
                    chunk = chunk[written:]
                    total += written
            except OSError as exc:
                raise fsutil.system_error(f"writing {self.current_raw_name!r}", exc) from exc
        self._content_done()
        return total

    def read_content(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all when negative) of the current entry's content."""
        if size < 0:
            size = self._content_remaining
        parts = []
        while size and self._content_remaining:
            chunk = self._next_content_chunk(size)
            parts.append(bytes(chunk))
            size -= len(chunk)
        self._content_done()
        return b"".join(parts)

    def skip_content(self) -> None:
        """Skip (but hash, and checksum for tar-split) the rest of the current entry's content."""
        while self._content_remaining:
            self._next_content_chunk(_BUFFER_SIZE)
        self._content_done()

    # -- entries ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[TarEntry]:
        return self

    def __next__(self) -> TarEntry:
        if self._state != _STATE_ENTRIES:
            raise StopIteration
        entry = self._next_entry()
        if entry is None:
            raise StopIteration
        return entry

    def _end_of_archive(self) -> None:
        self._flush_segment()
        self._state = _STATE_ENDED

    def _invalid(self, name: bytes | None, offset: int, problem: str) -> errdefs.InvalidArgument:
        where = f"entry {os.fsdecode(name)!r}" if name else f"header at offset {offset}"
        return errdefs.InvalidArgument(f"invalid tar {where}: {problem}")

    def _next_entry(self) -> TarEntry | None:
        self.skip_content()
        records: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            # The padding of the previous entry (or meta record) belongs to the next segment.
            self._consume_padding()
            offset = self._offset
            block = self._take_raw(BLOCK_SIZE)
            if not block:
                self._end_of_archive()          # clean end at a header boundary, no end blocks
                return None
            if len(block) < BLOCK_SIZE:
                raise errdefs.InvalidArgument(
                    f"truncated tar stream: header at offset {offset} has {len(block)} of 512 bytes")
            if block == ZERO_BLOCK:
                second = self._take_raw(BLOCK_SIZE)
                if second and second != ZERO_BLOCK:
                    if len(second) < BLOCK_SIZE:
                        raise errdefs.InvalidArgument(
                            f"truncated tar stream: block at offset {offset + BLOCK_SIZE} has "
                            f"{len(second)} of 512 bytes")
                    raise errdefs.InvalidArgument(
                        f"invalid tar stream: a zero block at offset {offset} is followed by data")
                self._end_of_archive()
                return None
            try:
                header = decode_header(block)
            except HeaderError as exc:
                raise self._invalid(c_string(block[0:100]), offset, str(exc)) from None
            flag = header.typeflag
            if flag in (b"x", b"g"):
                data = self._read_special(header.size, "PAX header")
                try:
                    parsed = parse_pax_records(data)
                except HeaderError as exc:
                    raise self._invalid(header.name, offset, str(exc)) from None
                if any(is_sparse_record(key) for key in parsed):
                    name = parsed.get("GNU.sparse.name", parsed.get("path", header.name))
                    raise errdefs.InvalidArgument(
                        f"sparse files are not supported: {os.fsdecode(name)!r}")
                if flag == b"g":
                    self._global_records.update(parsed)
                    # Go hands the global header out as an entry of its own, so tar-split
                    # records it as a (size 0) file entry; its padding goes with the next segment.
                    raw_name = parsed.get("path") or header.name
                    self._flush_segment()
                    if self._recorder is not None:
                        self._recorder.file(raw_name, 0, None)
                    records, long_name, long_link = {}, None, None
                    continue
                records = parsed
                continue
            if flag in (b"L", b"K"):
                data = c_string(self._read_special(header.size, "GNU long name"))
                if flag == b"L":
                    long_name = data
                else:
                    long_link = data
                continue
            if flag == b"S":
                raise errdefs.InvalidArgument(
                    f"sparse files are not supported: {os.fsdecode(long_name or header.name)!r}")
            entry_type = TYPES.get(flag)
            raw_name = header.name
            if records.get("path"):
                raw_name = records["path"]
            if long_name:
                raw_name = long_name
            raw_link = header.linkname
            if records.get("linkpath"):
                raw_link = records["linkpath"]
            if long_link:
                raw_link = long_link
            if entry_type is None:
                raise self._invalid(raw_name, offset, f"unsupported entry type {flag!r}")
            if flag == b"\0" and raw_name.endswith(b"/"):
                entry_type = EntryType.DIRECTORY      # old archives mark directories by a slash
            try:
                entry = entry_from_header(header, entry_type, raw_name, raw_link, records,
                                          self._global_records)
            except HeaderError as exc:
                raise self._invalid(raw_name, offset, str(exc)) from None
            self.current_raw_name = os.fsdecode(raw_name)
            size = entry.size if entry_type is EntryType.REGULAR else 0
            entry.size = size
            self._content_remaining = size
            self._padding_remaining = -size % BLOCK_SIZE
            self._pending_size = size
            self._flush_segment()
            if self._recorder is not None:
                if size:
                    self._pending_file = raw_name
                    self._crc = 0
                else:
                    self._recorder.file(raw_name, 0, None)
            if not entry.name:
                # The root itself: recorded, but nothing to extract.  Content there could never
                # be given back by a tar-split reassembly, so it is refused.
                if size:
                    raise self._invalid(raw_name, offset, "a regular file names the archive root")
                self.skip_content()
                records, long_name, long_link = {}, None, None
                continue
            return entry

    def finish(self) -> None:
        """Consume everything up to the end of the stream (hashed, and recorded as segments).

        Remaining entries are skipped; trailing data after the end-of-archive marker is
        accepted up to ``max_trailing`` bytes.
        """
        if self._state == _STATE_FINISHED:
            return
        while self._state == _STATE_ENTRIES:
            self._next_entry()
        trailing = 0
        while True:
            if self._start == self._end and not self._fill():
                break
            chunk = self._view[self._start:self._end]
            trailing += len(chunk)
            if trailing > self._max_trailing:
                raise errdefs.InvalidArgument(
                    f"trailing data after end of archive: more than {self._max_trailing} bytes")
            if self._recorder is not None:
                self._recorder.segment(chunk)
            self._start = self._end
            self._offset += len(chunk)
        self._state = _STATE_FINISHED

    @property
    def offset(self) -> int:
        """Bytes of the stream consumed so far."""
        return self._offset


def entry_chunks(entry: TarEntry, content: BinaryIO | Iterable[bytes] | bytes | None = None,
                 *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of one archive member: header block(s), exactly ``entry.size`` bytes of content
    (for regular files) and the padding.  A short (or, for iterables, long) content raises
    :class:`errdefs.InvalidArgument`."""
    yield encode_header(entry)
    if entry.type is not EntryType.REGULAR:
        return
    size = entry.size
    remaining = size
    if remaining:
        if content is None:
            raise errdefs.InvalidArgument(f"no content given for {entry.name!r} ({size} bytes)")
        if isinstance(content, (bytes, bytearray, memoryview)):
            content = [bytes(content)]
        read = getattr(content, "read", None)
        if read is not None:
            while remaining:
                chunk = read(min(remaining, chunk_size))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        else:
            for chunk in content:  # type: ignore[union-attr]
                if not chunk:
                    continue
                if len(chunk) > remaining:
                    raise errdefs.InvalidArgument(
                        f"the content of {entry.name!r} is longer than its size {size}")
                remaining -= len(chunk)
                yield bytes(chunk)
        if remaining:
            raise errdefs.InvalidArgument(
                f"the content of {entry.name!r} is shorter than its size ({size - remaining} of "
                f"{size} bytes)")
    if size % BLOCK_SIZE:
        yield bytes(-size % BLOCK_SIZE)


class TarWriter:
    """Writes an archive through ``write`` (called with each chunk of bytes, in order)."""

    def __init__(self, write: Callable[[bytes | memoryview], object]) -> None:
        self._write = write
        self._closed = False

    def add(self, entry: TarEntry, content: BinaryIO | Iterable[bytes] | None = None) -> None:
        if self._closed:
            raise errdefs.FailedPrecondition("the tar writer is closed")
        for chunk in entry_chunks(entry, content):
            self._write(chunk)

    def add_file(self, name: str, size: int, content: BinaryIO | Iterable[bytes], *,
                 mode: int = 0o644, mtime: int = 0) -> None:
        self.add(TarEntry(name=name, type=EntryType.REGULAR, mode=mode, size=size,
                          mtime_ns=mtime * 1_000_000_000), content)

    def add_directory(self, name: str, *, mode: int = 0o755, mtime: int = 0) -> None:
        self.add(TarEntry(name=name, type=EntryType.DIRECTORY, mode=mode,
                          mtime_ns=mtime * 1_000_000_000))

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks, no padding to a record size)."""
        if not self._closed:
            self._closed = True
            self._write(END_OF_ARCHIVE)
