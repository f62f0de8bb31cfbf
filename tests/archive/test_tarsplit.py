"""tar-split: recording while extracting, then reassembling the exact original bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from lamina import errdefs
from lamina.archive import (
    DirectoryFileGetter,
    TarReader,
    TarSplitWriter,
    WhiteoutMode,
    apply_tar,
    assemble,
    assembled_size,
)
from lamina.archive.tarsplit import compact_entries
from lamina.digest import Hasher

from .helpers import END, header, info, member, tarfile_bytes

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
LAYER_MEMBER = "77ef5fe66347c286b797d89189a7af81f3880e0f523dd1394b60324536f9ebbe/layer.tar"
IS_ROOT = os.geteuid() == 0


def docker_layer() -> bytes:
    with tarfile.open(FIXTURE) as archive:
        return archive.extractfile(LAYER_MEMBER).read()


def extract_recording(data: bytes, target: str, mode: WhiteoutMode = WhiteoutMode.OVERLAY) -> tuple[bytes, Hasher]:
    """Extract ``data`` into ``target`` while recording tar-split; returns (record, hasher)."""
    os.makedirs(target, exist_ok=True)
    record = io.BytesIO()
    recorder = TarSplitWriter(record)
    hasher = Hasher()
    reader = TarReader(io.BytesIO(data), recorder=recorder, hasher=hasher)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        apply_tar(fd, reader, mode, same_owner=IS_ROOT)
    finally:
        os.close(fd)
    reader.finish()
    recorder.close()
    # what the writer kept for a reassembly index is the record itself, decoded
    assert recorder.compact == compact_entries(io.BytesIO(record.getvalue()))
    return record.getvalue(), hasher


def reassemble(record: bytes, target: str, verify: bool = True) -> bytes:
    return b"".join(bytes(chunk) for chunk in assemble(io.BytesIO(record), DirectoryFileGetter(target), verify=verify))


def assert_round_trip(data: bytes, target: str, mode: WhiteoutMode = WhiteoutMode.OVERLAY) -> bytes:
    record, hasher = extract_recording(data, target, mode)
    assert hasher.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    rebuilt = reassemble(record, target)
    assert hashlib.sha256(rebuilt).hexdigest() == hashlib.sha256(data).hexdigest()
    assert assembled_size(io.BytesIO(record)) == len(data)
    return record


def _source_tree(root: str) -> None:
    os.makedirs(os.path.join(root, "a/b"))
    os.makedirs(os.path.join(root, "l" * 80, "m" * 80))
    with open(os.path.join(root, "l" * 80, "m" * 80, "n" * 110), "wb") as handle:
        handle.write(os.urandom(1500))
    with open(os.path.join(root, "a/file"), "wb") as handle:
        handle.write(os.urandom(200_000))
    with open(os.path.join(root, "a/b/empty"), "wb"):
        pass
    with open(os.path.join(root, "a/exact"), "wb") as handle:
        handle.write(b"x" * 1024)
    os.link(os.path.join(root, "a/file"), os.path.join(root, "a/hardlink"))
    os.symlink("/etc/passwd", os.path.join(root, "a/abs"))
    os.symlink("../" + "z" * 120, os.path.join(root, "a/long-target"))
    os.setxattr(os.path.join(root, "a/file"), "user.note", b"hello")
    if IS_ROOT:
        os.mknod(os.path.join(root, "a/null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.setxattr(os.path.join(root, "a/exact"), "trusted.something", b"\x00\x01")


@pytest.mark.privileged
def test_the_real_docker_layer_reassembles_byte_for_byte(tmp_path):
    data = docker_layer()
    record = assert_round_trip(data, str(tmp_path / "layer"))
    lines = gzip.decompress(record).splitlines()
    assert json.loads(lines[0])["type"] == 2
    assert json.loads(lines[1]) == {"type": 1, "name": "./", "payload": None, "position": 1}


@pytest.mark.parametrize("tar_format", ["gnu", "oldgnu", "posix", "ustar", "v7"])
def test_gnu_tar_archives_reassemble_byte_for_byte(tmp_path, tar_format):
    source = str(tmp_path / "source")
    os.mkdir(source)
    _source_tree(source)
    if tar_format in ("ustar", "v7"):
        shutil.rmtree(os.path.join(source, "l" * 80))
        os.unlink(os.path.join(source, "a/long-target"))
    if tar_format == "v7" and IS_ROOT:
        os.unlink(os.path.join(source, "a/null"))
    options = ["--xattrs", "--xattrs-include=*"] if tar_format == "posix" else []
    data = subprocess.run(["tar", f"--format={tar_format}", *options, "-cf", "-", "."], cwd=source,
                          check=True, capture_output=True).stdout
    assert_round_trip(data, str(tmp_path / "out"))


def _python_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (info("dir", tarfile.DIRTYPE, mode=0o755), None),
        (info("dir/" + "long" * 60, size=5, mtime=1_700_000_000.5), b"hello"),
        (info("dir/hard", tarfile.LNKTYPE, linkname="dir/" + "long" * 60), None),
        (info("dir/sym", tarfile.SYMTYPE, linkname="/" + "target" * 40), None),
        (info("dir/üñí", size=600), os.urandom(600)),
        (info("dir/fifo", tarfile.FIFOTYPE), None),
        (info("dir/xattr", size=1, pax_headers={"SCHILY.xattr.user.x": "1"}), b"1"),
    ]
    if IS_ROOT:
        members.append((info("dir/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), None))
    return members


@pytest.mark.parametrize("format_name", ["PAX", "GNU"])
def test_python_tarfile_archives_reassemble_byte_for_byte(tmp_path, format_name):
    members = _python_members()
    if format_name == "GNU":
        members = [(item, content) for item, content in members if not item.pax_headers]
    data = tarfile_bytes(members, format=getattr(tarfile, f"{format_name}_FORMAT"))
    assert_round_trip(data, str(tmp_path / "out"))


def test_trailing_garbage_within_the_limit_reassembles(tmp_path):
    data = member("f", b"content") + END + bytes(20_000) + b"trailing junk"
    assert_round_trip(data, str(tmp_path / "out"))


def test_global_headers_and_missing_end_blocks_reassemble(tmp_path):
    data = tarfile_bytes([(info("f", size=3), b"abc"), (info("g", size=0), b"")],
                         pax_headers={"comment": "global"})
    assert_round_trip(data, str(tmp_path / "with-end"))
    assert_round_trip(member("f", b"abc") + member("g", b""), str(tmp_path / "without-end"))


def test_stream_ending_inside_the_last_padding_reassembles(tmp_path):
    data = member("f", b"abc")[:600]
    assert_round_trip(data, str(tmp_path / "out"))


def test_root_entry_with_content_is_refused(tmp_path):
    data = member("./", b"root has bytes?") + member("f", b"1") + END
    with pytest.raises(errdefs.InvalidArgument, match="names the archive root"):
        extract_recording(data, str(tmp_path / "out"))


def test_non_utf8_names_use_name_raw(tmp_path):
    raw_name = b"caf\xe9"
    block = header(os.fsdecode(raw_name), size=4)
    record = assert_round_trip(block + b"data" + bytes(508) + END, str(tmp_path / "out"))
    file_entries = [json.loads(line) for line in gzip.decompress(record).splitlines()
                    if json.loads(line)["type"] == 1]
    assert file_entries[0]["name_raw"] == "Y2Fm6Q=="
    assert "name" not in file_entries[0]


def test_json_escapes_like_go():
    record = io.BytesIO()
    writer = TarSplitWriter(record)
    writer.file("a<b>&c\u2028", 0, None)
    writer.file("sized", 3, b"\x00" * 8)
    writer.segment(b"\x01")
    writer.close()
    lines = gzip.decompress(record.getvalue()).decode().splitlines()
    assert lines == [
        '{"type":1,"name":"a\\u003cb\\u003e\\u0026c\\u2028","payload":null,"position":0}',
        '{"type":1,"name":"sized","size":3,"payload":"AAAAAAAAAAA=","position":1}',
        '{"type":2,"payload":"AQ==","position":2}',
    ]


def test_duplicate_paths_are_refused_like_tar_split(tmp_path):
    data = member("./x", b"1") + member("x", b"2") + END
    with pytest.raises(errdefs.InvalidArgument, match="duplicate"):
        extract_recording(data, str(tmp_path / "out"))


@pytest.mark.skipif(shutil.which("tar-split") is None, reason="the tar-split tool is not installed")
@pytest.mark.interop
@pytest.mark.privileged
def test_record_equals_the_tar_split_tool_output(tmp_path):
    data = docker_layer()
    (tmp_path / "layer.tar").write_bytes(data)
    subprocess.run(["tar-split", "disasm", "--no-stdout", "--output", str(tmp_path / "theirs.json.gz"),
                    str(tmp_path / "layer.tar")], check=True, capture_output=True)
    record, _ = extract_recording(data, str(tmp_path / "out"))

    def entries(raw: bytes) -> list[bytes]:
        # tar-split before 0.12 also wrote an empty trailing segment; newer versions do not
        return [line for line in gzip.decompress(raw).splitlines()
                if not (line.startswith(b'{"type":2,"payload":""'))]

    assert entries(record) == entries((tmp_path / "theirs.json.gz").read_bytes())


@pytest.fixture
def recorded(tmp_path):
    data = member("dir/file", b"A" * 5000) + member("other", b"B" * 10) + END
    target = str(tmp_path / "out")
    record, _ = extract_recording(data, target)
    return data, record, target


def test_changed_content_is_data_loss_naming_the_file(recorded):
    data, record, target = recorded
    with open(os.path.join(target, "dir/file"), "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(errdefs.DataLoss, match="dir/file"):
        reassemble(record, target)
    assert reassemble(record, target, verify=False) != data


def test_short_file_is_data_loss(recorded):
    _, record, target = recorded
    os.truncate(os.path.join(target, "dir/file"), 100)
    with pytest.raises(errdefs.DataLoss, match="shorter"):
        reassemble(record, target, verify=False)


def test_missing_file_is_data_loss(recorded):
    _, record, target = recorded
    os.unlink(os.path.join(target, "other"))
    with pytest.raises(errdefs.DataLoss, match="other"):
        reassemble(record, target)


def test_damaged_record_is_data_loss(recorded):
    _, record, target = recorded
    with pytest.raises(errdefs.DataLoss, match="damaged"):
        reassemble(record[: len(record) // 2], target)
    with pytest.raises(errdefs.DataLoss, match="damaged"):
        assembled_size(io.BytesIO(gzip.compress(b'{"type":7}\n')))


def test_getter_never_leaves_its_directory(tmp_path):
    (tmp_path / "secret").write_bytes(b"outside")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/", root / "up")
    os.symlink("../secret", root / "rel")
    getter = DirectoryFileGetter(str(root))
    for name in ("../secret", "up/" + str(tmp_path / "secret").lstrip("/"), "rel"):
        with pytest.raises(errdefs.LaminaError):
            getter.open(name).read()


def test_the_writer_stops_keeping_headers_past_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(TarSplitWriter, "COMPACT_LIMIT", 1000)
    data = member("a", b"1") + member("b", b"2") + member("c", b"3") + END
    record = io.BytesIO()
    recorder = TarSplitWriter(record)
    reader = TarReader(io.BytesIO(data), recorder=recorder)
    for _ in reader:
        pass
    reader.finish()
    recorder.close()
    assert recorder.compact is None
    assert assembled_size(io.BytesIO(record.getvalue())) == len(data)
