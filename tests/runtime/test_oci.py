"""The OCI runtime driver: config.json equivalent to Docker's (checked against the runtime spec's
required fields), the seccomp conversion, and real containers under crun and runc (busybox from
the ``docker save`` fixture): output, exit codes through waitpid as subreaper, namespaces, limits,
exec, kill, pause/resume, update, stats, and delete leaving no cgroup or bundle behind."""

from __future__ import annotations

import copy
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import time

import pytest

from lamina import errdefs
from lamina.records import replace
from lamina.runtime.api import (
    DEFAULT_CAPABILITIES,
    ContainerSpec,
    DeviceSpec,
    MountSpec,
    ProcessSpec,
    Resources,
    RuntimeState,
    Stdio,
)
from lamina.runtime.oci import OCIRuntime
from lamina.runtime.oci_cgroups import CgroupHierarchies, controllers_on_cgroup2
from lamina.runtime.oci_config import config_json, load_default_seccomp_profile, seccomp_json

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
LAYER = "77ef5fe66347c286b797d89189a7af81f3880e0f523dd1394b60324536f9ebbe/layer.tar"
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MiB = 1 << 20


def new_id() -> str:
    return secrets.token_hex(32)


def make_spec(rootfs: str, *args: str, **changes) -> ContainerSpec:
    process = ProcessSpec(args=args, env=(PATH,))
    spec = ContainerSpec(id=new_id(), rootfs=rootfs, process=process, hostname="box", readonly_rootfs=True)
    return replace(spec, **changes)


# -- a schema-like check of the OCI runtime spec's required fields ---------------------------

# path -> required keys; "[]" marks the items of a list (runtime-spec schema/config-schema.json,
# config-linux.json, defs-linux.json)
REQUIRED = {
    "": ("ociVersion",),
    "root": ("path",),
    "process": ("cwd",),
    "process.user": ("uid", "gid"),
    "process.rlimits[]": ("type", "soft", "hard"),
    "mounts[]": ("destination",),
    "linux.namespaces[]": ("type",),
    "linux.resources.devices[]": ("allow",),
    "linux.seccomp": ("defaultAction",),
    "linux.seccomp.syscalls[]": ("names", "action"),
    "linux.seccomp.syscalls[].args[]": ("index", "value", "op"),
}
TYPES = {
    "ociVersion": str, "hostname": str, "root.path": str, "root.readonly": bool, "process.cwd": str,
    "process.args": list, "process.env": list, "process.terminal": bool, "process.user.uid": int,
    "process.user.gid": int, "process.noNewPrivileges": bool, "mounts": list, "linux.namespaces": list,
    "linux.maskedPaths": list, "linux.readonlyPaths": list, "linux.cgroupsPath": str,
    "linux.seccomp.syscalls": list,
}
NAMESPACE_TYPES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}


