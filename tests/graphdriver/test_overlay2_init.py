"""overlay2 init layers written without a mount (``lamina.graphdriver.overlay2_init``): the
same tree as the mount makes (types, modes, owners, link targets, extended attributes but
overlayfs' own), for images with and without the placeholders, with opaque directories and
hidden entries; a mount where the layers are not read exactly (a whiteout or a symlink on the
way), with the layer left empty."""

from __future__ import annotations

import os
import stat
import types

import pytest

from lamina.graphdriver.overlay2 import Overlay2Driver
from lamina.layer.mounts import INIT_PATHS, MountStore

from . import layers as L

pytestmark = pytest.mark.privileged


class _MountOnly:
    """The driver as a caller sees it without ``write_init_layer``: the init layer is mounted."""

    def __init__(self, driver: Overlay2Driver) -> None:
        self._driver = driver

    def get(self, id: str, **options: object) -> str:
        return self._driver.get(id, **options)

    def put(self, id: str) -> None:
        self._driver.put(id)


def _tree(root: str) -> dict[str, tuple]:
    """What a mount and the writer must agree on, by path (times aside)."""
    out = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            xattrs = {key: os.getxattr(path, key, follow_symlinks=False)
                      for key in os.listxattr(path, follow_symlinks=False) if not key.startswith("trusted.overlay.")}
            target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            out[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                info.st_uid, info.st_gid, target, xattrs)
    return out


def _image(driver: Overlay2Driver, layers: list) -> str:
    """Layers made by the functions in ``layers`` (each gets its diff directory), bottom first;
    the top layer's id."""
    parent = None
    for build in layers:
        id = L.new_id()
        driver.create(id, parent)
        build(os.path.join(driver.home, id, "diff"))
        parent = id
    return parent


def _both(driver: Overlay2Driver, top: str | None) -> tuple[bool, dict, dict]:
    """(written without a mount, that tree, the tree a mount makes) of two init layers on ``top``."""
    written, mounted = L.new_id(), L.new_id()
    driver.create(written, top)
    driver.create(mounted, top)
    done = driver.write_init_layer(written, INIT_PATHS)
    MountStore._setup_init_layer(types.SimpleNamespace(driver=_MountOnly(driver)), mounted)
    return (done, _tree(os.path.join(driver.home, written, "diff")),
            _tree(os.path.join(driver.home, mounted, "diff")))


def _busybox_like(diff: str) -> None:
    for name, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("var", 0o755)):
        os.mkdir(os.path.join(diff, name), mode)
        os.chmod(os.path.join(diff, name), mode)
    os.chown(os.path.join(diff, "etc"), 12, 34)
    os.chmod(os.path.join(diff, "etc"), 0o750)
    os.setxattr(os.path.join(diff, "etc"), "user.origin", b"image")
    with open(os.path.join(diff, "etc", "passwd"), "w") as handle:
        handle.write("root:x:0:0::/root:/bin/sh\n")


def _with_hosts_and_proc(diff: str) -> None:
    os.mkdir(os.path.join(diff, "etc"))
    with open(os.path.join(diff, "etc", "hosts"), "w") as handle:
        handle.write("127.0.0.1 localhost\n")
    os.symlink("/proc/self/mounts", os.path.join(diff, "etc", "mtab"))
    os.mkdir(os.path.join(diff, "proc"), 0o500)


def _opaque_etc(diff: str) -> None:
    os.mkdir(os.path.join(diff, "etc"), 0o711)
    os.chmod(os.path.join(diff, "etc"), 0o711)
    os.setxattr(os.path.join(diff, "etc"), "trusted.overlay.opaque", b"y")


def _dev_as_a_file_below(diff: str) -> None:
    with open(os.path.join(diff, "dev"), "w") as handle:
        handle.write("not a directory\n")


def _dev_directory(diff: str) -> None:
    os.mkdir(os.path.join(diff, "dev"), 0o700)
    os.chmod(os.path.join(diff, "dev"), 0o700)


@pytest.mark.parametrize("stack", [
    pytest.param([], id="no-layers-below"),
    pytest.param([lambda diff: None], id="empty-image"),
    pytest.param([_busybox_like], id="busybox-like"),
    pytest.param([_busybox_like, _with_hosts_and_proc], id="image-with-some-placeholders"),
    pytest.param([_with_hosts_and_proc, _opaque_etc], id="opaque-etc-hides-the-hosts-below"),
    pytest.param([_dev_as_a_file_below, _dev_directory], id="a-directory-over-a-file"),
])
def test_the_init_layer_written_without_a_mount_is_the_mounted_one(overlay2, stack) -> None:
    top = _image(overlay2, stack) if stack else None
    done, written, mounted = _both(overlay2, top)
    assert done
    assert written == mounted
    assert {"etc/resolv.conf", "etc/hostname", "dev/console"} <= set(written)  # every image here lacks them


def _etc_symlink(diff: str) -> None:
    os.mkdir(os.path.join(diff, "private-etc"))
    os.symlink("private-etc", os.path.join(diff, "etc"))


def _dev_whiteout(diff: str) -> None:
    os.mknod(os.path.join(diff, "dev"), stat.S_IFCHR | 0o600, os.makedev(0, 0))


@pytest.mark.parametrize("stack", [
    pytest.param([_etc_symlink], id="etc-is-a-symlink"),
    pytest.param([_busybox_like, _dev_whiteout], id="dev-removed-by-a-whiteout"),
])
def test_what_the_writer_does_not_read_exactly_is_left_to_the_mount(overlay2, stack) -> None:
    top = _image(overlay2, stack)
    written = L.new_id()
    overlay2.create(written, top)
    assert not overlay2.write_init_layer(written, INIT_PATHS)
    assert os.listdir(os.path.join(overlay2.home, written, "diff")) == []  # left empty for the mount
    done, written_tree, mounted = _both(overlay2, top)
    assert not done and written_tree == {}
    assert mounted  # the mount made the placeholders


def test_a_symlink_in_the_image_is_never_followed(overlay2, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    top = _image(overlay2, [lambda diff: os.symlink(str(outside), os.path.join(diff, "dev"))])
    written = L.new_id()
    overlay2.create(written, top)
    assert not overlay2.write_init_layer(written, INIT_PATHS)
    assert list(outside.iterdir()) == []


def test_an_error_while_writing_leaves_the_layer_empty_for_the_mount(overlay2, monkeypatch) -> None:
    from lamina.graphdriver import overlay2_init

    top = _image(overlay2, [_busybox_like])
    written = L.new_id()
    overlay2.create(written, top)

    def refused(*arguments, **options):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(overlay2_init.os, "setxattr", refused)  # the copy-up of /etc's user.origin
    assert not overlay2.write_init_layer(written, INIT_PATHS)
    assert os.listdir(os.path.join(overlay2.home, written, "diff")) == []
