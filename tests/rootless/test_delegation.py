"""Rootless lamina in a delegated cgroup v2 (lamina.runtime.delegation), with the real kernel.

systemd's ``Delegate=yes`` is simulated as it is done: root makes a cgroup in the v2 tree and
hands it to the test user by ownership (the directory and its ``cgroup.procs``,
``cgroup.subtree_control``, ``cgroup.threads``); each ``lamina`` command is moved into it by
root before it drops to the user (moving a process into a cgroup needs write access to the
common ancestor's ``cgroup.procs``, the root's here, as a login shell in ``user@.service``
starts there already).  Teardown kills the user's processes by pid, then removes the test
cgroup depth first.

On a hybrid host (v1 controllers, v2 tree at ``/sys/fs/cgroup/unified``) the v2 tree has no
controllers at all (each is held by its v1 hierarchy, and a controller cannot be in both):
there the delegation gives the freezer, ``cgroup.kill`` and membership, and every limit is
refused naming its controller, which is what these tests check.  Where the host's v2 root
offers ``pids`` (a pure v2 host), a pids limit is applied for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from lamina.runtime.cgroups import unified_mount
from rootless.users import FIXTURE, LAMINA, User, kill_processes_of, make_user

# the containers get the default (bridge) network, whose pasta opens /dev/net/tun as the user:
# Debian's 0666 for each test (conftest.debian_tun)
pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("debian_tun")]

MOUNT = unified_mount()


def _offered() -> list[str]:
    with open(os.path.join(MOUNT, "cgroup.controllers"), encoding="ascii") as handle:
        return handle.read().split()


def _remove_tree(directory: str) -> None:
    """rmdir a cgroup and its children, depth first (their processes must be gone)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        child = os.path.join(directory, name)
        if os.path.isdir(child):
            _remove_tree(child)
    deadline = time.monotonic() + 10
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Delegated:
    """A cgroup delegated to ``user`` and the way to run lamina in it."""

    def __init__(self, user: User, path: str) -> None:
        self.user = user
        self.path = path  # relative to the v2 mount
        self.directory = os.path.join(MOUNT, path)

    def _enter(self) -> None:  # in the child, as root, before setpriv drops to the user
        with open(os.path.join(self.directory, "cgroup.procs"), "w", encoding="ascii") as handle:
            handle.write("0")

    def lamina(self, *args: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.user.command(LAMINA, *args), capture_output=True, timeout=120,
                              cwd=self.user.runtime_dir, env=environment or self.user.environment(),
                              preexec_fn=self._enter)

    def ok(self, *args: str) -> str:
        result = self.lamina(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.decode()

    def leaf(self, name: str) -> str:
        return os.path.join(self.directory, "lamina", name)


@pytest.fixture(scope="module")
def delegated(users: list[User]) -> Iterator[Delegated]:
    if MOUNT is None:
        pytest.skip("no cgroup v2 tree is mounted")
    user = make_user(users)
    path = f"lamina-test-{uuid.uuid4().hex[:12]}"
    directory = os.path.join(MOUNT, path)
    os.mkdir(directory)
    try:
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):  # what Delegate=yes does
            os.chown(os.path.join(directory, name), user.uid, user.gid)
        result = Delegated(user, path)
        result.ok("load", "-q", "-i", os.path.abspath(FIXTURE))
        yield result
    finally:
        kill_processes_of(user.uid)
        _remove_tree(directory)


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as handle:
        return next(line[3:].strip() for line in handle if line.startswith("0::"))


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def _events(directory: str) -> dict[str, str]:
    with open(os.path.join(directory, "cgroup.events"), encoding="ascii") as handle:
        return dict(line.split() for line in handle if line.strip())


def _wait_gone(path: str) -> None:
    deadline = time.monotonic() + 20
    while os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} is still there"
        time.sleep(0.05)


def _container(delegated: Delegated, *command: str) -> tuple[str, int]:
    name = "d" + uuid.uuid4().hex[:8]
    delegated.ok("run", "-d", "--name", name, "busybox", *command)
    state = json.loads(delegated.ok("inspect", name))[0]
    return state["Id"], state["State"]["Pid"]


