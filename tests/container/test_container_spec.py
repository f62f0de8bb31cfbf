"""From create requests to runtime specs: Docker's merge rules, HostConfig validation with
Docker's messages, the command, environment and DNS files."""

from __future__ import annotations

import signal

import pytest

from lamina import errdefs
from lamina.container import spec as specs
from lamina.runtime.user import ExecUser

IMAGE = {"Env": ["PATH=/usr/bin:/bin", "LANG=C"], "Cmd": ["sh"], "Entrypoint": None, "WorkingDir": "/srv",
         "User": "app", "Labels": {"a": "image", "b": "image"}, "ExposedPorts": {"80/tcp": {}},
         "StopSignal": "SIGQUIT"}


@pytest.mark.parametrize(("user", "entrypoint", "cmd"), [
    ({}, None, ["sh"]),
    ({"Cmd": ["echo", "hi"]}, None, ["echo", "hi"]),
    ({"Entrypoint": ["/init"]}, ["/init"], None),
    ({"Entrypoint": ["/init"], "Cmd": ["x"]}, ["/init"], ["x"]),
    ({"Entrypoint": [""], "Cmd": ["echo"]}, None, ["echo"]),
], ids=["the image's command", "the user's command", "an entrypoint drops the image's Cmd",
        "entrypoint and command", "an empty entrypoint resets it"])
def test_command_merge_like_docker(user, entrypoint, cmd) -> None:
    merged = specs.merge_image_config(dict(user), IMAGE)
    assert merged.get("Entrypoint") == entrypoint
    assert merged.get("Cmd") == cmd


def test_image_entrypoint_is_kept_when_only_cmd_is_given() -> None:
    merged = specs.merge_image_config({"Cmd": ["x"]}, {**IMAGE, "Entrypoint": ["/entry"]})
    assert (merged["Entrypoint"], merged["Cmd"]) == (["/entry"], ["x"])
    assert specs.entrypoint_and_args(merged) == ("/entry", ["x"])


def test_merge_of_env_labels_and_defaults() -> None:
    merged = specs.merge_image_config({"Env": ["LANG=fr", "X=1"], "Labels": {"a": "user"}}, IMAGE)
    assert merged["Env"] == ["LANG=fr", "X=1", "PATH=/usr/bin:/bin"]  # user's first, as Docker
    assert merged["Labels"] == {"a": "user", "b": "image"}
    assert (merged["User"], merged["WorkingDir"], merged["StopSignal"]) == ("app", "/srv", "SIGQUIT")
    assert merged["ExposedPorts"] == {"80/tcp": {}}


def test_validation_of_the_merged_config() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="No command specified"):
        specs.validate_config({"Cmd": None, "Entrypoint": None})
    with pytest.raises(errdefs.InvalidArgument, match="needs to be an absolute path"):
        specs.validate_config({"Cmd": ["x"], "WorkingDir": "relative"})
    with pytest.raises(errdefs.InvalidArgument, match="Invalid signal: SIGNOPE"):
        specs.validate_config({"Cmd": ["x"], "StopSignal": "SIGNOPE"})
    config = {"Cmd": ["x"], "WorkingDir": "/a/../b/"}
    specs.validate_config(config)
    assert config["WorkingDir"] == "/b"


@pytest.mark.parametrize(("text", "number"), [("9", 9), ("KILL", 9), ("SIGTERM", 15), ("sigusr1", 10),
                                              ("SIGRTMIN+3", signal.SIGRTMIN + 3)])
def test_signal_names(text: str, number: int) -> None:
    assert specs.parse_signal(text) == number


def test_bad_signals() -> None:
    for text in ("0", "999", "NOPE", "SIGRTMAX+1"):
        with pytest.raises(errdefs.InvalidArgument, match="Invalid signal"):
            specs.parse_signal(text)


def normalize(**host):
    return specs.normalize_host_config(host, cpu_count=2, available_cpus={0, 1})


