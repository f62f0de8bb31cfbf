"""The chowned layer copies of ``--userns-remap`` (:mod:`lamina.graphdriver.remapcopy`) on real
overlay2 and vfs layers: what a copy holds, that it never reaches out of its layer, what an
owner outside the range gives, what a crash leaves and who removes it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.archive import OPAQUE_XATTR
from lamina.graphdriver import registry
from lamina.graphdriver.overlay2 import MAX_DEPTH, Overlay2Driver, probe
from lamina.graphdriver.remapcopy import RemapCopies, copies_home, copies_size
from lamina.idmap import IDMap, IdentityMapping

from fstest import assert_same_tree, snapshot_tree

from .layers import char_device, directory, file, hardlink, layer_tar, new_id, opaque, reader, symlink, whiteout

pytestmark = pytest.mark.privileged  # chown, whiteout devices, trusted.* xattrs, mounts

START = 300000
MAPPING = IdentityMapping((IDMap(0, START, 65536),), (IDMap(0, START + 1000, 65536),))


def _layer(driver, parent: str | None, *entries) -> str:
    id = new_id()
    driver.create(id, parent)
    driver.apply_diff(id, parent, reader(layer_tar(*entries)))
    return id


def _shifted(tree):
    """``tree`` with every owner as MAPPING puts it on the host."""
    from dataclasses import replace

    return {path: replace(node, uid=node.uid + START, gid=node.gid + START + 1000) for path, node in tree.items()}


def test_a_copy_shifts_every_owner_and_keeps_modes_xattrs_links_whiteouts_and_holes(overlay2, data_root) -> None:
    base = _layer(overlay2, None, directory("etc"), file("etc/passwd", "root:x:0:0\n"),
                  file("bin/su", b"\x7fELF", mode=0o4755), file("bin/wall", b"w", mode=0o2755, gid=5),
                  hardlink("bin/su-again", "bin/su"), symlink("bin/sh", "/bin/su"),
                  file("home/user/notes", "mine", mode=0o600, uid=1000, gid=1000,
                       xattrs={"user.note": b"kept"}),
                  directory("var/opaque"), file("var/opaque/kept"))
    top = _layer(overlay2, base, whiteout("etc/passwd"), opaque("var/opaque"), char_device("dev/null", 1, 3))
    # a sparse file: 8 MiB with one page of data in the middle
    sparse = os.path.join(overlay2.diff_path(top), "sparse")
    with open(sparse, "wb") as handle:
        handle.seek(4 << 20)
        handle.write(b"x" * 4096)
        handle.truncate(8 << 20)
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    assert store.home == os.path.join(data_root, f"{START}.{START + 1000}", "overlay2")
    for id in (base, top):
        short_id = open(os.path.join(overlay2.home, id, "link")).read()
        copy = store.ensure(id, overlay2.diff_path(id), short_id, MAPPING)
        assert copy == os.path.join(store.home, id, "diff")
        assert os.readlink(os.path.join(store.home, "l", short_id)) == f"../{id}/diff"
        assert_same_tree(_shifted(snapshot_tree(overlay2.diff_path(id))), snapshot_tree(copy))
        root = os.lstat(copy)
        assert (root.st_uid, root.st_gid) == (START, START + 1000)
    copied = os.path.join(store.home, base, "diff")
    assert stat.S_IMODE(os.lstat(os.path.join(copied, "bin/su")).st_mode) == 0o4755  # set after the chown
    assert stat.S_IMODE(os.lstat(os.path.join(copied, "bin/wall")).st_mode) == 0o2755
    assert os.lstat(os.path.join(copied, "bin/su")).st_ino == os.lstat(os.path.join(copied, "bin/su-again")).st_ino
    top_copy = os.path.join(store.home, top, "diff")
    whiteout_device = os.lstat(os.path.join(top_copy, "etc/passwd"))
    assert stat.S_ISCHR(whiteout_device.st_mode) and whiteout_device.st_rdev == 0
    assert os.getxattr(os.path.join(top_copy, "var/opaque"), OPAQUE_XATTR) == b"y"
    copied_sparse = os.lstat(os.path.join(top_copy, "sparse"))
    assert copied_sparse.st_size == 8 << 20 and copied_sparse.st_blocks * 512 < 1 << 20
    with open(os.path.join(top_copy, "sparse"), "rb") as handle:
        handle.seek(4 << 20)
        assert handle.read(4097) == b"x" * 4096 + b"\0"
    # the layers themselves are untouched, and df finds the copies by their size files
    assert os.lstat(os.path.join(overlay2.diff_path(base), "bin/su")).st_uid == 0
    assert copies_size(data_root, "overlay2") == sum(
        int(open(os.path.join(store.home, id, "size")).read()) for id in (base, top)) > 0


def test_a_copy_never_follows_a_symlink_out_of_its_layer(overlay2, data_root, tmp_path) -> None:
    victim = tmp_path / "victim"
    (victim / "etc").mkdir(parents=True)
    (victim / "etc" / "passwd").write_text("victim: do not touch\n")
    layer = _layer(overlay2, None, symlink("etc", str(victim / "etc")), symlink("up", "../../../../victim"),
                   symlink("passwd", str(victim / "etc" / "passwd")), directory("dir"),
                   symlink("dir/escape", "/"), hardlink("dir/hard", "passwd"))
    before = snapshot_tree(str(victim), include_root=True)
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    copy = store.ensure(layer, overlay2.diff_path(layer), "A" * 26, MAPPING)
    assert snapshot_tree(str(victim), include_root=True) == before
    assert os.readlink(os.path.join(copy, "etc")) == str(victim / "etc")
    assert os.lstat(os.path.join(copy, "etc")).st_uid == START  # the link itself, not its target
    assert os.lstat(victim / "etc" / "passwd").st_uid == 0


def test_an_owner_outside_the_range_is_refused_naming_the_file_and_the_range(overlay2, data_root) -> None:
    layer = _layer(overlay2, None, file("ok"), directory("deep/er"), file("deep/er/far", uid=70000, gid=70000))
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    with pytest.raises(errdefs.InvalidArgument) as caught:
        store.ensure(layer, overlay2.diff_path(layer), "A" * 26, MAPPING)
    text = str(caught.value)
    assert "/deep/er/far" in text and "uid 70000" in text and "65536 uids and 65536 gids" in text, text
    assert sorted(os.listdir(store.home)) == [".lock", "l"]
    assert os.listdir(os.path.join(store.home, "l")) == []


def test_vfs_shifts_a_remapped_read_write_layer_and_refuses_an_owner_outside_the_range(data_root) -> None:
    home = registry.driver_home(data_root, "vfs")
    vfs = registry.DRIVERS["vfs"](home)
    image = _layer(vfs, None, file("bin/su", b"s", mode=0o4755), file("home/x", uid=7, gid=8))
    init = new_id()
    vfs.create(init, image)
    container = new_id()
    vfs.create(container, init, read_write=True, idmap=MAPPING)
    assert_same_tree(_shifted(snapshot_tree(vfs.diff_path(init))), snapshot_tree(vfs.get(container, idmap=MAPPING, copies=True)))
    with pytest.raises(errdefs.FailedPrecondition, match="cannot be idmapped"):
        vfs.get(container, idmap=MAPPING)
    # the container's changes compare its host ids with the image's container ids
    assert vfs.changes(container, init, MAPPING.to_container) == []
    os.chown(os.path.join(vfs.diff_path(container), "home/x"), START + 9, START + 1000 + 8)
    assert [(change.path, change.kind.value) for change in vfs.changes(container, init, MAPPING.to_container)] == [
        ("/home", "C"), ("/home/x", "C")]
    far = _layer(vfs, None, file("far", uid=70000))
    with pytest.raises(errdefs.InvalidArgument, match="/far is owned by uid 70000.*65536 uids"):
        vfs.create(new_id(), far, read_write=True, idmap=MAPPING)
    assert not os.path.exists(os.path.join(data_root, f"{START}.{START + 1000}"))
    assert all(not name.endswith("-incomplete") for name in os.listdir(os.path.join(home, "dir")))


def test_a_remapped_mount_stacks_the_copies_and_remove_deletes_them(overlay2, data_root) -> None:
    base = _layer(overlay2, None, file("etc/hostname", "image\n"), file("owned", uid=3, gid=4))
    container = new_id()
    overlay2.create(container, base)
    (mount,) = overlay2.mounts(container, MAPPING, copies=True)
    assert mount.idmap is None and mount.chdir == copies_home(data_root, MAPPING, "overlay2")
    merged = overlay2.get(container, idmap=MAPPING, copies=True)
    try:
        owned = os.lstat(os.path.join(merged, "owned"))
        assert (owned.st_uid, owned.st_gid) == (START + 3, START + 1000 + 4)
        with open(os.path.join(merged, "written"), "w") as handle:
            handle.write("upper")
    finally:
        overlay2.put(container)
    assert os.path.exists(os.path.join(overlay2.diff_path(container), "written"))
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    assert store.ids() == [base]
    assert overlay2.check() == []
    overlay2.remove(container)
    overlay2.remove(base)
    assert store.ids() == [] and os.listdir(os.path.join(store.home, "l")) == []


def test_a_copy_whose_layer_is_gone_is_reported_and_swept(overlay2, data_root) -> None:
    layer = _layer(overlay2, None, file("a"))
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    store.ensure(layer, overlay2.diff_path(layer), "B" * 26, MAPPING)
    # the layer vanishes behind the copies' back (a crash, an older lamina)
    lmount.unmount_all_under(overlay2.home)
    os.rename(os.path.join(overlay2.home, layer), os.path.join(overlay2.home, layer + "-removing"))
    assert any("its layer is gone" in problem for problem in overlay2.check())
    removed = overlay2.sweep()
    assert os.path.join(store.home, layer) in removed
    assert store.ids() == [] and os.listdir(os.path.join(store.home, "l")) == []
    assert overlay2.check() == []


def test_a_copy_without_its_short_link_is_reported_relinked_by_a_mount_and_else_swept(overlay2, data_root) -> None:
    base = _layer(overlay2, None, file("a", uid=2))
    container = new_id()
    overlay2.create(container, base)
    overlay2.get(container, idmap=MAPPING, copies=True)
    overlay2.put(container)
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    short_id = open(os.path.join(overlay2.home, base, "link")).read()
    os.unlink(os.path.join(store.home, "l", short_id))
    assert [problem for problem in overlay2.check() if f"short link l/{short_id} is missing" in problem]
    merged = overlay2.get(container, idmap=MAPPING, copies=True)
    try:
        assert os.lstat(os.path.join(merged, "a")).st_uid == START + 2
    finally:
        overlay2.put(container)
    assert overlay2.check() == []
    os.unlink(os.path.join(store.home, "l", short_id))
    assert os.path.join(store.home, base) in overlay2.sweep()
    assert store.ids() == [] and overlay2.check() == []


def test_a_copy_killed_midway_leaves_what_the_sweep_and_the_next_copy_remove(overlay2, data_root) -> None:
    entries = [file(f"d{index % 50}/f{index}", os.urandom(4096)) for index in range(6000)]
    layer = _layer(overlay2, None, *entries)
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    script = textwrap.dedent(f"""
        from lamina.graphdriver.remapcopy import RemapCopies
        from lamina.idmap import IDMap, IdentityMapping
        mapping = IdentityMapping((IDMap(0, {START}, 65536),), (IDMap(0, {START + 1000}, 65536),))
        RemapCopies({store.home!r}).ensure({layer!r}, {overlay2.diff_path(layer)!r}, {"C" * 26!r}, mapping)
    """)
    incomplete = os.path.join(store.home, layer + "-incomplete", "diff")
    for _attempt in range(5):
        child = subprocess.Popen([sys.executable, "-c", script])
        try:
            while child.poll() is None and not os.path.isdir(os.path.join(incomplete, "d1")):
                pass
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        if os.path.isdir(incomplete):
            break
        store.remove(layer)  # it finished first: try again
    else:
        pytest.fail("the copy always finished before it could be killed")
    assert store.ids() == []
    problems = overlay2.check()
    assert any("leftover work in progress" in problem and layer in problem for problem in problems), problems
    assert overlay2.leftovers()  # so the start-up sweep runs
    removed = overlay2.sweep()
    assert any(path.endswith(layer + "-incomplete") for path in removed), removed
    assert overlay2.check() == []
    # the next copy after a crash that the sweep did not see yet also starts over
    os.makedirs(incomplete)
    copy = store.ensure(layer, overlay2.diff_path(layer), "C" * 26, MAPPING)
    assert len(os.listdir(os.path.join(copy, "d1"))) == 120
    assert not os.path.exists(os.path.dirname(incomplete))


def test_copies_made_at_once_by_two_processes_are_made_once(overlay2, data_root) -> None:
    layer = _layer(overlay2, None, *[file(f"d{index % 20}/f{index}", os.urandom(1024)) for index in range(2000)])
    store = RemapCopies.of(data_root, MAPPING, "overlay2")
    script = textwrap.dedent(f"""
        import os
        from lamina.graphdriver.remapcopy import RemapCopies
        from lamina.idmap import IDMap, IdentityMapping
        mapping = IdentityMapping((IDMap(0, {START}, 65536),), (IDMap(0, {START + 1000}, 65536),))
        copy = RemapCopies({store.home!r}).ensure({layer!r}, {overlay2.diff_path(layer)!r}, {"D" * 26!r}, mapping)
        print(os.stat(copy).st_ino)
    """)
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert outputs[0] == outputs[1]  # the same copy, made by one of them
    assert store.ids() == [layer] and store.leftovers() == []
    assert sorted(os.listdir(os.path.join(store.home, "l"))) == ["D" * 26]


def test_a_deep_stack_of_copies_fits_a_page_with_a_long_home(tmp_path) -> None:
    home = str(tmp_path / ("x" * 200) / ("y" * 200) / "overlay2")
    if probe(home) is not None:
        pytest.skip("overlay2 unusable here")
    driver = Overlay2Driver(home)
    try:
        ids = [_layer(driver, None, file("f0", uid=1))]
        for _ in range(MAX_DEPTH):
            ids.append(new_id())
            driver.create(ids[-1], ids[-2])
        (mount,) = driver.mounts(ids[-1], MAPPING, copies=True)
        assert "upperdir=../../overlay2/" + ids[-1] + "/diff" in mount.options
        path = driver.get(ids[-1], idmap=MAPPING, copies=True)
        try:
            assert os.lstat(os.path.join(path, "f0")).st_uid == START + 1
            with open(os.path.join(path, "written"), "w") as handle:
                handle.write("x")
        finally:
            driver.put(ids[-1])
        assert os.path.exists(f"{home}/{ids[-1]}/diff/written")
    finally:
        lmount.unmount_all_under(str(tmp_path))
