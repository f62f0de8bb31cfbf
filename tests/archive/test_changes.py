"""Changes (overlay and naive), diff tars (export_tree, export_changes) and copy_tree."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
from contextlib import contextmanager

import pytest

from lamina.archive import (
    OPAQUE_XATTR,
    Change,
    ChangeKind,
    EntryType,
    TarReader,
    WhiteoutMode,
    apply_tar,
    copy_tree,
    export_changes,
    export_tree,
    overlay_changes,
    tree_changes,
)
from lamina.archive.extract import remove_tree_at
from lamina.mount import Mount, mount_all, unmount

from .helpers import assert_same_tree, snapshot
from .test_extract import _fidelity_tree

A, C, D = ChangeKind.ADD, ChangeKind.MODIFY, ChangeKind.DELETE
privileged = pytest.mark.privileged
SECOND = 1_000_000_000


def changes_of(items: list[Change]) -> list[tuple[str, str]]:
    return [(change.path, change.kind.value) for change in items]


def write(path, content: bytes = b"", *, mtime: int = 100) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)
    os.utime(path, ns=(mtime * SECOND, mtime * SECOND))


def read_tar(chunks) -> list[tuple[object, bytes]]:
    reader = TarReader(io.BytesIO(b"".join(chunks)))
    result = [(entry, reader.read_content()) for entry in reader]
    reader.finish()
    return result


def apply(chunks, target, mode=WhiteoutMode.APPLY) -> None:
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        apply_tar(fd, TarReader(io.BytesIO(b"".join(chunks))), mode, same_owner=os.geteuid() == 0)
    finally:
        os.close(fd)


# -- naive changes -----------------------------------------------------------------------


@pytest.fixture
def old_tree(tmp_path):
    old = tmp_path / "old"
    write(old / "etc/passwd", b"root")
    write(old / "etc/group", b"root")
    write(old / "var/lib/db/one", b"1")
    write(old / "var/lib/db/two", b"2")
    write(old / "usr/bin/tool", b"tool")
    os.symlink("tool", old / "usr/bin/alias")
    os.utime(old / "usr/bin/alias", ns=(100 * SECOND, 100 * SECOND), follow_symlinks=False)
    for directory in ("etc", "var/lib/db", "var/lib", "var", "usr/bin", "usr"):
        os.utime(old / directory, ns=(50 * SECOND, 50 * SECOND))
    return old


def test_tree_changes_against_nothing_are_all_additions(old_tree):
    result = changes_of(tree_changes(str(old_tree), None))
    assert result[:3] == [("/etc", "A"), ("/etc/group", "A"), ("/etc/passwd", "A")]
    assert all(kind == "A" for _, kind in result)
    assert [path for path, _ in result] == sorted(path for path, _ in result)


def test_tree_changes_follow_dockers_rules(tmp_path, old_tree):
    new = tmp_path / "new"
    copy_tree(str(old_tree), str(new))
    assert tree_changes(str(new), str(old_tree)) == []
    write(new / "etc/passwd", b"root+user")                     # size change
    shutil.rmtree(new / "var/lib/db")                            # a deleted directory: reported once
    write(new / "opt/app/bin/run", b"#!")                        # new dirs: additions, no MODIFY
    os.chmod(new / "usr/bin/tool", 0o700)                        # metadata only
    os.unlink(new / "usr/bin/alias")
    os.symlink("toox", new / "usr/bin/alias")                   # same length target, same time
    os.utime(new / "usr/bin/alias", ns=(os.lstat(old_tree / "usr/bin/alias").st_atime_ns,
                                        os.lstat(old_tree / "usr/bin/alias").st_mtime_ns), follow_symlinks=False)
    os.utime(new / "etc", ns=(99 * SECOND, 99 * SECOND))         # a directory's mtime alone is no change
    os.setxattr(new / "etc/group", "user.tag", b"x")
    assert changes_of(tree_changes(str(new), str(old_tree))) == [
        ("/etc", "C"), ("/etc/group", "C"), ("/etc/passwd", "C"),
        ("/opt", "A"), ("/opt/app", "A"), ("/opt/app/bin", "A"), ("/opt/app/bin/run", "A"),
        ("/usr", "C"), ("/usr/bin", "C"), ("/usr/bin/alias", "C"), ("/usr/bin/tool", "C"),
        ("/var", "C"), ("/var/lib", "C"), ("/var/lib/db", "D"),
    ]


def test_tree_changes_type_changes_and_time_precision(tmp_path, old_tree):
    new = tmp_path / "new"
    copy_tree(str(old_tree), str(new))
    os.unlink(new / "etc/passwd")
    write(new / "etc/passwd/now-a-dir", b"x")
    os.utime(new / "etc/group", ns=(100 * SECOND + 5, 100 * SECOND + 0))       # same second, one side whole
    os.utime(old_tree / "usr/bin/tool", ns=(100 * SECOND + 7, 100 * SECOND + 7))
    os.utime(new / "usr/bin/tool", ns=(100 * SECOND, 100 * SECOND))
    assert changes_of(tree_changes(str(new), str(old_tree))) == [
        ("/etc", "C"), ("/etc/passwd", "C"), ("/etc/passwd/now-a-dir", "A")]


# -- overlay changes and the native diff --------------------------------------------------


@contextmanager
def overlay(tmp_path, lower):
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    mount_all([Mount("overlay", "overlay", (f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"))],
              str(merged))
    try:
        yield upper, merged
    finally:
        unmount(str(merged))


@privileged
def test_overlay_changes_and_export_tree_match_the_kernel(tmp_path, old_tree):
    lower = old_tree
    with overlay(tmp_path, lower) as (upper, merged):
        write(merged / "etc/passwd", b"changed")
        os.unlink(merged / "etc/group")
        shutil.rmtree(merged / "var/lib/db")
        os.mkdir(merged / "var/lib/db")                   # recreated: an opaque directory
        write(merged / "var/lib/db/fresh", b"f")
        write(merged / "opt/new/file", b"n")
        os.link(merged / "opt/new/file", merged / "opt/new/hardlink")
        os.chmod(merged / "usr/bin/tool", 0o700)
        expected_tree = tmp_path / "expected"
        copy_tree(str(merged), str(expected_tree))
    assert changes_of(overlay_changes(str(upper), [str(lower)])) == [
        ("/etc", "C"), ("/etc/group", "D"), ("/etc/passwd", "C"),
        ("/opt", "A"), ("/opt/new", "A"), ("/opt/new/file", "A"), ("/opt/new/hardlink", "A"),
        ("/usr", "C"), ("/usr/bin", "C"), ("/usr/bin/tool", "C"),
        ("/var", "C"), ("/var/lib", "C"), ("/var/lib/db", "C"), ("/var/lib/db/fresh", "A"),
    ]
    diff = list(export_tree(str(upper)))
    entries = read_tar(diff)
    names = [entry.name for entry, _ in entries]
    assert "etc/.wh.group" in names and "var/lib/db/.wh..wh..opq" in names
    assert names.index("var/lib/db/.wh..wh..opq") == names.index("var/lib/db") + 1
    assert not any(key.startswith("trusted.overlay.") for entry, _ in entries for key in entry.xattrs)
    by_name = {entry.name: entry for entry, _ in entries}
    assert by_name["opt/new/hardlink"].type is EntryType.HARDLINK
    assert by_name["opt/new/hardlink"].linkname == "opt/new/file"
    assert by_name["etc/.wh.group"].mode == 0o600
    assert diff == list(export_tree(str(upper)))            # deterministic
    # the diff applied on the lower tree gives the merged view back (naive mode)...
    rebuilt = tmp_path / "rebuilt"
    copy_tree(str(lower), str(rebuilt))
    apply(diff, rebuilt)
    assert_same_tree(snapshot(str(rebuilt), directory_times=False), snapshot(str(expected_tree), directory_times=False))
    # ...and extracted as a fresh overlay upper dir it mounts to the same view
    fresh_upper = tmp_path / "fresh"
    fresh_upper.mkdir()
    apply(diff, fresh_upper, WhiteoutMode.OVERLAY)
    assert os.getxattr(fresh_upper / "var/lib/db", OPAQUE_XATTR) == b"y"
    work2, merged2 = tmp_path / "work2", tmp_path / "merged2"
    work2.mkdir()
    merged2.mkdir()
    mount_all([Mount("overlay", "overlay", (f"lowerdir={lower}", f"upperdir={fresh_upper}", f"workdir={work2}"))],
              str(merged2))
    try:
        assert_same_tree(snapshot(str(merged2), directory_times=False),
                         snapshot(str(expected_tree), directory_times=False))
    finally:
        unmount(str(merged2))


@privileged
def test_export_tree_order_and_metadata(tmp_path):
    upper = tmp_path / "upper"
    write(upper / "a/b", b"1", mtime=10)
    write(upper / "a-c", b"2", mtime=10)
    write(upper / "z", b"z")
    os.utime(upper / "z", ns=(5 * SECOND + 999, 5 * SECOND + 999))
    os.mknod(upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.chown(upper / "gone", 7, 8)
    os.mknod(upper / "tty", stat.S_IFCHR | 0o620, os.makedev(5, 0))
    os.mkdir(upper / "opaque", 0o750)
    os.setxattr(upper / "opaque", OPAQUE_XATTR, b"y")
    os.setxattr(upper / "a/b", "trusted.overlay.origin", b"x")
    os.setxattr(upper / "a/b", "security.capability", bytes.fromhex("01000003") + bytes(16) + bytes(4))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(upper / "socket"))
    listener.close()
    entries = read_tar(export_tree(str(upper)))
    assert [entry.name for entry, _ in entries] == ["a", "a/b", "a-c", ".wh.gone", "opaque", "opaque/.wh..wh..opq",
                                                    "tty", "z"]
    by_name = {entry.name: entry for entry, _ in entries}
    assert (by_name[".wh.gone"].uid, by_name[".wh.gone"].gid, by_name[".wh.gone"].type) == (7, 8, EntryType.REGULAR)
    assert by_name["opaque/.wh..wh..opq"].mode == 0o750
    assert by_name["z"].mtime_ns == 5 * SECOND and by_name["z"].atime_ns is None
    assert by_name["a/b"].xattrs == {"security.capability": bytes.fromhex("01000002") + bytes(16)}
    assert (by_name["tty"].type, by_name["tty"].devmajor) == (EntryType.CHAR, 5)
    plain = read_tar(export_tree(str(upper), overlay_whiteouts=False))
    assert "gone" in [entry.name for entry, _ in plain]
    assert not any(entry.name.endswith(".wh..wh..opq") for entry, _ in plain)


def test_export_changes_rebuilds_the_new_tree(tmp_path, old_tree):
    new = tmp_path / "new"
    copy_tree(str(old_tree), str(new))
    write(new / "etc/passwd", b"root+user", mtime=200)
    shutil.rmtree(new / "var/lib/db")
    write(new / "opt/app/run", b"#!", mtime=300)
    os.link(new / "opt/app/run", new / "opt/app/run2")
    os.chmod(new / "usr/bin/tool", 0o700)
    for directory, dirs, files in os.walk(new):         # diff tars carry whole seconds, like Docker's
        for name in dirs + files:
            path = os.path.join(directory, name)
            seconds = os.lstat(path).st_mtime_ns // SECOND * SECOND
            os.utime(path, ns=(seconds, seconds), follow_symlinks=False)
    changes = tree_changes(str(new), str(old_tree))
    diff = list(export_changes(str(new), changes))
    names = [entry.name for entry, _ in read_tar(diff)]
    assert "var/lib/.wh.db" in names
    assert "etc/group" not in names                       # directories are exported non-recursively
    rebuilt = tmp_path / "rebuilt"
    copy_tree(str(old_tree), str(rebuilt))
    apply(diff, rebuilt)
    assert_same_tree(snapshot(str(rebuilt)), snapshot(str(new)))


def test_deep_and_wide_trees_need_few_file_descriptors(tmp_path):
    from .test_extract import few_file_descriptors
    tree = tmp_path / "tree"
    tree.mkdir()
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):                                 # deeper than PATH_MAX allows by name
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"leaf")
    os.close(leaf)
    os.close(fd)
    for index in range(500):
        (tree / f"wide{index}").mkdir()
    try:
        with few_file_descriptors():
            diff = list(export_tree(str(tree)))
            changes = tree_changes(str(tree), None)
            copy_tree(str(tree), str(tmp_path / "copy"))
            overlay = overlay_changes(str(tree), [])
    finally:
        base = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)   # pytest's own cleanup recurses
        try:
            for name in ("tree", "copy"):
                if os.path.exists(tmp_path / name):
                    remove_tree_at(base, name)
        finally:
            os.close(base)
    assert len(changes) == len(overlay) == 1200 + 1 + 500
    assert sum(1 for _ in read_tar(diff)) == 1200 + 1 + 500
    assert [entry for entry, _ in read_tar(diff)][1200].name.endswith("d/leaf")


# -- copy ----------------------------------------------------------------------------------


@privileged
def test_copy_tree_has_full_fidelity(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _fidelity_tree(str(source))
    os.chmod(source, 0o711)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(source / "socket"))
    listener.close()
    destination = tmp_path / "destination"
    copy_tree(str(source), str(destination))
    expected = snapshot(str(source))
    del expected.nodes["socket"]
    assert_same_tree(snapshot(str(destination)), expected)
    assert stat.S_IMODE(os.stat(destination).st_mode) == 0o711
