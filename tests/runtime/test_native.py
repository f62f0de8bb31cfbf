"""The native runtime against the real kernel: namespaces, mounts, /dev, users, exec, PID 1
signals, capabilities, seccomp.  Every test starts real busybox containers."""

from __future__ import annotations

import errno
import os
import re
import signal
import time

import pytest

from lamina import errdefs
from lamina.records import replace
from lamina.runtime.api import (
    DEFAULT_CAPABILITIES,
    ContainerSpec,
    MountSpec,
    ProcessSpec,
    RuntimeState,
    Stdio,
)
from lamina.runtime.capabilities import capability_mask
from lamina.runtime.native import ExecError
from lamina.runtime.user import resolve_user_in_root

from .conftest import PATH_ENV, Harness

pytestmark = pytest.mark.privileged


def test_the_command_is_pid_1_and_sees_only_its_own_processes(harness: Harness) -> None:
    result = harness.run("sh", "-c", "echo $$; ps -o pid,comm; true")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1"
    pids = [line.split()[0] for line in lines[2:]]
    assert pids == ["1", "2"], result.stdout  # sh and ps, nothing of the host


def test_the_hostname_is_set_in_a_private_uts_namespace(harness: Harness) -> None:
    result = harness.run("hostname", hostname="lamina-test")
    assert result.stdout.strip() == "lamina-test"
    assert os.uname().nodename != "lamina-test"


def test_a_private_network_has_only_loopback_and_it_is_up(harness: Harness) -> None:
    result = harness.run("sh", "-c", "cat /proc/net/dev; ip link show lo")
    assert result.exit_code == 0, result.stderr
    devices = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]
               if re.match(r"\s*[\w.-]+:\s+\d", line)]
    assert devices == ["lo"], result.stdout
    assert "UP" in result.stdout.split("<", 1)[1].split(">", 1)[0], result.stdout


def _interfaces(text: str) -> set[str]:
    return {line.split(":")[0].strip() for line in text.splitlines()[2:]}


def test_network_host_sees_the_host_interfaces(harness: Harness) -> None:
    # other tests (another worker) add and remove veths meanwhile: every interface that
    # existed for the whole run must be seen, and nothing the host never had
    with open("/proc/net/dev") as handle:
        before = _interfaces(handle.read())
    result = harness.run("cat", "/proc/net/dev", network="host")
    with open("/proc/net/dev") as handle:
        after = _interfaces(handle.read())
    inside = _interfaces(result.stdout)
    assert before & after <= inside <= before | after
    assert len(before & after) > 1


def test_proc_dev_and_sys_are_mounted_like_docker(harness: Harness) -> None:
    script = ("stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty;"
              "for link in ptmx fd stdin stdout stderr; do readlink /dev/$link; done;"
              "cat /proc/mounts;"
              "echo data > /dev/null && head -c 3 /dev/zero | od -An -tx1;"
              "touch /sys/kernel/x 2>&1; echo touch=$?")
    result = harness.run("sh", "-c", script)
    lines = result.stdout.splitlines()
    nodes = {line.split()[0]: line.split(" ", 1)[1] for line in lines[:6]}
    assert nodes == {
        "/dev/null": "character special file 1:3 666", "/dev/zero": "character special file 1:5 666",
        "/dev/full": "character special file 1:7 666", "/dev/random": "character special file 1:8 666",
        "/dev/urandom": "character special file 1:9 666", "/dev/tty": "character special file 5:0 666",
    }, result.stdout + result.stderr
    assert lines[6:11] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"]
    mounts = {fields[1]: (fields[2], fields[3].split(",")) for fields in
              (line.split() for line in lines[11:]) if len(fields) >= 4}
    assert mounts["/proc"][0] == "proc"
    assert mounts["/dev"][0] == "tmpfs" and "nosuid" in mounts["/dev"][1]
    assert mounts["/dev/pts"][0] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][1]
    assert "gid=5" in mounts["/dev/pts"][1] and "mode=620" in mounts["/dev/pts"][1]
    assert mounts["/dev/shm"][0] == "tmpfs" and "size=65536k" in mounts["/dev/shm"][1]
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert "/dev/console" not in mounts
    assert " 00 00 00" in result.stdout
    assert "touch=1" in result.stdout
    assert "Read-only file system" in result.stdout


