"""A hand-written streaming tar reader and writer.

Format (POSIX.1-2001 / GNU, as Go's ``archive/tar`` reads it, which is what Docker uses):

- The stream is a sequence of 512-byte header blocks, each followed by the entry's content
  padded with zeros to a multiple of 512 bytes.  Two zero blocks mark the end of the archive;
  bytes after them ("trailing data", often more zero blocks) are allowed up to a limit.
- Header block layout (byte offsets): name 0:100, mode 100:108, uid 108:116, gid 116:124,
  size 124:136, mtime 136:148, checksum 148:156, typeflag 156, linkname 157:257, magic 257:263,
  version 263:265, uname 265:297, gname 297:329, devmajor 329:337, devminor 337:345,
  prefix 345:500 (ustar; GNU uses 345:369 for atime/ctime instead).  Numbers are octal text
  or, in GNU archives, base-256 with the high bit of the first byte set.  The checksum is the
  sum of the block's bytes with the checksum field read as spaces (signed or unsigned sums).
- Magic ``ustar\\0`` + ``00``: ustar/PAX; ``ustar  \\0``: GNU; anything else: old V7.
- Meta entries describe the next real entry: ``x`` (PAX records ``"<len> <key>=<value>\\n"``),
  ``g`` (global PAX records), ``L`` / ``K`` (GNU long name / long link name).  Their content is
  limited to 1 MiB here (like Go); sparse files (``S``, ``GNU.sparse.*``) are rejected.

Every byte read from the source goes through ``hasher.update`` exactly once (so after
:meth:`TarReader.finish` the hasher holds the diff_id of the stream), and every byte that is not
entry content goes to the tar-split ``recorder`` in the order tar-split itself records it.

Global PAX records (``g``) are applied to the following entries for metadata only (uid, gid,
uname, gname, mtime, atime, xattrs), never for path, linkpath or size.

The writer emits ustar headers, with a PAX record block before any header whose values do not
fit ustar (long or non-ASCII names, big ids or sizes, sub-second or negative times, xattrs),
like Go's ``archive/tar`` does; output is a pure function of the entries written.
"""

from __future__ import annotations

import base64
import io
import os
import posixpath
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO


from lamina import errdefs, fsutil
from lamina.archive.api import EntryType, TarEntry

if TYPE_CHECKING:
    from lamina.archive.tarsplit import TarSplitWriter
    from lamina.digest import Hasher

__all__ = ["TarReader", "TarWriter", "ChunkReader", "entry_chunks", "normalize_name",
           "END_OF_ARCHIVE", "BLOCK_SIZE", "MAX_SPECIAL_SIZE"]

BLOCK_SIZE = 512
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)
MAX_SPECIAL_SIZE = 1 << 20        # PAX / GNU long-name records larger than this are refused
_BUFFER_SIZE = 1 << 20
_MAX_INT64 = (1 << 63) - 1
_ZERO_BLOCK = bytes(BLOCK_SIZE)
_CHECKSUM_SPACES = sum(b" " * 8)


_TYPES = {
    b"0": EntryType.REGULAR, b"\0": EntryType.REGULAR, b"7": EntryType.REGULAR,
    b"1": EntryType.HARDLINK, b"2": EntryType.SYMLINK, b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK, b"5": EntryType.DIRECTORY, b"6": EntryType.FIFO,
}
_TYPE_FLAGS = {value: key for key, value in _TYPES.items() if key not in (b"\0", b"7")}

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


def normalize_name(raw: str, what: str = "entry") -> str:
    """The normalised form of an archive path ("" is the root); raise if it climbs above it."""
    parts: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise errdefs.InvalidArgument(f"tar {what} {raw!r} escapes the archive root")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _c_string(field: bytes | memoryview) -> bytes:
    data = bytes(field)
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


class _HeaderError(Exception):
    """Internal: a malformed header field; turned into InvalidArgument with the entry's name."""


