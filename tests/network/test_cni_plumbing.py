"""Endpoints plugged by the CNI bridge plugin (:mod:`lamina.network.cni`) beside netavark's:
the record says which plumbing made each endpoint, a CNI endpoint is reached by name and by
address, from netavark's endpoints too, it is what netavark would have made (address, MAC,
routes, ``--mac-address``, ``Internal``), and its teardown, a killed monitor's repair and the
leak rules leave nothing.  Real runs, namespaces, bridges and packets; traffic only inside the
test's namespaces and to 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from lamina import errdefs
from lamina.network import bridges
from lamina.network.aardvark import Aardvark
from lamina.network.cni import find_plugin_directory, run_plugin
from services.conftest import engine  # noqa: F401 - re-exported fixture

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(find_plugin_directory() is None, reason="containernetworking-plugins not installed")]

# busybox's resolver asks aardvark-dns, which re-reads its files on SIGHUP: a name added a moment
# ago may need a retry (the same with netavark)
_RESOLVE = "for i in 1 2 3 4 5 6 7 8 9 10; do {} && break; sleep 0.3; done"


@pytest.fixture
def net(names, engine):  # noqa: F811
    return engine, names


def _network(engine, names, name: str, **fields) -> dict:  # noqa: F811
    body = {"Name": name, "IPAM": {"Config": [{"Subnet": names.subnet()}]},
            "Options": {"com.docker.network.bridge.name": names.bridge()}, **fields}
    engine.services.networks.create(body)
    return engine.services.networks.inspect(name)


def _record(engine, container: str) -> dict:  # noqa: F811
    record = engine.containers.network.sandboxes.store.sandbox(container)
    assert record is not None, f"no sandbox record of {container}"
    return record


def _plumbing(engine, container: str, network: str) -> str:  # noqa: F811
    return str(_record(engine, container)["Endpoints"][network].get("Plumbing"))


def _host_end(sandbox_key: str, interface: str = "eth0") -> str:
    """The host's end of ``interface``'s veth pair in the namespace at ``sandbox_key``."""
    listing = subprocess.run(["nsenter", f"--net={sandbox_key}", "ip", "-o", "link"], capture_output=True, text=True,
                             check=True).stdout
    index = re.search(rf"\d+: {interface}@if(\d+):", listing).group(1)
    for device in os.listdir("/sys/class/net"):
        with open(f"/sys/class/net/{device}/ifindex", encoding="ascii") as handle:
            if handle.read().strip() == index:
                return device
    raise AssertionError(f"no host end of {interface} in {sandbox_key}")


def _aardvark(engine) -> Aardvark:  # noqa: F811
    return Aardvark(os.path.join(engine.config.exec_root, "network"))


def _file(engine, network: str) -> str:  # noqa: F811
    """The name of the network's aardvark-dns file: its netavark name, the network's id."""
    return engine.services.networks.inspect(network)["Id"]


def test_a_cni_endpoint_is_reached_by_name_and_address_and_its_teardown_leaves_nothing(net) -> None:
    engine, names = net
    network = _network(engine, names, "plumbed")
    bridge = network["Options"]["com.docker.network.bridge.name"]
    gateway = network["IPAM"]["Config"][0]["Gateway"]
    first = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="first", HostConfig={"NetworkMode": "plumbed"})
    assert _plumbing(engine, first, "plumbed") == "netavark"     # the network's first endpoint: netavark's
    second = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="second", HostConfig={"NetworkMode": "plumbed"},
                        NetworkingConfig={"EndpointsConfig": {"plumbed": {"Aliases": ["www"]}}})
    assert _plumbing(engine, second, "plumbed") == "cni-bridge"
    settings = engine.container_views.inspect(second)["NetworkSettings"]["Networks"]["plumbed"]
    address = settings["IPAddress"]
    assert settings["MacAddress"] == "02:42:" + ":".join(f"{int(part):02x}" for part in address.split("."))
    assert settings["Gateway"] == gateway and settings["Aliases"] == ["www"]
    assert _record(engine, second)["Endpoints"]["plumbed"]["DNSServers"] == [gateway]
    assert engine.services.networks.inspect("plumbed")["Containers"][second]["IPv4Address"] == f"{address}/24"
    # aardvark-dns has the line netavark would have written
    assert f"{second} {address}  second,second,www,{second[:12]}" in _aardvark(engine).entries(_file(engine, "plumbed"))

    # by name and alias from a third (CNI) endpoint, and by address; the netavark one by name
    client = engine.run("sh", "-c", " && ".join([
        _RESOLVE.format("wget -qO- http://second/hostname"), "wget -qO- http://www/hostname",
        f"wget -qO- http://{address}/hostname", "wget -qO- http://first/hostname",
        "ip route; ip link show eth0; cat /sys/class/net/eth0/address"]), HostConfig={"NetworkMode": "plumbed"})
    assert engine.wait(client) == 0, engine.output(client)
    output = engine.output(client)
    assert output.count(second[:12]) == 3 and first[:12] in output
    assert re.search(rf"default via {re.escape(gateway)} dev eth0 .*metric 100", output), output
    assert "qlen 1000" in output
    # the netavark endpoint reaches the CNI one (its name answered by aardvark-dns too)
    back = engine.run("sh", "-c", _RESOLVE.format("ping -c1 -W3 second"), HostConfig={"NetworkMode": "plumbed"})
    assert engine.wait(back) == 0, engine.output(back)

    host_end = _host_end(_record(engine, second)["SandboxKey"])
    assert host_end in os.listdir(f"/sys/class/net/{bridge}/brif")
    assert not [problem for problem in engine.services.system.check()["Problems"] if problem["Kind"] == "network"]
    engine.containers.remove(second, force=True)
    engine.wait_for(lambda: engine.containers.network.sandboxes.store.sandbox(second) is None,
                    message="the teardown")
    assert not bridges.exists(host_end)
    assert not [line for line in _aardvark(engine).entries(_file(engine, "plumbed")) if line.startswith(second)]
    assert [line for line in _aardvark(engine).entries(_file(engine, "plumbed")) if line.startswith(first)]
    assert bridges.exists(bridges.anchor_name(bridge))     # the network's bridge stays


def test_port_mappings_go_to_netavark_and_talk_with_cni_endpoints_on_the_same_network(net) -> None:
    engine, names = net
    _network(engine, names, "mixed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    published = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="published", HostConfig={
        "NetworkMode": "mixed", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
    plain = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="plain", HostConfig={"NetworkMode": "mixed"})
    assert _plumbing(engine, plain, "mixed") == "cni-bridge"
    plain_address = engine.container_views.inspect(plain)["NetworkSettings"]["Networks"]["mixed"]["IPAddress"]
    # a second container with a port: netavark again (its DNAT rules are per container), reaching the CNI one
    ported = engine.run("sleep", "60", HostConfig={"NetworkMode": "mixed",
                                                   "PortBindings": {"82/tcp": [{"HostIp": "127.0.0.1"}]}})
    assert _plumbing(engine, ported, "mixed") == "netavark"
    caller = engine.run("sh", "-c", " && ".join([_RESOLVE.format("wget -qO- http://plain/hostname"),
                                                 f"wget -qO- http://{plain_address}/hostname"]),
                        HostConfig={"NetworkMode": "mixed", "PortBindings": {"81/tcp": [{"HostIp": "127.0.0.1"}]}})
    assert engine.wait(caller) == 0, engine.output(caller)
    assert engine.output(caller).count(plain[:12]) == 2
    # and the CNI one reaches the published one
    reply = engine.run("sh", "-c", _RESOLVE.format("wget -qO- http://published/hostname"),
                       HostConfig={"NetworkMode": "mixed"})
    assert engine.wait(reply) == 0, engine.output(reply)
    assert published[:12] in engine.output(reply)
    # the published port still answers from the host
    deadline = time.monotonic() + 10
    answer = ""
    while time.monotonic() < deadline and published[:12] not in answer:
        answer = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/hostname"],
                                capture_output=True, text=True, check=False).stdout
    assert published[:12] in answer


def test_mac_address_internal_network_and_the_default_bridge_on_cni(net) -> None:
    engine, names = net
    _network(engine, names, "inner", Internal=True)
    engine.run("sleep", "30", HostConfig={"NetworkMode": "inner"})
    inner = engine.run("sh", "-c", "ip route; cat /sys/class/net/eth0/address; sleep 60",
                       MacAddress="02:aa:bb:cc:dd:ee", HostConfig={"NetworkMode": "inner"})
    assert _plumbing(engine, inner, "inner") == "cni-bridge"
    engine.wait_for(lambda: "02:aa:bb:cc:dd:ee" in engine.output(inner), message="the container's output")
    output = engine.output(inner)
    assert "default" not in output and "02:aa:bb:cc:dd:ee" in output
    assert engine.container_views.inspect(inner)["NetworkSettings"]["Networks"]["inner"]["MacAddress"] == \
        "02:aa:bb:cc:dd:ee"
    # the default bridge: no name server; the second endpoint is plugged by CNI with --dns recorded
    engine.run("sleep", "30")
    plain = engine.run("sleep", "30", HostConfig={"Dns": ["192.0.2.53"]})
    assert _plumbing(engine, plain, "bridge") == "cni-bridge"
    assert _record(engine, plain)["Endpoints"]["bridge"]["DNSServers"] == ["192.0.2.53"]


def test_connect_to_a_running_container_plugs_by_cni_and_disconnect_unplugs(net) -> None:
    engine, names = net
    _network(engine, names, "home")
    _network(engine, names, "away")
    server = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="server", HostConfig={"NetworkMode": "away"})
    roamer = engine.run("sh", "-c", "while sleep 0.2; do ip -o link show eth1 >/dev/null 2>&1 && break; done; "
                        + _RESOLVE.format("wget -qO- http://server/hostname") + "; echo fetched; "
                        "while sleep 0.2; do ip -o link show eth1 >/dev/null 2>&1 || break; done; echo unplugged; "
                        "sleep 60", name="roamer", HostConfig={"NetworkMode": "home"})
    engine.services.networks.connect("away", roamer, {"Aliases": ["wanderer"]})
    record = _record(engine, roamer)
    assert record["Endpoints"]["away"]["Plumbing"] == "cni-bridge"
    assert record["Endpoints"]["away"]["InterfaceName"] == "eth1"
    assert f"{roamer} {record['Endpoints']['away']['IPAddress']}  roamer,roamer,wanderer,{roamer[:12]}" in \
        _aardvark(engine).entries(_file(engine, "away"))
    engine.wait_for(lambda: "fetched" in engine.output(roamer), timeout=20, message="the fetch over eth1")
    assert server[:12] in engine.output(roamer)
    host_end = _host_end(record["SandboxKey"], "eth1")
    engine.services.networks.disconnect("away", roamer)
    engine.wait_for(lambda: "unplugged" in engine.output(roamer), message="eth1 to go")
    assert not bridges.exists(host_end)
    assert not [line for line in _aardvark(engine).entries(_file(engine, "away")) if line.startswith(roamer)]
    assert "away" not in _record(engine, roamer)["Endpoints"]


def test_the_name_server_outlives_the_last_endpoint_and_goes_with_the_network(net) -> None:
    engine, names = net
    lonely = _network(engine, names, "lonely")["Id"]
    first = engine.run("true", HostConfig={"NetworkMode": "lonely"})
    assert engine.wait(first) == 0
    engine.wait_for(lambda: engine.containers.network.sandboxes.store.sandbox(first) is None, message="the teardown")
    aardvark = _aardvark(engine)
    assert aardvark.serves(lonely) and aardvark.entries(lonely) == []
    second = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="again", HostConfig={"NetworkMode": "lonely"})
    assert _plumbing(engine, second, "lonely") == "cni-bridge"   # no netavark for a network it set up
    client = engine.run("sh", "-c", _RESOLVE.format("wget -qO- http://again/hostname"),
                        HostConfig={"NetworkMode": "lonely"})
    assert engine.wait(client) == 0, engine.output(client)
    assert second[:12] in engine.output(client)
    engine.containers.remove(second, force=True)
    engine.services.networks.remove("lonely")
    assert not aardvark.serves(lonely)
    assert not os.path.exists(os.path.join(aardvark.directory, lonely))


def test_a_killed_monitor_of_a_cni_endpoint_leaves_nothing_after_repair(net) -> None:
    engine, names = net
    network = _network(engine, names, "crashy")
    bridge = network["Options"]["com.docker.network.bridge.name"]
    engine.run("sleep", "60", HostConfig={"NetworkMode": "crashy"})
    container = engine.run("sleep", "60", HostConfig={"NetworkMode": "crashy"})
    record = _record(engine, container)
    assert record["Endpoints"]["crashy"]["Plumbing"] == "cni-bridge"
    host_end = _host_end(record["SandboxKey"])
    os.kill(engine.run_dir(container).monitor_pid(), signal.SIGKILL)
    engine.wait_for(lambda: engine.run_dir(container).monitor_pid() is None, message="the monitor to die")
    engine.wait_for(lambda: not engine.containers.network.is_live(container), message="its lock")
    report = engine.services.system.check(repair=True)
    assert f"removed leaked network sandbox of container {container}" in report["Repaired"]
    assert not [problem for problem in report["Problems"] if problem["Kind"] == "network"], report
    assert engine.containers.network.sandboxes.store.sandbox(container) is None
    assert not bridges.exists(host_end) and not os.path.exists(record["SandboxKey"])
    assert host_end not in os.listdir(f"/sys/class/net/{bridge}/brif")
    assert not [line for line in _aardvark(engine).entries(_file(engine, "crashy")) if line.startswith(container)]


def test_a_leaked_cni_veth_is_found_and_a_live_one_is_not(net) -> None:
    engine, names = net
    network = _network(engine, names, "leaks")
    bridge = network["Options"]["com.docker.network.bridge.name"]
    engine.run("sleep", "60", HostConfig={"NetworkMode": "leaks"})
    container = engine.run("sleep", "60", HostConfig={"NetworkMode": "leaks"})
    record = _record(engine, container)
    host_end = _host_end(record["SandboxKey"])
    assert re.fullmatch(r"veth[0-9a-f]{8}", host_end), host_end     # the plugin's name, not netavark's vethN
    assert not [problem for problem in engine.services.system.check()["Problems"] if problem["Kind"] == "network"]
    # the container's end moved out of its sandbox (as if the namespace were lost): its host end is a leak
    moved = f"ltk{os.getpid() % 100000}"
    subprocess.run(["nsenter", f"--net={record['SandboxKey']}", "ip", "link", "set", "eth0", "name", moved, "netns",
                    "1"], check=True)
    try:
        problems = {problem["Object"]: problem["Message"] for problem in engine.services.system.check()["Problems"]
                    if problem["Kind"] == "network"}
        assert problems.get(host_end, "").startswith(f"leaked interface: veth on bridge {bridge}"), problems
        report = engine.services.system.check(repair=True)
        assert f"removed leaked interface {host_end}" in report["Repaired"]
        assert not bridges.exists(host_end)
    finally:
        subprocess.run(["ip", "link", "del", moved], capture_output=True, check=False)
        if bridges.exists(host_end):
            subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)


def test_a_lost_sandbox_record_leaves_a_name_server_entry_that_repair_removes(net) -> None:
    engine, names = net
    _network(engine, names, "forgetful")
    kept = engine.run("sleep", "60", HostConfig={"NetworkMode": "forgetful"})
    lost = engine.run("sleep", "60", HostConfig={"NetworkMode": "forgetful"})
    store = engine.containers.network.sandboxes.store
    os.unlink(os.path.join(store.root, "sandboxes", f"{lost}.json"))
    path = os.path.join(_aardvark(engine).directory, _file(engine, "forgetful"))
    problems = {problem["Object"]: problem["Message"] for problem in engine.services.system.check()["Problems"]
                if problem["Kind"] == "network"}
    assert problems.get(f"{path} {lost}", "").startswith("leaked entry: name server entry of container"), problems
    report = engine.services.system.check(repair=True)
    assert f"removed leaked entry {path} {lost}" in report["Repaired"]
    assert not [problem for problem in report["Problems"] if problem["Kind"] == "network"], report
    entries = _aardvark(engine).entries(_file(engine, "forgetful"))
    assert [line for line in entries if line.startswith(kept)] and not [line for line in entries
                                                                        if line.startswith(lost)]


def test_an_ipv6_network_stays_on_netavark(net) -> None:
    engine, names = net
    engine.services.networks.create({"Name": "six", "EnableIPv6": True, "IPAM": {"Config": [
        {"Subnet": names.subnet()}, {"Subnet": names.subnet6()}]},
        "Options": {"com.docker.network.bridge.name": names.bridge()}})
    engine.run("sleep", "30", HostConfig={"NetworkMode": "six"})
    second = engine.run("sleep", "30", HostConfig={"NetworkMode": "six"})
    assert _plumbing(engine, second, "six") == "netavark"


def test_a_plugin_error_is_raised_as_its_kind() -> None:
    directory = find_plugin_directory()
    assert directory is not None
    config = {"cniVersion": "9.0.0", "name": "n", "type": "bridge", "bridge": "lnever0"}
    with pytest.raises(errdefs.InvalidArgument, match="CNI bridge ADD of eth0 failed: incompatible CNI versions"):
        run_plugin(directory, "bridge", "ADD", container_id="c" * 64, netns_path="/nonexistent", interface="eth0",
                   config=config)
    assert not bridges.exists("lnever0")