def test_the_host_mounts_are_not_visible_and_the_host_is_untouched(harness: Harness, tmp_path) -> None:
    def host_mounts_under_the_test() -> list[str]:
        with open("/proc/self/mountinfo") as handle:
            return [line.split()[4] for line in handle if line.split()[4].startswith(str(tmp_path))]

    before = host_mounts_under_the_test()
    result = harness.run("cat", "/proc/self/mountinfo")
    points = [line.split()[4] for line in result.stdout.splitlines()]
    # the old root is gone after pivot_root: only the container's own mounts are left
    assert points[0] == "/"
    assert all(point.startswith(("/proc", "/dev", "/sys")) for point in points[1:]), points
    assert len(points) < 30
    # the container's mounts happened in its own namespace: the host still has just the overlay
    assert host_mounts_under_the_test() == before == [harness.rootfs]


def test_masked_and_read_only_paths(harness: Harness) -> None:
    script = ("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; grep -E ' /proc/(sys|bus|irq|fs) ' /proc/mounts;"
              "echo 1 > /proc/sys/kernel/printk 2>/dev/null; echo write=$?")
    result = harness.run("sh", "-c", script)
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "0"  # /dev/null over it
    with open("/proc/timer_list") as handle:
        assert handle.read(10)  # the host's is not empty: the container's really is masked
    assert lines[1].strip() == "0"
    read_only = {line.split()[1] for line in lines[2:] if line.startswith("proc ") and " ro," in line}
    assert {"/proc/sys", "/proc/bus", "/proc/irq", "/proc/fs"} <= read_only
    assert lines[-1] == "write=1"


