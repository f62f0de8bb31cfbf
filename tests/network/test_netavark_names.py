"""Two engines on one host never share netavark's rules: each network is known to netavark by
its netavark name (:attr:`lamina.network.api.Network.netavark_name`), which no other engine's
network has, though the Docker names are the same (a ``shared`` network in each, the default
``bridge`` of each).  Removing one engine's container and network leaves the other's chains,
masquerading and port forwards as they were, and the other's teardown then goes without a
warning.  A sandbox record of a lamina that recorded no name (it named netavark's networks by
their Docker name) is torn down under that name, and its network keeps that name until it is
removed.

Real netavark, namespaces and iptables (and real containers in the last test); no packet is sent.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator

import pytest

from lamina.network import bridges
from lamina.network.aardvark import Aardvark
from lamina.network.api import Network, PortMapping
from lamina.network.create import create_network
from lamina.network.netavark import Netavark
from lamina.network.sandbox import EndpointRequest, Sandboxes
from lamina.network.store import NetworkStore
from services.conftest import Engine, engine, loaded_engine  # noqa: F401 - re-exported fixture

pytestmark = pytest.mark.privileged

_BRIDGE_NAME = "com.docker.network.bridge.name"
_MASQUERADE = "! -d 224.0.0.0/4 -j MASQUERADE"


def _container_id(n: int) -> str:
    return f"{os.getpid():08x}{n:056x}"


def _rules() -> list[str]:
    return [line for command in ("iptables-save", "ip6tables-save")
            for line in subprocess.run([command], capture_output=True, text=True, check=True).stdout.splitlines()]


def _rules_of(network: Network, *, chain_name: str | None = None, container_id: str = "",
              by_subnet: bool = True) -> set[str]:
    """The netavark rules and chains that name ``network``'s subnet (unless not ``by_subnet``),
    bridge or chains (those of ``chain_name``: its netavark name unless given), or ``container_id``."""
    suffix = bridges.chain_hash(chain_name if chain_name is not None else network.netavark_name)
    found = set()
    for rule in _rules():
        words = rule.split()
        if ((by_subnet and network.Subnet in words) or network.BridgeName in words
                or any(suffix in word for word in words) or (container_id and container_id in rule)):
            found.add(rule)
    return found


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("lamina") and record.levelno >= logging.WARNING]


def _engine(root: str, names) -> Sandboxes:
    """One engine's sandboxes: its own data root (``<root>/data``) and exec root (``<root>/run``),
    and a default bridge device of its own."""
    store = NetworkStore(os.path.join(root, "data", "network"), default_bridge_device=names.bridge())
    return Sandboxes(store, Netavark(config_dir=os.path.join(root, "run", "network")),
                     netns_dir=os.path.join(root, "run", "netns"))


def _tear_down(engine: Sandboxes) -> None:
    for container_id in list(engine.store.sandboxes()):
        engine.detach(container_id)
    engine.remove_bridges()


@pytest.fixture
def two_engines(tmp_path, names) -> Iterator[tuple[Sandboxes, Sandboxes]]:
    """Engines A and B on one host, torn down whatever a test left: no rule or chain naming
    their networks' bridges or netavark names may be left, and the ``names`` fixture then
    checks the subnets of their user networks (not the default bridges': those are picked from
    what no route covers, which another engine may take as soon as they are down)."""
    engines = (_engine(str(tmp_path / "a"), names), _engine(str(tmp_path / "b"), names))
    try:
        yield engines
    finally:
        networks = [network for engine in engines for network in engine.store.stored() if network.Driver == "bridge"]
        for engine in engines:
            _tear_down(engine)
        left = {rule for network in networks for rule in _rules_of(network, by_subnet=False)}
        for rule in left:  # whatever a failure left: flush and delete the chains
            if rule.startswith(":NETAVARK"):
                chain = rule[1:].split()[0]
                subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain], capture_output=True, check=False)
                subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain], capture_output=True, check=False)
        assert not left, left


def test_removing_one_engines_network_leaves_the_rules_of_the_other_engines_network_of_the_same_name(
        two_engines, names, caplog) -> None:
    a, b = two_engines
    shared_a = create_network(a.store, "shared", subnet=names.subnet(), options={_BRIDGE_NAME: names.bridge()})
    shared_b = create_network(b.store, "shared", subnet=names.subnet(), options={_BRIDGE_NAME: names.bridge()})
    assert shared_a.netavark_name == shared_a.Id and shared_b.netavark_name == shared_b.Id
    first, second = _container_id(1), _container_id(2)
    port = [PortMapping(ContainerPort=80, HostIp="127.0.0.1")]
    record_a = a.attach(first, name="web", endpoints=[EndpointRequest("shared")], ports=port)
    record_b = b.attach(second, name="web", endpoints=[EndpointRequest("shared")], ports=port)
    assert record_a["Endpoints"]["shared"]["NetavarkName"] == shared_a.Id
    assert record_b["Endpoints"]["shared"]["NetavarkName"] == shared_b.Id
    # each network has its own chain, with its own masquerading rule
    rules_b = _rules_of(shared_b, container_id=second)
    hash_b = bridges.chain_hash(shared_b.Id)
    assert f"-A NETAVARK-{hash_b} {_MASQUERADE}" in rules_b
    assert f"-A POSTROUTING -s {shared_b.Subnet} -j NETAVARK-{hash_b}" in rules_b
    assert any(f"dnat name: {shared_b.Id} id: {second}" in rule for rule in rules_b)
    assert f"-A NETAVARK-{bridges.chain_hash(shared_a.Id)} {_MASQUERADE}" in _rules_of(shared_a)
    assert not [rule for rule in _rules() if f"NETAVARK-{bridges.chain_hash('shared')}" in rule]
    # aardvark-dns's files are per exec root, named by the netavark name
    assert Aardvark(os.path.join(os.path.dirname(b.netns_dir), "network")).entries(shared_b.Id)

    caplog.set_level(logging.WARNING)
    a.detach(first)
    a.remove_network(shared_a)
    assert not _rules_of(shared_a, container_id=first)
    assert rules_b <= set(_rules()), rules_b - set(_rules())     # B's rules as they were
    assert not _warnings(caplog)

    b.detach(second)
    b.remove_network(shared_b)
    assert not _warnings(caplog), _warnings(caplog)
    assert not _rules_of(shared_b, container_id=second)


def test_the_default_bridges_of_two_engines_have_rules_of_their_own(two_engines, names, caplog) -> None:
    a, b = two_engines
    first, second = _container_id(3), _container_id(4)
    # a default bridge's subnet is one no route covers: another engine's leftovers may name it, and
    # another engine may take it once the bridge is down; its bridge device and chains are its own
    before = set(_rules())
    a.attach(first, name="one", endpoints=[EndpointRequest("bridge")])
    record = b.attach(second, name="two", endpoints=[EndpointRequest("bridge")])   # after A's: its subnet is routed
    bridge_a, bridge_b = a.store.get("bridge"), b.store.get("bridge")
    assert bridge_a.Id == bridge_b.Id                      # the predefined id, the same in every engine
    assert bridge_a.netavark_name != bridge_b.netavark_name
    assert record["Endpoints"]["bridge"]["NetavarkName"] == bridge_b.netavark_name
    rules_b = _rules_of(bridge_b, container_id=second) - before
    assert f"-A NETAVARK-{bridges.chain_hash(bridge_b.netavark_name)} {_MASQUERADE}" in rules_b

    caplog.set_level(logging.WARNING)
    _tear_down(a)   # the container gone, then the bridge: as A's engine going away
    assert not bridges.exists(bridge_a.BridgeName) and not _rules_of(bridge_a, container_id=first, by_subnet=False)
    assert rules_b <= set(_rules()), rules_b - set(_rules())
    _tear_down(b)
    assert not _warnings(caplog), _warnings(caplog)
    assert not _rules_of(bridge_b, container_id=second, by_subnet=False)


def _as_before_the_names(engine: Sandboxes, container_id: str, network: Network, monkeypatch,
                         ports: tuple[PortMapping, ...] = ()) -> None:
    """Attach ``container_id`` to ``network`` as a lamina of before the netavark names did:
    netavark knows the network by its Docker name, the sandbox record names none, the anchor's
    alias has no fourth field."""
    with monkeypatch.context() as patch:
        patch.setattr(Network, "netavark_name", property(lambda self: self.Name))
        engine.attach(container_id, name="old", endpoints=[EndpointRequest(network.Name)], ports=ports)
    record = engine.store.sandbox(container_id)
    assert record is not None and record["Endpoints"][network.Name].pop("NetavarkName") == network.Name
    engine.store.write_sandbox(container_id, record)
    anchor = bridges.anchor_name(network.BridgeName)
    data_root, exec_root = bridges.owner(anchor)
    subprocess.run(["ip", "link", "set", anchor, "alias", f"lamina\t{data_root}\t{exec_root}"], check=True)
    assert bridges.plumbing_name(network) == network.Name


def test_a_record_of_before_the_netavark_names_is_torn_down_under_the_docker_name(
        sandboxes, names, monkeypatch, caplog) -> None:
    network = create_network(sandboxes.store, "legacy", subnet=names.subnet(), options={_BRIDGE_NAME: names.bridge()})
    old, new, newer = _container_id(5), _container_id(6), _container_id(7)
    _as_before_the_names(sandboxes, old, network, monkeypatch, (PortMapping(ContainerPort=80, HostIp="127.0.0.1"),))
    legacy_chain = f"NETAVARK-{bridges.chain_hash('legacy')}"
    assert f"-A POSTROUTING -s {network.Subnet} -j {legacy_chain}" in _rules()
    assert any(f"dnat name: legacy id: {old}" in rule for rule in _rules())

    # a new endpoint joins the plumbing of the Docker name: one chain, one name server file
    joined = sandboxes.attach(new, name="new", endpoints=[EndpointRequest("legacy")])
    assert joined["Endpoints"]["legacy"]["NetavarkName"] == "legacy"
    aardvark = Aardvark(os.path.dirname(sandboxes.netns_dir) + "/network")
    assert {line.split()[0] for line in aardvark.entries("legacy")} == {old, new}
    assert not os.path.exists(os.path.join(aardvark.directory, network.Id))

    caplog.set_level(logging.WARNING)
    sandboxes.detach(old)           # torn down under the Docker name: its port forward goes
    assert not [rule for rule in _rules() if old in rule]
    assert {line.split()[0] for line in aardvark.entries("legacy")} == {new}
    assert bridges.exists(network.BridgeName)
    # the last endpoint of the Docker name takes the plumbing of that name with it
    sandboxes.detach(new)
    assert not bridges.exists(network.BridgeName) and not _rules_of(network, chain_name="legacy")
    assert not os.path.exists(os.path.join(aardvark.directory, "legacy"))
    # and the next endpoint makes it anew under the netavark name
    record = sandboxes.attach(newer, name="newer", endpoints=[EndpointRequest("legacy")])
    assert record["Endpoints"]["legacy"]["NetavarkName"] == network.Id == bridges.plumbing_name(network)
    assert f"-A POSTROUTING -s {network.Subnet} -j NETAVARK-{bridges.chain_hash(network.Id)}" in _rules()
    assert [line.split()[0] for line in aardvark.entries(network.Id)] == [newer]
    sandboxes.detach(newer)
    sandboxes.remove_network(network)
    assert not _warnings(caplog), _warnings(caplog)
    assert not _rules_of(network) and not _rules_of(network, chain_name="legacy")


def test_two_engines_networks_of_one_name_set_up_before_the_names_part_without_breaking_each_other(
        two_engines, names, monkeypatch, caplog) -> None:
    """The lead's report, set up by a lamina of before the names: both networks' rules in one
    chain; the first one's last endpoint takes its plumbing away, and the other's masquerading
    rule, which netavark deletes with it, is put back."""
    a, b = two_engines
    shared_a = create_network(a.store, "upgraded", subnet=names.subnet(), options={_BRIDGE_NAME: names.bridge()})
    shared_b = create_network(b.store, "upgraded", subnet=names.subnet(), options={_BRIDGE_NAME: names.bridge()})
    first, second = _container_id(8), _container_id(9)
    _as_before_the_names(a, first, shared_a, monkeypatch)
    _as_before_the_names(b, second, shared_b, monkeypatch)
    chain = f"NETAVARK-{bridges.chain_hash('upgraded')}"
    rules_b = {rule for rule in _rules_of(shared_b, chain_name="upgraded", container_id=second)
               if shared_a.Subnet not in rule.split() and shared_a.BridgeName not in rule.split()}
    assert f"-A POSTROUTING -s {shared_b.Subnet} -j {chain}" in rules_b

    caplog.set_level(logging.WARNING)
    a.detach(first)
    assert not bridges.exists(shared_a.BridgeName)
    assert f"-A {chain} {_MASQUERADE}" in _rules()                 # put back for B's network
    assert rules_b <= set(_rules()), rules_b - set(_rules())
    a.remove_network(shared_a)
    b.detach(second)
    b.remove_network(shared_b)
    assert not _warnings(caplog), _warnings(caplog)
    assert not _rules_of(shared_b, chain_name="upgraded") and not [rule for rule in _rules() if chain in rule]


@pytest.fixture
def engine_b(tmp_path) -> Iterator[Engine]:
    """A second engine beside ``engine`` (``services.conftest``): its own data and exec roots."""
    with loaded_engine(str(tmp_path / "b")) as instance:
        yield instance


def test_two_engines_running_containers_on_networks_of_one_name(engine, engine_b, names, caplog) -> None:  # noqa: F811
    """The lead's report, end to end: a ``shared`` network and the default bridge in each of two
    engines, a running container on each; engine A's containers and network go, B's rules stay
    and B's own teardown then leaves nothing."""
    before = set(_rules())
    engines = {"a": engine, "b": engine_b}
    containers, networks = {}, {}
    for label, which in engines.items():
        which.services.networks.create({"Name": "shared", "IPAM": {"Config": [{"Subnet": names.subnet()}]},
                                        "Options": {_BRIDGE_NAME: names.bridge()}})
        containers[label] = [
            which.run("sleep", "60", HostConfig={"NetworkMode": "shared",
                                                 "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1"}]}}),
            which.run("sleep", "60")]   # on the default bridge
        store = which.containers.network.sandboxes.store
        networks[label] = [store.get("shared"), store.get("bridge")]
    assert networks["a"][0].netavark_name != networks["b"][0].netavark_name
    assert networks["a"][1].netavark_name != networks["b"][1].netavark_name

    def rules_of(label: str) -> set[str]:
        # the default bridge's subnet may be another engine's once the bridge is down
        return {rule for network in networks[label] for container in containers[label]
                for rule in _rules_of(network, container_id=container, by_subnet=network.Name != "bridge")} - before

    rules_b = rules_of("b")
    for network in networks["b"]:
        assert f"-A NETAVARK-{bridges.chain_hash(network.netavark_name)} {_MASQUERADE}" in rules_b
    assert [rule for rule in rules_b if f"id: {containers['b'][0]}" in rule]

    caplog.set_level(logging.WARNING)
    for container in containers["a"]:
        engine.containers.remove(container, force=True)
    engine.services.networks.remove("shared")
    engine.containers.network.remove_bridges()
    assert not rules_of("a")
    assert rules_b <= set(_rules()), rules_b - set(_rules())     # B's rules as they were

    for container in containers["b"]:
        engine_b.containers.remove(container, force=True)
    engine_b.services.networks.remove("shared")
    engine_b.containers.network.remove_bridges()
    assert not _warnings(caplog), _warnings(caplog)
    assert not rules_of("b")
