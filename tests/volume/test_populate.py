"""Copy-up: an empty volume gets the image's files (owners, modes, xattrs, links, devices);
a volume with data is untouched; nocopy and volumes-from copy nothing; a hostile image cannot
make the copy read or write outside its root."""

from __future__ import annotations

import os
import stat

import pytest
from fstest import (
    apply,
    assert_same_tree,
    chown,
    create_device,
    create_dir,
    create_fifo,
    create_file,
    hardlink,
    set_xattr,
    snapshot_tree,
    symlink,
)

from lamina import errdefs
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.resolve import populate_volumes, resolve_mounts
from lamina.volume.populate import populate_from_image

pytestmark = pytest.mark.privileged


@pytest.fixture
def image_root(tmp_path) -> str:
    root = tmp_path / "rootfs"
    root.mkdir()
    apply(str(root),
          create_dir("var"), create_dir("var/lib"), create_dir("var/lib/app", 0o750),
          chown("var/lib/app", 999, 998),
          create_file("var/lib/app/config", b"key=value\n", 0o640), chown("var/lib/app/config", 999, 998),
          create_file("var/lib/app/tool", b"#!/bin/sh\n", 0o4755),
          create_dir("var/lib/app/sub"), create_dir("var/lib/app/sub/deeper", 0o700), create_file("var/lib/app/sub/deeper/big", os.urandom(300000)),
          create_dir("var/lib/app/sticky", 0o1777),
          symlink("config", "var/lib/app/link"), symlink("/etc/passwd", "var/lib/app/absolute-link"),
          hardlink("var/lib/app/config", "var/lib/app/config-again"),
          set_xattr("var/lib/app/config", "user.colour", b"blue"),
          create_fifo("var/lib/app/pipe", 0o600),
          create_device("var/lib/app/null", 1, 3, mode=0o666),
          create_file("etc-file", b"a file, not a directory"),
          create_dir("empty", 0o711), chown("empty", 5, 6))
    return str(root)


def _volume_dir(tmp_path, name: str = "volume") -> str:
    path = tmp_path / name / "_data"
    path.mkdir(parents=True)
    return str(path)


def test_an_empty_volume_receives_the_images_files(image_root: str, tmp_path) -> None:
    volume = _volume_dir(tmp_path)
    assert populate_from_image(volume, image_root, "/var/lib/app") is True
    assert_same_tree(os.path.join(image_root, "var/lib/app"), volume)
    root = os.stat(volume)
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (999, 998, 0o750)
    source = os.stat(os.path.join(image_root, "var/lib/app/config"))
    copied = os.stat(os.path.join(volume, "config"))
    assert copied.st_mtime_ns == source.st_mtime_ns
    assert copied.st_ino == os.stat(os.path.join(volume, "config-again")).st_ino


def test_an_empty_image_directory_still_gives_its_owner_and_mode(image_root: str, tmp_path) -> None:
    volume = _volume_dir(tmp_path)
    assert populate_from_image(volume, image_root, "/empty")
    info = os.stat(volume)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (5, 6, 0o711)
    assert os.listdir(volume) == []


def test_a_volume_with_data_is_not_touched(image_root: str, tmp_path) -> None:
    volume = _volume_dir(tmp_path)
    apply(volume, create_file("mine", b"keep me"))
    before = snapshot_tree(volume, include_root=True)
    assert populate_from_image(volume, image_root, "/var/lib/app") is False
    assert snapshot_tree(volume, include_root=True) == before


def test_a_missing_destination_copies_nothing(image_root: str, tmp_path) -> None:
    volume = _volume_dir(tmp_path)
    assert populate_from_image(volume, image_root, "/not/there") is False
    assert os.listdir(volume) == []


def test_a_volume_over_a_file_is_refused(image_root: str, tmp_path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="cannot mount volume over existing file, file exists /etc-file"):
        populate_from_image(_volume_dir(tmp_path), image_root, "/etc-file")


def test_a_symlink_in_the_image_cannot_send_the_copy_to_the_host(image_root: str, tmp_path) -> None:
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "password").write_text("hunter2")
    apply(image_root, symlink(str(secret), "escape"), symlink("../../../../../../" + str(secret), "dotdot"),
          create_dir("inside"), create_file("inside/ok", b"inside"))
    # absolute and ..-laden links resolve inside the root: the host directory is never read
    for destination in ("/escape", "/dotdot"):
        volume = _volume_dir(tmp_path, destination.strip("/"))
        assert populate_from_image(volume, image_root, destination) is False
        assert os.listdir(volume) == []
    # a link that stays inside the root is followed, like in the container
    apply(image_root, symlink("/inside", "relinked"))
    volume = _volume_dir(tmp_path, "relinked")
    assert populate_from_image(volume, image_root, "/relinked") is True
    assert os.listdir(volume) == ["ok"]


def test_populate_volumes_follows_copy_data(volumes: VolumeServiceImpl, image_root: str) -> None:
    resolved = resolve_mounts({}, {"Binds": ["copied:/var/lib/app", "skipped:/var/lib/app/sub:nocopy",
                                             "full:/empty"]},
                              None, volumes, "c1")
    full = volumes.inspect("full")["Mountpoint"]
    open(os.path.join(full, "existing"), "w").close()
    assert populate_volumes(resolved, image_root, volumes, "c1") == ["copied"]
    assert "config" in os.listdir(volumes.inspect("copied")["Mountpoint"])
    assert os.listdir(volumes.inspect("skipped")["Mountpoint"]) == []
    assert os.listdir(full) == ["existing"]


def test_a_tmpfs_volume_is_mounted_for_the_copy(volumes: VolumeServiceImpl, image_root: str) -> None:
    resolved = resolve_mounts({}, {"Mounts": [{"Type": "volume", "Source": "fast", "Target": "/var/lib/app",
                                               "VolumeOptions": {"DriverConfig": {"Options": {
                                                   "type": "tmpfs", "device": "tmpfs"}}}}]},
                              None, volumes, "c1")
    assert populate_volumes(resolved, image_root, volumes, "c1") == ["fast"]
    # the copy went into the tmpfs, not into the directory below it; like Docker, the tmpfs
    # (and the copy) is gone once the last user unmounts it
    data = volumes.inspect("fast")["Mountpoint"]
    assert os.listdir(data) == []
    assert volumes.store.drivers["local"].holders("fast") == []