def _walk(value, path: str):
    """(path, value) of every object reachable from ``value``."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child, f"{path}[]")


def spec_problems(config: dict) -> list[str]:
    problems = []
    for path, value in _walk(config, ""):
        if path in REQUIRED:
            if not isinstance(value, dict):
                problems.append(f"{path or '<root>'} is not an object")
                continue
            problems += [f"{path + '.' if path else ''}{key} is required" for key in REQUIRED[path]
                         if key not in value]
        if path in TYPES and not isinstance(value, TYPES[path]):
            problems.append(f"{path} should be {TYPES[path].__name__}")
        if path == "linux.namespaces[].type" and value not in NAMESPACE_TYPES:
            problems.append(f"unknown namespace type {value}")
        if path == "process.rlimits[].type" and not str(value).startswith("RLIMIT_"):
            problems.append(f"bad rlimit type {value}")
        if path in ("process.env[]",) and "=" not in value:
            problems.append(f"env entry {value!r} is not KEY=value")
    if not str(config.get("ociVersion", "")).startswith("1."):
        problems.append("ociVersion must be 1.x")
    return problems


def test_the_required_fields_check_can_fail():
    config = config_json(make_spec("/rootfs", "true"))
    broken = copy.deepcopy(config)
    del broken["root"]["path"]
    del broken["linux"]["seccomp"]["syscalls"][0]["action"]
    broken["linux"]["namespaces"].append({"path": "/proc/1/ns/net"})
    broken["process"]["env"].append("NOEQUALS")
    assert sorted(spec_problems(broken)) == sorted([
        "root.path is required", "env entry 'NOEQUALS' is not KEY=value",
        "linux.namespaces[].type is required", "linux.seccomp.syscalls[].action is required"])
    assert spec_problems(config) == []


def test_config_json_has_every_required_field():
    spec = make_spec("/rootfs", "sh", "-c", "true",
                     process=ProcessSpec(args=("true",), env=(PATH,), rlimits=(("RLIMIT_NOFILE", 1024, 1024),),
                                         additional_gids=(10,)),
                     resources=Resources(memory=64 * MiB, memory_swap=128 * MiB, cpu_quota=50000,
                                         cpu_period=100000, cpu_shares=512, cpuset_cpus="0", pids_limit=100))
    config = config_json(spec)
    assert spec_problems(config) == []
    assert config["ociVersion"] == "1.0.2"


def test_config_json_is_what_docker_generates():
    spec = make_spec("/var/lib/lamina/overlay2/x/merged", "sleep", "1", readonly_rootfs=False)
    config = config_json(spec)
    process = config["process"]
    assert process["args"] == ["sleep", "1"] and process["cwd"] == "/" and process["env"] == [PATH]
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["noNewPrivileges"] is True and process["terminal"] is False
    assert process["capabilities"] == {name: list(DEFAULT_CAPABILITIES)
                                       for name in ("bounding", "effective", "permitted")}
    assert config["root"] == {"path": "/var/lib/lamina/overlay2/x/merged", "readonly": False}
    assert config["hostname"] == "box"
    assert [mount["destination"] for mount in config["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert {mount["destination"]: "ro" in mount["options"] for mount in config["mounts"]}["/sys/fs/cgroup"]
    linux = config["linux"]
    assert [item["type"] for item in linux["namespaces"]] == ["mount", "network", "uts", "pid", "ipc", "cgroup"]
    assert linux["cgroupsPath"] == f"/lamina/{spec.id}"
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    devices = linux["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in devices
    assert linux["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


def test_host_network_shares_the_network_namespace():
    config = config_json(make_spec("/rootfs", "true", network="host"))
    assert "network" not in [item["type"] for item in config["linux"]["namespaces"]]
    assert "sysctl" not in config["linux"]


def test_joined_namespaces_have_a_path_and_no_hostname_without_a_uts_namespace_of_its_own():
    spec = make_spec("/rootfs", "true", namespace_paths=(("pid", "/proc/7/ns/pid"), ("uts", "/proc/7/ns/uts")),
                     network_namespace="/proc/7/ns/net", shm_size=0)
    config = config_json(spec)
    namespaces = {item["type"]: item.get("path") for item in config["linux"]["namespaces"]}
    assert namespaces == {"mount": None, "network": "/proc/7/ns/net", "uts": "/proc/7/ns/uts",
                          "pid": "/proc/7/ns/pid", "ipc": None, "cgroup": None}
    assert "hostname" not in config
    assert "/dev/shm" not in [mount["destination"] for mount in config["mounts"]]  # --ipc none
    with pytest.raises(errdefs.InvalidArgument, match="cannot join"):
        config_json(make_spec("/rootfs", "true", namespace_paths=(("mount", "/proc/7/ns/mnt"),)))


def test_resources_and_user_mounts():
    spec = make_spec("/rootfs", "true",
                     mounts=(MountSpec("/dev/shm", "tmpfs", "shm", ("nosuid", "size=1m")),
                             MountSpec("/data", "bind", "/srv/data", ("rbind", "ro"))),
                     resources=Resources(memory=64 * MiB, memory_swap=-1, cpu_quota=150000, cpu_period=100000,
                                         cpu_shares=256, cpuset_cpus="0-1", pids_limit=10))
    config = config_json(spec)
    shm = [mount for mount in config["mounts"] if mount["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "size=1m"]}]
    assert config["mounts"][-1] == {"destination": "/data", "type": "bind", "source": "/srv/data",
                                    "options": ["rbind", "ro"]}
    resources = config["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 * MiB, "swap": -1}
    assert resources["cpu"] == {"shares": 256, "quota": 150000, "period": 100000, "cpus": "0-1"}
    assert resources["pids"] == {"limit": 10}


def test_host_options_reach_the_oci_config():
    spec = replace(make_spec("/rootfs", "true"), sysctls=(("net.ipv4.ip_forward", "1"),), shm_size=16 * MiB,
                   oom_score_adj=300, privileged=True, device_rules=("c 10:229 r",),
                   devices=(DeviceSpec("/dev/fuse", "c", 10, 229, 0o444),),
                   resources=Resources(memory_reservation=8 * MiB, cpuset_mems="0"))
    config = config_json(spec)
    linux = config["linux"]
    assert linux["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert config["process"]["oomScoreAdj"] == 300
    assert linux["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o444,
                                 "uid": 0, "gid": 0}]
    assert {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"} in linux["resources"]["devices"]
    assert linux["resources"]["memory"]["reservation"] == 8 * MiB and linux["resources"]["cpu"]["mems"] == "0"
    mounts = {mount["destination"]: mount["options"] for mount in config["mounts"]}
    assert f"size={16 * MiB}" in mounts["/dev/shm"] and "ro" not in mounts["/sys"]


def test_rlimits_never_exceed_the_current_hard_limit():
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    spec = make_spec("/rootfs", "true",
                     process=ProcessSpec(args=("true",), rlimits=(("RLIMIT_NOFILE", 10**9, 10**9),
                                                                   ("RLIMIT_CORE", 0, 0))))
    rlimits = config_json(spec)["process"]["rlimits"]
    expected_hard = 2**64 - 1 if hard == resource.RLIM_INFINITY else hard
    assert rlimits[0] == {"type": "RLIMIT_NOFILE", "hard": expected_hard, "soft": expected_hard}
    assert rlimits[1] == {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}


@pytest.mark.parametrize("changes, kind", [
    ({"id": "../escape"}, errdefs.InvalidArgument),
    ({"rootfs": "relative/rootfs"}, errdefs.InvalidArgument),
    ({"namespaces": frozenset({"pid", "user"})}, errdefs.InvalidArgument),
    ({"namespaces": frozenset({"pid", "bogus"})}, errdefs.InvalidArgument),
    ({"process": ProcessSpec(args=())}, errdefs.InvalidArgument),
    ({"process": ProcessSpec(args=("true",), cwd="tmp")}, errdefs.InvalidArgument),
    ({"process": ProcessSpec(args=("true",), rlimits=(("RLIMIT_BOGUS", 1, 1),))}, errdefs.InvalidArgument),
    ({"network": "bridge"}, errdefs.InvalidArgument),
], ids=["an id with a slash", "a relative rootfs", "a user namespace without mappings", "unknown namespace", "no command",
        "relative working directory", "unknown rlimit", "unknown network mode"])
def test_bad_specs_are_refused(changes, kind):
    spec = replace(make_spec("/rootfs", "true"), **changes)
    with pytest.raises(kind):
        config_json(spec)


# -- seccomp -------------------------------------------------------------------------------


def _allowed(seccomp: dict) -> set[str]:
    return {name for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
            for name in rule["names"]}


def test_seccomp_keeps_the_default_action_and_common_syscalls():
    seccomp = seccomp_json(load_default_seccomp_profile(), DEFAULT_CAPABILITIES, machine="x86_64",
                           kernel_release="6.1.0-13-amd64")
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp["defaultErrnoRet"] == 1
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert {"read", "write", "execve", "exit_group", "arch_prctl", "chroot", "ptrace"} <= _allowed(seccomp)
    assert not {"mount", "reboot", "bpf", "kexec_load", "clone3"} & _allowed(seccomp)
    for rule in seccomp["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}, rule


def test_seccomp_depends_on_capabilities():
    profile = load_default_seccomp_profile()
    default = seccomp_json(profile, DEFAULT_CAPABILITIES, machine="x86_64", kernel_release="6.1")
    admin = seccomp_json(profile, DEFAULT_CAPABILITIES + ("CAP_SYS_ADMIN",), machine="x86_64", kernel_release="6.1")
    assert "clone" not in _allowed(default)
    assert any(rule["names"] == ["clone"] and rule["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
               for rule in default["syscalls"])
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in default["syscalls"]
    assert {"clone", "clone3", "mount", "setns", "unshare"} <= _allowed(admin)
    assert not any(rule["names"] == ["clone3"] and rule["action"] == "SCMP_ACT_ERRNO" for rule in admin["syscalls"])
    no_chroot = seccomp_json(profile, tuple(c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"),
                             machine="x86_64", kernel_release="6.1")
    assert "chroot" not in _allowed(no_chroot)


def test_seccomp_depends_on_architecture_and_kernel():
    profile = load_default_seccomp_profile()
    arm = seccomp_json(profile, DEFAULT_CAPABILITIES, machine="aarch64", kernel_release="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in _allowed(arm) and "arm_fadvise64_64" in _allowed(arm)
    old = seccomp_json(profile, DEFAULT_CAPABILITIES, machine="x86_64", kernel_release="4.4.0-21-generic")
    assert "ptrace" not in _allowed(old)


# -- cgroup hierarchies --------------------------------------------------------------------

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / {unified} rw,relatime - cgroup2 cgroup2 rw
"""


