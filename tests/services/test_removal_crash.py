"""Crash injection for the removal of an ``--rm`` container by its monitor: the monitor
releases the run's cgroups only after the removal (its waiters wake first), so a monitor
killed after the removal's commit point leaves cgroups that no record names any more.  The
run directory, which names them in ``runtime.json``, goes only once they are released: the
sweep (every command runs it) releases them and removes it, and leaves a live monitor's alone.
A monitor killed before the commit point leaves a container marked ``RemovalInProgress``:
``rm`` finishes that removal once no remover lives."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal

import pytest

from lamina import fsutil
from lamina.container.removal import finish_removal, sweep
from lamina.runtime.cgroups import CgroupManager
from tests.processes import gone

pytestmark = pytest.mark.privileged


def _sweep(engine) -> list[str]:
    containers = engine.containers
    return sweep(containers.store, containers.mounts, containers.execs, engine.config.exec_root)


def _cgroup(container_id: str) -> CgroupManager:
    return CgroupManager(f"lamina/{container_id}")


@pytest.mark.parametrize("runtime", ["native", "crun", "runc"])
def test_a_monitor_killed_after_the_commit_point_of_its_removal_leaves_no_cgroup(engine, runtime) -> None:
    if runtime != "native" and shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    store = engine.containers.store
    container_id = engine.create("sleep", "30", HostConfig={"AutoRemove": True, "NetworkMode": "none",
                                                            "Runtime": runtime})
    engine.containers.start(container_id)
    run_dir = engine.run_dir(container_id)
    monitor = run_dir.monitor_pid()
    state = run_dir.read_runtime_state()
    assert monitor and state is not None and _cgroup(container_id).exists()
    bundle = state.bundle  # an OCI runtime's
    oci_state = os.path.join(os.path.dirname(bundle), runtime, container_id)  # the binary's (its --root)
    assert runtime == "native" or (os.path.isdir(bundle) and os.path.isdir(oci_state))
    removing = os.path.join(store.root, f"{container_id}-removing")
    pid = engine.state(container_id)["Pid"]
    # the removal of the read-write layer, right after the container's commit point, takes
    # the layer store's lock (shared): held here, it stops the monitor there
    layer_lock = engine.containers.mounts.layers.lock()
    try:
        os.kill(pid, signal.SIGKILL)  # the monitor removes it (a kill would wait for that)
        engine.wait_for(lambda: os.path.isdir(removing), message="the removal's commit point")
        os.kill(monitor, signal.SIGKILL)
        engine.wait_for(lambda: gone(monitor), message="the monitor's death")
    finally:
        layer_lock.release()
    assert _cgroup(container_id).exists()  # released by the monitor only after the removal
    assert run_dir.read_runtime_state() is not None  # ... which runtime.json says
    done = _sweep(engine)
    assert f"finished removal of container {container_id}" in done
    assert not os.path.exists(removing) and not run_dir.exists()
    assert not _cgroup(container_id).exists()
    assert runtime == "native" or not (os.path.exists(bundle) or os.path.exists(oci_state))


def test_the_sweep_releases_the_run_of_a_removed_container_whose_monitor_died(engine) -> None:
    """What a monitor killed between its removal (which keeps the run directory) and the
    release of the run's cgroups leaves: no record, a run directory, a cgroup."""
    containers = engine.containers
    container_id = engine.run("sleep", "30", HostConfig={"NetworkMode": "none"})
    run_dir = engine.run_dir(container_id)
    monitor = run_dir.monitor_pid()
    os.kill(monitor, signal.SIGKILL)
    engine.wait_for(lambda: gone(monitor), message="the monitor's death")
    cgroup = _cgroup(container_id)
    cgroup.kill_all(signal.SIGKILL)  # an --rm run's processes ended with its PID 1
    engine.wait_for(lambda: not cgroup.pids(), message="the container's processes to end")
    path = containers.store.begin_removal(container_id)
    finish_removal(containers.mounts, containers.execs, engine.config.exec_root, container_id, path,
                   keep_run_directory=True)
    assert run_dir.exists() and cgroup.exists()
    assert _sweep(engine) == [f"released the run of removed container {container_id}"]
    assert not run_dir.exists() and not cgroup.exists()
    assert _sweep(engine) == []


def test_the_sweep_leaves_the_run_directory_of_a_live_monitor_or_a_removal_alone(engine) -> None:
    """A record-less run directory whose monitor lives (an --rm run's monitor releasing its
    run after the removal) or whose removal holds its lock is not the sweep's."""
    container_id = "ef" * 32
    run_dir = engine.run_dir(container_id)
    run_dir.create()
    with open(run_dir.monitor_lock, "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert _sweep(engine) == [] and run_dir.exists()
    with fsutil.file_lock(os.path.join(engine.containers.store.root, f".removal-{container_id}.lock")):
        assert _sweep(engine) == [] and run_dir.exists()
    assert _sweep(engine) == []  # no runtime.json: a waiter's directory, removed without a word
    assert not run_dir.exists()


@pytest.mark.parametrize("finisher", ["rm", "supervisor"])
def test_an_auto_removal_whose_monitor_died_before_its_commit_point_is_finished(engine, finisher) -> None:
    """The monitor marks an --rm container's exit record ``RemovalInProgress``, then removes
    it; killed in between, it leaves a container that ``rm`` refuses while a remover lives,
    and whose removal (the run's cgroups too) ``rm`` or the server's supervisor (``boot`` of
    dead monitors, every second) finishes once none does."""
    from lamina import errdefs
    from lamina.events.log import FILE_NAME

    store = engine.containers.store
    container_id = engine.run("sleep", "30", HostConfig={"AutoRemove": True, "NetworkMode": "none"})
    run_dir = engine.run_dir(container_id)
    monitor = run_dir.monitor_pid()
    pid = engine.state(container_id)["Pid"]
    # the monitor's "die" event, right after the exit record, waits for the event log's lock
    with open(os.path.join(engine.config.data_root, "events", FILE_NAME), "a", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        os.kill(pid, signal.SIGKILL)
        engine.wait_for(lambda: store.get(container_id).state.get("RemovalInProgress"), message="the exit record")
        with pytest.raises(errdefs.Conflict, match="already in progress"):
            engine.containers.remove(container_id)  # its monitor lives: the removal is its own
        assert engine.containers.boot(dead_monitors_only=True)["Removed"] == []
        os.kill(monitor, signal.SIGKILL)
        engine.wait_for(lambda: gone(monitor), message="the monitor's death")
    assert _cgroup(container_id).exists() and run_dir.read_runtime_state() is not None
    if finisher == "rm":
        engine.containers.remove(container_id)
    else:
        assert engine.containers.boot(dead_monitors_only=True)["Removed"] == [container_id]
    with pytest.raises(errdefs.NotFound):
        store.get(container_id)
    assert not run_dir.exists() and not _cgroup(container_id).exists()
