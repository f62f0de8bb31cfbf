"""overlay2 volatile mounts: the ``volatile`` option, the kernel's marker removed after a clean
unmount, a marker left by a process that died does not block the next mount."""

from __future__ import annotations

import logging
import os

import pytest

from lamina import mount as lmount
from lamina.graphdriver.overlay2 import Overlay2Driver
from lamina.graphdriver.vfs import VfsDriver

from . import layers as L

pytestmark = pytest.mark.privileged


def _options(target: str) -> set[str]:
    """The superblock options of the mount at ``target``."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == os.path.realpath(target):
                return set(fields[-1].split(","))
    raise AssertionError(f"{target} is not mounted")


def _is_volatile(target: str) -> bool:
    options = _options(target)
    return "volatile" in options or "fsync=volatile" in options  # newer kernels show the latter


def _marker(driver: Overlay2Driver, id: str) -> str:
    return os.path.join(driver.home, id, "work", "work", "incompat", "volatile")


def _volatile_supported() -> bool:
    release = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
    return release >= (5, 10)


def test_a_volatile_mount_is_cleaned_up_and_mounts_again_normally(overlay2) -> None:
    if not _volatile_supported():
        pytest.skip("overlayfs has no volatile option before Linux 5.10")
    base, child = L.new_id(), L.new_id()
    overlay2.create(base, None)
    overlay2.create(child, base)
    merged = overlay2.get(child, volatile=True)
    assert _is_volatile(merged)
    with open(os.path.join(merged, "file"), "w") as handle:
        handle.write("data")
    assert os.path.isdir(_marker(overlay2, child))
    overlay2.put(child)
    assert not os.path.exists(_marker(overlay2, child))
    merged = overlay2.get(child)
    try:
        assert not _is_volatile(merged)
        with open(os.path.join(merged, "file")) as handle:
            assert handle.read() == "data"
    finally:
        overlay2.put(child)


def test_a_marker_left_by_a_dead_process_does_not_block_the_next_mount(overlay2, caplog) -> None:
    if not _volatile_supported():
        pytest.skip("overlayfs has no volatile option before Linux 5.10")
    base, child = L.new_id(), L.new_id()
    overlay2.create(base, None)
    overlay2.create(child, base)
    merged = overlay2.get(child, volatile=True)
    lmount.unmount(merged, detach=True)  # what is left when the process that mounted it dies
    assert os.path.isdir(_marker(overlay2, child))
    other = Overlay2Driver(overlay2.home)
    with caplog.at_level(logging.WARNING, logger="lamina.graphdriver"):
        merged = other.get(child)
    try:
        assert "not unmounted cleanly" in caplog.text
        assert not _is_volatile(merged)
    finally:
        other.put(child)
    overlay2._references.clear()


def test_volatile_changes_nothing_for_a_read_only_or_base_layer(overlay2) -> None:
    base, child, grandchild = L.new_id(), L.new_id(), L.new_id()
    overlay2.create(base, None)
    assert overlay2.get(base, volatile=True) == os.path.join(overlay2.home, base, "diff")
    overlay2.put(base)
    overlay2.create(child, base)
    overlay2.create(grandchild, child)  # child is committed: mounted read-only, without upper
    merged = overlay2.get(child, volatile=True)
    try:
        assert not _is_volatile(merged)
    finally:
        overlay2.put(child)


def test_vfs_accepts_volatile(data_root) -> None:
    driver = VfsDriver(os.path.join(data_root, "vfs"))
    layer = L.new_id()
    driver.create(layer, None)
    assert driver.get(layer, volatile=True) == driver.get(layer)