def test_cgroup_hierarchies_are_read_from_mountinfo(tmp_path):
    hierarchies = CgroupHierarchies.parse(HYBRID_MOUNTINFO.format(unified=tmp_path))
    assert hierarchies.v1["cpu"] == hierarchies.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert hierarchies.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert hierarchies.unified == str(tmp_path) and not hierarchies.unified_only
    assert hierarchies.controller_dir("memory", "lamina/abc") == "/sys/fs/cgroup/memory/lamina/abc"
    assert hierarchies.cgroup_root() == "/sys/fs/cgroup"
    pure = CgroupHierarchies.parse("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    assert pure.unified_only and pure.controller_dir("memory", "lamina/abc") == "/sys/fs/cgroup/lamina/abc"


def test_controllers_left_on_cgroup2_of_a_hybrid_host_are_found(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    hybrid = CgroupHierarchies.parse(HYBRID_MOUNTINFO.format(unified=tmp_path))
    assert controllers_on_cgroup2(hybrid) == ["hugetlb"]
    (tmp_path / "cgroup.controllers").write_text("\n")
    assert controllers_on_cgroup2(hybrid) == []
    pure = CgroupHierarchies.parse(f"41 31 0:38 / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids hugetlb\n")
    assert controllers_on_cgroup2(pure) == []


# -- real containers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> str:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to unpack the busybox fixture")
    work = tmp_path_factory.mktemp("busybox")
    subprocess.run(["tar", "-xf", FIXTURE, "-C", str(work), LAYER], check=True)
    root = work / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(work / LAYER), "-C", str(root), "--numeric-owner"], check=True)
    return str(root)


