"""TarReader / TarWriter: formats, normalisation, hashing, hostile and truncated input."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import tracemalloc

import pytest

from lamina import errdefs
from lamina.archive import EntryType, TarEntry, TarReader, TarWriter
from lamina.digest import Hasher

from .helpers import (
    END,
    fix_checksum,
    header,
    info,
    member,
    pad,
    read_all,
    set_field,
    tarfile_bytes,
)


def _make_source_tree(root: str, *, devices: bool) -> None:
    os.makedirs(os.path.join(root, "dir/sub"))
    long_dir = os.path.join(root, "d" * 90, "e" * 90)
    os.makedirs(long_dir)
    with open(os.path.join(long_dir, "f" * 120), "wb") as handle:
        handle.write(b"long name content\n" * 100)
    with open(os.path.join(root, "dir/file"), "wb") as handle:
        handle.write(os.urandom(70000))
    with open(os.path.join(root, "dir/empty"), "wb"):
        pass
    os.link(os.path.join(root, "dir/file"), os.path.join(root, "dir/hardlink"))
    os.symlink("/absolute/target", os.path.join(root, "dir/abs-link"))
    os.symlink("../" + "t" * 150, os.path.join(root, "dir/long-link"))
    os.mkfifo(os.path.join(root, "dir/fifo"))
    os.chmod(os.path.join(root, "dir/file"), 0o4755)
    os.chmod(os.path.join(root, "dir/sub"), 0o1777)
    if devices:
        os.mknod(os.path.join(root, "dir/null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.mknod(os.path.join(root, "dir/loop"), 0o660 | 0o060000, os.makedev(7, 200))
        os.chown(os.path.join(root, "dir/empty"), 1234, 5678)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000),
                     follow_symlinks=False)


def _tarfile_view(data: bytes) -> list[tuple[str, str, int, int, int, int, str, int, int, bytes]]:
    """What Python's tarfile (an independent reader) sees, normalised like lamina does."""
    result = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for item in archive:
            name = os.path.normpath(item.name).lstrip("/")
            if name in (".", ""):
                continue
            if item.isreg():
                kind = "0"
            else:
                kind = item.type.decode()
            link = item.linkname
            if item.islnk():
                link = os.path.normpath(link).lstrip("/")
            content = archive.extractfile(item).read() if item.isreg() else b""
            major, minor = (item.devmajor, item.devminor) if item.ischr() or item.isblk() else (0, 0)
            result.append((name, kind, item.mode, item.uid, item.gid, int(item.mtime), link, major,
                           minor, content))
    return result


