"""Containers on networks, end to end through the container service: real runs, namespaces,
bridges and packets (busybox ``ping``, ``wget``, ``httpd``, ``nc``), traffic only to 127.0.0.1
and inside the test's namespaces."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from lamina import errdefs
from services.conftest import engine  # noqa: F401 - re-exported fixture

pytestmark = pytest.mark.privileged


@pytest.fixture
def net(names, engine):  # noqa: F811
    """(engine, names), names set up first: its check for leftover rules runs after the
    engine's teardown (which kills the runs and sweeps their sandboxes)."""
    return engine, names


def _network(engine, names, name: str, **fields) -> str:  # noqa: F811
    body = {"Name": name, "IPAM": {"Config": [{"Subnet": names.subnet()}]},
            "Options": {"com.docker.network.bridge.name": names.bridge()}, **fields}
    return str(engine.services.networks.create(body)["Id"])


def test_containers_reach_each_other_by_name_and_alias_and_another_network_is_isolated(net) -> None:
    engine, names = net
    _network(engine, names, "front")
    _network(engine, names, "back")
    web = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="web", HostConfig={"NetworkMode": "front"},
                     NetworkingConfig={"EndpointsConfig": {"front": {"Aliases": ["www"]}}})
    settings = engine.container_views.inspect(web)["NetworkSettings"]
    address = settings["Networks"]["front"]["IPAddress"]
    assert settings["Networks"]["front"]["Aliases"] == ["www"]
    assert settings["SandboxKey"]
    client = engine.run("sh", "-c", "ping -c1 -W3 web >/dev/null && wget -qO- http://www/hostname && "
                        "grep nameserver /etc/resolv.conf", HostConfig={"NetworkMode": "front"})
    assert engine.wait(client) == 0, engine.output(client)
    output = engine.output(client)
    assert web[:12] in output
    assert f"nameserver {settings['Networks']['front']['Gateway']}" in output
    outsider = engine.run("sh", "-c", f"ping -c1 -W1 {address} || echo unreachable; nslookup web 2>&1 | tail -1",
                          HostConfig={"NetworkMode": "back"})
    engine.wait(outsider)
    assert "unreachable" in engine.output(outsider)
    with pytest.raises(errdefs.Conflict, match="active endpoints"):
        engine.services.networks.remove("front")
    engine.containers.remove(web, force=True)
    engine.services.networks.remove("front")
    actions = [(message["Action"], message["Actor"]["Attributes"].get("container"))
               for message in engine.services.events.events(since_ns=0, until_ns=time.time_ns(),
                                                            filters={"type": ["network"], "network": ["front"]})]
    assert ("connect", web) in actions and ("disconnect", web) in actions
    assert actions[0][0] == "create" and actions[-1][0] == "destroy"