def _parse_number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        # GNU base-256: two's complement, the marker bit stripped for positive numbers.
        if field[0] & 0x40:
            value = int.from_bytes(field, "big", signed=True)
        else:
            value = int.from_bytes(field, "big") - (1 << (8 * len(field) - 1))
        if not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
            raise _HeaderError(f"{what} field out of range")
        return value
    text = _c_string(field.strip(b" \0"))
    if not text:
        return 0
    if text.strip(b"01234567"):
        raise _HeaderError(f"invalid {what} field {bytes(field)!r}")
    value = int(text, 8)
    if value > _MAX_INT64:
        raise _HeaderError(f"{what} field out of range")
    return value


def _parse_pax_time(value: bytes, what: str) -> int:
    text = value.decode("ascii", "replace")
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    seconds, _, fraction = digits.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or not seconds.isascii():
        raise _HeaderError(f"invalid PAX {what} {text!r}")
    nanoseconds = int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or "0")
    return -nanoseconds if negative else nanoseconds


def _parse_pax_int(value: bytes, what: str) -> int:
    if not value.isdigit():
        raise _HeaderError(f"invalid PAX {what} {value!r}")
    number = int(value)
    if number > _MAX_INT64:
        raise _HeaderError(f"PAX {what} out of range")
    return number


