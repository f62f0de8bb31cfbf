"""``system check`` finds the network objects no record describes any more, ``--repair``
removes them: a sandbox record and a network record deleted under a running container leave
its namespace, its veth, the network's bridge and anchor, the port forward and the network's
rules, all attributed to this engine and all removed."""

from __future__ import annotations

import os
import subprocess

import pytest

from lamina.network import bridges
from services.conftest import engine  # noqa: F401 - re-exported fixture

pytestmark = pytest.mark.privileged


@pytest.fixture
def net(names, engine):  # noqa: F811
    return engine, names


def _ifindex(device: str) -> int:
    try:
        with open(f"/sys/class/net/{device}/ifindex", encoding="ascii") as handle:
            return int(handle.read())
    except FileNotFoundError:
        return -1


def _rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def test_repair_removes_the_interfaces_and_rules_of_lost_records(net) -> None:
    engine, names = net
    bridge, subnet = names.bridge(), names.subnet()
    network_id = engine.services.networks.create({"Name": "leaky", "IPAM": {"Config": [{"Subnet": subnet}]},
                                                  "Options": {"com.docker.network.bridge.name": bridge}})["Id"]
    container = engine.run("sleep", "60", HostConfig={
        "NetworkMode": "leaky", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1"}]}})
    settings = engine.container_views.inspect(container)["NetworkSettings"]
    port = settings["Ports"]["80/tcp"][0]["HostPort"]
    store = engine.containers.network.sandboxes.store
    anchor = bridges.anchor_name(bridge)
    try:
        assert f"--dport {port} " in _rules() and bridges.exists(anchor)
        assert not [problem for problem in engine.services.system.check()["Problems"] if problem["Kind"] == "network"]
        os.unlink(os.path.join(store.root, "sandboxes", f"{container}.json"))
        os.unlink(os.path.join(store.root, "networks", f"{network_id}.json"))
        problems = [problem for problem in engine.services.system.check()["Problems"] if problem["Kind"] == "network"]
        objects = {problem["Object"]: problem["Message"] for problem in problems}
        assert settings["SandboxKey"] in objects
        assert "leaked interface: anchor" in objects[anchor] and "bridge of no network record" in objects[bridge]
        veths = [name for name, message in objects.items() if "veth on bridge" in message]
        assert len(veths) == 1
        veth_index = _ifindex(veths[0])
        assert [name for name in objects if f"--dport {port} " in name and "HOSTPORT-DNAT" in name]
        assert [name for name in objects if f"-s {subnet}" in name and "POSTROUTING" in name]
        assert [name for name in objects if f"-o {bridge}" in name and "NETAVARK_ISOLATION_2" in name]
        report = engine.services.system.check(repair=True)
        assert not [problem for problem in report["Problems"] if problem["Kind"] == "network"], report
        assert {f"removed leaked {problem['Message'].split(':')[0].split()[-1]} {problem['Object']}"
                for problem in problems} <= set(report["Repaired"])
        assert not bridges.exists(bridge) and not bridges.exists(anchor)
        assert _ifindex(veths[0]) != veth_index  # its name may be another container's meanwhile
        assert not os.path.exists(settings["SandboxKey"])
        rules = _rules()
        assert f"--dport {port} " not in rules and subnet not in rules and bridge not in rules.split()
        assert bridges.chain_hash(network_id) not in rules   # the network's chains (netavark knew it by its id)
    finally:  # whatever an assertion left
        engine.services.system.check(repair=True)
        subprocess.run(["ip", "link", "del", anchor], capture_output=True, check=False)


def test_a_releasing_lock_nobody_holds_is_a_leaked_file(net) -> None:
    engine, names = net
    _ = names
    engine.services.networks.create({"Name": "plain"})  # the engine's network store exists
    directory = os.path.join(engine.config.exec_root, "releasing")
    os.makedirs(directory, exist_ok=True)
    stale = os.path.join(directory, "f" * 64 + ".lock")
    open(stale, "w").close()
    problems = engine.services.system.check()["Problems"]
    assert {"Kind": "network", "Object": stale,
            "Message": "leaked file: releasing lock of a teardown that ended"} in problems
    report = engine.services.system.check(repair=True)
    assert f"removed leaked file {stale}" in report["Repaired"] and not os.path.exists(stale)