def test_a_bind_mount_through_an_image_symlink_stays_inside_the_rootfs(harness: Harness, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    source = tmp_path / "volume"
    source.mkdir()
    (source / "marker").write_text("from the volume\n")
    # the image points a directory at a host path, and /mnt/etc at the host's /etc
    os.symlink(str(victim), os.path.join(harness.rootfs, "escape"))
    os.symlink("/etc", os.path.join(harness.rootfs, "mnt", "etc"))
    mounts = (MountSpec("/escape/sub", "bind", str(source), ("rbind", "ro")),
              MountSpec("/mnt/etc", "bind", str(source), ("rbind",)))
    result = harness.run("sh", "-c", f"cat {victim}/sub/marker; cat /etc/marker; touch /escape/sub/x 2>&1; true",
                         mounts=mounts)
    assert result.stdout.splitlines()[:2] == ["from the volume", "from the volume"], result.stdout + result.stderr
    assert "Read-only file system" in result.stdout
    assert not (victim / "sub").exists()  # nothing was created on the host
    assert not os.path.exists("/etc/marker")
    assert os.path.isdir(os.path.join(harness.rootfs, victim.relative_to("/"), "sub"))


def test_a_tmpfs_mount_and_its_options(harness: Harness) -> None:
    mounts = (MountSpec("/data/cache", "tmpfs", "tmpfs", ("nosuid", "size=1m", "mode=1777")),)
    result = harness.run("sh", "-c", "grep ' /data/cache ' /proc/mounts; stat -c %a /data/cache", mounts=mounts)
    fields = result.stdout.split()
    assert fields[2] == "tmpfs" and "size=1024k" in fields[3] and "nosuid" in fields[3]
    assert result.stdout.splitlines()[1] == "1777"


def test_a_read_only_rootfs_refuses_writes(harness: Harness) -> None:
    result = harness.run("sh", "-c", "touch /x 2>&1; touch /tmp/y 2>&1; touch /dev/shm/z && echo shm-ok",
                         readonly_rootfs=True)
    assert result.stdout.count("Read-only file system") == 2, result.stdout
    assert "shm-ok" in result.stdout
    assert not os.path.exists(os.path.join(harness.rootfs, "x"))


def test_users_by_name_and_number_with_supplementary_groups(harness: Harness) -> None:
    nobody = resolve_user_in_root(harness.rootfs, "nobody")
    result = harness.run("sh", "-c", "id; echo $HOME", uid=nobody.uid, gid=nobody.gid,
                         additional_gids=nobody.additional_gids)
    assert result.stdout.splitlines() == ["uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)", "/"]

    daemon = resolve_user_in_root(harness.rootfs, "daemon")
    result = harness.run("id", uid=daemon.uid, gid=daemon.gid, additional_gids=daemon.additional_gids)
    assert result.stdout.strip() == "uid=2(daemon) gid=2(daemon) groups=1(bin),2(daemon),4(adm)"

    numeric = resolve_user_in_root(harness.rootfs, "1234:5678")
    result = harness.run("sh", "-c", "id; grep Cap[EP] /proc/self/status", uid=numeric.uid, gid=numeric.gid,
                         additional_gids=numeric.additional_gids)
    lines = result.stdout.splitlines()
    assert lines[0] == "uid=1234 gid=5678 groups=5678"
    assert lines[1:] == ["CapPrm:\t0000000000000000", "CapEff:\t0000000000000000"]  # like Docker

    with pytest.raises(errdefs.InvalidArgument, match="unable to find user nosuch: no matching entries in passwd file"):
        resolve_user_in_root(harness.rootfs, "nosuch")


def test_env_and_a_missing_working_directory_that_gets_created(harness: Harness) -> None:
    result = harness.run("sh", "-c", "pwd; echo $GREETING; echo $HOME", env=(PATH_ENV, "GREETING=hello world"),
                         cwd="/does/not/exist")
    assert result.stdout.splitlines() == ["/does/not/exist", "hello world", "/root"]
    assert os.path.isdir(os.path.join(harness.rootfs, "does/not/exist"))


def test_a_working_directory_through_a_leaked_descriptor_is_refused(harness: Harness) -> None:
    # runc CVE-2024-21626: a cwd of /proc/self/fd/N where N is a host directory fd
    leaked = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leaked, True)
    try:
        with pytest.raises(errdefs.LaminaError):
            harness.run("pwd", cwd=f"/proc/self/fd/{leaked}")
    finally:
        os.close(leaked)


@pytest.mark.parametrize(("command", "code", "message"), [
    ("nosuch", 127, 'exec: "nosuch": executable file not found in $PATH'),
    ("/nosuch", 127, 'exec: "/nosuch": stat /nosuch: no such file or directory'),
    ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied'),
    ("/etc", 126, 'exec: "/etc": permission denied'),
], ids=["a bare name not in PATH", "a missing path", "a file that is not executable", "a directory"])
def test_a_command_that_cannot_run_reports_docker_s_error(harness: Harness, command: str, code: int,
                                                          message: str) -> None:
    spec = harness.spec(command)
    with pytest.raises(ExecError) as caught:
        harness.start(spec)
    assert caught.value.exit_code == code
    assert str(caught.value) == message
    assert isinstance(caught.value, errdefs.LaminaError)
    assert not harness.cgroup(_state_for(spec)).exists()  # rolled back


def _state_for(spec: ContainerSpec) -> RuntimeState:
    """A state naming the spec's cgroup, to check that a failed start removed it."""
    return RuntimeState(id=spec.id, pid=0, runtime="native", cgroup=f"{spec.cgroup_parent}/{spec.id}")


def test_a_failing_mount_comes_back_as_an_error_and_rolls_back(harness: Harness, tmp_path) -> None:
    spec = harness.spec("true", mounts=(MountSpec("/data", "bind", str(tmp_path / "missing"), ("rbind",)),))
    with pytest.raises(errdefs.NotFound, match="bind source path does not exist"):
        harness.start(spec)
    assert not harness.cgroup(_state_for(spec)).exists()


