"""Driver selection: explicit name > the driver holding the data root's layers > priority."""

from __future__ import annotations

import logging
import os

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.graphdriver import registry
from lamina.graphdriver.fuseoverlayfs import FuseOverlayfsDriver
from lamina.graphdriver.overlay2 import Overlay2Driver
from lamina.graphdriver.vfs import VfsDriver
from lamina.mount import Mount

from . import layers as L

pytestmark = pytest.mark.privileged


def test_priority_and_registered_drivers_are_data():
    assert registry.PRIORITY == ("overlay2", "fuse-overlayfs", "btrfs", "zfs", "vfs")
    assert sorted(registry.DRIVERS) == ["fuse-overlayfs", "overlay2", "vfs"]
    with pytest.raises(TypeError):
        registry.DRIVERS["other"] = VfsDriver  # type: ignore[index]


def test_first_usable_driver_in_priority_order(data_root):
    if registry.skip_reason(data_root, "overlay2") is not None:
        pytest.skip("overlay2 unusable here")
    selection = registry.select(data_root, None)
    assert isinstance(selection.driver, Overlay2Driver)
    assert selection.driver.home == os.path.join(data_root, "overlay2")
    assert selection.skipped == ()


def test_explicit_name_wins(data_root):
    selection = registry.select(data_root, "vfs")
    assert isinstance(selection.driver, VfsDriver)
    assert selection.driver.home == os.path.join(data_root, "vfs")


def test_the_driver_holding_layers_wins_over_priority(data_root):
    VfsDriver(os.path.join(data_root, "vfs")).create(L.new_id(), None)
    # an empty overlay2 directory holds no layers and does not count
    os.makedirs(os.path.join(data_root, "overlay2", "l"))
    selection = registry.select(data_root, None)
    assert isinstance(selection.driver, VfsDriver)


def test_several_drivers_holding_layers_need_an_explicit_choice(data_root):
    VfsDriver(os.path.join(data_root, "vfs")).create(L.new_id(), None)
    Overlay2Driver(os.path.join(data_root, "overlay2")).create(L.new_id(), None)
    with pytest.raises(errdefs.FailedPrecondition, match=r"several storage drivers \(overlay2, vfs\).*--storage-driver"):
        registry.select(data_root, None)
    assert isinstance(registry.select(data_root, "vfs").driver, VfsDriver)


def test_layers_of_a_driver_lamina_lacks_are_reported(data_root):
    os.makedirs(os.path.join(data_root, "btrfs", "subvolumes", "abc"))
    with pytest.raises(errdefs.FailedPrecondition, match="storage driver 'btrfs', which is not implemented"):
        registry.select(data_root, None)


def test_unknown_name(data_root):
    with pytest.raises(errdefs.InvalidArgument) as caught:
        registry.select(data_root, "x")
    assert str(caught.value) == "unknown storage driver 'x' (available: overlay2, fuse-overlayfs, vfs)"


def test_known_but_unimplemented_name(data_root):
    with pytest.raises(errdefs.NotImplemented, match="'zfs' is not implemented by lamina"):
        registry.select(data_root, "zfs")


@pytest.fixture
def overlay_data_root(tmp_path):
    """A data root whose backing filesystem is overlayfs, where overlay2 cannot work."""
    for name in ("lower", "upper", "work", "merged"):
        os.mkdir(tmp_path / name)
    Mount(type="overlay", source="overlay", options=(
        f"lowerdir={tmp_path}/lower", f"upperdir={tmp_path}/upper", f"workdir={tmp_path}/work",
    )).mount(str(tmp_path / "merged"))
    try:
        yield str(tmp_path / "merged" / "data")
    finally:
        lmount.unmount_all_under(str(tmp_path))


def test_explicit_but_unusable_driver(overlay_data_root):
    with pytest.raises(errdefs.FailedPrecondition, match="storage driver 'overlay2' cannot be used in .*overlayfs"):
        registry.select(overlay_data_root, "overlay2")


def test_unusable_drivers_are_skipped_with_reasons(overlay_data_root, caplog, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no fuse-overlayfs program
    with caplog.at_level(logging.INFO, logger="lamina.graphdriver"):
        selection = registry.select(overlay_data_root, None)
    assert isinstance(selection.driver, VfsDriver)
    reasons = dict(selection.skipped)
    assert list(reasons) == ["overlay2", "fuse-overlayfs", "btrfs", "zfs"]
    assert "backing filesystem is overlayfs" in reasons["overlay2"]
    assert reasons["fuse-overlayfs"] == "fuse-overlayfs is not installed (Debian package fuse-overlayfs)"
    assert reasons["btrfs"] == "backing filesystem is overlayfs, not btrfs"
    assert reasons["zfs"] == "backing filesystem is overlayfs, not zfs"
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    for name, reason in selection.skipped:
        assert f"storage driver {name} skipped: {reason}" in logged
    assert not os.path.exists(os.path.join(overlay_data_root, "overlay2"))


def test_fuse_overlayfs_is_the_fallback_where_overlay2_cannot_be_used(overlay_data_root):
    if FuseOverlayfsDriver.probe(os.path.join(str(overlay_data_root), "probe-only")) is not None:
        pytest.skip("fuse-overlayfs unusable here")
    selection = registry.select(overlay_data_root, None)
    assert isinstance(selection.driver, FuseOverlayfsDriver)
    assert [name for name, _ in selection.skipped] == ["overlay2"]


def test_a_data_root_holding_unusable_layers_is_an_error(overlay_data_root):
    os.makedirs(os.path.join(overlay_data_root, "overlay2", "0123"))
    with pytest.raises(errdefs.FailedPrecondition, match="holds layers of storage driver 'overlay2', which cannot be used"):
        registry.select(overlay_data_root, None)
