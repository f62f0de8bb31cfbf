"""The tar header block, both ways: decoding (with PAX and GNU meta records) and encoding.

Layout of a 512-byte header block (byte offsets): name 0:100, mode 100:108, uid 108:116,
gid 116:124, size 124:136, mtime 136:148, checksum 148:156, typeflag 156, linkname 157:257,
magic 257:263, version 263:265, uname 265:297, gname 297:329, devmajor 329:337,
devminor 337:345, prefix 345:500 (ustar; GNU uses 345:369 for atime/ctime instead).  Numbers
are octal text or, in GNU archives, base-256 with the high bit of the first byte set.  The
checksum is the sum of the block's bytes with the checksum field read as spaces (signed or
unsigned sums).  Magic ``ustar\\0`` + ``00``: ustar/PAX; ``ustar  \\0``: GNU; anything
else: old V7.

PAX records (the content of an ``x`` or ``g`` meta entry) are ``"<len> <key>=<value>\\n"``.
:func:`decode_header` and :func:`parse_pax_records` raise :class:`HeaderError`, which the
reader turns into :class:`lamina.errdefs.InvalidArgument` naming the entry;
:func:`entry_from_header` applies the records to the header's values.

:func:`encode_header` writes a ustar header, with a PAX record block before it when the entry's
values do not fit ustar (long or non-ASCII names, big ids or sizes, sub-second or negative
times, xattrs), as Go's ``archive/tar`` does; its output is a pure function of the entry.
The stream around the headers is :mod:`lamina.archive.tarstream`.
"""

from __future__ import annotations

import base64
import os
import posixpath
import urllib.parse

from lamina import errdefs
from lamina.archive.api import EntryType, TarEntry

__all__ = [
    "BLOCK_SIZE", "END_OF_ARCHIVE", "MAX_SPECIAL_SIZE", "TYPES", "ZERO_BLOCK", "Header", "HeaderError",
    "c_string", "decode_header", "encode_header", "entry_from_header", "is_sparse_record",
    "normalize_name", "parse_pax_records",
]

BLOCK_SIZE = 512
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)
MAX_SPECIAL_SIZE = 1 << 20        # PAX / GNU long-name records larger than this are refused
ZERO_BLOCK = bytes(BLOCK_SIZE)
_MAX_INT64 = (1 << 63) - 1
_CHECKSUM_SPACES = sum(b" " * 8)

TYPES = {
    b"0": EntryType.REGULAR, b"\0": EntryType.REGULAR, b"7": EntryType.REGULAR,
    b"1": EntryType.HARDLINK, b"2": EntryType.SYMLINK, b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK, b"5": EntryType.DIRECTORY, b"6": EntryType.FIFO,
}
_TYPE_FLAGS = {value: key for key, value in TYPES.items() if key not in (b"\0", b"7")}


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


def c_string(field: bytes | memoryview) -> bytes:
    data = bytes(field)
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


class HeaderError(Exception):
    """A malformed header field or PAX record; the reader turns it into InvalidArgument with the entry's name."""


def _parse_number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        # GNU base-256: two's complement, the marker bit stripped for positive numbers.
        if field[0] & 0x40:
            value = int.from_bytes(field, "big", signed=True)
        else:
            value = int.from_bytes(field, "big") - (1 << (8 * len(field) - 1))
        if not -_MAX_INT64 - 1 <= value <= _MAX_INT64:
            raise HeaderError(f"{what} field out of range")
        return value
    text = c_string(field.strip(b" \0"))
    if not text:
        return 0
    if text.strip(b"01234567"):
        raise HeaderError(f"invalid {what} field {bytes(field)!r}")
    value = int(text, 8)
    if value > _MAX_INT64:
        raise HeaderError(f"{what} field out of range")
    return value


def _parse_pax_time(value: bytes, what: str) -> int:
    text = value.decode("ascii", "replace")
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    seconds, _, fraction = digits.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or not seconds.isascii():
        raise HeaderError(f"invalid PAX {what} {text!r}")
    nanoseconds = int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or "0")
    return -nanoseconds if negative else nanoseconds


def _parse_pax_int(value: bytes, what: str) -> int:
    if not value.isdigit():
        raise HeaderError(f"invalid PAX {what} {value!r}")
    number = int(value)
    if number > _MAX_INT64:
        raise HeaderError(f"PAX {what} out of range")
    return number


def parse_pax_records(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    position = 0
    total = len(data)
    while position < total:
        space = data.find(b" ", position, min(total, position + 24))
        if space < 0:
            raise HeaderError("malformed PAX record (no length)")
        length_text = data[position:space]
        if not length_text.isdigit():
            raise HeaderError("malformed PAX record length")
        length = int(length_text)
        end = position + length
        if length < 5 or end > total or end <= space + 1:
            raise HeaderError("PAX record length out of range")
        if data[end - 1] != 0x0A:
            raise HeaderError("PAX record does not end with a newline")
        record = data[space + 1:end - 1]
        key_bytes, equals, value = record.partition(b"=")
        if not equals or not key_bytes:
            raise HeaderError("malformed PAX record (no key)")
        if b"\0" in key_bytes:
            raise HeaderError("PAX record key contains NUL")
        key = key_bytes.decode("utf-8", "surrogateescape")
        if key in ("path", "linkpath", "uname", "gname") and b"\0" in value:
            raise HeaderError(f"PAX {key} contains NUL")
        records[key] = value
        position = end
    return records


def is_sparse_record(key: str) -> bool:
    return key.startswith("GNU.sparse.")


class Header:
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


def decode_header(block: bytes) -> Header:
    """Decode and verify one header block; raise HeaderError for anything malformed."""
    stored = _parse_number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + _CHECKSUM_SPACES
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for byte in block if byte >= 0x80)
        signed += 256 * sum(1 for byte in block[148:156] if byte >= 0x80)
        if stored != signed:
            raise HeaderError("header checksum mismatch")
    header = Header()
    header.typeflag = block[156:157]
    header.name = c_string(block[0:100])
    header.linkname = c_string(block[157:257])
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
        header.uname = c_string(block[265:297])
        header.gname = c_string(block[297:329])
        header.devmajor = _parse_number(block[329:337], "devmajor")
        header.devminor = _parse_number(block[337:345], "devminor")
        prefix = b""
        if magic == b"ustar\0":
            if block[508:512] == b"tar\0":           # star: shorter prefix, then times
                prefix = c_string(block[345:476])
            else:
                prefix = c_string(block[345:500])
        else:
            try:
                if block[345]:
                    header.atime = _parse_number(block[345:357], "atime") * 1_000_000_000
                if block[357]:
                    _parse_number(block[357:369], "ctime")
            except HeaderError:
                # Go before 1.8 wrote a ustar prefix into GNU headers; read it like Go does.
                header.atime = None
                candidate = c_string(block[345:500])
                if candidate.isascii():
                    prefix = candidate
        if prefix:
            header.name = prefix + b"/" + header.name
    if header.size < 0:
        raise HeaderError(f"negative size {header.size}")
    if header.uid < 0 or header.gid < 0:
        raise HeaderError("negative uid or gid")
    if header.devmajor < 0 or header.devminor < 0:
        raise HeaderError("negative device number")
    return header


def entry_from_header(header: Header, entry_type: EntryType, raw_name: bytes, raw_link: bytes,
                      records: dict[str, bytes], global_records: dict[str, bytes]) -> TarEntry:
    merged = dict(global_records)
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
                raise HeaderError(f"invalid LIBARCHIVE.xattr value for {name!r}") from None
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


def encode_header(entry: TarEntry) -> bytes:
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