def test_a_published_port_answers_from_the_host_and_a_taken_port_is_refused(net) -> None:
    engine, names = net
    _network(engine, names, "ports")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", HostConfig={
        "NetworkMode": "ports", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
    ports = engine.container_views.inspect(web)["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    deadline = time.monotonic() + 10
    answer = ""
    while time.monotonic() < deadline and web[:12] not in answer:
        answer = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/hostname"],
                                capture_output=True, text=True, check=False).stdout
    assert web[:12] in answer
    second = engine.create("true", HostConfig={
        "NetworkMode": "ports", "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
    with pytest.raises(errdefs.Conflict, match="port is already allocated"):
        engine.containers.start(second)
    assert engine.containers.network.sandboxes.store.sandbox(second) is None
    engine.containers.remove(web, force=True)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert f"--dport {port} " not in rules


def test_internal_network_has_no_default_route_and_bad_requests_create_nothing(net) -> None:
    engine, names = net
    _network(engine, names, "inside", Internal=True)
    inner = engine.run("ip", "route", HostConfig={"NetworkMode": "inside"})
    assert engine.wait(inner) == 0
    assert "default" not in engine.output(inner)
    before = set(engine.container_ids())
    bad = [
        ({"NetworkMode": "nope"}, {}, errdefs.NotFound, "network nope not found"),
        ({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}, {}, errdefs.InvalidArgument, "invalid (host port|port specification)"),
        ({"PortBindings": {"1-3/tcp": [{"HostPort": "1-5"}]}}, {}, errdefs.InvalidArgument, "invalid ranges"),
        ({}, {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}}, errdefs.InvalidArgument, "network-scoped alias"),
        ({"NetworkMode": "none", "PortBindings": {"80/tcp": [{}]}}, {}, errdefs.InvalidArgument, "published ports"),
    ]
    for host, networking, kind, message in bad:
        with pytest.raises(kind, match=message):
            engine.create("true", HostConfig=host, NetworkingConfig=networking)
    assert set(engine.container_ids()) == before


def test_the_default_bridge_gives_an_address_and_a_gateway_for_host_gateway(net) -> None:
    engine, _ = net
    container = engine.run("sh", "-c", "ip -4 addr show eth0; cat /etc/hosts",
                           HostConfig={"ExtraHosts": ["outside:host-gateway"]})
    assert engine.wait(container) == 0
    output = engine.output(container)
    gateway = engine.services.networks.inspect("bridge")["IPAM"]["Config"][0]["Gateway"]
    assert f"{gateway}\toutside" in output
    prefix = gateway.rsplit(".", 2)[0]
    assert f"inet {prefix}." in output


def test_a_killed_monitor_leaves_nothing_the_sweep_cannot_remove(net) -> None:
    engine, names = net
    import os
    import signal

    _network(engine, names, "crash")
    container = engine.run("sleep", "30", HostConfig={"NetworkMode": "crash", "PortBindings": {"80/tcp": [{}]}})
    port = engine.container_views.inspect(container)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    os.kill(engine.run_dir(container).monitor_pid(), signal.SIGKILL)
    engine.wait_for(lambda: engine.run_dir(container).monitor_pid() is None, message="the monitor to die")
    engine.wait_for(lambda: not engine.containers.network.is_live(container), message="its lock")
    problems = engine.services.system.check()["Problems"]
    [problem] = [problem for problem in problems if problem["Object"] == container]
    assert problem["Kind"] == "network" and "of a container that is not running" in problem["Message"]
    assert f"host ports {port}/tcp" in problem["Message"]
    report = engine.services.system.check(repair=True)
    assert f"removed leaked network sandbox of container {container}" in report["Repaired"]
    assert not [problem for problem in report["Problems"] if problem["Kind"] == "network"]
    assert engine.containers.network.sandboxes.store.sandbox(container) is None
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert f"--dport {port} " not in rules


def test_containers_on_an_ipv6_network_reach_each_other_by_address_and_by_name(net) -> None:
    engine, names = net
    subnet6 = names.subnet6()
    _network(engine, names, "dual", EnableIPv6=True,
             IPAM={"Config": [{"Subnet": names.subnet()}, {"Subnet": subnet6}]})
    prefix = subnet6.split("::")[0]
    resource = engine.services.networks.inspect("dual")
    assert resource["EnableIPv6"] and {"Subnet": subnet6, "Gateway": f"{prefix}::1"} in resource["IPAM"]["Config"]
    web = engine.run("sleep", "60", name="web6", HostConfig={"NetworkMode": "dual"},
                     NetworkingConfig={"EndpointsConfig": {"dual": {"IPAMConfig": {"IPv6Address": f"{prefix}::66"}}}})
    network = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["dual"]
    assert network["GlobalIPv6Address"] == f"{prefix}::66" and network["GlobalIPv6PrefixLen"] == 64
    assert network["IPv6Gateway"] == f"{prefix}::1" and network["IPAMConfig"]["IPv6Address"] == f"{prefix}::66"
    assert engine.services.networks.inspect("dual")["Containers"][web]["IPv6Address"] == f"{prefix}::66/64"
    client = engine.run("sh", "-c", f"ping6 -c1 -W3 {prefix}::66 >/dev/null && echo by-address; "
                        "ping6 -c1 -W3 web6 >/dev/null && echo by-name; nslookup -type=AAAA web6; "
                        "grep web6 /etc/hosts; ip -6 addr show dev eth0", HostConfig={"NetworkMode": "dual"})
    assert engine.wait(client) == 0, engine.output(client)
    output = engine.output(client)
    assert "by-address" in output and "by-name" in output, output
    assert f"Address: {prefix}::66" in output  # the AAAA answer of aardvark-dns
    assert f"inet6 {prefix}::2/64" in output  # the lowest free address after the gateway
    with pytest.raises(errdefs.Conflict, match="already in use"):
        engine.run("true", HostConfig={"NetworkMode": "dual"},
                   NetworkingConfig={"EndpointsConfig": {"dual": {"IPAMConfig": {"IPv6Address": f"{prefix}::66"}}}})
    second6 = names.subnet6()
    _network(engine, names, "dual2", EnableIPv6=True,
             IPAM={"Config": [{"Subnet": names.subnet()}, {"Subnet": second6}]})
    address6 = second6.split("::")[0] + "::9"
    engine.services.networks.connect("dual2", web, {"IPAMConfig": {"IPv6Address": address6}})
    connected = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["dual2"]
    assert connected["GlobalIPv6Address"] == address6
    sandbox = engine.container_views.inspect(web)["NetworkSettings"]["SandboxKey"]
    inside = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-6", "addr", "show", "dev", "eth1"],
                            capture_output=True, text=True, check=True).stdout
    assert f"{address6}/64" in inside
    _network(engine, names, "only4")
    with pytest.raises(errdefs.InvalidArgument, match="no IPv6 subnet"):
        engine.run("true", HostConfig={"NetworkMode": "only4"},
                   NetworkingConfig={"EndpointsConfig": {"only4": {"IPAMConfig": {"IPv6Address": f"{prefix}::5"}}}})


