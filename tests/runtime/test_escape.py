"""The runtime is not reachable from inside the container (the runc CVE-2019-5736 class): no
process of the container catches a lamina process's host binary through ``/proc/<pid>/exe``
while it joins, a ``#!/proc/self/exe`` command does not start the host interpreter, and the
init's environment and memory are closed to container root."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator

import pytest

from lamina import sys as lsys
from lamina.runtime import capabilities as caps
from lamina.runtime.api import DEFAULT_CAPABILITIES, ProcessSpec

from .conftest import PATH_ENV, Harness

pytestmark = pytest.mark.privileged

# a host range no /etc/subuid names: the runtime takes any map it is given
REMAP = (0, 2_000_000_000, 65536)


@pytest.fixture(params=[None, REMAP], ids=["host user namespace", "remapped user namespace"])
def harness(rootfs: str, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Every escape check twice: as lamina runs containers by default, and in a user namespace
    (``--userns-remap``)."""
    instance = Harness(rootfs, remap=request.param)
    try:
        yield instance
    finally:
        instance.cleanup()


def _host_binaries() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the host interpreter (the binary every lamina process runs)."""
    return {(info.st_dev, info.st_ino) for info in (os.stat(os.path.realpath("/proc/self/exe")),)}


def _attacker(container_pid: int, report: int, stop: int, deadline: float) -> None:
    """A process with container root's view and capabilities: it joins the container's mount
    namespace (so ``/proc`` is the container's), keeps only Docker's default capabilities
    (no CAP_SYS_PTRACE) and opens ``/proc/<pid>/exe`` of every new process until ``stop`` is
    readable (or ``deadline`` passed); writes one line per host binary it caught to
    ``report``."""
    code = 1
    try:
        mount_namespace = os.open(f"/proc/{container_pid}/ns/mnt", os.O_RDONLY)
        host = _host_binaries()
        lsys.setns(mount_namespace, lsys.CLONE_NEWNS)
        mask = caps.capability_mask(DEFAULT_CAPABILITIES)
        caps.drop_bounding_set(mask, caps.last_capability())
        caps.set_capabilities(mask, mask, 0)
        os.write(report, b"ready\n")
        while not select.select([stop], [], [], 0)[0] and time.monotonic() < deadline:
            for name in os.listdir("/proc"):
                if not name.isdigit() or name == "1":
                    continue
                try:
                    fd = os.open(f"/proc/{name}/exe", os.O_RDONLY)
                except OSError:
                    continue
                try:
                    info = os.fstat(fd)
                finally:
                    os.close(fd)
                if (info.st_dev, info.st_ino) in host:
                    os.write(report, f"caught {name}\n".encode())
        code = 0
    finally:
        os._exit(code)


def _reap_within(pid: int, timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.01)


def _read_lines(fd: int, deadline: float, until: bytes | None = None) -> bytes:
    data = b""
    while time.monotonic() < deadline and (until is None or until not in data):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def test_racing_opens_of_proc_pid_exe_during_exec_never_catch_the_host_binary(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sleep", "60"))
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    stop_read, stop_write = os.pipe2(os.O_CLOEXEC)
    attacker = os.fork()
    if attacker == 0:
        os.close(stop_write)  # or the stop pipe never reads EOF
        os.close(report_read)
        _attacker(state.pid, report_write, stop_read, time.monotonic() + 60)
    os.close(report_write)
    os.close(stop_read)
    try:
        ready = _read_lines(report_read, time.monotonic() + 10, b"ready\n")
        assert b"ready\n" in ready, f"the attacker did not get ready within 10 s: {ready!r}"
        process = ProcessSpec(args=("true",), env=(PATH_ENV,), cwd="/")
        for _ in range(40):
            pid, exec_out, exec_err = harness.exec(state, process)
            harness.collect(exec_out, exec_err)
            assert harness.wait(pid) == 0
    finally:
        os.close(stop_write)
        status = _reap_within(attacker, 10, "the attacker to stop")
        caught = _read_lines(report_read, time.monotonic() + 5)
        os.close(report_read)
        harness.runtime.kill(state, signal.SIGKILL)
        harness.wait(state.pid)
        harness.collect(out_read, err_read)
    assert os.waitstatus_to_exitcode(status) == 0, "the attacker failed"
    assert caught.replace(b"ready\n", b"") == b"", caught.decode()


def test_a_proc_self_exe_interpreter_does_not_run_the_host_binary(harness: Harness) -> None:
    script = os.path.join(harness.rootfs, "evil")
    with open(script, "w", encoding="ascii") as handle:
        handle.write("#!/proc/self/exe\nprint('the host interpreter runs in the container')\n")
    os.chmod(script, 0o755)
    for args in (("/evil",), ("/evil", "/bin/sh", "-c", "echo hello")):
        result = harness.run(*args)
        output = result.stdout + result.stderr
        assert "Python" not in output and "host interpreter" not in output, output
        assert result.exit_code == 126, (result.exit_code, output)


@pytest.mark.parametrize("init", [False, True], ids=["the command as PID 1", "under the init"])
def test_container_root_cannot_read_the_environment_memory_or_binary_of_a_lamina_pid_1(
        harness: Harness, init: bool) -> None:
    script = ("for f in environ maps exe; do if cat /proc/1/$f >/dev/null 2>&1; then echo $f=open; "
              "else echo $f=closed; fi; done")
    command = ("sh", "-c", script) if init else ("sh", "-c", f"sh -c '{script}'")
    result = harness.run(*command, init=init)
    assert result.exit_code == 0, result.stderr
    if init:
        assert result.stdout.split() == ["environ=closed", "maps=closed", "exe=closed"]
    else:
        # PID 1 is the container's own shell: its files are open to container root, as in Docker
        assert result.stdout.split() == ["environ=open", "maps=open", "exe=open"]


def test_the_container_sees_its_own_cgroups_read_only_in_every_hierarchy(harness: Harness) -> None:
    from lamina.runtime.cgroups import detect_layout

    script = ("ls /sys/fs/cgroup; echo ---; "
              "for d in /sys/fs/cgroup/*; do [ -e $d/release_agent ] && echo release_agent in $d; "
              "grep -qx 1 $d/cgroup.procs || echo 1 missing from $d; "
              "mkdir $d/escape 2>/dev/null && echo writable $d; done; "
              "touch /sys/fs/cgroup/x 2>/dev/null && echo writable tmpfs; cat /proc/self/cgroup")
    result = harness.run("sh", "-c", script)
    assert result.exit_code == 0, result.stderr
    listing, _, rest = result.stdout.partition("---\n")
    layout = detect_layout()
    points = {point for _, point in layout.mounts}
    expected = {"" if os.path.normpath(point) == "/sys/fs/cgroup" else os.path.basename(point) for point in points}
    if "" not in expected:
        assert set(listing.split()) == expected, (listing, expected)  # hugetlb and systemd too
    problems = [line for line in rest.splitlines() if line.startswith(("release_agent", "1 missing", "writable"))]
    assert problems == [], rest
    # a cgroup namespace: the container's own cgroups are its root
    assert all(line.endswith(":/") for line in rest.splitlines() if line.count(":") >= 2 and line[0].isdigit()), rest
    for point in points:  # created in every hierarchy on the host
        assert os.path.isdir(os.path.join(point, result.state.cgroup)), point


def _ptrace_attacker(container_pid: int, report: int, stop: int, deadline: float) -> None:
    """Container root with ``--cap-add SYS_PTRACE``: in the container's mount namespace, with
    Docker's default capabilities plus CAP_SYS_PTRACE (which lets it past the non-dumpable
    flag), it watches every new process of the container's pid namespace and reports one
    that is still in another mount namespace (the host's: the exec has not joined yet) or
    still holds a capability the container does not have: a process it could attach to and
    use to act on the host."""
    code = 1
    try:
        own_mount = os.readlink(f"/proc/{container_pid}/ns/mnt")
        mount_namespace = os.open(f"/proc/{container_pid}/ns/mnt", os.O_RDONLY)
        lsys.setns(mount_namespace, lsys.CLONE_NEWNS)
        mask = caps.capability_mask((*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"))
        container_mask = mask
        caps.drop_bounding_set(mask, caps.last_capability())
        caps.set_capabilities(mask, mask, 0)
        os.write(report, b"ready\n")
        seen: set[str] = set()
        caught: set[str] = set()
        while not select.select([stop], [], [], 0)[0] and time.monotonic() < deadline:
            for name in os.listdir("/proc"):
                if not name.isdigit() or name == "1":
                    continue
                try:
                    namespace = os.readlink(f"/proc/{name}/ns/mnt")
                    with open(f"/proc/{name}/status", encoding="ascii") as handle:
                        status = handle.read()
                except OSError:
                    continue
                effective = int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)
                if name not in seen:
                    seen.add(name)
                    os.write(report, b"seen\n")
                problem = (f"in {namespace}" if namespace != own_mount else
                           f"with capabilities {effective:x}" if effective & ~container_mask else "")
                if problem and name not in caught:  # once per process: the pipe is read at the end
                    caught.add(name)
                    os.write(report, f"caught {name} {problem}\n".encode())
        code = 0
    finally:
        os._exit(code)


def test_with_cap_sys_ptrace_no_exec_is_seen_before_it_joined_and_dropped_its_privileges(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sleep", "60"))
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    stop_read, stop_write = os.pipe2(os.O_CLOEXEC)
    attacker = os.fork()
    if attacker == 0:
        os.close(stop_write)
        os.close(report_read)
        _ptrace_attacker(state.pid, report_write, stop_read, time.monotonic() + 60)
    os.close(report_write)
    os.close(stop_read)
    try:
        ready = _read_lines(report_read, time.monotonic() + 10, b"ready\n")
        assert b"ready\n" in ready, f"the attacker did not get ready within 10 s: {ready!r}"
        # before the fix nearly every exec was caught; each lives 50 ms so the attacker sees it
        process = ProcessSpec(args=("sleep", "0.05"), env=(PATH_ENV,), cwd="/")
        for _ in range(25):
            pid, exec_out, exec_err = harness.exec(state, process)
            harness.collect(exec_out, exec_err)
            assert harness.wait(pid) == 0
    finally:
        os.close(stop_write)
        status = _reap_within(attacker, 10, "the attacker to stop")
        report = _read_lines(report_read, time.monotonic() + 5)
        os.close(report_read)
        harness.runtime.kill(state, signal.SIGKILL)
        harness.wait(state.pid)
        harness.collect(out_read, err_read)
    assert os.waitstatus_to_exitcode(status) == 0, "the attacker failed"
    lines = report.decode().splitlines()
    assert lines.count("seen") >= 12, f"the attacker saw only {lines.count('seen')} of the 25 execs"
    assert [line for line in lines if line.startswith("caught")] == [], report.decode()


def test_an_exec_is_moved_into_the_container_s_cgroups_and_starts_at_the_pids_limit(harness: Harness) -> None:
    from lamina.runtime.api import Resources

    state, out_read, err_read = harness.start(harness.spec("sleep", "60", resources=Resources(pids_limit=1)))
    try:
        # one process (no fork: the limit is reached), which prints its cgroups then PID 1's
        pid, exec_out, exec_err = harness.exec(state, ProcessSpec(args=("cat", "/proc/self/cgroup", "/proc/1/cgroup"),
                                                                  env=(PATH_ENV,), cwd="/"))
        out, err = harness.collect(exec_out, exec_err)
        assert harness.wait(pid) == 0, err
        lines = out.splitlines()
        assert lines and lines[:len(lines) // 2] == lines[len(lines) // 2:], out
    finally:
        harness.runtime.kill(state, signal.SIGKILL)
        harness.wait(state.pid)
        harness.collect(out_read, err_read)