class Containers:
    """Starts containers through one runtime and removes every one of them at teardown."""

    def __init__(self, runtime: OCIRuntime) -> None:
        self.runtime = runtime
        self.states: list[RuntimeState] = []
        self.ids: list[str] = []
        self.pids: list[int] = []

    def start(self, spec: ContainerSpec, stdio: Stdio | None = None) -> RuntimeState:
        self.ids.append(spec.id)
        with open(os.devnull, "r+b") as null:
            state = self.runtime.start(spec, stdio or Stdio(null.fileno(), null.fileno(), null.fileno()))
        self.states.append(state)
        self.pids.append(state.pid)
        return state

    def cleanup(self) -> None:
        known = {state.id for state in self.states}
        leftovers = [RuntimeState(id=cid, pid=0, runtime=self.runtime.name, cgroup=f"lamina/{cid}",
                                  bundle=os.path.join(self.runtime.state_root, cid))
                     for cid in self.ids if cid not in known]
        for state in self.states + leftovers:
            try:
                self.runtime.delete(state, force=True)
            except errdefs.LaminaError as exc:   # keep going: every container must go
                print(f"cleanup of {state.id}: {exc}")
        for pid in self.pids:
            wait_exit(pid, timeout=5, missing_ok=True)


@pytest.fixture(params=["crun", "runc"])
def containers(request, tmp_path):
    binary = request.param
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    runtime = OCIRuntime(binary, str(tmp_path / "oci"))
    tracker = Containers(runtime)
    try:
        yield tracker
    finally:
        tracker.cleanup()


