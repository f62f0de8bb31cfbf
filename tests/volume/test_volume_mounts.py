"""Volumes with driver options mount for real: tmpfs and bind volumes are mounted on ``_data``
by the first container that uses them and unmounted after the last; removal unmounts."""

from __future__ import annotations

import os

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.store import VolumeStore

pytestmark = pytest.mark.privileged


def _filesystem(path: str) -> str:
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == path:
                return fields[fields.index("-") + 1]
    return ""


def test_a_tmpfs_volume_is_mounted_while_in_use(volumes: VolumeServiceImpl) -> None:
    volume = volumes.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0770"})
    data = volume["Mountpoint"]
    assert not lmount.is_mountpoint(data)
    assert volumes.mount("scratch", "c1") == data
    assert _filesystem(data) == "tmpfs"
    assert oct(os.stat(data).st_mode & 0o7777) == "0o770"
    statvfs = os.statvfs(data)
    assert statvfs.f_blocks * statvfs.f_frsize == 1 << 20
    with open(os.path.join(data, "shared"), "w") as handle:
        handle.write("seen by both")
    assert volumes.mount("scratch", "c2") == data
    volumes.unmount("scratch", "c1")
    assert lmount.is_mountpoint(data), "the second user still holds the mount"
    with open(os.path.join(data, "shared")) as handle:
        assert handle.read() == "seen by both"
    volumes.unmount("scratch", "c2")
    assert not lmount.is_mountpoint(data)
    assert os.listdir(data) == []   # tmpfs data goes with the mount, as in Docker


def test_a_bind_volume_shows_its_device(volumes: VolumeServiceImpl, tmp_path) -> None:
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "from-host").write_text("hello")
    volume = volumes.create("bound", driver_opts={"type": "none", "device": str(host), "o": "bind"})
    data = volumes.mount("bound", "c1")
    assert data == volume["Mountpoint"]
    with open(os.path.join(data, "from-host")) as handle:
        assert handle.read() == "hello"
    (tmp_path / "host-dir" / "later").write_text("x")
    assert os.path.exists(os.path.join(data, "later"))
    # removing is refused while referenced, and unmounts when allowed
    volumes.acquire("bound", "c1")
    with pytest.raises(errdefs.Conflict):
        volumes.remove("bound")
    volumes.release("bound", "c1")
    volumes.remove("bound")
    assert not lmount.is_mountpoint(data) and not os.path.exists(data)
    assert (host / "from-host").read_text() == "hello", "removing a bind volume never deletes the host's files"


def test_a_mount_lost_by_a_reboot_is_mounted_again(volumes: VolumeServiceImpl, store: VolumeStore) -> None:
    volume = volumes.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    volumes.mount("scratch", "c1")
    lmount.unmount(volume["Mountpoint"])          # what a reboot does
    volumes.mount("scratch", "c2")
    assert lmount.is_mountpoint(volume["Mountpoint"])
    assert store.drivers["local"].holders("scratch") == ["c2"]
    volumes.unmount("scratch", "c2")
    assert not lmount.is_mountpoint(volume["Mountpoint"])


def test_a_device_that_does_not_mount_is_a_clear_error(volumes: VolumeServiceImpl) -> None:
    volumes.create("broken", driver_opts={"type": "nosuchfs", "device": "nothing"})
    with pytest.raises(errdefs.System, match="failed to mount local volume broken"):
        volumes.mount("broken", "c1")
    assert not lmount.is_mountpoint(volumes.inspect("broken")["Mountpoint"])
    volumes.remove("broken")


def test_plain_volumes_need_no_mount(volumes: VolumeServiceImpl) -> None:
    volume = volumes.create("plain")
    assert volumes.mount("plain", "c1") == volume["Mountpoint"]
    assert not lmount.is_mountpoint(volume["Mountpoint"])
    volumes.unmount("plain", "c1")
    volumes.unmount("gone", "c1")   # unknown volumes: nothing to do
