"""A container's processes without a cgroup: the members of its pid namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from lamina import errdefs
from lamina.runtime.api import Resources
from lamina.runtime.nocgroup import PidNamespaceMembers, refuse_limits
from tests.processes import children


def _wait_for(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def namespace():
    """(unshare's process, the host pid of PID 1 of a new pid namespace running two sleeps)."""
    process = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", "sleep 300 & sleep 300"])
    try:
        init = _wait_for(lambda: children(process.pid), "PID 1 of the namespace")[0]
        _wait_for(lambda: len(children(init)) == 2, "the two sleeps")
        yield process, init
    finally:
        process.kill()
        process.wait()


@pytest.mark.privileged
def test_the_members_are_the_processes_of_the_pid_namespace(namespace) -> None:
    _, init = namespace
    members = PidNamespaceMembers("lamina/test", init)
    assert members.pids() == sorted([init, *children(init)])
    assert members.exists()


@pytest.mark.privileged
def test_a_process_that_is_no_namespace_init_has_no_members(namespace) -> None:
    _, init = namespace
    sleeper = children(init)[0]
    assert PidNamespaceMembers("lamina/test", sleeper).pids() == []


@pytest.mark.privileged
def test_sigkill_of_all_ends_the_namespace(namespace) -> None:
    process, init = namespace
    members = PidNamespaceMembers("lamina/test", init)
    sleepers = children(init)
    members.kill_all(signal.SIGKILL)
    process.wait(timeout=10)
    _wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in sleepers),
              "the sleeps to end")
    assert members.pids() == []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_process_of_the_callers_namespace_is_its_own_group() -> None:
    assert PidNamespaceMembers("lamina/test", os.getpid()).pids() == [os.getpid()]
    assert PidNamespaceMembers("lamina/test", None).pids() == []


def test_limits_and_the_freezer_are_refused_with_the_options_named() -> None:
    refuse_limits(Resources())
    with pytest.raises(errdefs.FailedPrecondition, match=r"--memory, --pids-limit cannot be applied"):
        refuse_limits(Resources(memory=1 << 24, pids_limit=10))
    with pytest.raises(errdefs.FailedPrecondition, match="freezer"):
        PidNamespaceMembers("lamina/test", os.getpid()).freeze()


@pytest.mark.privileged
def test_stats_come_from_proc(namespace) -> None:
    _, init = namespace
    stats = PidNamespaceMembers("lamina/test", init).stats()
    assert stats["pids_stats"] == {"current": 3}
    memory = stats["memory_stats"]
    assert 0 < memory["usage"] < memory["limit"]
    cpu = stats["cpu_stats"]
    assert cpu["system_cpu_usage"] > 0 and cpu["online_cpus"] >= 1
    assert cpu["cpu_usage"]["total_usage"] == cpu["cpu_usage"]["usage_in_usermode"] + cpu["cpu_usage"]["usage_in_kernelmode"]