def wait_exit(pid: int, timeout: float = 10.0, missing_ok: bool = False) -> int | None:
    """The wait status of ``pid`` (our child as subreaper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            if missing_ok:
                return None
            raise
        if done:
            return status
        if time.monotonic() > deadline:
            if missing_ok:
                return None
            raise AssertionError(f"process {pid} did not exit within {timeout} s")
        time.sleep(0.005)


def zombie_children() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    text = handle.read()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            if fields[1] == str(os.getpid()) and fields[0] == "Z":
                found.append(text[:text.rfind(")") + 1])
    return found


def read_all(fd: int, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no EOF after {timeout} s; got {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                os.close(fd)
                return data
            data += chunk


def run_captured(containers: Containers, spec: ContainerSpec) -> tuple[RuntimeState, bytes, int]:
    """Start ``spec`` with stdout+stderr on a pipe; (state, output, wait status)."""
    read_end, write_end = os.pipe()
    try:
        with open(os.devnull, "rb") as null:
            state = containers.start(spec, Stdio(null.fileno(), write_end, write_end))
    finally:
        os.close(write_end)
    output = read_all(read_end)
    status = wait_exit(state.pid)
    return state, output, status


def wait_command(pid: int, name: str, timeout: float = 5.0) -> None:
    """Wait until ``pid`` runs ``name``: runc's init execs the command only after ``start``."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/comm") as handle:
            if handle.read().strip() == name:
                return
        assert time.monotonic() < deadline, f"process {pid} never became {name}"
        time.sleep(0.005)


def cgroup_file(controller: str, state: RuntimeState, name_v1: str, name_v2: str) -> str:
    hierarchies = CgroupHierarchies.detect()
    directory = hierarchies.controller_dir(controller, state.cgroup)
    return os.path.join(directory, name_v2 if hierarchies.unified_only else name_v1)


def read_number(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().split()[0])


@pytest.mark.privileged
def test_echo_output_reaches_the_pipe(containers, rootfs):
    state, output, status = run_captured(containers, make_spec(rootfs, "echo", "hi"))
    assert output == b"hi\n"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert state.runtime == containers.runtime.name
    with open(os.path.join(state.bundle, "config.json"), "rb") as handle:
        assert spec_problems(json.load(handle)) == []


@pytest.mark.privileged
def test_the_exit_code_arrives_through_waitpid(containers, rootfs):
    _, _, status = run_captured(containers, make_spec(rootfs, "sh", "-c", "echo bye >&2; exit 7"))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7


@pytest.mark.privileged
def test_the_container_is_isolated(containers, rootfs):
    script = ("hostname; echo pid=$$; ls /sys/class/net; grep -E '^(Seccomp|NoNewPrivs|CapBnd|CapInh):' "
              "/proc/self/status; touch /readonly 2>/dev/null || echo read-only")
    _, output, status = run_captured(containers, make_spec(rootfs, "sh", "-c", script))
    assert status == 0
    lines = output.decode().split("\n")
    assert lines[0] == "box"
    assert lines[1] == "pid=1"
    assert lines[2] == "lo"                      # only loopback in the new network namespace
    status_fields = dict(line.split(":\t") for line in lines[3:7])
    assert status_fields == {"CapInh": "0000000000000000", "CapBnd": "00000000a80425fb",
                             "NoNewPrivs": "1", "Seccomp": "2"}
    assert lines[7] == "read-only"


