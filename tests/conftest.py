"""Shared pytest hooks: tests marked ``privileged`` need root and are skipped otherwise."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real mounts, devices, ownership)")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