def _parse_pax_records(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    position = 0
    total = len(data)
    while position < total:
        space = data.find(b" ", position, min(total, position + 24))
        if space < 0:
            raise _HeaderError("malformed PAX record (no length)")
        length_text = data[position:space]
        if not length_text.isdigit():
            raise _HeaderError("malformed PAX record length")
        length = int(length_text)
        end = position + length
        if length < 5 or end > total or end <= space + 1:
            raise _HeaderError("PAX record length out of range")
        if data[end - 1] != 0x0A:
            raise _HeaderError("PAX record does not end with a newline")
        record = data[space + 1:end - 1]
        key_bytes, equals, value = record.partition(b"=")
        if not equals or not key_bytes:
            raise _HeaderError("malformed PAX record (no key)")
        if b"\0" in key_bytes:
            raise _HeaderError("PAX record key contains NUL")
        key = key_bytes.decode("utf-8", "surrogateescape")
        if key in ("path", "linkpath", "uname", "gname") and b"\0" in value:
            raise _HeaderError(f"PAX {key} contains NUL")
        records[key] = value
        position = end
    return records


def _is_sparse_record(key: str) -> bool:
    return key.startswith("GNU.sparse.")


class _Header:
    """A decoded header block (fields as raw values)."""

    __slots__ = ("typeflag", "name", "linkname", "size", "mode", "uid", "gid", "mtime", "atime",
                 "uname", "gname", "devmajor", "devminor")

    typeflag: bytes
    name: bytes
    linkname: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int
    atime: int | None
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int


def _decode_header(block: bytes) -> _Header:
    """Decode and verify one header block; raise _HeaderError for anything malformed."""
    stored = _parse_number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + _CHECKSUM_SPACES
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for byte in block if byte >= 0x80)
        signed += 256 * sum(1 for byte in block[148:156] if byte >= 0x80)
        if stored != signed:
            raise _HeaderError("header checksum mismatch")
    header = _Header()
    header.typeflag = block[156:157]
    header.name = _c_string(block[0:100])
    header.linkname = _c_string(block[157:257])
    header.size = _parse_number(block[124:136], "size")
    header.mode = _parse_number(block[100:108], "mode")
    header.uid = _parse_number(block[108:116], "uid")
    header.gid = _parse_number(block[116:124], "gid")
    header.mtime = _parse_number(block[136:148], "mtime")
    header.atime = None
    header.uname = header.gname = b""
    header.devmajor = header.devminor = 0
    magic = block[257:263]
    version = block[263:265]
    if magic == b"ustar\0" or (magic == b"ustar " and version == b" \0"):
        header.uname = _c_string(block[265:297])
        header.gname = _c_string(block[297:329])
        header.devmajor = _parse_number(block[329:337], "devmajor")
        header.devminor = _parse_number(block[337:345], "devminor")
        prefix = b""
        if magic == b"ustar\0":
            if block[508:512] == b"tar\0":           # star: shorter prefix, then times
                prefix = _c_string(block[345:476])
            else:
                prefix = _c_string(block[345:500])
        else:
            try:
                if block[345]:
                    header.atime = _parse_number(block[345:357], "atime") * 1_000_000_000
                if block[357]:
                    _parse_number(block[357:369], "ctime")
            except _HeaderError:
                # Go before 1.8 wrote a ustar prefix into GNU headers; read it like Go does.
                header.atime = None
                candidate = _c_string(block[345:500])
                if candidate.isascii():
                    prefix = candidate
        if prefix:
            header.name = prefix + b"/" + header.name
    if header.size < 0:
        raise _HeaderError(f"negative size {header.size}")
    if header.uid < 0 or header.gid < 0:
        raise _HeaderError("negative uid or gid")
    if header.devmajor < 0 or header.devminor < 0:
        raise _HeaderError("negative device number")
    return header


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
            if block == _ZERO_BLOCK:
                second = self._take_raw(BLOCK_SIZE)
                if second and second != _ZERO_BLOCK:
                    if len(second) < BLOCK_SIZE:
                        raise errdefs.InvalidArgument(
                            f"truncated tar stream: block at offset {offset + BLOCK_SIZE} has "
                            f"{len(second)} of 512 bytes")
                    raise errdefs.InvalidArgument(
                        f"invalid tar stream: a zero block at offset {offset} is followed by data")
                self._end_of_archive()
                return None
            try:
                header = _decode_header(block)
            except _HeaderError as exc:
                raise self._invalid(_c_string(block[0:100]), offset, str(exc)) from None
            flag = header.typeflag
            if flag in (b"x", b"g"):
                data = self._read_special(header.size, "PAX header")
                try:
                    parsed = _parse_pax_records(data)
                except _HeaderError as exc:
                    raise self._invalid(header.name, offset, str(exc)) from None
                if any(_is_sparse_record(key) for key in parsed):
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
                data = _c_string(self._read_special(header.size, "GNU long name"))
                if flag == b"L":
                    long_name = data
                else:
                    long_link = data
                continue
            if flag == b"S":
                raise errdefs.InvalidArgument(
                    f"sparse files are not supported: {os.fsdecode(long_name or header.name)!r}")
            entry_type = _TYPES.get(flag)
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
                entry = self._make_entry(header, entry_type, raw_name, raw_link, records)
            except _HeaderError as exc:
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

    def _make_entry(self, header: _Header, entry_type: EntryType, raw_name: bytes, raw_link: bytes,
                    records: dict[str, bytes]) -> TarEntry:
        merged = dict(self._global_records)
        for key in ("path", "linkpath", "size"):
            merged.pop(key, None)
        merged.update(records)
        size = header.size
        uid, gid = header.uid, header.gid
        mtime_ns = header.mtime * 1_000_000_000
        atime_ns = header.atime
        uname, gname = header.uname, header.gname
        xattrs: dict[str, bytes] = {}
        for key, value in merged.items():
            if key.startswith("SCHILY.xattr."):
                xattrs[key[len("SCHILY.xattr."):]] = value      # empty values are values here
                continue
            if not value:
                continue        # an empty record keeps the header's value (Go's rule)
            if key == "size":
                size = _parse_pax_int(value, "size")
            elif key == "uid":
                uid = _parse_pax_int(value, "uid")
            elif key == "gid":
                gid = _parse_pax_int(value, "gid")
            elif key == "mtime":
                mtime_ns = _parse_pax_time(value, "mtime")
            elif key == "atime":
                atime_ns = _parse_pax_time(value, "atime")
            elif key == "uname":
                uname = value
            elif key == "gname":
                gname = value
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
                try:
                    xattrs.setdefault(name, base64.b64decode(value + b"=" * (-len(value) % 4)))
                except ValueError:
                    raise _HeaderError(f"invalid LIBARCHIVE.xattr value for {name!r}") from None
        decoded_name = os.fsdecode(raw_name)
        name = normalize_name(decoded_name)
        linkname = os.fsdecode(raw_link)
        if entry_type is EntryType.HARDLINK:
            linkname = normalize_name(linkname, "hardlink target")
            if not linkname:
                raise errdefs.InvalidArgument(
                    f"tar entry {decoded_name!r}: hardlink target is the archive root")
        return TarEntry(
            name=name, type=entry_type, mode=header.mode & 0o7777, uid=uid, gid=gid, size=size,
            mtime_ns=mtime_ns, atime_ns=atime_ns, linkname=linkname,
            devmajor=header.devmajor, devminor=header.devminor,
            uname=uname.decode("utf-8", "surrogateescape"),
            gname=gname.decode("utf-8", "surrogateescape"), xattrs=xattrs)

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


