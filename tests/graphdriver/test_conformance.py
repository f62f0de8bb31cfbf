"""One suite every graph driver must pass (STYLE.md habit 11).

Each test gets its own data root and driver instance (fixtures in conftest.py); mounts are
detached in teardown even when a test fails.  Merged views are compared as whole trees with
``fstest`` (mode, owner, xattrs, content, link targets, device numbers, hardlink groups).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

from fstest import (apply, assert_same_tree, chmod, chown, create_device, create_dir, create_fifo,
                    create_file, hardlink, remove_all, set_xattr, snapshot_tree, symlink)
from lamina import errdefs
from lamina import mount as lmount
from lamina.archive import Change, ChangeKind

from . import layers as L

pytestmark = pytest.mark.privileged

# vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE
CAPABILITY = bytes([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def add_layer(driver, parent: str | None, *entries: L.Entry) -> str:
    id = L.new_id()
    driver.create(id, parent)
    driver.apply_diff(id, parent, L.reader(L.layer_tar(*entries)))
    return id


@contextmanager
def mounted(driver, id: str):
    path = driver.get(id)
    try:
        yield path
    finally:
        driver.put(id)


def assert_view(driver, id: str, expected_root: str, *appliers) -> None:
    apply(expected_root, *appliers)
    with mounted(driver, id) as path:
        assert_same_tree(expected_root, path)


BASE = (
    L.directory("etc"), L.file("etc/hostname", "base\n"), L.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    L.symlink("etc/name", "hostname"),
    L.directory("bin"), L.file("bin/sh", b"\x7fELF" + bytes(300), mode=0o755),
    L.directory("tmp", mode=0o1777),
    L.directory("dev"), L.char_device("dev/null", 1, 3), L.fifo("dev/initctl", 0o600),
    L.directory("var"), L.directory("var/cache"), L.file("var/cache/a", "a"), L.file("var/cache/b", "b"),
)


def base_tree():
    return (
        create_dir("etc"), create_file("etc/hostname", "base\n"),
        create_file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), symlink("hostname", "etc/name"),
        create_dir("bin"), create_file("bin/sh", b"\x7fELF" + bytes(300), 0o755),
        create_dir("tmp", 0o1777),
        create_dir("dev"), create_device("dev/null", 1, 3, mode=0o666), create_fifo("dev/initctl", 0o600),
        create_dir("var"), create_dir("var/cache"), create_file("var/cache/a", "a"), create_file("var/cache/b", "b"),
    )


def test_create_exists_list_remove(driver):
    base, child = L.new_id(), L.new_id()
    assert not driver.exists(base)
    driver.create(base, None)
    driver.create(child, base, read_write=True)
    assert driver.exists(base) and driver.exists(child)
    assert driver.list_ids() == sorted([base, child])
    with pytest.raises(errdefs.AlreadyExists):
        driver.create(base, None)
    with pytest.raises(errdefs.NotFound):
        driver.create(L.new_id(), L.new_id())
    for bad in ("../escape", "", ".hidden", "a/b", f"{base}-incomplete"):
        with pytest.raises(errdefs.InvalidArgument):
            driver.create(bad, None)
    with pytest.raises(errdefs.NotFound):
        driver.get(L.new_id())
    driver.remove(child)
    driver.remove(base)
    driver.remove(base)  # missing is fine
    assert not driver.exists(base) and driver.list_ids() == []
    assert driver.check() == []


def test_empty_layers_have_empty_trees(driver):
    base = L.new_id()
    driver.create(base, None)
    child = L.new_id()
    driver.create(child, base)
    for id in (base, child):
        with mounted(driver, id) as path:
            assert os.listdir(path) == []


def test_merged_view_of_base_and_child(driver, expected_root):
    base = add_layer(driver, None, *BASE)
    child = add_layer(driver, base,
                      L.directory("etc"), L.file("etc/hostname", "child\n"), L.file("etc/motd", "hello"),
                      L.directory("usr"), L.directory("usr/lib"), L.symlink("usr/lib/sh", "/bin/sh"))
    with mounted(driver, base) as path:
        apply(expected_root, *base_tree())
        assert_same_tree(expected_root, path)
    assert_view(driver, child, expected_root,
                create_file("etc/hostname", "child\n"), create_file("etc/motd", "hello"),
                create_dir("usr"), create_dir("usr/lib"), symlink("/bin/sh", "usr/lib/sh"))


def test_whiteouts_hide_lower_files_and_directories(driver, expected_root):
    base = add_layer(driver, None, *BASE)
    child = add_layer(driver, base, L.directory("etc"), L.whiteout("etc/passwd"), L.directory("var"),
                      L.whiteout("var/cache"))
    apply(expected_root, *base_tree())
    assert_view(driver, child, expected_root, remove_all("etc/passwd"), remove_all("var/cache"))
    # a layer above still does not see them, and can bring a name back
    top = add_layer(driver, child, L.directory("var"), L.directory("var/cache"), L.file("var/cache/c", "c"))
    assert_view(driver, top, expected_root, create_dir("var/cache"), create_file("var/cache/c", "c"))


def test_opaque_directory_hides_lower_content_but_keeps_its_own(driver, expected_root):
    base = add_layer(driver, None, L.directory("data"), L.file("data/old", "old"), L.directory("data/sub"),
                     L.file("data/sub/deep", "deep"), L.file("other", "kept"))
    child = add_layer(driver, base, L.directory("data", mode=0o750), L.opaque("data"), L.file("data/new", "new"))
    apply(expected_root, create_dir("data", 0o750), create_file("data/new", "new"), create_file("other", "kept"))
    with mounted(driver, child) as path:
        assert_same_tree(expected_root, path)
    top = add_layer(driver, child, L.file("top", "t"))
    assert_view(driver, top, expected_root, create_file("top", "t"))


def test_hardlinks_within_a_layer(driver, expected_root):
    base = add_layer(driver, None, L.directory("bin"), L.file("bin/busybox", b"bb" * 100, mode=0o755),
                     L.hardlink("bin/ls", "bin/busybox"), L.hardlink("bin/cat", "bin/busybox"))
    child = add_layer(driver, base, L.directory("sbin"), L.file("sbin/tool", "tool"),
                      L.hardlink("sbin/tool2", "sbin/tool"))
    assert_view(driver, child, expected_root,
                create_dir("bin"), create_file("bin/busybox", b"bb" * 100, 0o755),
                hardlink("bin/busybox", "bin/ls"), hardlink("bin/busybox", "bin/cat"),
                create_dir("sbin"), create_file("sbin/tool", "tool"), hardlink("sbin/tool", "sbin/tool2"))
    with mounted(driver, child) as path:
        assert os.stat(f"{path}/bin/ls").st_ino == os.stat(f"{path}/bin/busybox").st_ino
        assert os.stat(f"{path}/sbin/tool2").st_nlink == 2


def test_xattrs_user_and_file_capabilities(driver, expected_root):
    base = add_layer(driver, None,
                     L.directory("usr", xattrs={"user.dir": b"d"}),
                     L.file("usr/ping", "ping", mode=0o755,
                            xattrs={"security.capability": CAPABILITY, "user.comment": b"pings"}))
    child = add_layer(driver, base, L.file("note", "n", xattrs={"user.binary": b"\x00\xff\x01"}))
    assert_view(driver, child, expected_root,
                create_dir("usr"), set_xattr("usr", "user.dir", b"d"),
                create_file("usr/ping", "ping", 0o755), set_xattr("usr/ping", "security.capability", CAPABILITY),
                set_xattr("usr/ping", "user.comment", b"pings"),
                create_file("note", "n"), set_xattr("note", "user.binary", b"\x00\xff\x01"))


def test_special_modes_and_owners(driver, expected_root):
    base = add_layer(driver, None,
                     L.directory("bin"), L.file("bin/su", "su", mode=0o4755),
                     L.file("bin/wall", "wall", mode=0o2755, gid=5),
                     L.directory("shared", mode=0o2775, uid=1000, gid=1000),
                     L.directory("scratch", mode=0o1777),
                     L.file("private", "p", mode=0o640, uid=1234, gid=5678),
                     L.symlink("owned-link", "private", uid=1000, gid=1001))
    # real layer tars carry the parent directory of every entry: with overlay a directory the
    # layer creates implicitly would shadow the lower directory's mode and owner
    child = add_layer(driver, base, L.directory("shared", mode=0o2775, uid=1000, gid=1000),
                      L.file("shared/file", "f", mode=0o600, uid=1000, gid=1000))
    assert_view(driver, child, expected_root,
                create_dir("bin"), create_file("bin/su", "su", 0o4755),
                create_file("bin/wall", "wall"), chown("bin/wall", 0, 5), chmod("bin/wall", 0o2755),
                create_dir("shared"), chown("shared", 1000, 1000), chmod("shared", 0o2775),
                create_dir("scratch", 0o1777),
                create_file("private", "p", 0o640), chown("private", 1234, 5678),
                symlink("private", "owned-link"), chown("owned-link", 1000, 1001),
                create_file("shared/file", "f", 0o600), chown("shared/file", 1000, 1000))


def _modify_through_mount(path: str) -> None:
    apply(path,
          create_file("etc/motd", "new file"),
          create_file("etc/passwd", "root:x:0:0::/root:/bin/bash\n"),
          remove_all("etc/hostname"),
          remove_all("var/cache"),
          chmod("bin/sh", 0o700),
          create_dir("srv"), create_file("srv/app", "app"), create_dir("srv/empty"))


def test_changes_and_diff_of_a_read_write_layer_reproduce_its_view(driver):
    base = add_layer(driver, None, *BASE)
    container = L.new_id()
    driver.create(container, base, read_write=True)
    with mounted(driver, container) as path:
        _modify_through_mount(path)

    changes = {change.path: change.kind for change in driver.changes(container, base)}
    expected = {
        "/etc/motd": ChangeKind.ADD, "/etc/passwd": ChangeKind.MODIFY, "/etc/hostname": ChangeKind.DELETE,
        "/var/cache": ChangeKind.DELETE, "/bin/sh": ChangeKind.MODIFY, "/srv": ChangeKind.ADD,
        "/srv/app": ChangeKind.ADD, "/srv/empty": ChangeKind.ADD,
    }
    assert {path: changes.get(path) for path in expected} == expected
    # nothing reported for what was not touched, and a deleted directory is one change
    assert not {"/etc/name", "/tmp", "/dev/null", "/var/cache/a", "/var/cache/b"} & set(changes)
    assert all(isinstance(change, Change) for change in driver.changes(container, base))

    tar = b"".join(driver.diff(container, base))
    copy = L.new_id()
    driver.create(copy, base)
    driver.apply_diff(copy, base, L.reader(tar))
    with mounted(driver, container) as original, mounted(driver, copy) as reproduced:
        assert_same_tree(snapshot_tree(original), snapshot_tree(reproduced))
        assert not os.path.exists(f"{reproduced}/var/cache")


def test_diff_of_a_base_layer_reproduces_it(driver):
    base = add_layer(driver, None, *BASE, L.hardlink("bin/sh2", "bin/sh"))
    assert {change.kind for change in driver.changes(base, None)} == {ChangeKind.ADD}
    tar = b"".join(driver.diff(base, None))
    copy = L.new_id()
    driver.create(copy, None)
    driver.apply_diff(copy, None, L.reader(tar))
    with mounted(driver, base) as original, mounted(driver, copy) as reproduced:
        assert_same_tree(original, reproduced)


def test_changes_and_diff_against_an_older_ancestor(driver):
    base = add_layer(driver, None, L.directory("a"), L.file("a/one", "1"), L.file("gone", "g"))
    middle = add_layer(driver, base, L.directory("a"), L.file("a/two", "2"))
    top = add_layer(driver, middle, L.file("three", "3"), L.whiteout("gone"))
    changes = {change.path: change.kind for change in driver.changes(top, base)}
    assert changes["/a/two"] == ChangeKind.ADD and changes["/three"] == ChangeKind.ADD
    assert changes["/gone"] == ChangeKind.DELETE and "/a/one" not in changes
    tar = b"".join(driver.diff(top, base))
    copy = L.new_id()
    driver.create(copy, base)
    driver.apply_diff(copy, base, L.reader(tar))
    with mounted(driver, top) as original, mounted(driver, copy) as reproduced:
        assert_same_tree(original, reproduced)


def test_diff_size_and_apply_size_count_regular_file_bytes_once(driver):
    base = add_layer(driver, None, L.file("big", bytes(5000)))
    id = L.new_id()
    driver.create(id, base)
    size = driver.apply_diff(id, base, L.reader(L.layer_tar(
        L.directory("d"), L.file("d/small", bytes(100)), L.file("d/large", bytes(2000)),
        L.hardlink("d/large2", "d/large"))))
    assert size == 2100
    assert driver.diff_size(id, base) == 2100
    assert driver.diff_size(base, None) == 5000


def test_diff_path_holds_the_layer_files(driver):
    base = add_layer(driver, None, L.directory("etc"), L.file("etc/os-release", "ID=test\n"))
    with open(os.path.join(driver.diff_path(base), "etc", "os-release"), "rb") as handle:
        assert handle.read() == b"ID=test\n"


def test_a_chain_of_120_layers_shows_every_file(driver):
    parent = None
    for index in range(120):
        parent = add_layer(driver, parent, L.file(f"file{index:03d}", f"layer {index}"))
    with mounted(driver, parent) as path:
        names = sorted(os.listdir(path))
        assert names == [f"file{index:03d}" for index in range(120)]
        with open(os.path.join(path, "file000")) as first, open(os.path.join(path, "file119")) as last:
            assert (first.read(), last.read()) == ("layer 0", "layer 119")


def test_remove_of_a_mounted_layer_unmounts_it(driver, data_root):
    base = add_layer(driver, None, L.file("f", "f"))
    child = add_layer(driver, base, L.file("g", "g"))
    path = driver.get(child)
    assert sorted(os.listdir(path)) == ["f", "g"]
    driver.remove(child)
    assert not driver.exists(child)
    assert not os.path.exists(path)
    assert [t for t in lmount.mounted_targets() if t.startswith(os.path.realpath(data_root) + "/")] == []
    with mounted(driver, base) as base_path:
        assert os.listdir(base_path) == ["f"]


def test_get_twice_put_twice(driver):
    base = add_layer(driver, None, L.file("f", "f"))
    child = add_layer(driver, base, L.file("g", "g"))
    first = driver.get(child)
    assert driver.get(child) == first
    driver.put(child)
    assert sorted(os.listdir(first)) == ["f", "g"]
    driver.put(child)


def test_status_and_metadata(driver):
    status = dict(driver.status())
    assert status["Backing Filesystem"] not in ("", "<unknown>")
    base = L.new_id()
    driver.create(base, None)
    assert isinstance(driver.metadata(base), dict)
    with pytest.raises(errdefs.NotFound):
        driver.metadata(L.new_id())


_CRASH = """
import os, sys
from lamina import fsutil
from lamina.graphdriver import registry
name, home, operation, id, parent = sys.argv[1:]
driver = registry.DRIVERS[name](home)
if operation == "create":
    fsutil.publish_dir = lambda *args, **kwargs: os._exit(3)
    driver.create(id, parent or None)