def test_host_config_defaults_like_docker_inspect() -> None:
    host, warnings = normalize()
    assert warnings == []
    assert host["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert host["NetworkMode"] == "default"
    assert host["ShmSize"] == 64 << 20
    assert host["Runtime"] == "native"
    assert host["MaskedPaths"] and host["ReadonlyPaths"]
    assert normalize(Memory=64 << 20)[0]["MemorySwap"] == 128 << 20


@pytest.mark.parametrize(("host", "message"), [
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap limit"),
    ({"NanoCpus": 3_000_000_000}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({"NanoCpus": -1}, "Range of CPUs is from 0.01 to 2.00"),
    ({"CpuShares": -1}, "invalid CPU shares (-1): value must be a positive integer"),
    ({"CpusetCpus": "0-3"}, "Requested CPUs are not available - requested 0-3, available: 0-1"),
    ({"CpusetCpus": "a"}, "Invalid value a for cpuset cpus"),
    ({"Memory": "12zz"}, "cannot unmarshal string into Go struct field HostConfig.Memory of type int64"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "maximum retry count can only be used with 'on-failure'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "maximum retry count cannot be negative"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "can't create 'AutoRemove' container with restart"),
    ({"LogConfig": {"Type": "syslog"}}, "no log driver named 'syslog' is registered"),
    ({"LogConfig": {"Type": "json-file", "Config": {"max-file": "x"}}}, "invalid max-file"),
    ({"Runtime": "kata"}, "unknown or invalid runtime name: kata"),
    ({"CapAdd": ["NOT_A_CAP"]}, 'unknown capability: "NOT_A_CAP"'),
], ids=lambda value: str(value)[:60])
def test_host_config_errors_use_dockers_messages(host, message) -> None:
    with pytest.raises(errdefs.InvalidArgument) as raised:
        normalize(**host)
    assert message in str(raised.value)


def test_a_user_defined_network_runs_in_a_private_namespace() -> None:
    # whether the network exists is the container service's check (lamina.network.run.check)
    host, _ = normalize(NetworkMode="mynet")
    assert specs.network_mode(host) == "private"


def test_update_changes_only_resources_and_policy() -> None:
    host, _ = normalize(Memory=64 << 20)
    changed, _ = specs.normalize_update(host, {"Memory": 32 << 20, "RestartPolicy": {"Name": "always"}},
                                        cpu_count=2, available_cpus={0, 1})
    assert changed["Memory"] == 32 << 20 and changed["MemorySwap"] == 128 << 20
    assert changed["RestartPolicy"]["Name"] == "always"
    with pytest.raises(errdefs.InvalidArgument):
        specs.normalize_update(host, {"Image": "x"})


def test_resources_from_host_config() -> None:
    resources = specs.resources({"Memory": 64 << 20, "MemorySwap": -1, "NanoCpus": 1_500_000_000,
                                 "CpuShares": 512, "CpusetCpus": "0", "PidsLimit": 50})
    assert (resources.memory, resources.memory_swap) == (64 << 20, -1)
    assert (resources.cpu_period, resources.cpu_quota) == (100_000, 150_000)
    assert (resources.cpu_shares, resources.cpuset_cpus, resources.pids_limit) == (512, "0", 50)
    assert specs.resources({"PidsLimit": 0}).pids_limit is None


def test_container_spec_command_environment_and_files() -> None:
    config = {"Cmd": ["sh", "-c", "x"], "Entrypoint": None, "Env": ["PATH=/bin", "A=1"], "Tty": True,
              "Hostname": "box", "WorkingDir": "/w", "User": "app"}
    host, _ = normalize(ReadonlyRootfs=True, Init=True, Memory=64 << 20, CapDrop=["NET_RAW"],
                        CapAdd=["SYS_ADMIN"], Tmpfs={"/run": "size=1m"}, NetworkMode="none")
    spec = specs.container_spec(container_id="a" * 64, config=config, host=host, rootfs="/r",
                                user=ExecUser(uid=5, gid=6, additional_gids=(6, 7), home="/home/app"),
                                files={"/etc/hosts": "/c/hosts"})
    process = spec.process
    # --init: Debian's static tini, mounted read-only, runs the command as its child
    assert process.args == ("/sbin/docker-init", "--", "sh", "-c", "x")
    init = next(m for m in spec.mounts if m.destination == "/sbin/docker-init")
    assert (init.source, "ro" in init.options) == ("/usr/bin/tini-static", True)
    assert process.env == ("PATH=/bin", "HOSTNAME=box", "TERM=xterm", "A=1", "HOME=/home/app")
    assert (process.cwd, process.uid, process.gid, process.additional_gids) == ("/w", 5, 6, (6, 7))
    assert process.terminal and not spec.init and spec.readonly_rootfs
    assert "CAP_NET_RAW" not in process.capabilities and "CAP_SYS_ADMIN" in process.capabilities
    assert spec.network == "none" and spec.hostname == "box"
    assert spec.resources.memory == 64 << 20
    hosts = next(m for m in spec.mounts if m.destination == "/etc/hosts")
    assert (hosts.type, hosts.source, "ro" in hosts.options) == ("bind", "/c/hosts", True)
    assert any(m.destination == "/run" and m.type == "tmpfs" for m in spec.mounts)


def test_exec_process_overlays_the_container() -> None:
    process = specs.exec_process(container_id="b" * 64, config={"Env": ["A=1", "B=2"], "WorkingDir": "/w"},
                                 host={}, exec_config={"Cmd": ["env"], "Env": ["B=3"], "Tty": False},
                                 user=ExecUser(home="/root"))
    assert process.env == (f"PATH={specs.DEFAULT_PATH}", "HOSTNAME=" + "b" * 12, "A=1", "B=3", "HOME=/root")
    assert process.cwd == "/w"


def test_resolv_conf_drops_loopback_and_ipv6_nameservers() -> None:
    host = "search example.org\nnameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1\noptions ndots:2\n"
    text = specs.resolv_conf(host, network="private")
    assert text == "search example.org\noptions ndots:2\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    kept = specs.resolv_conf("nameserver 10.0.0.2\n", network="private")
    assert kept == "nameserver 10.0.0.2\n"
    assert specs.resolv_conf(host, network="host") == host
    custom = specs.resolv_conf(host, network="private", dns=["1.1.1.1"], search=["a.b"], options=["rotate"])
    assert custom == "nameserver 1.1.1.1\nsearch a.b\noptions rotate\n"


def test_hosts_file() -> None:
    text = specs.hosts_file(hostname="box", domainname="lan", network="private", extra_hosts=["db:10.0.0.5"])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("127.0.0.1\tbox.lan box\n10.0.0.5\tdb\n")
    assert specs.hosts_file(hostname="x", network="host", host_text="1.2.3.4 h") == "1.2.3.4 h\n"
