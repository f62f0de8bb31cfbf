"""The parts of lamina.runtime.delegation that need no unprivileged user: the refusals by
controller, the leaf layout on the real v2 tree, the choice of what tracks a container's
processes, the start-up sweep, the monitor template's key.

The v2 tree of a hybrid host has no controllers (v1 holds each of them), so a limit cannot be
written to a delegated cgroup here: the refusals are checked against delegations that list
controllers, and :meth:`CgroupManager.apply` against the real tree, where it names the
missing controller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from lamina import errdefs, fsutil
from lamina.container.monitor import protocol
from lamina.runtime import delegation as delegation_module
from lamina.runtime.api import Resources
from lamina.runtime.cgroups import CgroupManager, unified_mount
from lamina.runtime.delegation import Delegation, process_group
from lamina.runtime.nocgroup import PidNamespaceMembers, refuse_limits

MOUNT = unified_mount()


def _delegation(controllers: tuple[str, ...], *, busy: bool = False) -> Delegation:
    return Delegation(mount="/sys/fs/cgroup", path="user.slice/user-1000.slice/user@1000.service/app.slice",
                      controllers=controllers, offered=("cpu", "memory", "pids"), busy=busy)


@pytest.mark.parametrize("resources, message", [
    (Resources(memory=16 << 20), "the memory controller is not delegated to this user: --memory cannot be applied"),
    (Resources(memory_swap=-1), "the memory controller is not delegated to this user: --memory-swap"),
    (Resources(cpu_quota=50000, cpu_period=100000), "the cpu controller is not delegated to this user: --cpus"),
    (Resources(cpu_shares=512), "the cpu controller is not delegated to this user: --cpu-shares"),
    (Resources(cpuset_cpus="0"), "the cpuset controller is not delegated to this user: --cpuset-cpus"),
], ids=["memory", "memory and swap", "a cpu quota", "cpu shares", "a cpu set"])
def test_a_limit_of_a_controller_not_enabled_is_refused_by_name(resources: Resources, message: str) -> None:
    with pytest.raises(errdefs.FailedPrecondition) as caught:
        refuse_limits(resources, _delegation(("pids",)))
    assert str(caught.value).startswith("rootless lamina: ") and message in str(caught.value)


def test_a_limit_of_an_enabled_controller_passes() -> None:
    refuse_limits(Resources(pids_limit=10, memory=1 << 30), _delegation(("memory", "pids")))
    refuse_limits(Resources(), _delegation(()))


def test_without_delegation_every_limit_is_refused_as_before() -> None:
    with pytest.raises(errdefs.FailedPrecondition) as caught:
        refuse_limits(Resources(pids_limit=10, memory=1 << 30))
    assert "cgroups are not delegated to this user, so containers have no cgroup of their own" in str(caught.value)
    assert "--memory, " in str(caught.value) and "--pids-limit" in str(caught.value)


def test_a_controller_offered_to_a_busy_cgroup_names_the_cause() -> None:
    with pytest.raises(errdefs.FailedPrecondition) as caught:
        refuse_limits(Resources(memory=1 << 30), _delegation((), busy=True))
    assert "cannot be enabled in the delegated cgroup" in str(caught.value)
    assert "has processes of its own" in str(caught.value) and "--memory cannot be applied" in str(caught.value)


def test_the_layout_roots_containers_at_the_delegated_cgroup() -> None:
    delegation = _delegation(("memory", "pids"))
    manager = CgroupManager("lamina/abc", delegation.layout())
    directory = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/lamina/abc"
    assert manager.directory("") == directory and manager.directory("memory") == directory
    assert manager.directories() == [directory] and manager.directory("cpu") is None


def test_the_controller_list_matches_the_cgroup_modules() -> None:
    from lamina.runtime.cgroups import V2_CONTROLLERS

    assert delegation_module._V2_CONTROLLERS == V2_CONTROLLERS


def test_the_template_key_of_a_starter_outside_a_leaf_is_unchanged() -> None:
    key = protocol.template_key("/usr/bin/python3", ["/src"])
    assert key == protocol.template_key("/usr/bin/python3", ["/src"], "")
    assert key != protocol.template_key("/usr/bin/python3", ["/src"], "d/lamina/engine")


# -- on the real v2 tree (root) ------------------------------------------------------------

@pytest.fixture
def tree() -> Iterator[str]:
    """A cgroup D in the v2 tree (relative path); removed with its children at the end."""
    if MOUNT is None:
        pytest.skip("no cgroup v2 tree is mounted")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = f"lamina-test-{uuid.uuid4().hex[:12]}"
    os.mkdir(os.path.join(MOUNT, path))
    try:
        yield path
    finally:
        _remove(os.path.join(MOUNT, path))


def _remove(directory: str) -> None:
    for name in os.listdir(directory):
        child = os.path.join(directory, name)
        if os.path.isdir(child):
            _remove(child)
    with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as handle:
        for pid in handle.read().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while True:
        try:
            os.rmdir(directory)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sleeper(cgroup_directory: str) -> subprocess.Popen:
    def enter() -> None:
        with open(os.path.join(cgroup_directory, "cgroup.procs"), "w", encoding="ascii") as handle:
            handle.write("0")

    process = subprocess.Popen(["sleep", "300"], preexec_fn=enter)
    # once asleep: just after its execve a process has not run yet (no resident page)
    deadline = time.monotonic() + 20
    while True:
        with open(f"/proc/{process.pid}/stat", encoding="ascii") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "S":
                return process
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _controllers_offered() -> list[str]:
    with open(os.path.join(MOUNT, "cgroup.controllers"), encoding="ascii") as handle:
        return handle.read().split()


def test_a_container_leaf_freezes_kills_and_goes(tree: str) -> None:
    delegation = Delegation(mount=MOUNT, path=tree, controllers=(), offered=())
    manager = CgroupManager("lamina/c1", delegation.layout())
    manager.create()
    leaf = os.path.join(MOUNT, tree, "lamina", "c1")
    assert os.path.isdir(leaf)
    process = _sleeper(leaf)
    try:
        assert manager.pids() == [process.pid]
        manager.freeze()
        assert manager.frozen()
        manager.thaw()
        assert not manager.frozen()
        stats = manager.stats()
        assert stats["pids_stats"] == {"current": 1}
        # no memory controller here: the resident memory of the members, from /proc
        assert stats["memory_stats"]["usage"] > 0 and stats["memory_stats"]["limit"] > stats["memory_stats"]["usage"]
        manager.kill_all(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
        manager.remove()
        assert not os.path.exists(leaf)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_limit_names_the_missing_controller_on_the_real_tree(tree: str) -> None:
    if "pids" in _controllers_offered():
        pytest.skip("this host's v2 tree offers the pids controller")
    delegation = Delegation(mount=MOUNT, path=tree, controllers=(), offered=())
    manager = CgroupManager("lamina/c2", delegation.layout())
    manager.create()
    with pytest.raises(errdefs.FailedPrecondition) as caught:
        manager.apply(Resources(pids_limit=5))
    assert "the pids cgroup controller is not available" in str(caught.value)


def test_a_pids_limit_is_written_where_the_tree_offers_pids(tree: str) -> None:
    if "pids" not in _controllers_offered():
        pytest.skip("this host's v2 tree has no pids controller (v1 holds it)")
    delegation = Delegation(mount=MOUNT, path=tree, controllers=("pids",), offered=("pids",))
    manager = CgroupManager("lamina/c3", delegation.layout())
    manager.create()
    manager.apply(Resources(pids_limit=5))
    with open(os.path.join(MOUNT, tree, "lamina", "c3", "pids.max"), encoding="ascii") as handle:
        assert handle.read().strip() == "5"


def test_a_container_in_a_leaf_is_tracked_by_it_whoever_asks(tree: str) -> None:
    leaf = os.path.join(MOUNT, tree, "lamina", "c4")
    os.makedirs(leaf)
    process = _sleeper(leaf)
    try:
        # a process with no delegation of its own (layout None) still finds the container's cgroup
        found = process_group("lamina/c4", process.pid, None)
        assert isinstance(found, CgroupManager) and found.directory("") == leaf
        assert found.pids() == [process.pid]
        # a pid in another cgroup (reused, or a container started without one) is not
        assert isinstance(process_group("lamina/other", process.pid, None), PidNamespaceMembers)
        assert isinstance(process_group("lamina/c4", os.getpid(), None), PidNamespaceMembers)
    finally:
        process.kill()
        process.wait()
    layout = Delegation(mount=MOUNT, path=tree, controllers=(), offered=()).layout()
    assert isinstance(process_group("lamina/c5", None, layout), CgroupManager)  # being started
    # its PID 1 gone, the leaf left: the cgroup (for delete to remove it)
    assert isinstance(process_group("lamina/c4", process.pid, layout), CgroupManager)
    assert isinstance(process_group("lamina/c6", process.pid, layout), PidNamespaceMembers)


def test_the_sweep_removes_only_dead_containers_leaves(tree: str, tmp_path) -> None:
    root = os.path.join(MOUNT, tree, "lamina")
    for name in ("engine", "pause", "dead", "starting", "running"):
        os.makedirs(os.path.join(root, name))
    os.makedirs(tmp_path / "containers" / "starting")
    process = _sleeper(os.path.join(root, "running"))
    try:
        with fsutil.file_lock(tmp_path / "containers" / "starting" / "monitor.lock"):
            delegation_module._sweep(root, str(tmp_path))
        kept = {name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))}
        assert kept == {"engine", "pause", "starting", "running"}
    finally:
        process.kill()
        process.wait()


def test_a_cgroup_the_user_does_not_own_is_not_delegated(tree: str) -> None:
    directory = os.path.join(MOUNT, tree)
    assert delegation_module._delegation(MOUNT, tree, 0) is not None  # root owns what it made
    assert delegation_module._delegation(MOUNT, tree, 12345) is None
    os.chown(directory, 12345, 12345)
    # the directory alone is not a delegation: cgroup.procs and cgroup.subtree_control too
    assert delegation_module._delegation(MOUNT, tree, 12345) is None
    for name in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(directory, name), 12345, 12345)
    assert delegation_module._delegation(MOUNT, tree, 12345) is not None
    assert delegation_module._delegation(MOUNT, "", 0) is None  # the root is never delegated
