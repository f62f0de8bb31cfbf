"""``docker cp`` helpers on a plain directory standing for a container's root: Docker's path
rules and names, PathStat, and no way out of the root through symlinks (CVE-2018-15664)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading

import pytest

from lamina import errdefs
from lamina.container.archive import (
    archive_path,
    extract_archive,
    go_file_mode,
    path_stat,
)


@pytest.fixture
def root(tmp_path):
    base = tmp_path / "rootfs"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (base / "etc" / "marker").write_text("inside\n")
    (base / "work").mkdir()
    (base / "work" / "file").write_text("data\n")
    os.link(base / "work" / "file", base / "work" / "hardlink")
    os.symlink("/etc", base / "work" / "abs")
    os.symlink("../../../../../../..", base / "work" / "up")
    os.symlink("/nowhere", base / "work" / "dangling")
    fd = os.open(base, os.O_PATH | os.O_DIRECTORY)
    yield base, fd
    os.close(fd)


def members(chunks) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        return {member.name: member for member in archive.getmembers()}


def content(chunks, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        return archive.extractfile(name).read()


def tar_of(entries: dict[str, bytes | None], links: dict[str, str] | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    buffer.seek(0)
    return buffer


def test_a_file_is_archived_under_its_base_name(root) -> None:
    _, fd = root
    stat_result, chunks = archive_path(fd, "/work/file", "c")
    assert stat_result["name"] == "file" and stat_result["size"] == 5 and stat_result["linkTarget"] == ""
    assert stat_result["mode"] == stat.S_IMODE(os.stat(root[0] / "work" / "file").st_mode)
    assert content(chunks, "file") == b"data\n"


def test_a_directory_keeps_symlinks_and_hardlinks(root) -> None:
    _, fd = root
    stat_result, chunks = archive_path(fd, "/work", "c")
    assert stat_result["mode"] & (1 << 31)
    entries = members(chunks)
    assert set(entries) == {"work", "work/file", "work/hardlink", "work/abs", "work/up", "work/dangling"}
    assert entries["work/abs"].issym() and entries["work/abs"].linkname == "/etc"
    assert entries["work/hardlink"].islnk() or entries["work/file"].islnk()


def test_trailing_dot_archives_the_contents(root) -> None:
    _, fd = root
    _, chunks = archive_path(fd, "/work/.", "c")
    assert {".", "./file", "./abs"} <= set(members(chunks))


def test_symlinks_resolve_inside_the_root(root) -> None:
    _, fd = root
    # the directory part follows symlinks, but as if the root were /
    _, chunks = archive_path(fd, "/work/abs/marker", "c")
    assert content(chunks, "marker") == b"inside\n"
    _, chunks = archive_path(fd, "/work/up/etc/marker", "c")
    assert content(chunks, "marker") == b"inside\n"
    # the last element is not followed ...
    link = path_stat(fd, "/work/abs", "c")
    assert link["linkTarget"] == "/etc" and link["mode"] & (1 << 27)
    assert path_stat(fd, "/work/dangling", "c")["linkTarget"] == "/nowhere"
    # ... unless the path ends in a slash
    stat_result, chunks = archive_path(fd, "/work/abs/", "c")
    assert stat_result["mode"] & (1 << 31)
    assert "abs/marker" in members(chunks)


def test_missing_paths(root) -> None:
    _, fd = root
    with pytest.raises(errdefs.NotFound, match="Could not find the file /nothing in container c"):
        path_stat(fd, "/nothing", "c")
    with pytest.raises(errdefs.NotFound):
        archive_path(fd, "/work/dangling/x", "c")


def test_extraction_stays_inside_the_root(root, tmp_path) -> None:
    base, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), base / "work" / "host")  # names <root><outside>, which does not exist
    extract_archive(fd, "/work/abs", tar_of({"new": b"x"}), "c")
    assert (base / "etc" / "new").read_bytes() == b"x"
    extract_archive(fd, "/work/up/etc", tar_of({"up": b"y"}), "c")
    assert (base / "etc" / "up").read_bytes() == b"y"
    with pytest.raises(errdefs.NotFound):
        extract_archive(fd, "/work/host", tar_of({"escape": b"z"}), "c")
    with pytest.raises(errdefs.InvalidArgument):
        extract_archive(fd, "/work", tar_of({"../../escape": b"z"}), "c")
    # a symlink the archive plants, then an entry through it
    extract_archive(fd, "/work", tar_of({}, {"planted": str(outside)}), "c")
    try:
        extract_archive(fd, "/work", tar_of({"planted/through": b"z"}), "c")
    except errdefs.LaminaError:
        pass  # refused, or written below the root: both keep the host untouched
    assert os.listdir(outside) == []


def test_extraction_needs_a_directory_and_can_refuse_type_changes(root) -> None:
    base, fd = root
    with pytest.raises(errdefs.InvalidArgument, match="extraction point is not a directory"):
        extract_archive(fd, "/work/file", tar_of({"x": b""}), "c")
    with pytest.raises(errdefs.NotFound):
        extract_archive(fd, "/absent", tar_of({"x": b""}), "c")
    with pytest.raises(errdefs.InvalidArgument, match="cannot overwrite non-directory"):
        extract_archive(fd, "/", tar_of({"work/file": None}), "c", no_overwrite_dir_non_dir=True)
    with pytest.raises(errdefs.InvalidArgument, match="cannot overwrite directory"):
        extract_archive(fd, "/", tar_of({"work": b"flat"}), "c", no_overwrite_dir_non_dir=True)
    assert (base / "work").is_dir()


def test_a_symlink_swapped_in_during_the_copy_never_reaches_the_host(root, tmp_path) -> None:
    """The CVE-2018-15664 race: a directory is replaced by a symlink to the host while the copy
    resolves paths; every resolution is beneath the root, so the host file is never read."""
    base, fd = root
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "marker").write_text("HOST SECRET\n")
    stop = threading.Event()

    def swap() -> None:
        target = base / "swap"
        while not stop.is_set():
            try:
                os.symlink(str(secret), base / "swap-link")
                os.rename(base / "swap-link", target)
            except OSError:
                pass
            try:
                os.unlink(target)
            except (IsADirectoryError, FileNotFoundError):
                pass
            except OSError:
                pass
            try:
                os.mkdir(target)
                (target / "marker").write_text("inside\n")
            except OSError:
                pass
            try:
                os.unlink(target / "marker")
                os.rmdir(target)
            except OSError:
                pass

    worker = threading.Thread(target=swap)
    worker.start()
    try:
        for _ in range(300):
            try:
                _, chunks = archive_path(fd, "/swap/marker", "c")
                data = b"".join(chunks)
            except errdefs.LaminaError:
                continue
            assert b"HOST SECRET" not in data
    finally:
        stop.set()
        worker.join()


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
