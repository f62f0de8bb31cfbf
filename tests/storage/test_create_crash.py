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
    # nothing but the image's layer is left in the driver (a --rm container's monitor deletes
    # its layer directories after its waiters were woken)
    image_layers = sorted(reopened.mounts.layers.get(str(chain)).cache_id for chain in reopened.mounts.layers.chain_ids())
    records = os.path.join(reopened.mounts.layers.root, "mounts")
    deadline = time.monotonic() + 20
    while (sorted(reopened.mounts.driver.list_ids()) != image_layers or os.listdir(records)) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(reopened.mounts.driver.list_ids()) == image_layers
    assert os.listdir(records) == []