# -- writing -------------------------------------------------------------------------------


def _format_octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL, like Go's formatter."""
    return b"%0*o\0" % (width - 1, value)


def _fits_octal(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


def _ascii_best_effort(data: bytes, width: int) -> bytes:
    return bytes(byte for byte in data if byte < 0x80)[:width]


def _pax_record(key: bytes, value: bytes) -> bytes:
    size = len(key) + len(value) + 3
    size += len(str(size))
    record = b"%d %s=%s\n" % (size, key, value)
    if len(record) != size:
        size = len(record)
        record = b"%d %s=%s\n" % (size, key, value)
    return record


def _format_pax_time(nanoseconds: int) -> bytes:
    seconds, fraction = divmod(abs(nanoseconds), 1_000_000_000)
    sign = b"-" if nanoseconds < 0 else b""
    if not fraction:
        return b"%s%d" % (sign, seconds)
    return (b"%s%d.%09d" % (sign, seconds, fraction)).rstrip(b"0")


def _split_ustar_path(name: bytes) -> tuple[bytes, bytes] | None:
    length = len(name)
    if length <= 100 or not name.isascii():
        return None
    if length > 156:
        length = 156
    elif name[length - 1:length] == b"/":
        length -= 1
    index = name.rfind(b"/", 0, length)
    suffix_length = len(name) - index - 1
    if index <= 0 or suffix_length > 100 or suffix_length == 0 or index > 155:
        return None
    return name[:index], name[index + 1:]


def _block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           linkname: bytes, uname: bytes, gname: bytes, devmajor: int, devminor: int,
           prefix: bytes) -> bytes:
    block = bytearray(BLOCK_SIZE)
    block[0:len(name)] = name
    block[100:108] = _format_octal(mode, 8)
    block[108:116] = _format_octal(uid, 8)
    block[116:124] = _format_octal(gid, 8)
    block[124:136] = _format_octal(size, 12)
    block[136:148] = _format_octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname
    block[257:265] = b"ustar\x0000"
    block[265:265 + len(uname)] = uname
    block[297:297 + len(gname)] = gname
    block[329:337] = _format_octal(devmajor, 8)
    block[337:345] = _format_octal(devminor, 8)
    block[345:345 + len(prefix)] = prefix
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def _header_bytes(entry: TarEntry) -> bytes:
    """The header block(s) of ``entry``: a PAX block first when ustar cannot hold it."""
    if entry.type is EntryType.REGULAR:
        size = entry.size
    else:
        size = 0
    name = os.fsencode(entry.name)
    if entry.type is EntryType.DIRECTORY and not name.endswith(b"/"):
        name += b"/"
    linkname = os.fsencode(entry.linkname) if entry.type in (EntryType.SYMLINK, EntryType.HARDLINK) else b""
    uname = entry.uname.encode("utf-8", "surrogateescape")
    gname = entry.gname.encode("utf-8", "surrogateescape")
    pax: dict[bytes, bytes] = {}
    prefix = b""
    if len(name) > 100 or not name.isascii():
        split = _split_ustar_path(name)
        if split is not None:
            prefix, name_field = split
        else:
            pax[b"path"] = name
            name_field = _ascii_best_effort(name, 100)
    else:
        name_field = name
    if len(linkname) > 100 or not linkname.isascii():
        pax[b"linkpath"] = linkname
        link_field = _ascii_best_effort(linkname, 100)
    else:
        link_field = linkname
    uid_field, gid_field, size_field = entry.uid, entry.gid, size
    if not _fits_octal(entry.uid, 8):
        pax[b"uid"] = b"%d" % entry.uid
        uid_field = 0
    if not _fits_octal(entry.gid, 8):
        pax[b"gid"] = b"%d" % entry.gid
        gid_field = 0
    if not _fits_octal(size, 12):
        pax[b"size"] = b"%d" % size
        size_field = 0
    seconds = entry.mtime_ns // 1_000_000_000
    mtime_field = seconds
    if entry.mtime_ns % 1_000_000_000 or not _fits_octal(seconds, 12):
        pax[b"mtime"] = _format_pax_time(entry.mtime_ns)
        if not _fits_octal(seconds, 12):
            mtime_field = 0
    if entry.atime_ns is not None:
        pax[b"atime"] = _format_pax_time(entry.atime_ns)
    if len(uname) > 32 or not uname.isascii():
        pax[b"uname"] = uname
        uname = _ascii_best_effort(uname, 32)
    if len(gname) > 32 or not gname.isascii():
        pax[b"gname"] = gname
        gname = _ascii_best_effort(gname, 32)
    for key, value in entry.xattrs.items():
        pax[b"SCHILY.xattr." + key.encode("utf-8", "surrogateescape")] = bytes(value)
    if not (_fits_octal(entry.devmajor, 8) and _fits_octal(entry.devminor, 8)):
        raise errdefs.InvalidArgument(
            f"device numbers {entry.devmajor}:{entry.devminor} of {entry.name!r} do not fit a tar header")
    if not 0 <= entry.mode <= 0o7777:
        raise errdefs.InvalidArgument(f"mode {entry.mode:o} of {entry.name!r} is not a permission mode")
    main = _block(name_field, entry.mode, uid_field, gid_field, size_field, mtime_field,
                  _TYPE_FLAGS[entry.type], link_field, uname, gname, entry.devmajor,
                  entry.devminor, prefix)
    if not pax:
        return main
    data = b"".join(_pax_record(key, pax[key]) for key in sorted(pax))
    if len(data) > MAX_SPECIAL_SIZE:
        raise errdefs.InvalidArgument(f"the PAX records of {entry.name!r} exceed {MAX_SPECIAL_SIZE} bytes")
    directory, base = posixpath.split(name.rstrip(b"/"))
    pax_name = posixpath.join(directory, b"PaxHeaders.0", base)
    pax_name = _ascii_best_effort(pax_name, 100).rstrip(b"/")
    pax_block = _block(pax_name, 0, 0, 0, len(data), 0, b"x", b"", b"", b"", 0, 0, b"")
    return pax_block + data + bytes(-len(data) % BLOCK_SIZE) + main


def entry_chunks(entry: TarEntry, content: BinaryIO | Iterable[bytes] | bytes | None = None,
                 *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of one archive member: header block(s), exactly ``entry.size`` bytes of content
    (for regular files) and the padding.  A short (or, for iterables, long) content raises
    :class:`errdefs.InvalidArgument`."""
    yield _header_bytes(entry)
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
