"""Every HostConfig option is applied inside the container or refused with a 400 naming it:
the effect is read from inside (``/proc/sys``, ``/dev/shm``'s size, CapEff, oom_score_adj, the
device node, PID 1 under ``--init``) and the refusals come through the API router with the
real services (nothing is created)."""

from __future__ import annotations

import io
import json
import os

import pytest

from lamina import errdefs
from lamina.api import bodies
from lamina.api.http import Request
from lamina.api.router import Router
from lamina.container import options

pytestmark = pytest.mark.privileged


def run_output(engine, script: str, **host) -> tuple[int, str]:
    container_id = engine.run("sh", "-c", script, HostConfig=host)
    code = engine.wait(container_id)
    return code, engine.output(container_id)


def capability_mask(text: str, field: str) -> int:
    line = next(line for line in text.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1], 16)


# -- the table ----------------------------------------------------------------------------------

def test_every_field_the_api_accepts_has_a_status() -> None:
    assert set(options.HOST_CONFIG_FIELDS) == set(bodies.HOST_CONFIG)
    assert set(options.CONFIG_FIELDS) == set(bodies.CONTAINER_CONFIG)
    statuses = {status for status, _ in [*options.HOST_CONFIG_FIELDS.values(), *options.CONFIG_FIELDS.values()]}
    assert statuses <= {"applied", "network", "stored", "ignored", "refused"}


REFUSED_SAMPLES = {
    "BlkioWeight": 300, "BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 300}],
    "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1024}],
    "BlkioDeviceWriteBps": [{"Path": "/dev/sda", "Rate": 1024}],
    "BlkioDeviceReadIOps": [{"Path": "/dev/sda", "Rate": 10}],
    "BlkioDeviceWriteIOps": [{"Path": "/dev/sda", "Rate": 10}],
    "CpuRealtimePeriod": 1000, "CpuRealtimeRuntime": 1000,
    "DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}],
    "KernelMemory": 64 << 20, "KernelMemoryTCP": 64 << 20, "MemorySwappiness": 10, "OomKillDisable": True,
    "IOMaximumIOps": 10, "IOMaximumBandwidth": 10, "Cgroup": "container:other",
    "StorageOpt": {"size": "10G"},
}


@pytest.mark.parametrize("field", sorted(name for name, (status, _) in options.HOST_CONFIG_FIELDS.items()
                                         if status == "refused"))
def test_a_refused_field_is_a_400_naming_it(engine, field) -> None:
    assert field in REFUSED_SAMPLES, f"add a sample value for {field}"
    before = engine.container_views.list_containers(all=True)
    with pytest.raises(errdefs.InvalidArgument, match=f"HostConfig.{field}|blkio weight"):
        engine.create("true", HostConfig={field: REFUSED_SAMPLES[field]})
    assert engine.container_views.list_containers(all=True) == before


def test_windows_only_fields_are_dropped_with_docker_s_warning(engine) -> None:
    answer = engine.containers.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"CpuCount": 2}})
    assert any("CpuCount" in warning for warning in answer["Warnings"])
    assert engine.container_views.inspect(answer["Id"])["HostConfig"]["CpuCount"] == 0


# -- applied: the effect inside the container ---------------------------------------------------