def test_a_container_gets_a_leaf_of_the_delegated_cgroup(delegated: Delegated) -> None:
    container_id, pid = _container(delegated, "sleep", "300")
    try:
        assert _cgroup_of(pid) == f"/{delegated.path}/lamina/{container_id}"
        leaf = delegated.leaf(container_id)
        assert os.stat(leaf).st_uid == delegated.user.uid
        # its monitor lives in the engine leaf, the pause process in its own: the delegated
        # cgroup itself keeps no process (the kernel's no-internal-processes rule)
        assert _cgroup_of(_parent_of(pid)) == f"/{delegated.path}/lamina/engine"
        with open(os.path.join(delegated.user.runtime_dir, "lamina", "pause.pid"), encoding="ascii") as handle:
            assert _cgroup_of(int(handle.read())) == f"/{delegated.path}/lamina/pause"
        with open(os.path.join(delegated.directory, "cgroup.procs"), encoding="ascii") as handle:
            assert handle.read() == ""
        assert delegated.ok("top", container_id).count("sleep 300") == 1
        stats = delegated.ok("stats", "--no-stream", "--format", "{{.PIDs}}", container_id)
        assert stats.strip() == "1"
        # an exec's process joins the container's leaf
        delegated.ok("exec", "-d", container_id, "sleep", "301")
        deadline = time.monotonic() + 20
        while "sleep 301" not in delegated.ok("top", container_id):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _members_when(leaf, 2)
    finally:
        delegated.ok("rm", "-f", container_id)
    _wait_gone(delegated.leaf(container_id))


def test_pause_and_unpause_use_the_freezer(delegated: Delegated) -> None:
    container_id, pid = _container(delegated, "sleep", "300")
    leaf = delegated.leaf(container_id)
    try:
        delegated.ok("pause", container_id)
        assert _events(leaf)["frozen"] == "1"
        assert json.loads(delegated.ok("inspect", container_id))[0]["State"]["Status"] == "paused"
        delegated.ok("unpause", container_id)
        assert _events(leaf)["frozen"] == "0"
        assert json.loads(delegated.ok("inspect", container_id))[0]["State"]["Status"] == "running"
        # commit pauses the container while it reads the layer, and thaws it after
        delegated.ok("commit", container_id, "delegated:committed")
        assert _events(leaf)["frozen"] == "0"
    finally:
        delegated.ok("rm", "-f", container_id)
    _wait_gone(leaf)


def test_stop_kills_every_process_and_removes_the_leaf(delegated: Delegated) -> None:
    container_id, pid = _container(delegated, "sh", "-c", "sleep 300 & sleep 300 & wait")
    leaf = delegated.leaf(container_id)
    members = _members_when(leaf, 3)
    assert pid in members
    delegated.ok("stop", "-t", "1", container_id)
    _wait_gone(leaf)
    for member in members:
        assert not os.path.exists(f"/proc/{member}") or _is_zombie_or_other(member, leaf)
    delegated.ok("rm", container_id)


def _members_when(leaf: str, count: int) -> list[int]:
    """The pids in ``leaf`` once there are ``count`` (a shell forks its children after start)."""
    deadline = time.monotonic() + 20
    while True:
        with open(os.path.join(leaf, "cgroup.procs"), encoding="ascii") as handle:
            members = [int(line) for line in handle.read().split()]
        if len(members) == count:
            return members
        assert time.monotonic() < deadline, members
        time.sleep(0.05)


def _is_zombie_or_other(pid: int, leaf: str) -> bool:
    try:
        return not _cgroup_of(pid).endswith(os.path.basename(leaf))
    except (OSError, StopIteration):
        return True


@pytest.mark.parametrize("args, controller, option", [
    (("--memory", "16m"), "memory", "--memory"),
    (("--cpus", "0.5"), "cpu", "--cpus"),
    (("--pids-limit", "10"), "pids", "--pids-limit"),
], ids=["a memory limit", "a cpu quota", "a pids limit"])
def test_a_limit_of_a_controller_not_delegated_is_refused_by_name(delegated: Delegated, args, controller,
                                                                    option) -> None:
    if controller in _offered():
        pytest.skip(f"this host's cgroup v2 tree offers the {controller} controller")
    before = delegated.ok("ps", "-aq")
    result = delegated.lamina("run", "--rm", *args, "busybox", "true")
    assert result.returncode != 0
    expected = f"rootless lamina: the {controller} controller is not delegated to this user: {option} cannot be applied"
    assert expected.encode() in result.stderr, result.stderr
    assert delegated.ok("ps", "-aq") == before
    container_id, _ = _container(delegated, "sleep", "300")
    try:
        result = delegated.lamina("update", *args, container_id)
        assert result.returncode != 0 and expected.encode() in result.stderr, result.stderr
    finally:
        delegated.ok("rm", "-f", container_id)


