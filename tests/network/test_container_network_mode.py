"""``NetworkMode`` ``container:<name|id>`` and the ``networks`` counters of stats, end to end
through the container service: real namespaces, bridges and packets, traffic only inside the
test's namespaces."""

from __future__ import annotations

import pytest

from lamina import errdefs
from services.conftest import engine  # noqa: F401 - re-exported fixture
from services.test_execs import run_exec

pytestmark = pytest.mark.privileged


@pytest.fixture
def net(names, engine):  # noqa: F811
    """(engine, names), names set up first: its check for leftover rules runs after the
    engine's teardown."""
    return engine, names


def _network(engine, names, name: str) -> str:  # noqa: F811
    body = {"Name": name, "IPAM": {"Config": [{"Subnet": names.subnet()}]},
            "Options": {"com.docker.network.bridge.name": names.bridge()}}
    return str(engine.services.networks.create(body)["Id"])


def _wait_listening(engine, container_id: str, port: int) -> None:
    def listening() -> bool:
        lines = []
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{engine.state(container_id)['Pid']}/net/{table}", encoding="ascii") as handle:
                lines += handle.readlines()[1:]
        return any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in lines)

    engine.wait_for(listening, message=f"a listener on port {port}")


def test_a_container_joins_the_network_namespace_of_another(net) -> None:
    engine, names = net
    _network(engine, names, "shared")
    web = engine.run("httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc", name="web", Hostname="webhost",
                     HostConfig={"NetworkMode": "shared"})
    _wait_listening(engine, web, 8080)
    address = engine.container_views.inspect(web)["NetworkSettings"]["Networks"]["shared"]["IPAddress"]
    joiner = engine.run("sh", "-c", "ip -4 -o addr show eth0; wget -qO- http://127.0.0.1:8080/hostname; "
                        "hostname; cat /etc/hostname; grep -c web /etc/resolv.conf /etc/hosts",
                        HostConfig={"NetworkMode": "container:web"})
    assert engine.wait(joiner) == 0, engine.output(joiner)
    output = engine.output(joiner)
    assert f"inet {address}/" in output
    assert output.count("webhost\n") == 3  # served by web from 127.0.0.1, the UTS name, /etc/hostname
    inspected = engine.container_views.inspect(joiner)
    web_inspected = engine.container_views.inspect(web)
    assert inspected["HostConfig"]["NetworkMode"] == f"container:{web}"
    assert inspected["NetworkSettings"]["Networks"] == {} and inspected["NetworkSettings"]["SandboxKey"] == ""
    assert inspected["Config"]["Hostname"] == "webhost"
    for key in ("HostsPath", "ResolvConfPath", "HostnamePath"):
        assert inspected[key] == web_inspected[key]
    assert engine.containers.network.sandboxes.store.sandbox(joiner) is None  # no endpoint of its own


def test_the_joiner_loses_the_network_when_the_other_stops_and_rm_f_of_the_other_is_allowed(net) -> None:
    engine, names = net
    _network(engine, names, "going")
    target = engine.run("sleep", "300", name="target", HostConfig={"NetworkMode": "going"})
    joiner = engine.run("sleep", "300", HostConfig={"NetworkMode": f"container:{target[:12]}"})
    streams, _ = run_exec(engine, joiner, "ip", "-o", "link")
    assert b"eth0" in streams[1]
    engine.containers.stop(target, timeout=0)
    streams, _ = run_exec(engine, joiner, "ip", "-o", "link")
    assert b"eth0" not in streams[1] and b"lo" in streams[1]
    engine.containers.start(target)
    engine.containers.remove(target, force=True)  # as Docker: a joiner does not hold the other
    assert engine.state(joiner)["Running"]
    engine.containers.remove(joiner, force=True)