def test_sysctls_of_the_container_s_namespaces_are_written(engine) -> None:
    with open("/proc/sys/kernel/shmmni", encoding="ascii") as handle:
        host_value = handle.read()
    code, out = run_output(engine, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni "
                                   "/proc/sys/fs/mqueue/msg_max",
                           Sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000", "fs.mqueue.msg_max": "20"})
    assert (code, out.split()) == (0, ["1", "1000", "20"])
    with open("/proc/sys/kernel/shmmni", encoding="ascii") as handle:
        assert handle.read() == host_value  # the container's IPC namespace, not the host's


@pytest.mark.parametrize("sysctls, host, message", [
    ({"vm.swappiness": "10"}, {}, "not in a separate kernel namespace"),
    ({"kernel.panic": "1"}, {}, "not in a separate kernel namespace"),
    ({"net.ipv4.ip_forward": "1"}, {"NetworkMode": "host"}, "host's network namespace"),
    ({"kernel.shmmax": "1"}, {"IpcMode": "host"}, "host's IPC namespace"),
], ids=["a vm sysctl", "a kernel sysctl outside IPC", "net with the host network", "ipc with the host IPC"])
def test_sysctls_outside_the_container_s_namespaces_are_refused(engine, sysctls, host, message) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        engine.create("true", HostConfig={"Sysctls": sysctls, **host})


def test_domainname_is_the_uts_domain_name(engine) -> None:
    container_id = engine.run("cat", "/proc/sys/kernel/domainname", Domainname="example.org")
    assert engine.wait(container_id) == 0 and engine.output(container_id) == "example.org\n"


def test_the_local_log_driver_keeps_logs_that_logs_reads(engine) -> None:
    container_id = engine.run("echo", "kept", HostConfig={"LogConfig": {"Type": "local", "Config": {}}})
    assert engine.wait(container_id) == 0 and engine.output(container_id) == "kept\n"
    container_id = engine.run("echo", "dropped", HostConfig={"LogConfig": {"Type": "none", "Config": {}}})
    assert engine.wait(container_id) == 0
    with pytest.raises(errdefs.LaminaError):
        engine.output(container_id)


def test_shm_size_sizes_dev_shm(engine) -> None:
    code, out = run_output(engine, "df -k /dev/shm | tail -1", ShmSize=16 << 20)
    assert code == 0 and out.split()[1] == str(16 << 10)
    code, out = run_output(engine, "df -k /dev/shm | tail -1")
    assert code == 0 and out.split()[1] == str(64 << 10)


def test_oom_score_adj_is_the_process_s(engine) -> None:
    assert run_output(engine, "cat /proc/self/oom_score_adj", OomScoreAdj=500) == (0, "500\n")


def test_privileged_gets_every_capability_no_seccomp_no_masks_sys_rw_and_host_devices(engine) -> None:
    code, out = run_output(engine, "cat /proc/self/status; grep ' /sys ' /proc/mounts; "
                                   "test -c /dev/loop-control && echo has-loop-control; "
                                   "grep -c ' /proc/kcore ' /proc/mounts || true", Privileged=True)
    assert code == 0, out
    with open("/proc/self/status", encoding="ascii") as handle:
        host_bounding = capability_mask(handle.read(), "CapBnd")
    assert capability_mask(out, "CapEff") == host_bounding
    assert "Seccomp:\t0" in out
    assert " rw," in next(line for line in out.splitlines() if " /sys " in line)
    assert "has-loop-control" in out
    assert out.strip().splitlines()[-1] == "0"  # /proc/kcore is not masked


def test_default_container_has_the_default_set_seccomp_and_a_read_only_sys(engine) -> None:
    code, out = run_output(engine, "cat /proc/self/status; grep ' /sys ' /proc/mounts")
    assert code == 0
    assert capability_mask(out, "CapEff") == 0xa80425fb  # Docker's default set
    assert "Seccomp:\t2" in out
    assert " ro," in next(line for line in out.splitlines() if " /sys " in line)


def test_a_device_is_made_with_its_numbers_and_permissions(engine) -> None:
    info = os.stat("/dev/fuse")
    code, out = run_output(engine, "stat -c '%t:%T %a' /dev/myfuse; head -c 0 /dev/myfuse && echo readable; "
                                   "echo x > /dev/myfuse || echo write-denied",
                           Devices=[{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/myfuse",
                                     "CgroupPermissions": "r"}])
    assert code == 0, out
    numbers, mode = out.splitlines()[0].split()
    assert numbers == f"{os.major(info.st_rdev):x}:{os.minor(info.st_rdev):x}"
    assert int(mode, 8) & 0o222 == 0  # "r": no write bits
    assert "readable" in out
    if os.path.isdir("/sys/fs/cgroup/devices"):
        assert "write-denied" in out  # the devices cgroup allows "r" only


def test_a_missing_device_is_a_400(engine) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="/dev/nosuchdevice"):
        engine.create("true", HostConfig={"Devices": [{"PathOnHost": "/dev/nosuchdevice"}]})


