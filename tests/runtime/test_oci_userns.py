"""The OCI config of a container in a user namespace and the bundle preparation's pure parts
(:mod:`lamina.runtime.oci_userns`); end to end with crun and runc:
``tests/services/test_userns_oci.py``."""

from __future__ import annotations

import os
import secrets

import pytest

from lamina import errdefs
from lamina.records import replace
from lamina.runtime.api import ContainerSpec, ProcessSpec
from lamina.runtime.oci_config import config_json
from lamina.runtime.oci_userns import (NETWORK_ANNOTATION, check_traversable, enter_network_namespace_around,
                                       entered_network_namespace, host_group_range, host_root, in_network_namespace,
                                       keep_locked_flags, split_network_sysctls)

MAPPING = ((0, 100000, 65536),)


def _spec(**changes) -> ContainerSpec:
    spec = ContainerSpec(id=secrets.token_hex(32), rootfs="/rootfs",
                         process=ProcessSpec(args=("true",), env=("PATH=/bin",)), hostname="box")
    return replace(spec, **changes)


def _remapped(**changes) -> ContainerSpec:
    spec = _spec(**changes)
    return replace(spec, namespaces=spec.namespaces | {"user"}, uid_mappings=MAPPING, gid_mappings=MAPPING)


def test_a_user_namespace_gets_the_mappings_and_a_ping_range_of_its_own_groups() -> None:
    config = config_json(_remapped())
    linux = config["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == linux["gidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # read in the user namespace that writes it, where only the mapped groups exist
    assert linux["sysctl"]["net.ipv4.ping_group_range"] == "0 65535"
    plain = config_json(_spec())
    assert "uidMappings" not in plain["linux"] and all(item["type"] != "user" for item in plain["linux"]["namespaces"])
    assert plain["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 2147483647"


def test_the_host_ipc_namespace_s_mqueue_is_bound_in_a_user_namespace() -> None:
    spec = _remapped()
    config = config_json(replace(spec, namespaces=spec.namespaces - {"ipc"}))
    mqueue = [item for item in config["mounts"] if item["destination"] == "/dev/mqueue"]
    if os.path.isdir("/dev/mqueue"):
        assert mqueue == [{"destination": "/dev/mqueue", "type": "bind", "source": "/dev/mqueue",
                           "options": ["rbind", "nosuid", "noexec", "nodev"]}]
    else:
        assert mqueue == []  # the host has none to bind
    own = [item for item in config_json(spec)["mounts"] if item["destination"] == "/dev/mqueue"]
    assert own == [{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                    "options": ["nosuid", "noexec", "nodev"]}]


def test_a_network_namespace_entered_around_the_binary_leaves_the_spec() -> None:
    config = config_json(_remapped(network_namespace="/run/lamina/netns/x"))
    assert {"type": "network", "path": "/run/lamina/netns/x"} in config["linux"]["namespaces"]
    assert entered_network_namespace(config) is None
    enter_network_namespace_around(config, "/run/lamina/netns/x")
    assert all(item["type"] != "network" for item in config["linux"]["namespaces"])
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert config["annotations"] == {NETWORK_ANNOTATION: "/run/lamina/netns/x"}
    assert entered_network_namespace(config) == "/run/lamina/netns/x"


def test_the_net_sysctls_are_split_off_and_the_ping_range_goes_to_host_groups() -> None:
    config = config_json(_remapped(sysctls=(("kernel.shmmax", "1000000"), ("net.ipv4.ip_forward", "1"))))
    network = split_network_sysctls(config)
    assert network == {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 65535",
                       "net.ipv4.ip_forward": "1"}
    assert config["linux"]["sysctl"] == {"kernel.shmmax": "1000000"}
    assert host_group_range("0 65535", MAPPING) == "100000 165535"
    assert host_group_range("10 20", ((0, 100000, 5), (5, 300000, 100))) == "300005 300015"
    with pytest.raises(errdefs.InvalidArgument, match="not mapped"):
        host_group_range("0 2147483647", MAPPING)
    only_network = config_json(_remapped())
    split_network_sysctls(only_network)
    assert "sysctl" not in only_network["linux"]


def _a_nosuid_nodev_mount() -> str | None:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if {"nosuid", "nodev"} <= set(fields[5].split(",")) and "\\" not in fields[4]:
                return fields[4]
    return None


def test_binds_keep_the_flags_their_source_mount_locks() -> None:
    source = _a_nosuid_nodev_mount()
    if source is None:
        pytest.skip("no nosuid,nodev mount here")
    config = {"mounts": [{"destination": "/p", "type": "bind", "source": source, "options": ["rbind", "ro"]},
                         {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["noexec"]}]}
    keep_locked_flags(config)
    bind_options = config["mounts"][0]["options"]
    assert bind_options[:2] == ["rbind", "ro"] and bind_options.count("ro") == 1
    assert {"nosuid", "nodev"} <= set(bind_options), (source, bind_options)
    assert config["mounts"][1]["options"] == ["noexec"]


def test_host_root_and_the_directory_closed_to_the_remapped_root(tmp_path) -> None:
    assert host_root(MAPPING) == 100000
    with pytest.raises(errdefs.InvalidArgument):
        host_root(((1, 100000, 10),))
    closed = tmp_path / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    os.chmod(closed, 0o700)
    with pytest.raises(errdefs.FailedPrecondition, match="restricts access to the remapped root 100000:100000") as caught:
        check_traversable(str(inner), 100000, 100000)
    named = str(caught.value).split(" (mode")[0]
    assert str(inner).startswith(named + "/") and not os.stat(named).st_mode & 0o001
    check_traversable("/usr/bin", 100000, 100000)


def test_a_sysctl_the_network_namespace_lacks_is_named(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace)")
    from lamina.network import namespace

    path = str(tmp_path / "netns")
    namespace.create(path)
    try:
        in_network_namespace(path, {"net.ipv4.ip_forward": "1"}, None)
        with pytest.raises(errdefs.System, match="write sysctl net.ipv4.no_such_key=1: .*No such file"):
            in_network_namespace(path, {"net.ipv4.no_such_key": "1"}, None)
    finally:
        namespace.remove(path)