else:
    fsutil.fsync_dir = lambda *args: os._exit(3)
    driver.remove(id)
"""


def _crash(driver, operation: str, id: str, parent: str | None = None) -> None:
    result = subprocess.run([sys.executable, "-c", _CRASH, driver.name, driver.home, operation, id, parent or ""],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr


def test_crash_during_create_and_remove_is_swept(driver):
    base = add_layer(driver, None, L.file("f", "f"))
    layers_dir = os.path.dirname(os.path.normpath(driver.diff_path(base)))
    if driver.name in ("overlay2", "fuse-overlayfs"):  # <home>/<id>/diff
        layers_dir = os.path.dirname(layers_dir)
    lost = L.new_id()
    _crash(driver, "create", lost, base)
    _crash(driver, "remove", base)
    assert os.path.isdir(os.path.join(layers_dir, f"{lost}-incomplete"))
    assert os.path.isdir(os.path.join(layers_dir, f"{base}-removing"))
    assert not driver.exists(lost) and not driver.exists(base)
    assert driver.list_ids() == []
    assert sorted(driver.leftovers()) == sorted([f"{lost}-incomplete", f"{base}-removing"])
    problems = driver.check()
    assert any(f"{lost}-incomplete" in problem for problem in problems)
    assert any(f"{base}-removing" in problem for problem in problems)
    removed = driver.sweep()
    assert f"{lost}-incomplete" in removed and f"{base}-removing" in removed
    assert driver.check() == [] and driver.leftovers() == []
    assert not os.path.exists(os.path.join(layers_dir, f"{lost}-incomplete"))
    # the store works on after the sweep, with the same ids
    driver.create(lost, None)
    assert driver.exists(lost)
