"""apply_tar: extraction fidelity, whiteouts in both modes, replacement rules, hostile entries."""

from __future__ import annotations

import io
import json
import os
import resource
import stat
import subprocess
import tarfile
from contextlib import contextmanager

import pytest

from lamina import errdefs
from lamina.archive import (
    OPAQUE_XATTR,
    EntryType,
    TarEntry,
    TarReader,
    TarWriter,
    WhiteoutMode,
    apply_tar,
)
from lamina.archive.extract import remove_tree_at

from .helpers import assert_same_tree, snapshot, tarfile_bytes

privileged = pytest.mark.privileged
CAPABILITY_V2 = bytes.fromhex("0100000200200000000000000000000000000000")   # cap_net_raw+ep


def extract(data: bytes, target, mode: WhiteoutMode = WhiteoutMode.APPLY, **options) -> int:
    options.setdefault("same_owner", os.geteuid() == 0)
    os.makedirs(target, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return apply_tar(fd, TarReader(io.BytesIO(data)), mode, **options)
    finally:
        os.close(fd)


def build(entries: list[tuple[TarEntry, bytes | None]]) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for entry, content in entries:
        writer.add(entry, [content] if content else None)
    writer.close()
    return out.getvalue()


def F(name: str, content: bytes = b"", **fields) -> tuple[TarEntry, bytes]:
    return TarEntry(name=name, type=EntryType.REGULAR, size=len(content), **fields), content


def D(name: str, **fields) -> tuple[TarEntry, None]:
    return TarEntry(name=name, type=EntryType.DIRECTORY, mode=fields.pop("mode", 0o755), **fields), None


def S(name: str, target: str, **fields) -> tuple[TarEntry, None]:
    return TarEntry(name=name, type=EntryType.SYMLINK, linkname=target, mode=0o777, **fields), None


def H(name: str, target: str) -> tuple[TarEntry, None]:
    return TarEntry(name=name, type=EntryType.HARDLINK, linkname=target), None


def _fidelity_tree(root: str) -> None:
    os.makedirs(os.path.join(root, "usr/bin"))
    os.makedirs(os.path.join(root, "tmp"))
    os.makedirs(os.path.join(root, "private/deeper"))
    os.makedirs(os.path.join(root, "group-dir"))
    with open(os.path.join(root, "usr/bin/tool"), "wb") as handle:
        handle.write(os.urandom(300_000))
    with open(os.path.join(root, "usr/bin/ping"), "wb") as handle:
        handle.write(b"#!/bin/true\n")
    with open(os.path.join(root, "private/secret"), "wb") as handle:
        handle.write(b"s")
    os.link(os.path.join(root, "usr/bin/tool"), os.path.join(root, "usr/bin/tool-alias"))
    os.link(os.path.join(root, "usr/bin/tool"), os.path.join(root, "private/deeper/third-name"))
    os.symlink("/usr/bin/tool", os.path.join(root, "usr/bin/absolute"))
    os.symlink("../bin/tool", os.path.join(root, "usr/bin/relative"))
    os.symlink("dangling/nowhere", os.path.join(root, "dangling"))
    os.mkfifo(os.path.join(root, "tmp/fifo"), 0o640)
    os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "disk"), 0o660 | stat.S_IFBLK, os.makedev(8, 1))
    os.chown(os.path.join(root, "usr/bin/tool"), 0, 50)
    os.chmod(os.path.join(root, "usr/bin/tool"), 0o4755)
    os.chown(os.path.join(root, "group-dir"), 1000, 1000)
    os.chmod(os.path.join(root, "group-dir"), 0o2775)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "private"), 0o700)
    os.chown(os.path.join(root, "private/secret"), 12345, 54321)
    os.chmod(os.path.join(root, "private/secret"), 0o600)
    os.lchown(os.path.join(root, "usr/bin/relative"), 7, 8)
    os.chown(os.path.join(root, "tmp/fifo"), 3, 4)
    os.setxattr(os.path.join(root, "usr/bin/ping"), "security.capability", CAPABILITY_V2)
    os.setxattr(os.path.join(root, "usr/bin/ping"), "user.comment", b"pings")
    os.setxattr(os.path.join(root, "private"), "trusted.note", b"\x00\xff")
    os.setxattr(os.path.join(root, "usr/bin/absolute"), "trusted.link", b"on the link", follow_symlinks=False)
    os.chmod(os.path.join(root, "usr/bin/ping"), 0o755)
    stamp = 1_650_000_000_123_456_789
    for directory, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            stamp += 1_000_001
            os.utime(os.path.join(directory, name), ns=(stamp, stamp), follow_symlinks=False)