def test_descriptors_of_the_parent_are_not_inherited(harness: Harness) -> None:
    inherited = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        result = harness.run("sh", "-c", "ls /proc/$$/fd; true")  # $$ is the shell, not ls
    finally:
        os.close(inherited)
    descriptors = {int(name) for name in result.stdout.split()}
    assert inherited not in descriptors
    assert descriptors & set(range(3, 10)) == set(), result.stdout


def test_starting_a_running_container_again_is_a_conflict(harness: Harness) -> None:
    spec = harness.spec("sleep", "30")
    state, out_read, err_read = harness.start(spec)
    with pytest.raises(errdefs.Conflict, match="already running"):
        harness.start(spec)
    assert harness.cgroup(state).pids() == [state.pid]  # the first one is untouched
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_without_init_pid_1_ignores_sigterm(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sleep", "30"))
    os.kill(state.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert harness.alive(state.pid)  # no handler: the kernel drops the signal for a pid-ns init
    harness.runtime.kill(state, signal.SIGKILL)
    assert harness.wait(state.pid) == 137
    harness.collect(out_read, err_read)


def test_with_init_sigterm_reaches_the_command_and_zombies_are_reaped(harness: Harness) -> None:
    script = 'sh -c "sleep 0.1 &"; sleep 0.4; ps -o pid,stat,comm; echo ready; exec sleep 30'
    state, out_read, err_read = harness.start(harness.spec("sh", "-c", script, init=True))
    deadline = time.monotonic() + 10
    ready = b""
    while b"ready" not in ready and time.monotonic() < deadline:
        ready += os.read(out_read, 4096)
    listing = ready.decode()
    assert " Z " not in listing, listing  # the orphaned sleep was reaped by the init
    assert listing.splitlines()[1].split()[0] == "1" and "sh" not in listing.splitlines()[1]
    time.sleep(0.05)
    harness.runtime.kill(state, signal.SIGTERM)
    assert harness.wait(state.pid, 5) == 143  # sleep died of SIGTERM; the init reports 128 + 15
    harness.collect(out_read, err_read)


def _release_fifo(path: str, timeout: float = 10.0) -> None:
    """Open ``path`` for writing once its reader is there (within ``timeout``), and close it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise AssertionError(f"nobody opened the fifo {path} for reading within {timeout} s") from exc
            time.sleep(0.01)


def test_exec_joins_the_namespaces_and_the_cgroup(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sh", "-c", "echo inside > /tmp/file; exec sleep 30",
                                                           hostname="joined"))
    time.sleep(0.1)
    # the exec waits on a fifo until the test saw it in the cgroup (an exited process leaves it)
    os.mkfifo(os.path.join(harness.rootfs, "go"))
    process = ProcessSpec(args=("sh", "-c", "cat /go; hostname; cat /tmp/file; ps -o pid,comm; echo $$"),
                          env=(PATH_ENV,), cwd="/tmp")
    pid, exec_out, exec_err = harness.exec(state, process)
    assert pid in harness.cgroup(state).pids()
    _release_fifo(os.path.join(harness.rootfs, "go"))
    stdout, stderr = harness.collect(exec_out, exec_err)
    assert harness.wait(pid) == 0, stderr
    lines = stdout.splitlines()
    assert lines[:2] == ["joined", "inside"]
    processes = {line.split()[1]: line.split()[0] for line in lines[3:-1]}
    assert processes["sleep"] == "1"
    assert int(lines[-1]) > 1  # a pid of the container's namespace, not the host's
    assert int(lines[-1]) != pid
    with pytest.raises(ExecError, match='exec: "nosuch": executable file not found in \\$PATH'):
        harness.exec(state, replace(process, args=("nosuch",)))
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)
    with pytest.raises(errdefs.Conflict):
        harness.exec(state, process)


def test_a_container_joins_the_namespaces_of_another_and_dies_with_its_pid_1(harness: Harness) -> None:
    first, out_read, err_read = harness.start(harness.spec("sleep", "30", hostname="first"))
    time.sleep(0.1)
    paths = tuple((name, f"/proc/{first.pid}/ns/{name}") for name in ("pid", "uts", "ipc"))
    result = harness.run("sh", "-c", "hostname; cat /proc/1/cmdline; echo; echo $$; readlink /proc/self/ns/ipc; "
                         "readlink /proc/self/ns/net", namespace_paths=paths,
                         network_namespace=f"/proc/{first.pid}/ns/net")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["first", "sleep\x0030\x00"] and lines[2] != "1"
    assert lines[3:] == [os.readlink(f"/proc/{first.pid}/ns/{name}") for name in ("ipc", "net")]
    # the joiner is killed by the kernel when the pid namespace's init goes
    second, second_out, second_err = harness.start(harness.spec("sleep", "30", namespace_paths=paths[:1]))
    harness.runtime.kill(first, signal.SIGKILL)
    # (the init's exit is reported once every process of its namespace is reaped)
    assert harness.wait(second.pid) == 128 + signal.SIGKILL
    assert harness.wait(first.pid) == 128 + signal.SIGKILL
    for fd in (out_read, err_read, second_out, second_err):
        os.close(fd)
    with pytest.raises(errdefs.Conflict, match="process is gone"):
        harness.start(harness.spec("true", namespace_paths=paths[:1]))


def test_a_container_in_a_user_namespace_joins_no_other_container_s_namespaces(harness: Harness) -> None:
    remapped = Harness(harness.rootfs, runtime=harness.runtime, remap=(0, 2_000_000_000, 65536))
    for name in ("pid", "uts", "ipc"):
        with pytest.raises(errdefs.InvalidArgument, match=f"cannot join another container's {name} namespace"):
            remapped.start(remapped.spec("true", namespace_paths=((name, "/proc/1/ns/" + name),)))


def test_default_capabilities_only(harness: Harness) -> None:
    script = ("grep -E 'Cap(Eff|Bnd|Inh|Amb)' /proc/self/status; ip link set lo down 2>&1; echo ip=$?;"
              "touch /tmp/f; chown 1:2 /tmp/f && stat -c %u:%g /tmp/f; grep NoNewPrivs /proc/self/status")
    result = harness.run("sh", "-c", script)
    lines = result.stdout.splitlines()
    expected = f"{capability_mask(DEFAULT_CAPABILITIES):016x}"
    assert expected == "00000000a80425fb"  # Docker's default set
    assert lines[:4] == ["CapInh:\t0000000000000000", f"CapEff:\t{expected}", f"CapBnd:\t{expected}",
                         "CapAmb:\t0000000000000000"]
    assert "Operation not permitted" in result.stdout and "ip=0" not in result.stdout  # no CAP_NET_ADMIN
    assert "1:2" in lines  # CAP_CHOWN
    assert lines[-1] == "NoNewPrivs:\t1"


def test_seccomp_default_profile_blocks_a_syscall_the_capabilities_allow(harness: Harness) -> None:
    # creating a user namespace needs no capability, so only the seccomp profile refuses it
    blocked = harness.run("sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true 2>&1; echo rc=$?")
    assert blocked.stdout.splitlines()[0] == "Seccomp:\t2"
    assert "Operation not permitted" in blocked.stdout and "rc=1" in blocked.stdout
    allowed = harness.run("sh", "-c", "unshare -U true 2>&1; echo rc=$?", seccomp=False)
    assert allowed.stdout.strip() == "rc=0"


def _read_pty(master: int) -> str:
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the last slave descriptor is closed
            break
        if not chunk:
            break
        output += chunk
    return output.decode().replace("\r", "")


def _run_on_a_pty(harness: Harness, start) -> tuple[int, str]:
    """``start(slave_fd) -> pid``; returns (exit code, what the pty showed)."""
    master, slave = os.openpty()
    try:
        pid = start(slave)
        harness.children.append(pid)
        os.close(slave)
        slave = -1
        text = _read_pty(master)
        return harness.wait(pid), text
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


@pytest.mark.parametrize("init", [False, True], ids=["the command as PID 1", "under the init"])
def test_a_terminal_gets_a_console_and_a_controlling_tty(harness: Harness, init: bool) -> None:
    script = "[ -t 0 ] && echo tty; stat -c %F /dev/console; ps -o pid,tty,comm | grep ps"
    spec = harness.spec("sh", "-c", script, terminal=True, init=init)

    def start(slave: int) -> int:
        state = harness.runtime.start(spec, Stdio(slave, slave, slave))
        harness.states.append(state)
        return state.pid

    code, text = _run_on_a_pty(harness, start)
    assert code == 0, text
    lines = text.splitlines()
    assert lines[:2] == ["tty", "character special file"]
    assert lines[2].split()[1] != "?"  # ps has a controlling terminal


def test_exec_on_a_terminal(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sleep", "30"))
    process = ProcessSpec(args=("sh", "-c", "[ -t 0 ] && echo tty; ps -o pid,tty,comm | grep ps"), env=(PATH_ENV,),
                          terminal=True)
    code, text = _run_on_a_pty(harness, lambda slave: harness.runtime.exec(state, process, Stdio(slave, slave, slave)))
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "tty" and lines[1].split()[1] != "?"
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_rlimits_are_applied_and_never_raised_above_the_hard_limit(harness: Harness) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = harness.run("sh", "-c", "ulimit -n; ulimit -Hn", rlimits=(("RLIMIT_NOFILE", 256, 512),))
    assert result.stdout.split() == ["256", "512"]
    if hard != resource.RLIM_INFINITY:
        result = harness.run("sh", "-c", "ulimit -Hn", rlimits=(("RLIMIT_NOFILE", hard * 4, hard * 4),))
        assert result.stdout.split() == [str(hard)]  # clamped: no CAP_SYS_RESOURCE needed


def test_with_init_a_missing_command_still_reports_127(harness: Harness) -> None:
    spec = harness.spec("nosuch", init=True)
    with pytest.raises(ExecError) as caught:
        harness.start(spec)
    assert caught.value.exit_code == 127
    assert not harness.cgroup(_state_for(spec)).exists()


def test_exec_as_another_user_in_a_new_directory(harness: Harness) -> None:
    state, out_read, err_read = harness.start(harness.spec("sleep", "30"))
    process = ProcessSpec(args=("sh", "-c", "id -u; pwd; grep CapEff /proc/self/status; grep Seccomp: /proc/self/status"),
                          env=(PATH_ENV,), uid=65534, gid=65534, cwd="/tmp")
    pid, exec_out, exec_err = harness.exec(state, process)
    stdout, stderr = harness.collect(exec_out, exec_err)
    assert harness.wait(pid) == 0, stderr
    assert stdout.splitlines() == ["65534", "/tmp", "CapEff:\t0000000000000000", "Seccomp:\t2"]
    with pytest.raises(errdefs.LaminaError, match="chdir to cwd"):
        harness.exec(state, replace(process, cwd="/root"))  # mode 700: the user may not enter it
    harness.runtime.kill(state, signal.SIGKILL)
    harness.wait(state.pid)
    harness.collect(out_read, err_read)


def test_the_devices_cgroup_refuses_a_device_node_made_with_mknod(harness: Harness) -> None:
    from lamina.runtime.cgroups import detect_layout

    if detect_layout().version != 1:
        pytest.skip("device rules are written on cgroup v1 only (v2 needs an eBPF program)")
    # /dev/loop-control (10:237) opens without any capability, and Docker's list omits it
    script = "mknod /tmp/loop-control c 10 237 && echo made; (: < /tmp/loop-control); echo open=$?"
    result = harness.run("sh", "-c", script)
    assert result.stdout.split() == ["made", "open=1"], result.stdout + result.stderr  # CAP_MKNOD, then EPERM
    assert "Operation not permitted" in result.stderr
    allowed = harness.run("sh", "-c", "mknod /tmp/zero c 1 5 && (: < /tmp/zero); echo open=$?")
    assert allowed.stdout.split() == ["open=0"]
