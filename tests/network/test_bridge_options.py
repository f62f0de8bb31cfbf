"""The bridge driver's ``enable_icc`` and ``enable_ip_masquerade`` options with real containers:
isolated bridge ports, and no source NAT for traffic leaving a network's subnet (seen by a
server in a namespace the test creates and routes from the host)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time

import pytest

from lamina.network import bridges
from services.conftest import engine  # noqa: F401 - re-exported fixture

from .test_containers_on_networks import net  # noqa: F401 - re-exported fixture

pytestmark = pytest.mark.privileged

ICC = "com.docker.network.bridge.enable_icc"
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"


def _network(engine, names, name: str, **options: str) -> dict:  # noqa: F811
    body = {"Name": name, "IPAM": {"Config": [{"Subnet": names.subnet()}]},
            "Options": {"com.docker.network.bridge.name": names.bridge(), **options}}
    engine.services.networks.create(body)
    return engine.services.networks.inspect(name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _isolated(bridge: str) -> dict[str, str]:
    return {port: open(f"/sys/class/net/{port}/brport/isolated", encoding="ascii").read().strip()
            for port in os.listdir(f"/sys/class/net/{bridge}/brif")}


@pytest.mark.parametrize("icc", ["false", "true"], ids=["icc disabled", "icc enabled"])
def test_icc_false_keeps_containers_apart_but_not_from_the_gateway_and_published_ports(net, icc) -> None:
    engine, names = net
    network = _network(engine, names, "quiet", **{ICC: icc})
    assert network["Options"][ICC] == icc
    gateway = network["IPAM"]["Config"][0]["Gateway"]
    bridge = network["Options"]["com.docker.network.bridge.name"]
    port = _free_port()
    web = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="web", HostConfig={
        "NetworkMode": "quiet", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
    address = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["quiet"]["IPAddress"]
    client = engine.run("sh", "-c", f"ping -c1 -W2 {gateway} >/dev/null && echo gateway-reached; "
                        "ping -c1 -W2 web >/dev/null && echo name-reached; "
                        f"timeout 3 wget -qO- http://{address}/hostname && echo address-reached; "
                        "nslookup web >/dev/null && echo name-resolved; true",
                        HostConfig={"NetworkMode": "quiet"})
    assert engine.wait(client) == 0, engine.output(client)
    output = engine.output(client).split()
    assert "gateway-reached" in output and "name-resolved" in output, output
    reached = {"name-reached", "address-reached"} & set(output)
    assert reached == (set() if icc == "false" else {"name-reached", "address-reached"}), output
    # the published port answers the host either way
    deadline = time.monotonic() + 10
    answer = ""
    while time.monotonic() < deadline and web[:12] not in answer:
        answer = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/hostname"],
                                capture_output=True, text=True, check=False).stdout
    assert web[:12] in answer
    # web and a running container connected later (the client ended) are isolated; the anchor never is
    other = engine.run("sleep", "30")
    engine.services.networks.connect("quiet", other)
    ports = _isolated(bridge)
    anchor = bridges.anchor_name(bridge)
    assert ports.pop(anchor) == "0"
    assert len(ports) == 2 and set(ports.values()) == {"1" if icc == "false" else "0"}, ports


_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 8080))
server.listen(8)
server.settimeout(60)
print("listening", flush=True)
while True:
    try:
        connection, peer = server.accept()
    except socket.timeout:
        break
    with connection:
        connection.settimeout(5)
        try:
            connection.recv(4096)
        except OSError:
            pass
        body = peer[0].encode()
        connection.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
"""


@pytest.fixture
def outside(names):
    """A namespace ``lmq<pid>`` routed from the host through a veth (``10.a.b.1/30`` on the host
    side, ``.2`` inside), its route back to every container subnet through the host, and a server
    in it that answers an HTTP request with the peer address it saw: (server address, host
    address).  Everything goes when the test ends, whatever happened."""
    subnet = names.subnet()  # unique to this process; only its first /30 is used
    prefix = subnet.rsplit(".", 1)[0]
    name = f"lmq{os.getpid() % 100000}"
    server = None
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name], check=True)
        subprocess.run(["ip", "addr", "add", f"{prefix}.1/30", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        inside = ["ip", "netns", "exec", name]
        subprocess.run([*inside, "ip", "addr", "add", f"{prefix}.2/30", "dev", "eth0"], check=True)
        subprocess.run([*inside, "ip", "link", "set", "eth0", "up"], check=True)
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*inside, "ip", "route", "add", "10.0.0.0/8", "via", f"{prefix}.1"], check=True)
        server = subprocess.Popen([*inside, sys.executable, "-c", _SERVER, f"{prefix}.2"], stdout=subprocess.PIPE,
                                  text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        yield f"{prefix}.2", f"{prefix}.1"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL, check=False)
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)


def _no_masquerade_rules(network_id: str) -> list[str]:
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    return [line for line in rules.splitlines() if bridges.no_masquerade_comment(network_id) in line]