@privileged
@pytest.mark.parametrize("mode", [WhiteoutMode.APPLY, WhiteoutMode.OVERLAY], ids=["apply", "overlay"])
def test_gnu_tar_archive_extracts_with_full_fidelity(tmp_path, mode):
    source = str(tmp_path / "source")
    os.mkdir(source)
    _fidelity_tree(source)
    data = subprocess.run(["tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                           "-cf", "-", "."], cwd=source, check=True, capture_output=True).stdout
    target = tmp_path / "target"
    size = extract(data, target, mode)
    assert size == 300_000 + 12 + 1
    assert_same_tree(snapshot(str(target)), snapshot(source))


@privileged
def test_overlay_xattrs_from_the_tar_are_dropped(tmp_path):
    data = build([F("f", b"x", xattrs={"trusted.overlay.opaque": b"y", "trusted.overlay.origin": b"o",
                                       "user.kept": b"k"}),
                  D("d", xattrs={OPAQUE_XATTR: b"y"})])
    extract(data, tmp_path / "t", WhiteoutMode.OVERLAY)
    assert os.listxattr(tmp_path / "t/f") == ["user.kept"]
    assert os.listxattr(tmp_path / "t/d") == []


@privileged
def test_setuid_survives_ownership(tmp_path):
    data = build([F("su", b"#!", mode=0o6755, uid=1000, gid=1000), D("sticky", mode=0o1770, uid=5, gid=6)])
    extract(data, tmp_path / "t")
    info = os.stat(tmp_path / "t/su")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o6755, 1000, 1000)
    info = os.stat(tmp_path / "t/sticky")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o1770, 5, 6)


def test_directory_times_survive_later_children(tmp_path):
    data = build([D("d", mtime_ns=1_000_000_000_500), F("d/f", b"1", mtime_ns=7_000_000_000),
                  D("d/e", mtime_ns=9), F("d/e/g", b"2")])
    extract(data, tmp_path / "t")
    assert os.stat(tmp_path / "t/d").st_mtime_ns == 1_000_000_000_500
    assert os.stat(tmp_path / "t/d/e").st_mtime_ns == 9
    assert os.stat(tmp_path / "t/d/f").st_mtime_ns == 7_000_000_000


def test_missing_parents_are_created_0755_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        extract(build([F("a/b/c/file", b"x", mode=0o640)]), tmp_path / "t")
    finally:
        os.umask(old)
    for path in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE(os.stat(tmp_path / "t" / path).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "t/a/b/c/file").st_mode) == 0o640


def test_same_owner_false_keeps_the_current_owner(tmp_path):
    extract(build([F("f", b"x", uid=4242, gid=4343)]), tmp_path / "t", same_owner=False)
    info = os.stat(tmp_path / "t/f")
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())


def test_size_is_the_sum_of_regular_contents(tmp_path):
    data = build([F("a", b"x" * 1000), F("b", b""), D("d"), F("d/c", b"y" * 70000), H("h", "a"), S("s", "a")])
    assert extract(data, tmp_path / "t") == 71000


# -- replacement ------------------------------------------------------------------------


def test_directory_over_directory_keeps_content_and_updates_metadata(tmp_path):
    target = tmp_path / "t"
    (target / "d").mkdir(parents=True)
    (target / "d/old").write_bytes(b"old")
    extract(build([D("d", mode=0o700, mtime_ns=5 * 10**9)]), target)
    assert (target / "d/old").read_bytes() == b"old"
    assert stat.S_IMODE(os.stat(target / "d").st_mode) == 0o700
    assert os.stat(target / "d").st_mtime_ns == 5 * 10**9


def test_file_over_directory_removes_the_whole_directory(tmp_path):
    target = tmp_path / "t"
    (target / "d/sub/deeper").mkdir(parents=True)
    (target / "d/sub/deeper/f").write_bytes(b"1")
    os.symlink("/", target / "d/sub/root-link")
    extract(build([F("d", b"now a file")]), target)
    assert (target / "d").read_bytes() == b"now a file"


def test_replacements_of_every_kind(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    (target / "was-file").write_bytes(b"f")
    os.symlink(str(outside), target / "was-link-to-dir")
    os.symlink(str(outside / "keep"), target / "was-link-to-file")
    os.mkfifo(target / "was-fifo")
    data = build([D("was-file"), F("was-link-to-dir", b"file now"), S("was-link-to-file", "elsewhere"),
                  F("was-fifo", b"regular")])
    extract(data, target)
    assert (target / "was-file").is_dir()
    assert (target / "was-link-to-dir").read_bytes() == b"file now"
    assert os.readlink(target / "was-link-to-file") == "elsewhere"
    assert (target / "was-fifo").read_bytes() == b"regular"
    assert (outside / "keep").read_bytes() == b"keep" and sorted(os.listdir(outside)) == ["keep"]


@contextmanager
def few_file_descriptors(limit: int = 200):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_deep_tree_is_created_and_replaced_with_few_file_descriptors(tmp_path):
    depth = 1500
    deep = "/".join(["a"] * depth)
    try:
        with few_file_descriptors():
            extract(build([F(deep + "/leaf", b"x")]), tmp_path / "t")
            assert (tmp_path / "t").joinpath(deep, "leaf").read_bytes() == b"x"
            extract(build([F("a", b"flat")]), tmp_path / "t")
        assert (tmp_path / "t/a").read_bytes() == b"flat"
    finally:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)      # pytest's own cleanup recurses
        try:
            remove_tree_at(fd, "t")
        finally:
            os.close(fd)


