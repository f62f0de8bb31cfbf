"""A ``--rm`` container is disposable from its create: its record and its init and read-write
layers are written without fsync (lamina.container.store, lamina.layer.mounts).  A host crash
may then leave the record or the layer record with empty files (the renames reached the disk,
the data did not); these tests make those files empty as such a crash would and check that
every reader copes, ``rm`` removes the container, and ``system check`` reports it and
``--repair`` removes it with the driver directories it named."""

from __future__ import annotations

import os
from typing import Any

import pytest

from lamina import errdefs
from lamina.digest import Digest, chain_ids


def _truncate(path: str) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(0)


def _layer_record(engine: Any, container_id: str) -> str:
    return os.path.join(engine.mounts.layers.root, "mounts", container_id)


def _driver_dirs(engine: Any, container_id: str) -> list[str]:
    layer = engine.mounts.get(container_id)
    return [os.path.join(engine.mounts.driver.home, layer.mount_id),
            os.path.join(engine.mounts.driver.home, layer.init_id)]


def test_the_create_of_a_rm_container_syncs_nothing_and_any_other_create_does(engine, fsyncs) -> None:
    diff_ids = [Digest(d) for d in engine.images.inspect_image("busybox")["RootFS"]["Layers"]]
    top = os.path.join(engine.mounts.driver.home, engine.mounts.layers.get(str(chain_ids(diff_ids)[-1])).cache_id)
    engine.create("true", HostConfig={"AutoRemove": True})
    # only the image's top layer is marked as having children (once, synced: its later
    # mounts must be read-only whatever happens to the container)
    assert os.path.exists(os.path.join(top, "committed"))
    assert len(fsyncs) == 2
    fsyncs.clear()
    engine.create("true", HostConfig={"AutoRemove": True})
    assert fsyncs == []
    engine.create("true")
    assert len(fsyncs) >= 5  # records, layer records, driver directories, their parents


def test_a_rm_container_whose_record_a_crash_left_empty_is_skipped_removed_by_rm_and_by_repair(engine) -> None:
    kept = engine.create("true", name="kept")
    torn = engine.create("true", name="torn", HostConfig={"AutoRemove": True})
    directories = _driver_dirs(engine, torn)
    record = os.path.join(engine.config.data_root, "containers", torn)
    for name in ("config.v2.json", "hostconfig.json"):
        _truncate(os.path.join(record, name))
    for name in ("mount-id", "init-id", "parent"):
        _truncate(os.path.join(_layer_record(engine, torn), name))

    # readers: listed containers skip it, the layer record is damaged, never an empty driver id
    assert [c["Id"] for c in engine.container_views.list_containers(all=True)] == [kept]
    with pytest.raises(errdefs.DataLoss, match="read-write layer record of container"):
        engine.mounts.get(torn)
    assert engine.mounts.parents()  # the kept container's chain, the torn record skipped

    system = engine.services.system
    problems = system.check()["Problems"]
    assert {"Kind": "container", "Object": torn,
            "Message": "the record has empty files: a --rm create cut short by a host crash"} in problems
    orphans = {p["Object"] for p in problems if p["Kind"] == "driver"}
    assert orphans == {os.path.basename(d) for d in directories}

    answer = system.check(repair=True)
    assert answer["Problems"] == []
    assert f"removed container {torn}, whose create a host crash cut short" in answer["Repaired"]
    assert not os.path.exists(record)
    assert not os.path.exists(_layer_record(engine, torn))
    assert not any(os.path.exists(d) for d in directories)
    assert engine.container_views.inspect("kept")["Id"] == kept
    assert system.check() == {"Problems": [], "Repaired": []}


def test_rm_removes_a_container_whose_record_a_crash_left_empty(engine) -> None:
    torn = engine.create("true", HostConfig={"AutoRemove": True})
    _truncate(os.path.join(engine.config.data_root, "containers", torn, "config.v2.json"))
    engine.containers.remove(torn)
    assert not os.path.exists(os.path.join(engine.config.data_root, "containers", torn))
    assert not os.path.exists(_layer_record(engine, torn))
    with pytest.raises(errdefs.NotFound):
        engine.containers.remove(torn)


@pytest.mark.parametrize("how", ["rm", "start"])
def test_a_layer_record_left_empty_goes_with_its_container_and_repair_removes_its_directories(engine, how) -> None:
    container_id = engine.create("true", HostConfig={"AutoRemove": True})
    directories = _driver_dirs(engine, container_id)
    _truncate(os.path.join(_layer_record(engine, container_id), "mount-id"))
    if how == "rm":
        engine.containers.remove(container_id)
    else:
        with pytest.raises(errdefs.DataLoss, match="read-write layer record"):
            engine.containers.start(container_id)
        # a --rm container whose start failed is removed by its monitor
        engine.wait_for(lambda: not os.path.exists(_layer_record(engine, container_id)), message="removal")
    assert not os.path.exists(os.path.join(engine.config.data_root, "containers", container_id))
    assert not os.path.exists(_layer_record(engine, container_id))
    assert all(os.path.isdir(d) for d in directories)  # named by nothing now: orphans
    answer = engine.services.system.check(repair=True)
    assert answer["Problems"] == []
    assert not any(os.path.exists(d) for d in directories)


def test_the_sweep_of_an_interrupted_layer_record_with_empty_ids_removes_the_record(engine) -> None:
    mounts = engine.mounts
    interrupted = os.path.join(mounts.layers.root, "mounts", ".tmp-" + "0" * 32)
    os.mkdir(interrupted)
    for name in ("mount-id", "init-id"):
        open(os.path.join(interrupted, name), "wb").close()
    lock = mounts.layers.lock()
    try:
        assert mounts.sweep() == [f"removed interrupted read-write layer record {os.path.basename(interrupted)}"]
    finally:
        lock.release()
    assert not os.path.exists(interrupted)
    assert os.path.isdir(mounts.driver.home)


def test_boot_removes_every_rm_container_a_reboot_left_and_keeps_one_about_to_start(engine) -> None:
    """As dockerd at its start: after a reboot no --rm container survives, whatever state the
    crash left it in; one created during this boot (a `run --rm` about to start it) is kept."""
    from lamina.container.removal import host_boot_time

    booted = host_boot_time()
    store = engine.services._container_shared.store
    before_boot = booted - 3600

    def created_before_boot(container_id: str) -> None:
        with store.modify(container_id) as record:
            record.data["Created"] = "2000-01-01T00:00:00Z"

    created = engine.create("true", HostConfig={"AutoRemove": True})
    created_before_boot(created)
    exited = engine.create("true", HostConfig={"AutoRemove": True})
    with store.modify(exited) as record:  # what a crash after its exit record leaves
        record.data["HasBeenStartedBefore"] = True
        record.state.update(ExitCode=0, FinishedAt="2000-01-01T00:00:01Z")
    torn = engine.create("true", HostConfig={"AutoRemove": True})
    for name in ("config.v2.json", "hostconfig.json"):
        path = os.path.join(engine.config.data_root, "containers", torn, name)
        _truncate(path)
        os.utime(path, (before_boot, before_boot))
    fresh = engine.create("true", HostConfig={"AutoRemove": True})
    kept = engine.create("true")
    created_before_boot(kept)

    report = engine.containers.boot()
    assert sorted(report["Removed"]) == sorted([created, exited, torn])
    assert report["Failed"] == []
    remaining = {c["Id"] for c in engine.container_views.list_containers(all=True)}
    assert remaining == {fresh, kept}
    assert engine.services.system.check()["Problems"] == []