def test_masquerade_false_leaves_the_containers_address_as_the_source(net, outside) -> None:
    engine, names = net
    server, host_address = outside
    masked = _network(engine, names, "masked")
    plain = _network(engine, names, "plain", **{MASQUERADE: "false"})
    assert plain["Options"][MASQUERADE] == "false"
    seen = {}
    for network in (masked, plain):
        container = engine.run("timeout", "8", "wget", "-qO-", f"http://{server}:8080/", HostConfig={
            "NetworkMode": network["Name"]})
        assert engine.wait(container) == 0, engine.output(container)
        seen[network["Name"]] = engine.output(container).strip()
    assert seen["masked"] == host_address
    # the container's own address: the first of the subnet after the gateway
    subnet = ipaddress.ip_network(plain["IPAM"]["Config"][0]["Subnet"])
    assert ipaddress.ip_address(seen["plain"]) == subnet.network_address + 2, seen
    [rule] = _no_masquerade_rules(plain["Id"])
    subnet = plain["IPAM"]["Config"][0]["Subnet"]
    assert f"-s {subnet} ! -d {subnet}" in rule and rule.endswith("-j RETURN")
    assert not _no_masquerade_rules(masked["Id"])
    engine.services.networks.remove("plain")
    assert not _no_masquerade_rules(plain["Id"])


def test_masquerade_false_on_an_ipv6_network_has_both_rules_until_the_network_goes(net) -> None:
    engine, names = net
    subnet6 = names.subnet6()
    engine.services.networks.create({
        "Name": "dual", "EnableIPv6": True,
        "IPAM": {"Config": [{"Subnet": names.subnet()}, {"Subnet": subnet6}]},
        "Options": {"com.docker.network.bridge.name": names.bridge(), MASQUERADE: "false"}})
    dual = engine.services.networks.inspect("dual")
    assert engine.wait(engine.run("true", HostConfig={"NetworkMode": "dual"})) == 0

    def rules(command: str) -> list[str]:
        text = subprocess.run([command, "-t", "nat"], capture_output=True, text=True, check=True).stdout
        return [line for line in text.splitlines() if bridges.no_masquerade_comment(dual["Id"]) in line]

    assert len(rules("iptables-save")) == 1
    [rule6] = rules("ip6tables-save")
    assert f"-s {subnet6} ! -d {subnet6}" in rule6
    engine.services.networks.remove("dual")
    assert rules("iptables-save") == rules("ip6tables-save") == []


def test_system_check_finds_a_no_masquerade_rule_whose_network_is_gone(net) -> None:
    engine, names = net
    subnet = names.subnet()  # unique to this process, routed nowhere
    gone_id = os.urandom(6).hex()
    rule = ["POSTROUTING", "-s", subnet, "!", "-d", subnet, "-m", "comment", "--comment",
            bridges.no_masquerade_comment(gone_id), "-j", "RETURN"]
    subprocess.run(["iptables", "-w", "-t", "nat", "-I", *rule], check=True)
    try:
        engine.services.networks.create({"Name": "kept", "Options": {MASQUERADE: "false",
                                                                      "com.docker.network.bridge.name": names.bridge()},
                                         "IPAM": {"Config": [{"Subnet": names.subnet()}]}})
        kept = engine.services.networks.inspect("kept")
        engine.wait(engine.run("true", HostConfig={"NetworkMode": "kept"}))
        assert len(_no_masquerade_rules(kept["Id"])) == 1
        problems = [problem for problem in engine.services.system.check()["Problems"]
                    if "no-masquerade" in problem["Object"]]
        assert [problem["Object"] for problem in problems if gone_id in problem["Object"]]
        assert not [problem for problem in problems if kept["Id"][:12] in problem["Object"]]
        report = engine.services.system.check(repair=True)
        assert any(gone_id in line for line in report["Repaired"]), report
        assert not _no_masquerade_rules(gone_id)
        assert len(_no_masquerade_rules(kept["Id"])) == 1  # a live network's rule stays
    finally:
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule], capture_output=True, check=False)


def test_the_host_port_of_an_endpoint_is_found_from_the_container_side(names, tmp_path) -> None:
    """Two namespaces, each with an ``eth0`` (same name, likely the same ifindex) whose veth peer
    is on one bridge: each finds its own port; an interface with no veth peer is an error."""
    from lamina import errdefs
    from lamina.network import isolation, namespace

    bridge = names.bridge()
    paths = [str(tmp_path / "one"), str(tmp_path / "two")]
    try:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        for index, path in enumerate(paths):
            namespace.create(path)
            subprocess.run(["ip", "link", "add", f"{bridge}v{index}", "master", bridge, "type", "veth", "peer", "name",
                            f"{bridge}c{index}"], check=True)
            subprocess.run(["ip", "link", "set", f"{bridge}c{index}", "netns", path, "name", "eth0"], check=True)
        assert [isolation.host_port(bridge, path, "eth0") for path in paths] == [f"{bridge}v0", f"{bridge}v1"]
        subprocess.run(["nsenter", f"--net={paths[0]}", "ip", "link", "add", "eth9", "type", "bridge"], check=True)
        with pytest.raises(errdefs.System, match="veth peer of eth9"):
            isolation.host_port(bridge, paths[0], "eth9")
        with pytest.raises(errdefs.System, match="veth peer of eth7"):
            isolation.host_port(bridge, paths[0], "eth7")
    finally:
        for path in paths:
            if os.path.lexists(path):
                namespace.remove(path)
        subprocess.run(["ip", "link", "del", bridge], stderr=subprocess.DEVNULL, check=False)
