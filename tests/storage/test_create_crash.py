"""Crash injection for container creation, durable (``create``) and disposable (``--rm``,
nothing synced): a create that fails (an exception) or whose process dies (``os._exit``) at any
step leaves either no container or a whole one, and whatever a killed create left behind is
removed by the sweep and ``system check --repair`` (nothing half created stays)."""

from __future__ import annotations

import os
import time

import pytest

from lamina.config import EngineConfig
from lamina.container.removal import sweep
from lamina.layer.mounts import READY_DIR
from lamina.services.compose import build_services

from services.conftest import Engine

from .test_crash import _run
from .test_store import FIXTURE

pytestmark = pytest.mark.privileged

CREATE_STEPS = [
    ("lamina.layer.mounts.MountStore", "create"),
    ("DRIVER", "create"),
    ("lamina.layer.mounts.MountStore", "_setup_init_layer"),
    ("lamina.fsutil", "publish_dir"),
    ("lamina.container.store.ContainerStore", "create"),
    ("lamina.container.nameindex.NameIndex", "claim"),
]


def _create(services, auto_remove: bool) -> None:
    services.containers.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": auto_remove}},
                               name="crashing")


@pytest.mark.parametrize("auto_remove", [False, True], ids=["durable", "disposable"])
@pytest.mark.parametrize("kind", ["exception", "kill"])
@pytest.mark.parametrize("owner,method", CREATE_STEPS, ids=[f"{o.split('.')[-1]}.{m}" for o, m in CREATE_STEPS])
def test_a_create_failing_at_any_step_leaves_no_container_or_a_whole_one(tmp_path, monkeypatch, owner, method,
                                                                         kind, auto_remove) -> None:
    data_root = str(tmp_path / "data")
    config = EngineConfig(data_root=data_root, exec_root=str(tmp_path / "exec"), storage_driver="overlay2")
    services = build_services(config)
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda message: None)
    _run(kind, lambda engine: _create(engine, auto_remove), monkeypatch, services, owner, method)

    reopened = build_services(config)
    try:
        _check_whole_or_gone(reopened, auto_remove)
    finally:  # the monitors and template it started, their cgroups and mounts
        Engine(str(tmp_path), config, reopened).cleanup()


def _check_whole_or_gone(reopened, auto_remove: bool) -> None:
    shared = reopened._container_shared
    sweep(shared.store, shared.mounts, shared.execs, shared.exec_root, min_age_seconds=0)
    report = reopened.system.check(repair=True)
    assert report["Problems"] == [], report
    listed = reopened.container_views.list_containers(all=True)
    assert [c["Names"] for c in listed] in ([], [["/crashing"]])
    if listed:  # the create reached its commit point: the container is whole
        container_id = listed[0]["Id"]
        reopened.containers.start(container_id)
        assert int(reopened.containers.wait(container_id, condition="removed" if auto_remove else "not-running")
                   ["StatusCode"]) == 0
        if not auto_remove:
            reopened.containers.remove(container_id)
    assert reopened.container_views.list_containers(all=True) == []
    # the name is free again, whatever claim the crash left (the name index: lamina.container.nameindex)
    again = reopened.containers.create({"Image": "busybox", "Cmd": ["true"]}, name="crashing")["Id"]
    assert reopened.container_views.inspect("crashing")["Id"] == again
    reopened.containers.remove(again)
    # nothing but the image's layer is left in the driver, and the layers a --rm container's
    # monitor kept for the next one (it empties or deletes them after its waiters were woken)
    assert _left_in_driver(reopened) == _image_layers(reopened)


def _image_layers(services) -> list[str]:
    return sorted(services.mounts.layers.get(str(chain)).cache_id for chain in services.mounts.layers.chain_ids())


def _left_in_driver(services) -> list[str]:
    """The driver's directories but the kept ones (``mounts/.ready``), once no record is left
    in ``layerdb/mounts`` but those (a --rm container's monitor removes its own meanwhile)."""
    records = os.path.join(services.mounts.layers.root, "mounts")
    deadline = time.monotonic() + 20
    while True:
        left = [name for name in os.listdir(records) if name != READY_DIR]
        kept = set()
        for name in os.listdir(os.path.join(records, READY_DIR)) if os.path.isdir(os.path.join(records, READY_DIR)) else []:
            with open(os.path.join(records, READY_DIR, name, "mount-id"), encoding="utf-8") as handle:
                mount_id = handle.read().strip()
            kept.update((mount_id, mount_id + "-init"))
        ids = sorted(set(services.mounts.driver.list_ids()) - kept)
        if (not left and ids == _image_layers(services)) or time.monotonic() > deadline:
            assert left == []
            return ids
        time.sleep(0.02)


RECYCLE_STEPS = [
    ("DRIVER", "recycle"),
    ("lamina.fsutil", "remove_tree"),
    ("lamina.layer.mounts.MountStore", "drop_stale_ready"),
]


@pytest.mark.parametrize("kind", ["exception", "kill"])
@pytest.mark.parametrize("owner,method", RECYCLE_STEPS, ids=[f"{o.split('.')[-1]}.{m}" for o, m in RECYCLE_STEPS])
def test_a_disposable_removal_failing_while_it_keeps_the_layers_leaves_them_swept(tmp_path, monkeypatch, owner,
                                                                                  method, kind) -> None:
    """A ``--rm`` container's removal that keeps its layers for the next one (past its commit
    point) and fails or dies on the way: the sweep deletes what it left, and the next
    disposable create makes its own layers, which mount."""
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "exec"), storage_driver="overlay2")
    services = build_services(config)
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda message: None)
    top = str(services.mounts.layers.chain_ids()[0])
    services.mounts.create("ab" * 32, top, durable=False)
    _run(kind, lambda engine: engine.mounts.remove("ab" * 32, durable=False), monkeypatch, services, owner, method)

    reopened = build_services(config)
    report = reopened.system.check(repair=True)
    assert reopened.system.check(repair=False)["Problems"] == [], report
    assert _left_in_driver(reopened) == _image_layers(reopened)
    layer = reopened.mounts.create("cd" * 32, top, durable=False)
    try:
        merged = reopened.mounts.mount("cd" * 32, volatile=True)
        assert os.path.exists(os.path.join(merged, "bin", "busybox"))
        reopened.mounts.unmount("cd" * 32)
    finally:
        reopened.mounts.remove(layer.container_id)