def test_a_pids_limit_is_applied_where_the_controller_is_delegated(delegated: Delegated) -> None:
    if "pids" not in _offered():
        pytest.skip("this host's cgroup v2 tree has no pids controller (a hybrid host: v1 holds it)")
    container_id, _ = _container(delegated, "sh", "-c", "sleep 300")
    try:
        with open(os.path.join(delegated.leaf(container_id), "pids.max"), encoding="ascii") as handle:
            assert handle.read().strip() == "max"
    finally:
        delegated.ok("rm", "-f", container_id)
    out = delegated.ok("run", "--rm", "--pids-limit", "7", "busybox", "cat", "/sys/fs/cgroup/pids.max")
    assert out.strip() == "7"


def test_info_says_which_controllers_are_delegated(delegated: Delegated) -> None:
    info = json.loads(delegated.ok("info", "--format", "{{json .}}"))
    assert info["CgroupDriver"] == "cgroupfs" and info["CgroupVersion"] == "2"
    assert info["LaminaRootlessCgroup"] == delegated.directory
    offered = _offered()
    assert info["MemoryLimit"] is ("memory" in offered) and info["PidsLimit"] is ("pids" in offered)
    if "memory" not in offered:
        assert any("the memory controller is not delegated to this user: --memory, --memory-swap" in warning
                   for warning in info["Warnings"]), info["Warnings"]


def test_a_dead_containers_leaf_is_swept_at_start_up(delegated: Delegated) -> None:
    delegated.ok("ps")  # the layout exists
    leftover = delegated.leaf(uuid.uuid4().hex + uuid.uuid4().hex)
    subprocess.run(delegated.user.command("mkdir", leftover), check=True)
    busy_id, _ = _container(delegated, "sleep", "300")
    try:
        delegated.ok("ps")
        assert not os.path.exists(leftover)
        assert os.path.isdir(delegated.leaf(busy_id))  # a running container's leaf stays
        assert os.path.isdir(delegated.leaf("engine")) and os.path.isdir(delegated.leaf("pause"))
    finally:
        delegated.ok("rm", "-f", busy_id)


def test_outside_the_delegated_cgroup_nothing_changes(delegated: Delegated) -> None:
    """The same user, started outside its delegated cgroup: no cgroup, as before."""
    user = delegated.user
    name = "o" + uuid.uuid4().hex[:8]
    user.ok("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        pid = json.loads(user.ok("inspect", name))[0]["State"]["Pid"]
        assert "/lamina/" not in _cgroup_of(pid)
        result = user.lamina("pause", name)
        assert result.returncode != 0 and b"cgroups are not delegated to this user" in result.stderr
        refused = user.lamina("run", "--rm", "--memory", "16m", "busybox", "true")
        assert b"cgroups are not delegated to this user, so containers have no cgroup of their own" \
            in refused.stderr
        assert json.loads(user.ok("info", "--format", "{{json .}}"))["CgroupDriver"] == "none"
    finally:
        user.ok("rm", "-f", name)


def test_a_delegated_container_is_paused_and_stopped_from_outside_the_cgroup(delegated: Delegated) -> None:
    """A lamina process started outside the delegated cgroup finds a container's cgroup
    through its PID 1: pause and stop still use the freezer and cgroup.kill."""
    container_id, _ = _container(delegated, "sh", "-c", "sleep 300 & sleep 300 & wait")
    leaf = delegated.leaf(container_id)
    user = delegated.user
    _members_when(leaf, 3)
    try:
        user.ok("pause", container_id)
        assert _events(leaf)["frozen"] == "1"
        user.ok("unpause", container_id)
        assert _events(leaf)["frozen"] == "0"
        lines = user.ok("top", container_id).splitlines()
        assert sum(line.endswith(" sleep 300") for line in lines) == 2 and len(lines) == 4
        user.ok("stop", "-t", "1", container_id)
        _wait_gone(leaf)
    finally:
        user.ok("rm", "-f", container_id)