def test_a_seccomp_profile_is_loaded_and_unconfined_has_none(engine) -> None:
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]})
    code, out = run_output(engine, "mkdir /made 2>&1; echo status=$?", SecurityOpt=[f"seccomp={profile}"])
    assert code == 0 and "status=1" in out, out
    code, out = run_output(engine, "grep Seccomp: /proc/self/status", SecurityOpt=["seccomp=unconfined"])
    assert out.split() == ["Seccomp:", "0"]


def test_an_exec_gets_the_container_s_seccomp_profile(engine) -> None:
    from lamina.container.logs import demultiplex

    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]})
    container_id = engine.run("sleep", "60", HostConfig={"SecurityOpt": [f"seccomp={profile}"]})
    try:
        exec_id = engine.execs.create(container_id, {"Cmd": ["sh", "-c", "mkdir /made 2>/dev/null; echo $?"],
                                                     "AttachStdout": True})["Id"]
        sock = engine.execs.start(exec_id)
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert b"".join(payload for _, payload in demultiplex(data)) == b"1\n"
    finally:
        engine.containers.kill(container_id, signal="KILL")
        engine.wait(container_id)


@pytest.mark.parametrize("option, message", [
    ("seccomp={not json", "Decoding seccomp profile failed"),
    ('seccomp={"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction"),
    ("apparmor=docker-default", "AppArmor"),
    ("label=type:svirt_t", "SELinux"),
    ("bogus=1", "unknown option"),
])
def test_bad_security_options_are_400(engine, option, message) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        engine.create("true", HostConfig={"SecurityOpt": [option]})


def test_no_new_privileges_and_group_add_by_name(engine) -> None:
    code, out = run_output(engine, "grep NoNewPrivs /proc/self/status; id -G", GroupAdd=["audio", "1234"])
    assert code == 0
    assert "NoNewPrivs:\t1" in out
    assert {"18", "1234"} <= set(out.splitlines()[-1].split())
    with pytest.raises(errdefs.NotFound, match="Unable to find group nosuchgroup"):
        engine.containers.start(engine.create("true", HostConfig={"GroupAdd": ["nosuchgroup"]}))


def test_ulimits_are_set_and_a_hard_limit_above_the_engine_s_is_refused(engine) -> None:
    code, out = run_output(engine, "ulimit -n; ulimit -Hn", Ulimits=[{"Name": "nofile", "Soft": 100, "Hard": 200}])
    assert (code, out.split()) == (0, ["100", "200"])
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and not options._has_capability(24):
        with pytest.raises(errdefs.InvalidArgument, match="CAP_SYS_RESOURCE"):
            engine.create("true", HostConfig={"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": hard + 1}]})


def test_memory_reservation_and_cpu_quota_reach_the_cgroup(engine) -> None:
    container_id = engine.run("sleep", "30", HostConfig={"MemoryReservation": 32 << 20, "CpuPeriod": 50000,
                                                          "CpuQuota": 25000})
    try:
        run = engine.container_views.inspect(container_id)
        assert run["HostConfig"]["MemoryReservation"] == 32 << 20
        pid = run["State"]["Pid"]
        with open(f"/proc/{pid}/cgroup", encoding="ascii") as handle:
            paths = dict((line.split(":")[1], line.strip().split(":")[2]) for line in handle if line.count(":") >= 2)
        memory = next(path for key, path in paths.items() if "memory" in key.split(","))
        cpu = next(path for key, path in paths.items() if "cpu" in key.split(","))
        if os.path.isdir("/sys/fs/cgroup/memory"):
            with open(f"/sys/fs/cgroup/memory{memory}/memory.soft_limit_in_bytes", encoding="ascii") as handle:
                assert int(handle.read()) == 32 << 20
            cpu_root = "/sys/fs/cgroup/cpu,cpuacct" if os.path.isdir("/sys/fs/cgroup/cpu,cpuacct") else "/sys/fs/cgroup/cpu"
            with open(f"{cpu_root}{cpu}/cpu.cfs_quota_us", encoding="ascii") as handle:
                assert int(handle.read()) == 25000
    finally:
        engine.containers.kill(container_id, signal="KILL")
        engine.wait(container_id)


