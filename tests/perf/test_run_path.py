"""What the run path no longer does, and what it still guarantees: the root of a ``--rm``
container and an init layer being set up are mounted volatile (no sync of the backing
filesystem at unmount), an image's top layer is marked committed once, the exit of a ``--rm``
container is still recorded and the container removed, other containers keep synced records."""

from __future__ import annotations

import os
import time

import pytest

from lamina.layer.mounts import READY_DIR

from lamina import mount as lmount
from lamina.config import EngineConfig
from lamina.services.compose import build_services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")

pytestmark = pytest.mark.privileged


@pytest.fixture
def engine(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"))
    services = build_services(config)
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda message: None)
    if services.system.driver.name != "overlay2":
        pytest.skip("overlay2 is not usable here")
    started: list[str] = []
    try:
        yield services, started
    finally:
        for container_id in started:
            try:
                services.containers.remove(container_id, force=True)
            except Exception:  # noqa: BLE001 - removed already
                pass
        lmount.unmount_all_under(str(tmp_path))


def _mount_options(path: str) -> set[str] | None:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == os.path.realpath(path):
                return set(fields[-1].split(","))
    return None


def _volatile(options: set[str]) -> bool:
    return "volatile" in options or "fsync=volatile" in options


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _rootfs(services, container_id: str) -> str:
    return services.container_views.inspect(container_id)["GraphDriver"]["Data"]["MergedDir"]


def test_the_root_of_an_rm_container_is_volatile_and_others_are_not(engine) -> None:
    services, started = engine
    removed = services.containers.create({"Image": "busybox", "Cmd": ["sleep", "30"],
                                          "HostConfig": {"AutoRemove": True}})["Id"]
    kept = services.containers.create({"Image": "busybox", "Cmd": ["sleep", "30"]})["Id"]
    started += [removed, kept]
    for container_id in (removed, kept):
        services.containers.start(container_id)
    removed_options = _mount_options(_rootfs(services, removed))
    kept_options = _mount_options(_rootfs(services, kept))
    assert removed_options is not None and kept_options is not None
    if not _volatile(removed_options):
        pytest.skip("overlayfs has no volatile option here (before Linux 5.10)")
    assert not _volatile(kept_options)
    removed_layer = services.mounts.get(removed).mount_id
    services.containers.kill(removed)
    services.containers.stop(kept, timeout=0)
    _wait_for(lambda: not services.containers.store.exists(removed))
    home = os.path.join(services.config.data_root, "overlay2")
    ready = os.path.join(services.mounts.layers.root, "mounts", READY_DIR)

    def kept_ready() -> bool:  # the monitor keeps the emptied pair for the next --rm container
        for name in os.listdir(ready) if os.path.isdir(ready) else []:
            with open(os.path.join(ready, name, "mount-id"), encoding="utf-8") as handle:
                if handle.read().strip() == removed_layer:
                    return True
        return False

    _wait_for(lambda: kept_ready() or not [name for name in os.listdir(home) if name.startswith(removed_layer)])
    if kept_ready():  # emptied: no volatile marker left (the next mount would be refused), not mounted
        layer_dir = os.path.join(home, removed_layer)
        assert os.listdir(os.path.join(layer_dir, "diff")) == []
        assert os.listdir(os.path.join(layer_dir, "work")) == []
        assert not os.path.ismount(os.path.join(layer_dir, "merged"))
    # the kept container starts again on the same read-write layer
    services.containers.start(kept)
    assert services.container_views.inspect(kept)["State"]["Running"]
    services.containers.stop(kept, timeout=0)


def test_an_rm_container_records_its_exit_and_is_removed(engine) -> None:
    services, started = engine
    container_id = services.containers.create({"Image": "busybox", "Cmd": ["sh", "-c", "exit 7"],
                                               "HostConfig": {"AutoRemove": True}})["Id"]
    started.append(container_id)
    finish = services.containers.begin_wait(container_id, condition="removed")
    services.containers.start(container_id)
    assert finish()["StatusCode"] == 7
    assert not services.containers.store.exists(container_id)
    assert container_id not in services.mounts.container_ids()


def test_creating_containers_leaves_no_volatile_marker_and_marks_the_image_once(engine) -> None:
    services, started = engine
    first = services.containers.create({"Image": "busybox", "Cmd": ["true"]})["Id"]
    started.append(first)
    home = os.path.join(services.config.data_root, "overlay2")
    image_top = services.images.layers.get(services.images.images.get_config(
        services.images.resolve("busybox")).chain_id()).cache_id
    committed = os.path.join(home, image_top, "committed")
    before = os.stat(committed)
    second = services.containers.create({"Image": "busybox", "Cmd": ["true"]})["Id"]
    started.append(second)
    after = os.stat(committed)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for container_id in (first, second):
        init = os.path.join(home, services.mounts.get(container_id).init_id)
        assert not os.path.exists(os.path.join(init, "work", "work", "incompat", "volatile"))
        assert os.path.exists(os.path.join(init, "diff", "dev", "console"))  # a placeholder busybox lacks