def _lamina_view(data: bytes) -> list[tuple[str, str, int, int, int, int, str, int, int, bytes]]:
    result = []
    for entry, content in read_all(data):
        major, minor = ((entry.devmajor, entry.devminor)
                        if entry.type in (EntryType.CHAR, EntryType.BLOCK) else (0, 0))
        result.append((entry.name, entry.type.value, entry.mode, entry.uid, entry.gid,
                       entry.mtime_ns // 1_000_000_000, entry.linkname, major, minor, content))
    return result


@pytest.mark.parametrize("tar_format", ["gnu", "oldgnu", "posix", "ustar", "v7"])
def test_gnu_tar_formats_read_like_an_independent_reader(tmp_path, tar_format):
    source = str(tmp_path / "source")
    os.mkdir(source)
    _make_source_tree(source, devices=os.geteuid() == 0 and tar_format != "v7")
    if tar_format == "v7":
        os.unlink(os.path.join(source, "dir/fifo"))     # v7 has no fifos
    if tar_format in ("ustar", "v7"):
        # these formats cannot hold names over 256 (ustar) or 100 (v7) bytes or long links
        subprocess.run(["rm", "-rf", os.path.join(source, "d" * 90), os.path.join(source, "dir/long-link")],
                       check=True)
    data = subprocess.run(["tar", f"--format={tar_format}", "--numeric-owner", "-cf", "-", "."],
                          cwd=source, check=True, capture_output=True).stdout
    lamina = _lamina_view(data)
    assert lamina == _tarfile_view(data)
    names = {row[0] for row in lamina}
    assert "dir/file" in names and "dir/hardlink" in names


def test_python_tarfile_pax_fields_are_read(tmp_path):
    members = [
        (info("a/é-ünïcode", size=3, mtime=1_700_000_000.25, uid=3_000_000, gid=4_000_000,
              uname="ü" * 40, gname="group"), b"abc"),
        (info("b", tarfile.SYMTYPE, linkname="x" * 300), None),
        (info("c", tarfile.DIRTYPE, mode=0o2755), None),
    ]
    members[0][0].pax_headers = {"SCHILY.xattr.user.key": "value", "SCHILY.xattr.security.capability": "\x01\x02"}
    data = tarfile_bytes(members, format=tarfile.PAX_FORMAT)
    entries = read_all(data)
    first, content = entries[0]
    assert (first.name, content, first.uid, first.gid) == ("a/é-ünïcode", b"abc", 3_000_000, 4_000_000)
    assert first.mtime_ns == 1_700_000_000_250_000_000
    assert first.uname == "ü" * 40
    assert first.xattrs == {"user.key": b"value", "security.capability": b"\x01\x02"}
    assert entries[1][0].type is EntryType.SYMLINK and entries[1][0].linkname == "x" * 300
    assert entries[2][0].type is EntryType.DIRECTORY and entries[2][0].mode == 0o2755


def test_gnu_base256_numbers_and_negative_mtime():
    members = [(info("big", size=5, uid=2**40, gid=7, mtime=-1000), b"12345")]
    data = tarfile_bytes(members, format=tarfile.GNU_FORMAT)
    entry, content = read_all(data)[0]
    assert (entry.uid, entry.gid, entry.mtime_ns, content) == (2**40, 7, -1000 * 10**9, b"12345")


def test_libarchive_xattrs_are_read():
    value = b"\x00\xffbinary"
    import base64
    records = {"LIBARCHIVE.xattr.user.a%3Db": base64.b64encode(value).decode().rstrip("=")}
    data = tarfile_bytes([(info("f", pax_headers=records), b"")], format=tarfile.PAX_FORMAT)
    assert read_all(data)[0][0].xattrs == {"user.a=b": value}


@pytest.mark.parametrize("raw, expected", [
    ("./a//b/./c/", "a/b/c"),
    ("/abs/x", "abs/x"),
    ("a/../b", "b"),
    ("a/b/..", "a"),
    ("//x///", "x"),
])
def test_names_are_normalised(raw, expected):
    data = member(raw, b"x") + END
    reader = TarReader(io.BytesIO(data))
    entry = next(iter(reader))
    assert entry.name == expected
    assert reader.current_raw_name == raw


@pytest.mark.parametrize("raw", ["../x", "a/../../x", "/../etc/passwd", ".."])
def test_names_escaping_the_root_are_refused(raw):
    with pytest.raises(errdefs.InvalidArgument, match="escapes the archive root"):
        read_all(member(raw, b"x") + END)


def test_root_entries_are_skipped():
    data = (header("./", type=tarfile.DIRTYPE) + header("/", type=tarfile.DIRTYPE)
            + header(".", type=tarfile.DIRTYPE) + member("./f", b"1") + END)
    assert [entry.name for entry, _ in read_all(data)] == ["f"]


def test_hardlink_names_are_normalised_and_symlinks_kept_verbatim():
    data = (member("./a/b", b"1") + header("c", type=tarfile.LNKTYPE, linkname="./a//b")
            + header("d", type=tarfile.SYMTYPE, linkname="../../etc/./passwd") + END)
    entries = [entry for entry, _ in read_all(data)]
    assert entries[1].linkname == "a/b"
    assert entries[2].linkname == "../../etc/./passwd"


def test_hardlink_escaping_the_root_is_refused():
    data = header("c", type=tarfile.LNKTYPE, linkname="../../etc/passwd") + END
    with pytest.raises(errdefs.InvalidArgument, match="escapes the archive root"):
        read_all(data)


def test_old_v7_directory_by_trailing_slash():
    block = set_field(header("olddir/", type=tarfile.REGTYPE), 156, 157, b"\0")
    block = set_field(block, 257, 265, b"")          # V7: no magic
    entry = read_all(block + END)[0][0]
    assert (entry.name, entry.type) == ("olddir", EntryType.DIRECTORY)


def test_signed_checksums_are_accepted():
    block = bytearray(header("x", size=0))
    block[265:270] = b"\xe9\xe9\xe9\xe9\xe9"   # high bytes in uname
    block[148:156] = b" " * 8
    signed = sum(byte - 256 if byte >= 128 else byte for byte in block)
    block[148:155] = b"%06o\0" % signed
    assert read_all(bytes(block) + END)[0][0].name == "x"


def test_bad_checksum_is_refused_naming_the_entry():
    block = bytearray(header("victim-name", size=0))
    block[148:156] = b"0000000\0"
    with pytest.raises(errdefs.InvalidArgument, match="victim-name.*checksum"):
        read_all(bytes(block) + END)


def test_sparse_files_are_refused(tmp_path):
    sparse = tmp_path / "s"
    with open(sparse, "wb") as handle:
        handle.seek(10 << 20)
        handle.write(b"end")
    for tar_format in ("gnu", "posix"):
        data = subprocess.run(["tar", f"--format={tar_format}", "--sparse", "-cf", "-", "s"],
                              cwd=tmp_path, check=True, capture_output=True).stdout
        with pytest.raises(errdefs.InvalidArgument, match="sparse files are not supported"):
            read_all(data)


def test_unknown_entry_type_is_refused():
    block = set_field(header("weird"), 156, 157, b"V")
    with pytest.raises(errdefs.InvalidArgument, match="weird.*unsupported entry type"):
        read_all(block + END)


def test_truncated_content_names_the_entry():
    data = header("big-file", size=5000) + b"x" * 1000
    with pytest.raises(errdefs.InvalidArgument, match="big-file.*1000 of 5000"):
        read_all(data)


def test_truncated_header_is_refused():
    data = member("a", b"1") + header("b")[:300]
    with pytest.raises(errdefs.InvalidArgument, match="truncated"):
        read_all(data)


def test_stream_without_end_blocks_is_accepted_at_a_header_boundary():
    data = member("a", b"1") + member("b", b"2")
    assert [entry.name for entry, _ in read_all(data)] == ["a", "b"]


def test_zero_block_followed_by_data_is_refused():
    data = member("a", b"1") + bytes(512) + member("b", b"2")
    with pytest.raises(errdefs.InvalidArgument):
        read_all(data)


def test_absurd_size_fails_cleanly_and_fast():
    block = set_field(header("absurd"), 124, 136, b"\x80" + (2**62).to_bytes(11, "big"))
    tracemalloc.start()
    try:
        with pytest.raises(errdefs.InvalidArgument, match="absurd"):
            read_all(block + b"x" * 4096 + END)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_negative_size_is_refused():
    block = set_field(header("neg"), 124, 136, b"\xff" * 12)
    with pytest.raises(errdefs.InvalidArgument, match="neg.*negative size"):
        read_all(block + END)


def test_pax_record_claiming_a_terabyte_is_refused_without_reading_it():
    block = header("PaxHeaders/x", type=tarfile.XHDTYPE)
    block = set_field(block, 124, 136, b"%011o" % (1 << 40))
    with pytest.raises(errdefs.InvalidArgument, match="larger than the 1048576-byte limit"):
        read_all(block + bytes(4096))


def test_gnu_long_name_over_the_limit_is_refused():
    data = header("././@LongLink", type=tarfile.GNUTYPE_LONGNAME, size=(1 << 20) + 1) + bytes(8192)
    with pytest.raises(errdefs.InvalidArgument, match="limit"):
        read_all(data)


def _pax(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


@pytest.mark.parametrize("record, problem", [
    (_pax("size", "-1"), "invalid PAX size"),
    (_pax("size", "9" * 30), "PAX size out of range"),
    (_pax("uid", "abc"), "invalid PAX uid"),
    (_pax("mtime", "1.x"), "invalid PAX mtime"),
    (_pax("", "x"), "no key"),
    (_pax("path", "a\0b"), "contains NUL"),
    (b"5 a=b\n", "newline"),
    (b"30 path=x\n", "length out of range"),
    (b"x path=y\n", "length"),
    (b"11 pathxyz\n", "no key"),
], ids=["negative size", "size beyond int64", "uid not a number", "mtime not a number", "empty key",
        "NUL in path", "record longer than its length", "length beyond the data", "length not a number",
        "no equals sign"])
def test_malformed_pax_records_are_refused(record, problem):
    data = (header("pax", type=tarfile.XHDTYPE, size=len(record)) + pad(record) + member("f", b"") + END)
    with pytest.raises(errdefs.InvalidArgument, match=problem):
        read_all(data)


class _Zeros:
    """A stream of ``total`` zero bytes produced on demand (never held in memory)."""

    def __init__(self, prefix: bytes, total: int) -> None:
        self.prefix = prefix
        self.remaining = total

    def readinto(self, buffer) -> int:
        if self.prefix:
            count = min(len(buffer), len(self.prefix))
            buffer[:count] = self.prefix[:count]
            self.prefix = self.prefix[count:]
            return count
        count = min(len(buffer), self.remaining)
        buffer[:count] = bytes(count)
        self.remaining -= count
        return count


def test_endless_zeros_after_the_end_marker_fail_cleanly_with_bounded_memory():
    source = _Zeros(member("a", b"1") + END, 100 << 20)
    reader = TarReader(source)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        assert [entry.name for entry in reader] == ["a"]
        with pytest.raises(errdefs.InvalidArgument, match="trailing data after end of archive"):
            reader.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert source.remaining > 90 << 20          # it stopped early, not after reading it all


def test_trailing_data_within_the_limit_is_hashed():
    data = member("a", b"content") + END + b"\0" * 10240 + b"garbage"
    hasher = Hasher()
    reader = TarReader(io.BytesIO(data), hasher=hasher)
    for _ in reader:
        pass
    reader.finish()
    assert hasher.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    assert hasher.size == len(data)


def test_finish_before_the_end_skips_the_rest_and_hashes_everything():
    data = member("a", b"1" * 3000) + member("b", b"2" * 70000) + END
    hasher = Hasher()
    reader = TarReader(io.BytesIO(data), hasher=hasher)
    next(iter(reader))
    reader.finish()
    reader.finish()
    assert hasher.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    assert list(reader) == []


def test_contents_are_read_in_parts_and_copied_to_fds(tmp_path):
    payload = os.urandom(3 * (1 << 20) + 17)
    data = member("a", payload) + member("b", b"second") + member("c", b"skipped") + END
    reader = TarReader(io.BytesIO(data))
    entries = iter(reader)
    next(entries)
    assert reader.read_content(10) == payload[:10]
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        assert reader.copy_content_to(fd) == len(payload) - 10
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == payload[10:]
    next(entries)
    assert reader.read_content() == b"second"
    next(entries)                                  # "c" is never read: skipped automatically
    assert list(entries) == []


def test_global_pax_headers_are_not_entries_and_apply_metadata():
    data = tarfile_bytes([(info("f", size=1, uid=5), b"x")], format=tarfile.PAX_FORMAT,
                         pax_headers={"comment": "made by git", "uid": "77"})
    entries = read_all(data)
    assert [entry.name for entry, _ in entries] == ["f"]
    assert entries[0][0].uid == 77


# -- writer ------------------------------------------------------------------------------


def _entries_for_writer() -> list[tuple[TarEntry, bytes]]:
    return [
        (TarEntry(name="dir", type=EntryType.DIRECTORY, mode=0o1777, mtime_ns=5 * 10**9), b""),
        (TarEntry(name="dir/" + "n" * 200 + "/file", type=EntryType.REGULAR, size=3, mode=0o4755,
                  uid=10, gid=20, mtime_ns=123_456_789_123), b"abc"),
        (TarEntry(name="ünï/ĉodé", type=EntryType.REGULAR, size=0, uname="ü", gname="g" * 40), b""),
        (TarEntry(name="big-ids", type=EntryType.REGULAR, uid=2**31, gid=2**21 + 5), b""),
        (TarEntry(name="old", type=EntryType.REGULAR, mtime_ns=-5_500_000_000), b""),
        (TarEntry(name="link", type=EntryType.SYMLINK, linkname="/" + "t" * 300), b""),
        (TarEntry(name="hard", type=EntryType.HARDLINK, linkname="dir/" + "n" * 200 + "/file"), b""),
        (TarEntry(name="dev", type=EntryType.CHAR, devmajor=1, devminor=3, mode=0o666), b""),
        (TarEntry(name="blk", type=EntryType.BLOCK, devmajor=259, devminor=1 << 19), b""),
        (TarEntry(name="pipe", type=EntryType.FIFO), b""),
        (TarEntry(name="x", type=EntryType.REGULAR, size=1,
                  xattrs={"user.one": b"1", "security.capability": b"\x00\x01\xff"}), b"z"),
    ]


def _write(entries: list[tuple[TarEntry, bytes]]) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for entry, content in entries:
        writer.add(entry, [content] if content else None)
    writer.close()
    return out.getvalue()


def test_writer_round_trips_through_the_reader():
    entries = _entries_for_writer()
    data = _write(entries)
    assert data.endswith(END) and len(data) % 512 == 0
    read = read_all(data)
    assert [(entry, content) for entry, content in read] == entries


def test_writer_output_is_read_by_python_tarfile_and_gnu_tar(tmp_path):
    data = _write(_entries_for_writer())
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {item.name: item for item in archive}
    assert members["dir"].isdir()
    assert data[:5] == b"dir/\0"              # directories carry a trailing slash, like Docker
    assert members["dir/" + "n" * 200 + "/file"].mode == 0o4755
    assert members["big-ids"].uid == 2**31
    assert members["x"].pax_headers["SCHILY.xattr.user.one"] == "1"
    (tmp_path / "a.tar").write_bytes(data)
    listing = subprocess.run(["tar", "-tvf", "a.tar"], cwd=tmp_path, check=True, capture_output=True,
                             text=True).stdout
    assert "ünï/ĉodé" in listing


def test_writer_is_deterministic():
    assert _write(_entries_for_writer()) == _write(_entries_for_writer())


def test_writer_uses_plain_ustar_when_it_fits():
    data = _write([(TarEntry(name="short", type=EntryType.REGULAR, size=2, mode=0o600, mtime_ns=10**9), b"hi")])
    assert len(data) == 512 + 512 + 1024
    assert data[257:265] == b"ustar\x0000"
    assert data[:512] == fix_checksum(data[:512])


def test_writer_rejects_short_and_long_content():
    writer = TarWriter(io.BytesIO().write)
    with pytest.raises(errdefs.InvalidArgument, match="shorter"):
        writer.add_file("f", 10, io.BytesIO(b"abc"))
    with pytest.raises(errdefs.InvalidArgument, match="longer"):
        writer.add_file("g", 2, [b"abc"])


def test_add_file_and_directory_helpers():
    out = io.BytesIO()
    writer = TarWriter(out.write)
    writer.add_directory("d", mode=0o700, mtime=7)
    writer.add_file("d/f", 4, io.BytesIO(b"data"), mode=0o640, mtime=8)
    writer.close()
    entries = read_all(out.getvalue())
    assert [(e.name, e.type, e.mode, e.mtime_ns, c) for e, c in entries] == [
        ("d", EntryType.DIRECTORY, 0o700, 7 * 10**9, b""),
        ("d/f", EntryType.REGULAR, 0o640, 8 * 10**9, b"data")]


class _Trickle:
    """A source returning at most ``step`` bytes per read, whatever the buffer size."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = memoryview(data)
        self.step = step

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.step, len(self.data))
        buffer[:count] = self.data[:count]
        self.data = self.data[count:]
        return count


@pytest.mark.parametrize("step", [1, 7, 511, 513, 65537, (1 << 20) - 3])
def test_any_read_size_gives_the_same_entries_and_hash(step):
    members = [member(f"f{index}", os.urandom(index * 331)) for index in range(12)]
    data = b"".join(members) + pad(b"") + END + b"\0" * 700
    if step > 100:
        data = member("big", os.urandom((1 << 20) + 300)) + data     # headers straddle the buffer end
    expected = [(entry.name, content) for entry, content in read_all(data)]
    hasher = Hasher()
    reader = TarReader(_Trickle(data, step), hasher=hasher)  # type: ignore[arg-type]
    got = [(entry.name, reader.read_content()) for entry in reader]
    reader.finish()
    assert got == expected
    assert hasher.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
