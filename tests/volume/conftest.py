"""Volume fixtures: a volume service on the test's own data root; every mount made under the
test's directory is undone in teardown, even when the test failed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lamina import mount as lmount
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.store import VolumeStore


@pytest.fixture
def data_root(tmp_path) -> Iterator[str]:
    root = tmp_path / "data"
    root.mkdir()
    try:
        yield str(root)
    finally:
        if os.geteuid() == 0:
            lmount.unmount_all_under(str(tmp_path))


@pytest.fixture
def store(data_root: str) -> VolumeStore:
    return VolumeStore(os.path.join(data_root, "volumes"))


@pytest.fixture
def volumes(store: VolumeStore) -> VolumeServiceImpl:
    return VolumeServiceImpl(store)
