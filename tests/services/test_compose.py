"""The composition builds a service when it is first used: a build that runs no container
builds no container group and no volume service; a RUN step builds the groups it uses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from lamina.config import EngineConfig
from lamina.services.compose import build_services

from .conftest import FIXTURE, Engine

CONTAINER_PIECES = ("_container_shared", "containers", "container_views", "container_files", "container_streams")


@pytest.fixture
def lazy_engine(tmp_path: Any) -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"))
    instance = Engine(str(tmp_path), config, build_services(config, lazy=True))
    try:
        with open(FIXTURE, "rb") as handle:
            instance.services.images.load(handle, progress=lambda message: None)
        yield instance
    finally:
        instance.cleanup()


def built(engine: Engine) -> set[str]:
    return set(vars(engine.services)) & {*CONTAINER_PIECES, "volumes", "execs", "system"}


def build(engine: Engine, dockerfile: str) -> str:
    context = os.path.join(engine.root, "context")
    os.makedirs(context, exist_ok=True)
    with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
        handle.write(dockerfile)
    with open(os.path.join(context, "file.txt"), "w", encoding="utf-8") as handle:
        handle.write("copied\n")
    return engine.services.builds.build(progress=lambda message: None, directory=context)


def test_a_build_without_run_steps_builds_no_container_service(lazy_engine) -> None:
    image_id = build(lazy_engine, "FROM busybox\nLABEL purpose=test\nCOPY file.txt /file.txt\n")
    assert lazy_engine.services.images.images.exists(image_id)
    assert built(lazy_engine) == set()


def test_a_run_step_builds_the_container_groups_it_uses_and_no_volume_service(lazy_engine) -> None:
    build(lazy_engine, "FROM busybox\nRUN echo ran > /ran.txt\n")
    assert built(lazy_engine) == {"_container_shared", "containers", "container_streams"}


@pytest.mark.privileged
def test_a_data_root_that_cannot_be_written_is_refused(tmp_path: Any) -> None:
    """A read-only data root is refused with the kernel's reason (asked with ``faccessat``, no
    probe file), before anything is stored."""
    import subprocess

    from lamina import errdefs

    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "--bind", str(data), str(data)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(data)], check=True)
        services = build_services(EngineConfig(data_root=str(data), exec_root=str(tmp_path / "run")), lazy=True)
        with pytest.raises(errdefs.System, match="is not writable: Read-only file system"):
            services.selection  # noqa: B018 - built on first use
        assert os.listdir(data) == []
    finally:
        subprocess.run(["umount", str(data)], check=True)