def test_init_is_tini_and_pid_1_has_no_host_environment(engine, monkeypatch) -> None:
    monkeypatch.setenv("LAMINA_HOST_SECRET_MARKER", "do-not-leak")
    code, out = run_output(engine, "tr '\\0' ' ' < /proc/1/cmdline; echo; tr '\\0' '\\n' < /proc/1/environ",
                           Init=True)
    assert code == 0, out
    assert out.splitlines()[0].startswith("/sbin/docker-init -- sh -c")
    assert "LAMINA_HOST_SECRET_MARKER" not in out
    assert "do-not-leak" not in out


# -- bad values through the API: 4xx, nothing created ------------------------------------------

def create_through_api(engine, body: bytes | dict) -> tuple[int, str]:
    router = Router(lambda: engine.services)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = router.handle(Request.from_target("POST", "/v1.45/containers/create",
                                                 {"Content-Type": "application/json"}, io.BytesIO(data)))
    return response.status, response.read_body().decode(errors="replace")


BAD_BODIES = {
    "memory beyond int64": {"HostConfig": {"Memory": 10 ** 30}},
    "cpuset mems not on this host": {"HostConfig": {"CpusetMems": "5"}},
    "blkio weight out of range": {"HostConfig": {"BlkioWeight": 5000}},
    "oom score adj out of range": {"HostConfig": {"OomScoreAdj": 5000}},
    "garbage port bindings": {"HostConfig": {"PortBindings": {"abc": "def"}}},
    "garbage exposed ports": {"ExposedPorts": {"eighty/tcp": {}}},
    "a host port above 65535": {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}},
    "a 300-character domain name": {"Domainname": "d" * 300},
    "a bind onto /proc": {"HostConfig": {"Binds": ["/tmp:/proc"]}},
    "a bind onto /proc/sys/kernel": {"HostConfig": {"Binds": ["/tmp:/proc/sys/kernel"]}},
    "a tmpfs size that is not a size": {"HostConfig": {"Tmpfs": {"/run": "size=abc"}}},
    "a NUL byte in Env": {"Env": ["A=\x00"]},
    "a NUL byte in Cmd": {"Cmd": ["sh\x00", "-c"]},
    "an unknown log driver": {"HostConfig": {"LogConfig": {"Type": "splunk"}}},
    "an unknown isolation": {"HostConfig": {"Isolation": "hyperv"}},
    "ipc of another container": {"HostConfig": {"IpcMode": "container:other"}},
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_values_are_a_4xx_with_a_message(engine, name) -> None:
    body = {"Image": "busybox", "Cmd": ["true"], **BAD_BODIES[name]}
    body["HostConfig"] = body.get("HostConfig", {})
    status, text = create_through_api(engine, body)
    assert 400 <= status < 500, (status, text)
    assert json.loads(text)["message"]
    assert engine.container_views.list_containers(all=True) == []


def test_deeply_nested_json_is_a_400(engine) -> None:
    status, text = create_through_api(engine, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nested" in text


def test_eight_thousand_variables_merge_in_linear_time(engine) -> None:
    import time

    env = [f"VARIABLE_{index}={index}" for index in range(8000)]
    from lamina.container import spec as specs

    started = time.monotonic()
    merged = specs.container_env({"Env": env}, tty=False, hostname="h")
    assert len(merged) == 8002 and time.monotonic() - started < 0.5


def test_an_update_refuses_what_it_cannot_apply(engine) -> None:
    container_id = engine.create("true")
    for update, field in (({"KernelMemory": 64 << 20}, "KernelMemory"), ({"BlkioWeight": 300}, "BlkioWeight"),
                          ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 10}]}, "Ulimits"),
                          ({"CpusetMems": "5"}, "memory nodes")):
        with pytest.raises(errdefs.InvalidArgument, match=field):
            engine.containers.update(container_id, update)
