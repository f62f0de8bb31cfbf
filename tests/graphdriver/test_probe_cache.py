"""The probe cache of driver selection: a passed probe is recorded in the driver's directory
and trusted while the kernel release and the directory are the same."""

from __future__ import annotations

import json
import os

import pytest

from lamina.graphdriver import registry
from lamina.graphdriver.fuseoverlayfs import FuseOverlayfsDriver
from lamina.graphdriver.overlay2 import Overlay2Driver
from lamina.graphdriver.vfs import VfsDriver

pytestmark = pytest.mark.privileged


@pytest.fixture
def probes(monkeypatch):
    """Count the real probes of every driver."""
    counted: list[str] = []
    for name, driver in registry.DRIVERS.items():
        real = driver.probe

        def counting(home: str, real=real, name=name) -> str | None:
            counted.append(name)
            return real(home)

        monkeypatch.setattr(driver, "probe", counting)
    return counted


def _record(data_root: str, name: str = "overlay2") -> str:
    return os.path.join(data_root, name, registry.PROBE_RECORD)


def _usable(data_root: str) -> None:
    if registry.skip_reason(data_root, "overlay2") is not None:
        pytest.skip("overlay2 unusable here")


def test_a_passed_probe_is_recorded_and_trusted_next_time(data_root, probes) -> None:
    _usable(data_root)
    probes.clear()
    assert isinstance(registry.select(data_root).driver, Overlay2Driver)
    assert probes == ["overlay2"]
    home = os.path.join(data_root, "overlay2")
    with open(_record(data_root)) as handle:
        record = json.load(handle)
    status = os.stat(home)
    assert record == {"Kernel": os.uname().release, "Device": status.st_dev, "Inode": status.st_ino}
    assert isinstance(registry.select(data_root).driver, Overlay2Driver)
    assert isinstance(registry.select(data_root, "overlay2").driver, Overlay2Driver)
    assert probes == ["overlay2"]


def test_the_record_holds_no_layers_and_leaves_the_driver_unchanged(data_root) -> None:
    _usable(data_root)
    driver = registry.select(data_root).driver
    assert os.path.exists(_record(data_root))
    assert registry.drivers_holding_layers(data_root) == []
    assert driver.list_ids() == []
    assert driver.check() == []
    assert driver.sweep() == []
    assert os.path.exists(_record(data_root))


@pytest.mark.parametrize("damage", ["another kernel", "another filesystem", "truncated", "not json"])
def test_a_record_that_does_not_match_probes_again(data_root, probes, damage) -> None:
    _usable(data_root)
    registry.select(data_root)
    path = _record(data_root)
    if damage in ("another kernel", "another filesystem"):
        with open(path) as handle:
            record = json.load(handle)
        if damage == "another kernel":
            record["Kernel"] = "0.0.0-other"
        else:  # the data root now lives on another device
            record["Device"] += 1
        with open(path, "w") as handle:
            json.dump(record, handle)
    elif damage == "truncated":
        with open(path, "r+") as handle:
            handle.truncate(5)
    else:
        with open(path, "w") as handle:
            handle.write("[1, 2")
    probes.clear()
    assert isinstance(registry.select(data_root).driver, Overlay2Driver)
    assert probes == ["overlay2"]
    status = os.stat(os.path.join(data_root, "overlay2"))
    with open(path) as handle:
        assert json.load(handle) == {"Kernel": os.uname().release, "Device": status.st_dev, "Inode": status.st_ino}


def test_a_failed_probe_is_not_recorded(data_root, monkeypatch) -> None:
    monkeypatch.setattr(Overlay2Driver, "probe", classmethod(lambda cls, home: "a test says no"))
    monkeypatch.setattr(FuseOverlayfsDriver, "probe", classmethod(lambda cls, home: "a test says no"))
    selection = registry.select(data_root)
    assert isinstance(selection.driver, VfsDriver)
    assert ("overlay2", "a test says no") in selection.skipped
    assert not os.path.exists(_record(data_root))
    assert os.path.exists(_record(data_root, "vfs"))


def test_an_unusable_driver_with_a_stale_record_is_still_refused_after_a_kernel_change(data_root, monkeypatch) -> None:
    _usable(data_root)
    registry.select(data_root)
    with open(_record(data_root)) as handle:
        record = json.load(handle)
    record["Kernel"] = "0.0.0-other"
    with open(_record(data_root), "w") as handle:
        json.dump(record, handle)
    monkeypatch.setattr(Overlay2Driver, "probe", classmethod(lambda cls, home: "overlay is gone"))
    selection = registry.select(data_root)
    assert selection.driver.name != "overlay2"  # fuse-overlayfs where it works, else vfs
    assert ("overlay2", "overlay is gone") in selection.skipped