@pytest.mark.privileged
def test_limits_show_in_the_cgroup_and_in_stats(containers, rootfs):
    spec = make_spec(rootfs, "sleep", "30", resources=Resources(memory=64 * MiB, pids_limit=50))
    state = containers.start(spec)
    wait_command(state.pid, "sleep")
    assert state.cgroup == f"lamina/{spec.id}"
    assert read_number(cgroup_file("memory", state, "memory.limit_in_bytes", "memory.max")) == 64 * MiB
    assert read_number(cgroup_file("pids", state, "pids.max", "pids.max")) == 50
    stats = containers.runtime.stats(state)
    assert stats["memory_stats"]["limit"] == 64 * MiB
    assert 0 < stats["memory_stats"]["usage"] <= 64 * MiB
    assert stats["pids_stats"] == {"current": 1, "limit": 50}
    assert stats["cpu_stats"]["system_cpu_usage"] > 0 and stats["cpu_stats"]["online_cpus"] >= 1
    assert "io_service_bytes_recursive" in stats["blkio_stats"]

    containers.runtime.update(state, Resources(memory=128 * MiB, pids_limit=20))
    assert read_number(cgroup_file("memory", state, "memory.limit_in_bytes", "memory.max")) == 128 * MiB
    assert read_number(cgroup_file("pids", state, "pids.max", "pids.max")) == 20


@pytest.mark.privileged
def test_exec_runs_inside_the_running_container(containers, rootfs):
    state = containers.start(make_spec(rootfs, "sleep", "30"))
    read_end, write_end = os.pipe()
    try:
        with open(os.devnull, "rb") as null:
            pid = containers.runtime.exec(
                state, ProcessSpec(args=("sh", "-c", "cat /proc/1/cmdline; echo; echo $FOO; pwd; echo pid=$$"),
                                   env=(PATH, "FOO=bar"), cwd="/tmp"),
                Stdio(null.fileno(), write_end, write_end))
    finally:
        os.close(write_end)
    containers.pids.append(pid)
    output = read_all(read_end)
    assert wait_exit(pid) == 0
    first, rest = output.split(b"\n", 1)
    assert first == b"sleep\x0030\x00"
    lines = rest.decode().split("\n")
    assert lines[:2] == ["bar", "/tmp"] and lines[2].startswith("pid=") and lines[2] != "pid=1"
    assert os.listdir(state.bundle) == [name for name in os.listdir(state.bundle) if not name.startswith("exec-")]


@pytest.mark.privileged
def test_exec_of_a_missing_command_is_an_invalid_argument(containers, rootfs):
    state = containers.start(make_spec(rootfs, "sleep", "30"))
    with pytest.raises(errdefs.InvalidArgument, match="no-such-command"):
        containers.runtime.exec(state, ProcessSpec(args=("no-such-command",), env=(PATH,)), Stdio(0, 1, 2))
    # nothing of the failed exec is left for us to reap: a zombie would keep PID 1 from exiting
    assert zombie_children() == []
    containers.runtime.kill(state, signal.SIGKILL)
    wait_exit(state.pid, timeout=2)


