"""The spool of a non-seekable image archive (a pipe, a request body): in memory while it fits
the memory limit, else in a file of the spool directory; removed when the archive closes or
when reading it fails, whatever the limit."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from lamina import errdefs
from lamina.distribution.archive_index import memory_available, open_archive


class Stream(io.RawIOBase):
    """A non-seekable stream over ``data`` handing out at most ``piece`` bytes per read; it
    raises ``error`` once ``fail_after`` bytes were read."""

    def __init__(self, data: bytes, piece: int = 7000, fail_after: int | None = None,
                 error: Exception | None = None) -> None:
        self._data = memoryview(data)
        self._position = 0
        self._piece = piece
        self._fail_after = fail_after
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._fail_after is not None and self._position >= self._fail_after:
            assert self._error is not None
            raise self._error
        size = min(len(buffer), self._piece, len(self._data) - self._position)
        buffer[:size] = self._data[self._position:self._position + size]
        self._position += size
        return size


def archive_bytes(members: dict[str, bytes]) -> bytes:
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return output.getvalue()


MEMBERS = {
    "manifest.json": b'[{"Config": "c.json", "Layers": ["l/layer.tar"]}]',
    "c.json": b"{}",
    "l/layer.tar": os.urandom(300_000),
}


@pytest.mark.parametrize("memory_limit", [1 << 30, 50_000, 0],
                         ids=["an archive that fits is spooled in memory",
                              "an archive past the limit moves to a file on the way",
                              "a zero limit spools to a file from the start"])
def test_a_spooled_archive_reads_back_and_leaves_nothing(tmp_path, memory_limit):
    spool_dir = tmp_path / "spool"
    archive = open_archive(Stream(archive_bytes(MEMBERS)), str(spool_dir), memory_limit=memory_limit)
    try:
        files = os.listdir(spool_dir) if spool_dir.exists() else []
        assert len(files) == (0 if memory_limit > len(archive_bytes(MEMBERS)) else 1)
        for name, data in MEMBERS.items():
            assert archive.size(name) == len(data)
            assert archive.read(name) == data
        stream = archive.open("l/layer.tar")
        buffer = bytearray(65536)
        pieces = []
        while size := stream.readinto(buffer):
            pieces.append(bytes(buffer[:size]))
        assert b"".join(pieces) == MEMBERS["l/layer.tar"]
    finally:
        archive.close()
    assert not spool_dir.exists() or os.listdir(spool_dir) == []


def test_a_compressed_stream_is_spooled_decompressed(tmp_path):
    archive = open_archive(Stream(gzip.compress(archive_bytes(MEMBERS))), str(tmp_path), memory_limit=1 << 30)
    try:
        assert archive.read("l/layer.tar") == MEMBERS["l/layer.tar"]
    finally:
        archive.close()


@pytest.mark.parametrize("memory_limit", [1 << 30, 50_000, 0], ids=["in memory", "moved to a file", "in a file"])
def test_a_truncated_stream_fails_and_leaves_no_spool(tmp_path, memory_limit):
    data = archive_bytes(MEMBERS)
    with pytest.raises(errdefs.InvalidArgument, match="truncated"):
        open_archive(Stream(data[:200_000]), str(tmp_path), memory_limit=memory_limit)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("memory_limit", [1 << 30, 50_000, 0], ids=["in memory", "moved to a file", "in a file"])
def test_a_stream_that_fails_midway_keeps_its_error_and_leaves_no_spool(tmp_path, memory_limit):
    error = errdefs.InvalidArgument("the client closed the connection before the end of the request body")
    source = Stream(archive_bytes(MEMBERS), fail_after=120_000, error=error)
    with pytest.raises(errdefs.InvalidArgument) as raised:
        open_archive(source, str(tmp_path), memory_limit=memory_limit)
    assert raised.value is error
    assert os.listdir(tmp_path) == []


def test_memory_available_is_the_kernels_figure():
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    expected = int(fields["MemAvailable"].split()[0]) * 1024
    assert abs(memory_available() - expected) < 256 << 20  # the figure moves while we look


def _memory_cgroup_directory(tmp_name: str) -> tuple[str, str]:
    """A new memory cgroup directory (v2 or v1) and its limit file's name."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        with open("/sys/fs/cgroup/cgroup.subtree_control") as handle:
            if "memory" not in handle.read().split():
                pytest.skip("the memory controller is not enabled for child cgroups")
        return os.path.join("/sys/fs/cgroup", tmp_name), "memory.max"
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return os.path.join("/sys/fs/cgroup/memory", tmp_name), "memory.limit_in_bytes"
    pytest.skip("no memory cgroup hierarchy")


@pytest.mark.privileged
def test_memory_available_is_bounded_by_the_memory_cgroup_limit(tmp_path):
    import subprocess
    import sys

    directory, limit_name = _memory_cgroup_directory(f"lamina-spool-test-{os.getpid()}")
    os.mkdir(directory)
    try:
        with open(os.path.join(directory, limit_name), "w") as handle:
            handle.write(str(96 << 20))
        script = ("import os, sys\n"
                  f"open({os.path.join(directory, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
                  "from lamina.distribution.archive_index import memory_available\n"
                  "print(memory_available())\n")
        output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                                timeout=60).stdout
        assert 0 < int(output) <= 96 << 20
    finally:
        os.rmdir(directory)


def _open_memory_spools() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += "lamina-load" in os.readlink(os.path.join("/proc/self/fd", name))
        except FileNotFoundError:
            pass
    return count


def test_a_spool_that_cannot_move_to_disk_fails_and_closes_its_memory_file(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")
    before = _open_memory_spools()
    with pytest.raises(OSError):
        open_archive(Stream(archive_bytes(MEMBERS)), str(blocked / "spool"), memory_limit=50_000)
    assert _open_memory_spools() == before


def test_without_memfd_the_spool_is_a_file(tmp_path, monkeypatch):
    def refused(*args):  # what a seccomp filter or an old kernel answers
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "memfd_create", refused)
    archive = open_archive(Stream(archive_bytes(MEMBERS)), str(tmp_path), memory_limit=1 << 30)
    try:
        assert len(os.listdir(tmp_path)) == 1
        assert archive.read("l/layer.tar") == MEMBERS["l/layer.tar"]
    finally:
        archive.close()
    assert os.listdir(tmp_path) == []
