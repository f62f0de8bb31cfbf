"""Sandboxes against real namespaces, bridges and packets (netavark, aardvark-dns).

Traffic goes only to addresses inside the namespaces these tests create, or to 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import pytest

from lamina import errdefs
from lamina.network import bridges, namespace
from lamina.network.api import PortMapping
from lamina.network.create import create_network
from lamina.network.sandbox import EndpointRequest, Sandboxes
from network.conftest import no_teardown_meanwhile

pytestmark = pytest.mark.privileged


def _in(sandboxes: Sandboxes, container_id: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={sandboxes.sandbox_key(container_id)}", "busybox", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _container_id(n: int) -> str:
    return f"{os.getpid():08x}{n:056x}"


def test_two_sandboxes_reach_each_other_by_name_and_a_third_network_is_isolated(sandboxes, names) -> None:
    front = create_network(sandboxes.store, "front", subnet=names.subnet(),
                           options={"com.docker.network.bridge.name": names.bridge()})
    back = create_network(sandboxes.store, "back", subnet=names.subnet(),
                          options={"com.docker.network.bridge.name": names.bridge()})
    a, b, c = _container_id(1), _container_id(2), _container_id(3)
    first = sandboxes.attach(a, name="web", endpoints=[EndpointRequest("front", aliases=("www",))])
    second = sandboxes.attach(b, name="client", endpoints=[EndpointRequest("front")])
    third = sandboxes.attach(c, name="other", endpoints=[EndpointRequest(back.Id)])
    web = first["Endpoints"]["front"]
    assert web["IPAddress"] == str(front.Subnet).replace("0/24", "2")
    assert second["Endpoints"]["front"]["IPAddress"] == str(front.Subnet).replace("0/24", "3")
    assert web["MacAddress"] == "02:42:" + ":".join(f"{int(part):02x}" for part in web["IPAddress"].split("."))
    assert web["DNSServers"] == [front.Gateway]

    assert _in(sandboxes, b, "ping", "-c1", "-W3", web["IPAddress"]).returncode == 0
    for name in ("web", "www", a[:12]):
        # aardvark-dns 1.4 restarts its listeners on the SIGHUP of every set-up (the third
        # sandbox's, just above): a question asked meanwhile is refused, so ask again
        deadline = time.monotonic() + 5
        answer = _in(sandboxes, b, "nslookup", name, front.Gateway)
        while web["IPAddress"] not in answer.stdout and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = _in(sandboxes, b, "nslookup", name, front.Gateway)
        assert web["IPAddress"] in answer.stdout, answer
    with no_teardown_meanwhile():
        isolated = _in(sandboxes, c, "ping", "-c1", "-W1", web["IPAddress"])
    assert isolated.returncode != 0
    assert third["Endpoints"]["back"]["Gateway"] == back.Gateway

    assert set(sandboxes.endpoints(front.Id)) == {a, b}
    sandboxes.detach(a)
    assert not os.path.exists(sandboxes.sandbox_key(a))
    assert set(sandboxes.endpoints(front.Id)) == {b}


def test_a_published_port_answers_on_127_0_0_1_and_is_gone_after_detach(sandboxes, names) -> None:
    create_network(sandboxes.store, "ports", subnet=names.subnet(),
                   options={"com.docker.network.bridge.name": names.bridge()})
    container = _container_id(4)
    record = sandboxes.attach(container, name="httpd", endpoints=[EndpointRequest("ports")],
                              ports=[PortMapping(ContainerPort=80, HostIp="127.0.0.1")])
    port = record["Ports"][0]["HostPort"]
    assert port > 0
    server = subprocess.Popen(["nsenter", f"--net={sandboxes.sandbox_key(container)}", "busybox", "nc", "-l", "-p",
                               "80", "-e", "echo", "hello"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        received = b""
        while time.monotonic() < deadline and b"hello" not in received:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                    received = connection.recv(100)
            except OSError:
                time.sleep(0.1)
        assert b"hello" in received
    finally:
        server.kill()
        server.wait()
    with pytest.raises(errdefs.Conflict, match="port is already allocated"):
        sandboxes.attach(_container_id(5), name="again", endpoints=[EndpointRequest("ports")],
                         ports=[PortMapping(ContainerPort=80, HostIp="127.0.0.1", HostPort=port)])
    assert sandboxes.store.sandbox(_container_id(5)) is None
    assert not os.path.exists(sandboxes.sandbox_key(_container_id(5)))
    sandboxes.detach(container)
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True).stdout
    assert f"--dport {port} " not in rules


def test_a_taken_address_is_refused_with_nothing_created(sandboxes, names) -> None:
    network = create_network(sandboxes.store, "static", subnet=names.subnet(),
                             options={"com.docker.network.bridge.name": names.bridge()})
    address = network.Subnet.replace("0/24", "50")
    sandboxes.attach(_container_id(6), name="one", endpoints=[EndpointRequest("static", ipv4_address=address)])
    with pytest.raises(errdefs.Conflict, match="Address already in use"):
        sandboxes.attach(_container_id(7), name="two", endpoints=[EndpointRequest("static", ipv4_address=address)])
    assert sandboxes.store.sandbox(_container_id(7)) is None
    assert not os.path.exists(sandboxes.sandbox_key(_container_id(7)))
    with pytest.raises(errdefs.InvalidArgument, match="not in subnet"):
        sandboxes.attach(_container_id(8), name="three", endpoints=[EndpointRequest("static", ipv4_address="1.2.3.4")])


def test_an_internal_network_has_no_route_out(sandboxes, names) -> None:
    create_network(sandboxes.store, "inside", subnet=names.subnet(), internal=True,
                   options={"com.docker.network.bridge.name": names.bridge()})
    container = _container_id(9)
    sandboxes.attach(container, name="locked", endpoints=[EndpointRequest("inside")])
    routes = _in(sandboxes, container, "ip", "route").stdout
    assert "default" not in routes
    assert "dev eth0" in routes


def test_connect_and_disconnect_change_what_a_sandbox_reaches(sandboxes, names) -> None:
    create_network(sandboxes.store, "one", subnet=names.subnet(), options={"com.docker.network.bridge.name": names.bridge()})
    two = create_network(sandboxes.store, "two", subnet=names.subnet(),
                         options={"com.docker.network.bridge.name": names.bridge()})
    a, b = _container_id(10), _container_id(11)
    sandboxes.attach(a, name="a", endpoints=[EndpointRequest("one")])
    target = sandboxes.attach(b, name="b", endpoints=[EndpointRequest("two")])["Endpoints"]["two"]["IPAddress"]
    with no_teardown_meanwhile():
        assert _in(sandboxes, a, "ping", "-c1", "-W1", target).returncode != 0
    record = sandboxes.connect(a, EndpointRequest("two"))
    assert record["Endpoints"]["two"]["InterfaceName"] == "eth1"
    assert _in(sandboxes, a, "ping", "-c1", "-W3", target).returncode == 0
    with pytest.raises(errdefs.Conflict):
        sandboxes.connect(a, EndpointRequest("two"))
    sandboxes.disconnect(a, two.Id)
    assert "eth1" not in _in(sandboxes, a, "ip", "link").stdout
    with no_teardown_meanwhile():
        assert _in(sandboxes, a, "ping", "-c1", "-W1", target).returncode != 0


def test_the_sweep_tears_down_what_a_crashed_attach_left(sandboxes, names) -> None:
    network = create_network(sandboxes.store, "crash", subnet=names.subnet(),
                             options={"com.docker.network.bridge.name": names.bridge()})
    container = _container_id(12)
    record = sandboxes.attach(container, name="c", endpoints=[EndpointRequest("crash")],
                              ports=[PortMapping(ContainerPort=80, HostIp="127.0.0.1")])
    port = record["Ports"][0]["HostPort"]
    # the namespace vanished with the record left (as after an unmount by hand)
    namespace.remove(sandboxes.sandbox_key(container))
    assert sandboxes.sweep(lambda _: False) == [f"removed leaked network sandbox of container {container}"]
    assert sandboxes.store.sandbox(container) is None
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert f"--dport {port} " not in rules
    # the network's own rules stay with its bridge, until the network is removed
    sandboxes.remove_network(network)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert network.Subnet not in rules


def _devices() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_a_bridge_outlives_its_endpoints_and_goes_with_its_network(sandboxes, names) -> None:
    network = create_network(sandboxes.store, "kept", subnet=names.subnet(),
                             options={"com.docker.network.bridge.name": names.bridge()})
    anchor = bridges.anchor_name(network.BridgeName)
    for n in (20, 21):
        container = _container_id(n)
        record = sandboxes.attach(container, name=f"k{n}", endpoints=[EndpointRequest("kept")])
        assert record["Endpoints"]["kept"]["SetUp"]
        sandboxes.detach(container)
        # the last endpoint gone: the bridge, its anchor and the network's rules stay
        assert {network.BridgeName, anchor, f"{anchor}p"} <= _devices()
        assert bridges.owner(anchor) == (os.path.dirname(sandboxes.store.root),
                                         os.path.dirname(sandboxes.netns_dir))
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        assert network.Subnet in rules
    with pytest.raises(errdefs.Conflict):  # a network with an endpoint stays
        sandboxes.attach(_container_id(22), name="k22", endpoints=[EndpointRequest("kept")])
        sandboxes.remove_network(network)
    sandboxes.detach(_container_id(22))
    sandboxes.remove_network(network)
    assert not {network.BridgeName, anchor, f"{anchor}p"} & _devices()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert network.Subnet not in rules and network.BridgeName not in rules
    with pytest.raises(errdefs.NotFound):
        sandboxes.store.get("kept")


def test_eight_concurrent_attaches_never_share_an_address(sandboxes, names) -> None:
    create_network(sandboxes.store, "many", subnet=names.subnet(),
                   options={"com.docker.network.bridge.name": names.bridge()})
    records: list[dict] = []
    errors: list[BaseException] = []

    def attach(n: int) -> None:
        try:
            records.append(sandboxes.attach(_container_id(20 + n), name=f"c{n}", endpoints=[EndpointRequest("many")]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    addresses = [record["Endpoints"]["many"]["IPAddress"] for record in records]
    assert len(set(addresses)) == 8


_UDP_ECHO = """
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 5353))
print("ready", flush=True)
data, peer = sock.recvfrom(100)
sock.sendto(b"echo " + data, peer)
"""


def test_udp_through_a_random_host_port(sandboxes, names) -> None:
    import sys

    create_network(sandboxes.store, "udp", subnet=names.subnet(), options={"com.docker.network.bridge.name": names.bridge()})
    container = _container_id(30)
    record = sandboxes.attach(container, name="udp", endpoints=[EndpointRequest("udp")],
                              ports=[PortMapping(ContainerPort=5353, Protocol="udp", HostIp="127.0.0.1")])
    port = record["Ports"][0]["HostPort"]
    server = subprocess.Popen(["nsenter", f"--net={sandboxes.sandbox_key(container)}", sys.executable, "-c", _UDP_ECHO],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"ping", ("127.0.0.1", port))
            assert sock.recvfrom(100)[0] == b"echo ping"
    finally:
        server.kill()
        server.wait()


_ATTACH = """
import sys
from lamina.network.netavark import Netavark
from lamina.network.sandbox import EndpointRequest, Sandboxes
from lamina.network.store import NetworkStore

root, run, container_id = sys.argv[1:4]
sandboxes = Sandboxes(NetworkStore(root), Netavark(config_dir=run + "/network"), netns_dir=run + "/netns")
record = sandboxes.attach(container_id, name=container_id[-4:], endpoints=[EndpointRequest("procs")])
print(record["Endpoints"]["procs"]["IPAddress"])
"""


def test_eight_processes_attaching_at_once_never_share_an_address(sandboxes, names) -> None:
    import sys

    create_network(sandboxes.store, "procs", subnet=names.subnet(),
                   options={"com.docker.network.bridge.name": names.bridge()})
    run = os.path.dirname(sandboxes.netns_dir)
    environment = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    processes = [subprocess.Popen([sys.executable, "-c", _ATTACH, sandboxes.store.root, run, _container_id(40 + n)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
                 for n in range(8)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    addresses = [out.strip() for out, _ in outputs]
    assert len(set(addresses)) == 8, addresses
    assert set(sandboxes.store.sandboxes()) == {_container_id(40 + n) for n in range(8)}
