"""Fixtures for the graph driver suites: one fresh data root and driver instance per test,
parametrised over every driver lamina registers, with every mount under the test's temporary
directory detached in teardown even when the test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lamina import mount as lmount
from lamina.graphdriver import registry


@pytest.fixture
def data_root(tmp_path) -> Iterator[str]:
    root = str(tmp_path / "data")
    os.mkdir(root, 0o711)
    try:
        yield root
    finally:
        lmount.unmount_all_under(str(tmp_path))


@pytest.fixture(params=sorted(registry.DRIVERS), ids=lambda name: name)
def driver(request, data_root):
    name = request.param
    home = registry.driver_home(data_root, name)
    reason = registry.DRIVERS[name].probe(home)
    if reason is not None:
        pytest.skip(f"{name} is not usable here: {reason}")
    return registry.DRIVERS[name](home)


@pytest.fixture
def overlay2(data_root):
    home = registry.driver_home(data_root, "overlay2")
    reason = registry.DRIVERS["overlay2"].probe(home)
    if reason is not None:
        pytest.skip(f"overlay2 is not usable here: {reason}")
    return registry.DRIVERS["overlay2"](home)


@pytest.fixture
def expected_root(tmp_path) -> str:
    path = str(tmp_path / "expected")
    os.mkdir(path, 0o755)
    return path