@pytest.mark.privileged
def test_kill_pid_1_semantics_and_sigkill(containers, rootfs):
    state = containers.start(make_spec(rootfs, "sleep", "30"))
    # the signal semantics checked are those of the container's program, not of the
    # runtime's init that PID 1 can still be when `<binary> start` returns
    wait_command(state.pid, "sleep")
    # PID 1 without a handler ignores SIGTERM (seed 002)
    containers.runtime.kill(state, signal.SIGTERM)
    time.sleep(0.2)
    assert containers.runtime.status(state) == "running"
    containers.runtime.kill(state, signal.SIGKILL, all=True)
    status = wait_exit(state.pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert containers.runtime.status(state) == "stopped"
    with pytest.raises(errdefs.Conflict):
        containers.runtime.exec(state, ProcessSpec(args=("true",), env=(PATH,)), Stdio(0, 1, 2))
    with pytest.raises(errdefs.InvalidArgument):
        containers.runtime.kill(state, 0)


@pytest.mark.privileged
def test_pause_and_resume_use_the_freezer(containers, rootfs):
    state = containers.start(make_spec(rootfs, "sleep", "30"))
    hierarchies = CgroupHierarchies.detect()
    if hierarchies.unified_only:
        freezer, frozen, thawed = "cgroup.freeze", "1", "0"
    else:
        freezer, frozen, thawed = "freezer.state", "FROZEN", "THAWED"
    path = os.path.join(hierarchies.controller_dir("freezer", state.cgroup), freezer)
    containers.runtime.pause(state)
    assert containers.runtime.status(state) == "paused"
    with open(path) as handle:
        assert handle.read().strip() == frozen
    containers.runtime.resume(state)
    assert containers.runtime.status(state) == "running"
    with open(path) as handle:
        assert handle.read().strip() == thawed


@pytest.mark.privileged
def test_the_oom_state_comes_from_the_containers_cgroup(containers, rootfs):
    limited = make_spec(rootfs, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
                        resources=Resources(memory=16 * MiB, memory_swap=16 * MiB))
    state, _output, status = run_captured(containers, limited)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert containers.runtime.oom_killed(state)
    state, _output, status = run_captured(containers, make_spec(rootfs, "true", resources=Resources(memory=64 * MiB)))
    assert os.waitstatus_to_exitcode(status) == 0
    assert not containers.runtime.oom_killed(state)


@pytest.mark.privileged
def test_delete_removes_the_cgroups_and_the_bundle(containers, rootfs):
    state = containers.start(make_spec(rootfs, "sleep", "30", resources=Resources(memory=32 * MiB)))
    directories = CgroupHierarchies.detect().directories(state.cgroup)
    assert any(os.path.isdir(directory) for directory in directories)
    assert containers.runtime.cgroup_path(state) == f"lamina/{state.id}"
    assert containers.runtime.processes(state) == [state.pid]
    with pytest.raises(errdefs.Conflict, match="still has processes"):
        containers.runtime.delete(state)    # not forced: a running container stays
    assert containers.runtime.status(state) == "running"
    containers.runtime.delete(state, force=True)    # forced: what is left in the cgroup is killed
    status = wait_exit(state.pid)
    assert os.WIFSIGNALED(status)
    assert [directory for directory in directories if os.path.exists(directory)] == []
    assert not os.path.exists(state.bundle)
    with pytest.raises(errdefs.NotFound):
        containers.runtime.status(state)
    with pytest.raises(errdefs.NotFound):
        containers.runtime.stats(state)
    assert containers.runtime.processes(state) == []
    assert not containers.runtime.oom_killed(state)
    containers.runtime.delete(state)        # deleting again is fine


@pytest.mark.privileged
def test_a_failing_start_leaves_nothing_behind(containers, rootfs):
    spec = make_spec(rootfs, "/no/such/binary")
    with pytest.raises(errdefs.InvalidArgument, match="/no/such/binary"):
        containers.start(spec)
    assert not os.path.exists(os.path.join(containers.runtime.state_root, spec.id))
    directories = CgroupHierarchies.detect().directories(f"lamina/{spec.id}")
    assert [directory for directory in directories if os.path.exists(directory)] == []


@pytest.mark.privileged
def test_errors_have_their_kinds(containers, rootfs):
    ghost = RuntimeState(id=new_id(), pid=0, runtime=containers.runtime.name)
    with pytest.raises(errdefs.NotFound):
        containers.runtime.kill(ghost, signal.SIGKILL)
    with pytest.raises(errdefs.NotFound):
        containers.runtime.pause(ghost)
    spec = make_spec(rootfs, "sleep", "30")
    containers.start(spec)
    with pytest.raises(errdefs.AlreadyExists):
        containers.runtime.start(spec, Stdio(0, 1, 2))
    with pytest.raises(errdefs.NotImplemented, match="terminal"):
        containers.runtime.start(make_spec(rootfs, "sh", process=ProcessSpec(args=("sh",), terminal=True)),
                                 Stdio(0, 1, 2))


@pytest.mark.privileged
def test_crun_runs_on_this_hosts_cgroup_layout(containers, rootfs):
    # the runtime mounted every controller crun would find on cgroup2 of a hybrid host
    _, _, status = run_captured(containers, make_spec(rootfs, "true"))
    assert status == 0
    assert controllers_on_cgroup2(CgroupHierarchies.detect()) == []


@pytest.mark.privileged
def test_a_controller_left_on_cgroup2_gets_its_own_v1_hierarchy(tmp_path):
    from lamina import mount as lmount
    from lamina.runtime.oci_cgroups import ensure_v1_hierarchies
    with open("/proc/cgroups") as handle:
        controllers = handle.read()
    if "hugetlb" not in controllers:
        pytest.skip("the kernel has no hugetlb controller")
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    fake = CgroupHierarchies(v1={"memory": str(tmp_path / "memory")}, unified=str(unified))
    try:
        assert ensure_v1_hierarchies(fake) == ["hugetlb"]
        assert lmount.is_mountpoint(str(tmp_path / "hugetlb"))
        assert any(name.startswith("hugetlb.") for name in os.listdir(tmp_path / "hugetlb"))
    finally:
        lmount.unmount(str(tmp_path / "hugetlb"))


def test_an_absent_binary_is_a_failed_precondition(tmp_path):
    with pytest.raises(errdefs.FailedPrecondition, match="not found"):
        OCIRuntime("no-such-oci-runtime", str(tmp_path))


@pytest.mark.privileged
def test_a_container_joins_the_pid_uts_and_ipc_namespaces_of_another(containers, rootfs):
    first = containers.start(make_spec(rootfs, "sleep", "30", hostname="first"))
    wait_command(first.pid, "sleep")
    paths = tuple((name, f"/proc/{first.pid}/ns/{name}") for name in ("pid", "uts", "ipc"))
    _, output, status = run_captured(containers, make_spec(
        rootfs, "sh", "-c", "hostname; cat /proc/1/cmdline; echo; readlink /proc/self/ns/ipc",
        namespace_paths=paths))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, output
    assert output.decode() == f"first\nsleep\x0030\x00\n{os.readlink(f'/proc/{first.pid}/ns/ipc')}\n"


@pytest.mark.parametrize("action, message, kind", [
    ("kill", "container does not exist", errdefs.NotFound),
    # the bundle (and the --log file in it) deleted by the container's removal while runc ran
    ("kill", 'open /run/x/oci/abc/runtime.log: no such file or directory', errdefs.NotFound),
    ("kill", "open pidfd: No such process", errdefs.Conflict),
    ("create", "exec: \"nope\": executable file not found in $PATH", errdefs.InvalidArgument),
    ("kill", "something else went wrong", errdefs.System),
])
def test_runtime_messages_are_classified(action, message, kind):
    from lamina.runtime.oci import _classify

    assert _classify(action, message) is kind


def test_a_start_uses_the_default_profile_read_once_and_a_custom_one_as_given(containers, rootfs, monkeypatch):
    """``prepare`` (the monitor template's) reads Docker's default profile; the starts after it
    read nothing, and a container with a profile of its own gets that one."""
    from lamina.runtime import oci, oci_config

    runtime = containers.runtime
    runtime.prepare()
    for module in (oci, oci_config):  # config_json reads it itself when given none
        monkeypatch.setattr(module, "load_default_seccomp_profile", lambda: pytest.fail("read again by a start"))
    state, _, status = run_captured(containers, make_spec(rootfs, "true"))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with open(os.path.join(state.bundle, "config.json"), "rb") as handle:
        default = json.load(handle)["linux"]["seccomp"]
    assert default["defaultAction"] == "SCMP_ACT_ERRNO" and len(default["syscalls"]) > 10
    own = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}]}
    state, _, status = run_captured(containers, make_spec(rootfs, "true", seccomp_profile=json.dumps(own).encode()))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with open(os.path.join(state.bundle, "config.json"), "rb") as handle:
        custom = json.load(handle)["linux"]["seccomp"]
    assert custom["defaultAction"] == "SCMP_ACT_ALLOW"
    assert [rule["names"] for rule in custom["syscalls"]] == [["chroot"]]
