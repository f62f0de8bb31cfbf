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