@pytest.mark.parametrize(("config", "host", "message"), [
    ({"Hostname": "x"}, {}, "conflicting options: hostname and the network mode"),
    ({}, {"Dns": ["10.0.0.1"]}, "conflicting options: dns and the network mode"),
    ({}, {"ExtraHosts": ["a:10.0.0.1"]}, "custom host-to-IP mapping and the network mode"),
    ({}, {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}, "port publishing and the container type network"),
    ({}, {"PublishAllPorts": True}, "port publishing and the container type network"),
    ({"ExposedPorts": {"80/tcp": {}}}, {}, "port exposing and the container type network mode"),
    ({"MacAddress": "02:42:0a:00:00:09"}, {}, "mac-address and the network mode"),
    ({}, {"Links": ["web:web"]}, "container type network can't be used with links"),
], ids=["a hostname", "dns servers", "extra hosts", "published ports", "publish all", "exposed ports",
        "a mac address", "links"])
def test_options_of_a_network_of_its_own_are_refused_and_nothing_is_created(engine, config, host,  # noqa: F811
                                                                             message) -> None:
    target = engine.create("true", name="target")
    before = set(engine.container_ids())
    with pytest.raises(errdefs.InvalidArgument, match=message):
        engine.create("true", HostConfig={"NetworkMode": "container:target", **host}, **config)
    assert set(engine.container_ids()) == before
    assert target in before


def test_an_alias_or_an_address_is_refused(engine) -> None:  # noqa: F811
    engine.create("true", name="target")
    for endpoint, message in (({"Aliases": ["x"]}, "network-scoped alias"),
                              ({"IPAMConfig": {"IPv4Address": "10.1.2.3"}}, "user specified IP address")):
        with pytest.raises(errdefs.InvalidArgument, match=message):
            engine.create("true", HostConfig={"NetworkMode": "container:target"},
                          NetworkingConfig={"EndpointsConfig": {"container:target": endpoint}})


def test_a_stopped_or_missing_container_cannot_be_joined(engine) -> None:  # noqa: F811
    engine.create("true", name="stopped")
    joiner = engine.create("true", HostConfig={"NetworkMode": "container:stopped"})
    with pytest.raises(errdefs.Conflict, match="cannot join network of a non running container"):
        engine.containers.start(joiner)
    assert engine.state(joiner)["Running"] is False
    later = engine.create("true", HostConfig={"NetworkMode": "container:nosuch"})  # found at start, as Docker
    assert engine.container_views.inspect(later)["HostConfig"]["NetworkMode"] == "container:nosuch"
    with pytest.raises(errdefs.NotFound, match="No such container: nosuch"):
        engine.containers.start(later)
    with pytest.raises(errdefs.InvalidArgument, match="container:<name|id>"):
        engine.create("true", HostConfig={"NetworkMode": "container:"})


def test_stats_count_the_traffic_of_the_containers_interfaces_and_none_for_the_host_network(net) -> None:
    engine, names = net
    _network(engine, names, "counted")
    server = engine.run("httpd", "-f", "-p", "80", "-h", "/etc", name="server", HostConfig={"NetworkMode": "counted"})
    _wait_listening(engine, server, 80)
    before = next(engine.container_views.stats(server, stream=False, one_shot=True))["networks"]["eth0"]
    assert set(before) == {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets",
                           "tx_errors", "tx_dropped"}
    client = engine.run("sh", "-c", "for i in 1 2 3 4 5; do wget -qO- http://server/hosts; done >/dev/null",
                        HostConfig={"NetworkMode": "counted"})
    assert engine.wait(client) == 0, engine.output(client)
    after = next(engine.container_views.stats(server, stream=False, one_shot=True))["networks"]["eth0"]
    assert after["rx_packets"] >= before["rx_packets"] + 5 and after["tx_bytes"] > before["tx_bytes"] + 5 * 100
    joiner = engine.run("sleep", "300", HostConfig={"NetworkMode": "container:server"})
    shared = next(engine.container_views.stats(joiner, stream=False, one_shot=True))["networks"]
    assert set(shared) == {"eth0"}
    host = engine.run("sleep", "300", HostConfig={"NetworkMode": "host"})
    none = engine.run("sleep", "300", HostConfig={"NetworkMode": "none"})
    for container_id in (host, none):
        assert "networks" not in next(engine.container_views.stats(container_id, stream=False, one_shot=True))
    for container_id in (joiner, host, none, server):
        engine.containers.remove(container_id, force=True)