def test_many_directories_stay_within_few_file_descriptors(tmp_path):
    entries = [D(f"d{index}") for index in range(600)] + [F(f"d{index}/f", b"1") for index in range(600)]
    with few_file_descriptors():
        extract(build(entries), tmp_path / "t")
    assert len(os.listdir(tmp_path / "t")) == 600


# -- whiteouts ----------------------------------------------------------------------------


@privileged
def test_overlay_whiteouts(tmp_path):
    data = build([F(".wh.gone", uid=3, gid=4), D("dir"), F("dir/.wh..wh..opq"), F("dir/new", b"n"),
                  F(".wh..wh.plnk"), D(".wh..wh.orph"), F("sub/.wh.x")])
    target = tmp_path / "t"
    extract(data, target, WhiteoutMode.OVERLAY)
    gone = os.lstat(target / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0 and (gone.st_uid, gone.st_gid) == (3, 4)
    assert os.getxattr(target / "dir", OPAQUE_XATTR) == b"y"
    assert (target / "dir/new").read_bytes() == b"n"
    assert sorted(os.listdir(target)) == ["dir", "gone", "sub"]
    assert stat.S_ISCHR(os.lstat(target / "sub/x").st_mode)


def _parent_layer(target) -> None:
    (target / "etc/conf.d").mkdir(parents=True)
    (target / "etc/passwd").write_bytes(b"root")
    (target / "etc/conf.d/a").write_bytes(b"a")
    (target / "etc/conf.d/b").write_bytes(b"b")
    (target / "var/cache/big").mkdir(parents=True)
    (target / "var/cache/big/blob").write_bytes(b"x")
    os.symlink("/etc", target / "link-to-etc")
    (target / "opaque/old-dir").mkdir(parents=True)
    (target / "opaque/old-file").write_bytes(b"old")
    (target / "opaque/replaced").write_bytes(b"old")


def test_apply_whiteouts_delete_what_they_name(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    _parent_layer(target)
    data = build([F("etc/.wh.passwd"), F("var/.wh.cache"), F(".wh.link-to-etc"),
                  F("opaque/replaced", b"new"), F("opaque/.wh..wh..opq"), F("opaque/added", b"added"),
                  F("etc/conf.d/.wh.missing")])
    extract(data, target, WhiteoutMode.APPLY)
    assert not (target / "etc/passwd").exists()
    assert (target / "etc/conf.d/a").exists()
    assert sorted(os.listdir(target / "var")) == []
    assert not os.path.lexists(target / "link-to-etc")
    assert (target / "etc").is_dir()               # the symlink went, not what it pointed at
    assert sorted(os.listdir(target / "opaque")) == ["added", "replaced"]
    assert (target / "opaque/replaced").read_bytes() == b"new"
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(target) for name in dirs + files)


def test_apply_opaque_marker_keeps_children_created_through_implicit_parents(tmp_path):
    target = tmp_path / "t"
    (target / "d/old").mkdir(parents=True)
    data = build([F("d/new/deep/file", b"1"), F("d/.wh..wh..opq")])
    extract(data, target, WhiteoutMode.APPLY)
    assert sorted(os.listdir(target / "d")) == ["new"]
    assert (target / "d/new/deep/file").read_bytes() == b"1"


# -- hostile entries ----------------------------------------------------------------------


@pytest.mark.parametrize("entries, problem", [
    ([H("link", "missing")], "does not exist"),
    ([D("dir"), H("link", "dir")], "directory"),
    ([F("f", b"1"), F("f/child", b"2")], "f/child"),
    ([S("s", "")], "empty target"),
    ([F("a/.wh..", b"")], "invalid whiteout"),
], ids=["hardlink to a missing target", "hardlink to a directory", "file below a file",
        "symlink without a target", "whiteout of dot"])
def test_hostile_entries_are_invalid_arguments_naming_the_entry(tmp_path, entries, problem):
    with pytest.raises(errdefs.InvalidArgument, match=problem):
        extract(build(entries), tmp_path / "t")


@privileged
def test_devices_without_root_are_refused(tmp_path):
    """Run as an unprivileged user in a child process."""
    target = tmp_path / "t"
    target.mkdir()
    os.chown(target, 65534, 65534)
    os.chmod(tmp_path, 0o755)
    data = build([(TarEntry(name="null", type=EntryType.CHAR, devmajor=1, devminor=3, uid=65534, gid=65534), None)])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                apply_tar(fd, TarReader(io.BytesIO(data)), WhiteoutMode.APPLY)
                result = "no error"
            except errdefs.InvalidArgument as exc:
                result = "InvalidArgument: " + str(exc)
            except BaseException as exc:
                result = repr(exc)
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert result.startswith("InvalidArgument") and "null" in result, result


def test_tarfile_built_archive_with_odd_paths(tmp_path):
    members = [(tarfile.TarInfo("./a//b/"), None), (tarfile.TarInfo("/abs/file"), b"abs")]
    members[0][0].type = tarfile.DIRTYPE
    members[1][0].size = 3
    extract(tarfile_bytes(members), tmp_path / "t")
    assert (tmp_path / "t/a/b").is_dir()
    assert (tmp_path / "t/abs/file").read_bytes() == b"abs"
