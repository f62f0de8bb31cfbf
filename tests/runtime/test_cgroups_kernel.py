"""cgroup limits, freezer, stats and OOM detection on this machine's real cgroups, through
containers started by the native runtime."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lamina import errdefs
from lamina.runtime.api import Resources
from lamina.runtime.cgroups import CgroupManager, detect_layout

from .conftest import Harness, with_resources

pytestmark = pytest.mark.privileged


def _read(manager: CgroupManager, controller: str, name: str) -> str:
    directory = manager.directory(controller)
    assert directory is not None, f"no {controller} hierarchy"
    with open(os.path.join(directory, name)) as handle:
        return handle.read().strip()


def test_the_memory_limit_is_written_and_an_allocation_past_it_is_oom_killed(harness: Harness) -> None:
    layout = detect_layout()
    spec = with_resources(harness.spec("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"),
                          memory=16 * 1024 * 1024)
    state, out_read, err_read = harness.start(spec)
    manager = harness.cgroup(state)
    limit_file = "memory.limit_in_bytes" if layout.version == 1 else "memory.max"
    assert _read(manager, "memory", limit_file) == str(16 * 1024 * 1024)
    harness.collect(out_read, err_read)
    assert harness.wait(state.pid) == 137  # SIGKILL from the OOM killer
    assert harness.runtime.oom_killed(state)
    assert manager.oom_kill_count() >= 1


def test_a_container_within_its_memory_limit_is_not_reported_oom_killed(harness: Harness) -> None:
    spec = with_resources(harness.spec("dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=4"),
                          memory=64 * 1024 * 1024)
    state, out_read, err_read = harness.start(spec)
    harness.collect(out_read, err_read)
    assert harness.wait(state.pid) == 0
    assert not harness.runtime.oom_killed(state)


def test_the_pids_limit_makes_fork_fail(harness: Harness) -> None:
    script = "i=0; while [ $i -lt 12 ]; do sleep 5 & i=$((i+1)); done; echo spawned"
    spec = with_resources(harness.spec("sh", "-c", script), pids_limit=5)
    state, out_read, err_read = harness.start(spec)
    assert _read(harness.cgroup(state), "pids", "pids.max") == "5"
    stdout, stderr = harness.collect(out_read, err_read)
    harness.wait(state.pid)
    assert "can't fork" in stderr or "Resource temporarily unavailable" in stderr, (stdout, stderr)


def test_cpu_quota_shares_and_cpuset_are_written_and_updated(harness: Harness) -> None:
    layout = detect_layout()
    spec = with_resources(harness.spec("sleep", "30"), cpu_quota=50000, cpu_period=100000, cpu_shares=512,
                          cpuset_cpus="0")
    state, out_read, err_read = harness.start(spec)
    manager = harness.cgroup(state)
    if layout.version == 1:
        assert _read(manager, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _read(manager, "cpu", "cpu.cfs_period_us") == "100000"
        assert _read(manager, "cpu", "cpu.shares") == "512"
    else:
        assert _read(manager, "cpu", "cpu.max") == "50000 100000"
    assert _read(manager, "cpuset", "cpuset.cpus") == "0"
    harness.runtime.update(state, Resources(cpu_quota=150000, memory=256 * 1024 * 1024, pids_limit=100))
    if layout.version == 1:
        assert _read(manager, "cpu", "cpu.cfs_quota_us") == "150000"
        assert _read(manager, "memory", "memory.limit_in_bytes") == str(256 * 1024 * 1024)
    assert _read(manager, "pids", "pids.max") == "100"
    with pytest.raises(errdefs.InvalidArgument, match="cpuset.cpus"):
        harness.runtime.update(state, Resources(cpuset_cpus="4096"))  # no such cpu: the kernel refuses
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_a_frozen_container_does_not_advance_until_thawed(harness: Harness) -> None:
    script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; done"
    state, out_read, err_read = harness.start(harness.spec("sh", "-c", script))
    counter = os.path.join(harness.rootfs, "tmp", "count")

    def count() -> int:
        deadline = time.monotonic() + 5
        while True:
            try:
                with open(counter) as handle:
                    return int(handle.read())
            except (FileNotFoundError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    count()
    harness.runtime.pause(state)
    assert harness.cgroup(state).frozen()
    frozen_at = count()
    time.sleep(0.2)
    assert count() == frozen_at
    harness.runtime.resume(state)
    assert not harness.cgroup(state).frozen()
    deadline = time.monotonic() + 10
    while count() == frozen_at:
        assert time.monotonic() < deadline, f"the count stayed at {frozen_at} for 10 s after the thaw"
        time.sleep(0.01)
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_stats_are_docker_shaped(harness: Harness) -> None:
    spec = with_resources(harness.spec("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 30; true"),
                          memory=128 * 1024 * 1024, pids_limit=50)
    state, out_read, err_read = harness.start(spec)
    deadline = time.monotonic() + 5
    while len(harness.cgroup(state).pids()) < 2 and time.monotonic() < deadline:  # the loop is over
        time.sleep(0.01)
    stats = harness.runtime.stats(state)
    cpu = stats["cpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > cpu["cpu_usage"]["total_usage"]
    assert cpu["online_cpus"] >= 1
    memory = stats["memory_stats"]
    assert memory["usage"] > 0 and memory["limit"] == 128 * 1024 * 1024
    assert stats["pids_stats"] == {"current": 2, "limit": 50}
    assert set(stats["blkio_stats"]) == {"io_service_bytes_recursive", "io_serviced_recursive"}
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_the_runtime_lists_the_processes_of_its_cgroup_and_a_forced_delete_kills_them(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sh", "-c", "sleep 30 & sleep 30 & wait", init=True))
    manager = harness.cgroup(state)
    assert harness.runtime.cgroup_path(state) == f"lamina/{state.id}" == manager.path
    deadline = time.monotonic() + 5
    while len(harness.runtime.processes(state)) < 4 and time.monotonic() < deadline:  # init, sh, two sleeps
        time.sleep(0.01)
    assert sorted(harness.runtime.processes(state)) == sorted(manager.pids())
    assert state.pid in harness.runtime.processes(state) and len(manager.pids()) == 4
    harness.runtime.pause(state)  # frozen processes too: the forced delete thaws them to kill them
    harness.runtime.delete(state, force=True)
    assert not manager.exists()
    assert harness.runtime.processes(state) == []
    assert not harness.runtime.oom_killed(state)  # the cgroup is gone
    assert harness.wait(state.pid) == 137
    harness.collect(out_read, err_read)


def test_kill_all_and_delete(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sh", "-c", "sleep 30 & sleep 30 & wait", init=True))
    manager = harness.cgroup(state)
    deadline = time.monotonic() + 5
    while len(manager.pids()) < 4 and time.monotonic() < deadline:  # init, sh, two sleeps
        time.sleep(0.01)
    assert len(manager.pids()) == 4
    with pytest.raises(errdefs.Conflict, match="still has processes"):
        harness.runtime.delete(state)
    harness.runtime.kill(state, signal.SIGKILL, all=True)
    assert harness.wait(state.pid) == 137
    harness.collect(out_read, err_read)
    harness.runtime.delete(state)
    assert not manager.exists()
    with pytest.raises(errdefs.Conflict):
        harness.runtime.kill(state, signal.SIGTERM)


def test_a_v1_device_cgroup_gets_the_default_rules_and_the_containers_own() -> None:
    """Each rule is its own write to ``devices.allow`` (one descriptor for all of them)."""
    import secrets

    from lamina.runtime.cgroups import DEFAULT_DEVICE_RULES

    layout = detect_layout()
    if layout.version != 1 or not layout.mount_point("devices"):
        pytest.skip("no v1 devices hierarchy on this host")
    manager = CgroupManager(f"lamina-test-{secrets.token_hex(4)}/container", layout)
    try:
        manager.create()
        manager.allow_devices(("c 10:229 rw", "b 7:0 r"))
        listed = _read(manager, "devices", "devices.list").splitlines()
        assert set(DEFAULT_DEVICE_RULES) <= set(listed), listed
        assert {"c 10:229 rw", "b 7:0 r"} <= set(listed), listed
        assert "a *:* rwm" not in listed
        manager.allow_devices(("a *:* rwm",))  # --privileged
        assert _read(manager, "devices", "devices.list").splitlines() == ["a *:* rwm"]
    finally:
        manager.remove()
        parent = os.path.dirname(manager.path)
        for _, point in layout.mounts:
            try:
                os.rmdir(os.path.join(point, parent))
            except OSError:
                pass