@pytest.fixture
def dummy(names):
    """An interface of the test's own, up, the parent of its macvlan networks: a ``dummy`` one
    where the kernel has the module, else one end of a veth pair (deleted with it)."""
    name = names.bridge()
    made = subprocess.run(["ip", "link", "add", name, "type", "dummy"], capture_output=True, check=False)
    if made.returncode != 0:
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"], check=True)
    try:
        for device in (name, f"{name}p") if made.returncode else (name,):
            subprocess.run(["ip", "link", "set", device, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def test_two_containers_on_a_macvlan_network_reach_each_other(dummy, net) -> None:  # dummy goes last
    engine, names = net
    subnet = names.subnet()
    engine.services.networks.create({"Name": "mv", "Driver": "macvlan", "Options": {"parent": dummy},
                                     "IPAM": {"Config": [{"Subnet": subnet}]}})
    with pytest.raises(errdefs.Conflict, match=f"already using parent interface {dummy}"):
        engine.services.networks.create({"Name": "mv2", "Driver": "macvlan", "Options": {"parent": dummy}})
    with pytest.raises(errdefs.InvalidArgument, match="needs its parent interface"):
        engine.services.networks.create({"Name": "mv3", "Driver": "macvlan"})
    first = engine.run("sleep", "60", HostConfig={"NetworkMode": "mv"})
    address = engine.container_views.inspect(first)["NetworkSettings"]["Networks"]["mv"]["IPAddress"]
    client = engine.run("sh", "-c", f"ping -c1 -W3 {address} >/dev/null && echo reached",
                        HostConfig={"NetworkMode": "mv"})
    assert engine.wait(client) == 0, engine.output(client)
    assert "reached" in engine.output(client)
    sandbox = engine.container_views.inspect(first)["NetworkSettings"]["SandboxKey"]
    link = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-d", "link", "show", "eth0"], capture_output=True,
                          text=True, check=True).stdout
    assert "macvlan mode bridge" in link
    assert engine.services.networks.inspect("mv")["Driver"] == "macvlan"
    engine.containers.remove(first, force=True)
    engine.services.networks.remove("mv")
    types = {message["Actor"]["Attributes"]["type"] for message in engine.services.events.events(
        since_ns=0, until_ns=time.time_ns(), filters={"type": ["network"], "network": ["mv"]})}
    assert types == {"macvlan"}


_DNS_SERVER = r"""
import socket, struct, sys
answer = socket.inet_aton(sys.argv[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(512)
    end = 12
    while query[end]:
        end += 1 + query[end]
    question = query[12:end + 5]
    name = []
    at = 12
    while query[at]:
        name.append(query[at + 1:at + 1 + query[at]].decode())
        at += 1 + query[at]
    print("asked", ".".join(name), flush=True)
    is_a = struct.unpack("!H", query[end + 1:end + 3])[0] == 1
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if is_a else 0, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer if is_a else b""
    sock.sendto(header + question + record, peer)
"""


@pytest.fixture
def upstream_dns(names, tmp_path):
    """A name server of the test's own in a namespace of its own, behind a veth pair from the
    host: it answers every A question with 10.99.0.7 and prints the names it was asked."""
    from lamina.network import namespace

    subnet = names.subnet().rsplit(".", 1)[0]
    host_side = names.bridge()
    path = str(tmp_path / "dns-netns")
    namespace.create(path)
    server = subprocess.Popen(["nsenter", f"--net={path}", "python3", "-c", _DNS_SERVER, "10.99.0.7"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        subprocess.run(["ip", "link", "add", host_side, "type", "veth", "peer", "name", f"{host_side}p", "netns",
                        str(server.pid)], check=True)
        subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", host_side], check=True)
        subprocess.run(["ip", "link", "set", host_side, "up"], check=True)
        for command in (["addr", "add", f"{subnet}.2/24", "dev", f"{host_side}p"],
                        ["link", "set", f"{host_side}p", "up"]):
            subprocess.run(["nsenter", f"--net={path}", "ip", *command], check=True)
        yield f"{subnet}.2", server
    finally:
        server.kill()
        server.wait()
        subprocess.run(["ip", "link", "del", host_side], capture_output=True, check=False)
        namespace.remove(path)


def test_the_network_resolver_forwards_to_the_containers_dns_servers(upstream_dns, net) -> None:
    engine, names = net
    address, server = upstream_dns
    _network(engine, names, "named")
    engine.run("sleep", "60", name="peer", HostConfig={"NetworkMode": "named"})
    client = engine.run("sh", "-c", "nslookup probe.lamina-test; nslookup peer; cat /etc/resolv.conf",
                        HostConfig={"NetworkMode": "named", "Dns": [address]})
    engine.wait(client)
    output = engine.output(client)
    gateway = engine.services.networks.inspect("named")["IPAM"]["Config"][0]["Gateway"]
    assert f"nameserver {gateway}" in output and f"nameserver {address}" not in output, output
    assert "Address: 10.99.0.7" in output, output  # forwarded to the container's --dns server
    peer = engine.container_views.inspect("peer")["NetworkSettings"]["Networks"]["named"]["IPAddress"]
    assert f"Address: {peer}" in output, output  # names of the network still answered by aardvark-dns
    server.kill()
    asked, _ = server.communicate()
    assert "asked probe.lamina-test" in asked and "asked peer" not in asked
    with pytest.raises(errdefs.InvalidArgument, match="invalid DNS server"):
        engine.create("true", HostConfig={"NetworkMode": "named", "Dns": ["not-an-address"]})


def test_an_rm_runs_teardown_holds_its_port_until_done_and_the_next_run_waits_for_it(net) -> None:
    """``run --rm`` returns before its sandbox is torn down: the next run asking for the same
    host port and address, and ``network rm``, wait for that teardown instead of failing."""
    engine, names = net
    _network(engine, names, "again")
    subnet = engine.services.networks.inspect("again")["IPAM"]["Config"][0]["Subnet"]
    address = subnet.rsplit(".", 1)[0] + ".77"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = {"NetworkMode": "again", "AutoRemove": True,
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}
    networking = {"EndpointsConfig": {"again": {"IPAMConfig": {"IPv4Address": address}}}}
    for _ in range(4):
        assert engine.run_removed("true", HostConfig=host, NetworkingConfig=networking) == 0
    assert engine.services.networks.prune()["NetworksDeleted"] == ["again"]  # waits for the last teardown
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert f"--dport {port} " not in rules
