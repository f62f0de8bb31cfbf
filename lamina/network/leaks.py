"""Leaked network objects of one engine: found by ``lamina system check``, removed by ``--repair``.

What a set-up creates is recorded first (:mod:`lamina.network.sandbox`), so most leaks are a
sandbox record whose container's monitor is gone (its interfaces, rules and leases; the
sweep tears it down through netavark).  What this module finds besides are the objects no
record describes any more, each attributed to this engine before it is called leaked (other
engines' and other programs' objects on the host are never touched):

* **namespace**: ``<exec-root>/netns/<container-id>`` without a sandbox record (its veths
  live as long as it does); **file**: a releasing lock (``<exec-root>/releasing/<id>.lock``)
  nobody holds, of no record, or an aardvark-dns file (``<exec-root>/network/aardvark-dns/
  <netavark name>``) of no network record; **entry**: a line of one of those files whose
  container has no endpoint recorded under that name (removed, and the server signalled).
* **anchor** (:mod:`lamina.network.bridges`) whose alias names this data root and whose
  bridge is no network's ``BridgeName`` any more (the record was deleted), or is no bridge's
  port: the anchor, and the bridge it keeps up when that has no other port.
* **veth**: a port of one of this engine's bridges (not its anchor) whose peer is in none of
  this engine's sandbox namespaces, by interface index, whatever its name (netavark names
  its host ends ``veth<N>``, the CNI bridge plugin ``veth<8 hex>``, :mod:`lamina.network.cni`).
* **rule**: netavark's iptables rules (``iptables-save`` / ``ip6tables-save``) of this engine's
  networks that no endpoint holds: a port forward (``NETAVARK-HOSTPORT-DNAT`` rule with
  ``dnat name: <netavark name> id: <container id>`` and the rules of ``NETAVARK-DN-<hash>``
  for its port, the destination inside this network's subnet) whose container has no sandbox
  on the network; and, for a network whose bridge device is gone while no host route covers its
  subnet any more, the isolation rules naming its bridge, the forward rules and the
  masquerading jump naming its subnet (and its ``NETAVARK-<hash>`` chain when no other jump
  to it is left).  ``<hash>``: netavark's chain suffix, the first 13 hex digits (upper case)
  of the SHA-512 of the network's netavark name (:attr:`~lamina.network.api.Network.
  netavark_name`, or its Docker name, which a lamina of before the netavark names gave
  netavark: :func:`netavark_names`).  And lamina's own ``enable_ip_masquerade=false`` rule
  (``nat POSTROUTING ... --comment "lamina <id12> no-masquerade" -j RETURN``) of a network that
  is not this engine's and whose subnet no host route covers.

A leaked interface's rules are found by the same rules once the interface is gone: the repair
removes the interfaces first, then looks at the rules again.  The caller holds the engine's
network lock, the host-wide network lock and the store's lock, so no set-up (netavark's or a
CNI plug, :mod:`lamina.network.cni`) is half done while the host is read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Iterable
from typing import Any

from lamina.network import bridges, namespace
from lamina.network.api import Network
from lamina.network.store import NetworkStore
from lamina.records import dataclass

__all__ = ["Leak", "find", "remove", "netavark_names"]

_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
_DNAT_COMMENT = re.compile(r"dnat name: (\S+) id: ([0-9a-f]{64})")
_PEER_INDEX = re.compile(r"^\d+: [^@:]+@if(\d+):", re.MULTILINE)
_RECORDLESS_BRIDGE = "bridge of no network record"


@dataclass(frozen=True)
class Leak:
    """One leaked object: ``Kind`` (``namespace``, ``file``, ``entry``, ``interface``, ``rule``),
    ``Object`` (what names it: a path, ``<path> <container id>``, a device, ``<family> <table>
    <rule>``), ``Message``."""

    Kind: str
    Object: str
    Message: str

    def problem(self) -> dict[str, str]:
        return {"Kind": "network", "Object": self.Object, "Message": f"leaked {self.Kind}: {self.Message}"}


def netavark_names(network: Network) -> set[str]:
    """The names netavark may know ``network`` by: its netavark name, and its Docker name (a
    lamina of before the netavark names gave netavark that one; a rule is still matched by its
    subnet too, as another engine's network of that name may share the chain); none for a
    network whose record is gone."""
    return {network.netavark_name, network.Name} if network.Name else set()


def _chains(network: Network, prefix: str = "NETAVARK-") -> set[str]:
    return {f"{prefix}{bridges.chain_hash(name)}" for name in netavark_names(network)}


# -- host state --------------------------------------------------------------------------------


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    return result.stdout if result.returncode == 0 else ""


@dataclass(frozen=True)
class Rule:
    family: str          # "ipv4" or "ipv6"
    table: str
    chain: str
    words: tuple[str, ...]   # after "-A <chain>"

    @property
    def text(self) -> str:
        return f"{self.family} {self.table} -A {self.chain} {shlex.join(self.words)}"

    def value(self, option: str) -> str:
        words = self.words
        for index, word in enumerate(words[:-1]):
            if word == option:
                return words[index + 1]
        return ""


def read_rules() -> tuple[list[Rule], set[tuple[str, str, str]]]:
    """netavark's rules and chains (``(family, table, chain)``) of both address families."""
    rules: list[Rule] = []
    chains: set[tuple[str, str, str]] = set()
    for family, command in (("ipv4", "iptables-save"), ("ipv6", "ip6tables-save")):
        table = ""
        for line in _run([command]).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":NETAVARK"):
                chains.add((family, table, line[1:].split()[0]))
            elif line.startswith("-A "):
                try:
                    words = shlex.split(line)
                except ValueError:
                    continue
                if "NETAVARK" in line or "no-masquerade" in line:  # netavark's and lamina's own
                    rules.append(Rule(family, table, words[1], tuple(words[2:])))
    return rules, chains


def _routes() -> dict[ipaddress.IPv4Network | ipaddress.IPv6Network, set[str]]:
    """The host's routes (default and host routes excluded): destination -> devices."""
    routes: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, set[str]] = {}
    for path, family in (("/proc/net/route", 4), ("/proc/net/ipv6_route", 6)):
        try:
            with open(path, encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines[1:] if family == 4 else lines:
            fields = line.split()
            try:
                if family == 4 and len(fields) >= 8 and int(fields[7], 16):
                    mask = int(fields[7], 16).to_bytes(4, "little")
                    destination: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                        (ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little")),
                         bin(int.from_bytes(mask, "big")).count("1")), strict=False)
                    device = fields[0]
                elif family == 6 and len(fields) >= 10 and 0 < int(fields[1], 16) < 128:
                    destination = ipaddress.IPv6Network((ipaddress.IPv6Address(bytes.fromhex(fields[0])),
                                                         int(fields[1], 16)), strict=False)
                    device = fields[-1]
                else:
                    continue
            except ValueError:
                continue
            routes.setdefault(destination, set()).add(device)
    return routes


def _bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except OSError:
        return []


def _master(device: str) -> str:
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{device}/master"))
    except OSError:
        return ""


def _ifindex(device: str) -> int:
    try:
        with open(f"/sys/class/net/{device}/ifindex", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return -1


def _bridge_subnets(bridge: str) -> list[str]:
    """The subnets of ``bridge``'s addresses (what netavark gave it: the gateways)."""
    subnets = []
    for line in _run(["ip", "-o", "addr", "show", "dev", bridge]).splitlines():
        words = line.split()
        if len(words) > 3 and words[2] in ("inet", "inet6") and not words[3].startswith("fe80:"):
            subnets.append(str(ipaddress.ip_interface(words[3]).network))
    return subnets


# -- finding -----------------------------------------------------------------------------------


class _Scan:
    def __init__(self, store: NetworkStore, netns_dir: str, data_root: str) -> None:
        self.store = store
        self.netns_dir = netns_dir
        self.data_root = os.path.abspath(data_root)
        self.networks = [network for network in store.stored() if network.Driver == "bridge"]
        self.records = store.sandboxes()
        self.leaks: list[Leak] = []

    def namespaces(self) -> None:
        try:
            entries = sorted(os.listdir(self.netns_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            container_id = entry.split(".")[0]
            if _CONTAINER_ID.match(container_id) and container_id in self.records:
                continue
            self.leaks.append(Leak("namespace", os.path.join(self.netns_dir, entry),
                                   "network namespace of no network sandbox (and its interfaces)"))

    def releasing_locks(self) -> None:
        """``<exec-root>/releasing/<id>.lock`` files no process holds and no record needs (a
        teardown killed between the record's removal and the file's)."""
        directory = os.path.join(os.path.dirname(self.netns_dir), "releasing")
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return
        from lamina import fsutil

        for entry in entries:
            path = os.path.join(directory, entry)
            if entry.split(".")[0] not in self.records and not fsutil.lock_is_held(path):
                self.leaks.append(Leak("file", path, "releasing lock of a teardown that ended"))

    def names(self) -> None:
        """aardvark-dns's files (:mod:`lamina.network.aardvark`, named by the network's netavark
        name) of no network record (their server keeps answering on a gateway that is gone),
        and the entries in the others of containers with no endpoint recorded under that name
        (a record lost before its teardown)."""
        from lamina.network.aardvark import Aardvark

        aardvark = Aardvark(os.path.join(os.path.dirname(self.netns_dir), "network"))
        try:
            files = sorted(os.listdir(aardvark.directory))
        except FileNotFoundError:
            return
        docker_names = {network.Id: network.Name for network in self.networks}
        named = {bridges.plumbing_name(network): network.Name for network in self.networks}   # file -> Docker name
        holders: dict[str, set[str]] = {name: set() for name in named}
        for container_id, record in self.records.items():
            for key, endpoint in record.get("Endpoints", {}).items():
                if endpoint.get("NetworkID") in docker_names:  # set up under its recorded name, or the Docker name
                    name = endpoint.get("NetavarkName") or key
                    holders.setdefault(name, set()).add(container_id)
                    named.setdefault(name, docker_names[endpoint["NetworkID"]])
        for name in files:
            if name == "aardvark.pid":
                continue
            if name not in holders:
                self.leaks.append(Leak("file", os.path.join(aardvark.directory, name),
                                       "name server file of no network record"))
                continue
            for line in aardvark.entries(name):
                container_id = line.split(" ", 1)[0]
                if container_id not in holders[name]:
                    self.leaks.append(Leak("entry", f"{os.path.join(aardvark.directory, name)} {container_id}",
                                           f"name server entry of container {container_id[:12]}, which has no "
                                           f"sandbox on network {named[name]}"))

    def held_peers(self) -> set[int]:
        """The host ifindexes of the veth peers of the interfaces in this engine's sandboxes."""
        held: set[int] = set()
        for record in self.records.values():
            path = record.get("SandboxKey", "")
            if path and namespace.exists(path):
                listing = _run(["nsenter", f"--net={path}", "ip", "-o", "link"])
                held.update(int(index) for index in _PEER_INDEX.findall(listing))
        return held

    def anchors(self, held: set[int]) -> None:
        by_bridge = {network.BridgeName for network in self.networks}
        for anchor in bridges.anchors():
            owner = bridges.owner(anchor)
            if owner is None or os.path.abspath(owner[0]) != self.data_root:
                continue
            bridge = _master(anchor)
            if bridge and bridge in by_bridge and anchor == bridges.anchor_name(bridge):
                continue
            what = f"bridge {bridge}" if bridge else "no bridge"
            self.leaks.append(Leak("interface", anchor, f"anchor of {what}, which no network record holds"))
            ports = [port for port in _bridge_ports(bridge) if port != anchor] if bridge else []
            if bridge and all(_ifindex(port) not in held for port in ports):
                self.leaks.extend(Leak("interface", port, f"veth on bridge {bridge} of no network record")
                                  for port in ports)
                self.leaks.append(Leak("interface", bridge, _RECORDLESS_BRIDGE))

    def veths(self, held: set[int]) -> None:
        for network in self.networks:
            anchor = bridges.anchor_name(network.BridgeName)
            for port in _bridge_ports(network.BridgeName):
                if port != anchor and _ifindex(port) not in held:
                    self.leaks.append(Leak("interface", port, f"veth on bridge {network.BridgeName} of network "
                                                              f"{network.Name} with no endpoint behind it"))

    def rules(self, rules: list[Rule], chains: set[tuple[str, str, str]], gone: Iterable[Network]) -> None:
        """``gone``: networks whose bridge is gone, or leaked itself (then its subnets count as
        unrouted: the route goes with the bridge)."""
        routes = _routes()
        leaked: dict[str, tuple[Rule, str]] = {}

        def add(rule: Rule, message: str) -> None:
            leaked.setdefault(rule.text, (rule, message))

        for network in [*self.networks, *(network for network in gone if not network.Id)]:
            # a subnet routed through another device is another engine's network now (this
            # one's bridge is down): the port forwards to it are that engine's
            if all(routes.get(subnet, {network.BridgeName}) <= {network.BridgeName} for subnet in _subnets(network)):
                self._port_forwards(network, rules, add)
        for network in gone:
            recordless = not network.Id
            texts = {str(subnet) for subnet in _subnets(network) if recordless or subnet not in routes}
            device_gone = recordless or not bridges.exists(network.BridgeName)
            owner = f"network {network.Name}" if network.Name else f"bridge {network.BridgeName}"
            named_chains = _chains(network)
            for rule in rules:
                if device_gone and rule.chain.startswith("NETAVARK_ISOLATION") and network.BridgeName in (
                        rule.value("-i"), rule.value("-o")):
                    add(rule, f"isolation rule of the bridge {network.BridgeName}, which is gone or leaked")
                elif {rule.value("-s"), rule.value("-d")} & texts and (
                        rule.chain in ("NETAVARK_FORWARD", "POSTROUTING")
                        or rule.chain in named_chains):
                    add(rule, f"rule of the subnet {rule.value('-s') or rule.value('-d')} of {owner}, whose "
                              "bridge is gone or leaked")
        self._no_masquerade(rules, routes, add)
        # a network's chains go with the last jumps to them, their rules first
        changed = True
        while changed:
            kept_jumps = {(rule.family, rule.value("-j")) for rule in rules if rule.text not in leaked}
            targets = {(rule.family, rule.value("-j")) for rule, _ in leaked.values()}
            orphaned = [rule for rule in rules if rule.text not in leaked and (rule.family, rule.chain) in targets
                        and (rule.family, rule.chain) not in kept_jumps
                        and re.fullmatch(r"NETAVARK-(DN-)?[0-9A-F]{13}", rule.chain)]
            for rule in orphaned:
                add(rule, f"rule of the chain {rule.chain}, whose every jump is leaked")
            changed = bool(orphaned)
        kept_jumps = {(rule.family, rule.value("-j")) for rule in rules if rule.text not in leaked}
        kept_in = {(rule.family, rule.chain) for rule in rules if rule.text not in leaked}
        for rule, message in leaked.values():
            self.leaks.append(Leak("rule", rule.text, message))
        touched = {(rule.family, name) for rule, _ in leaked.values() for name in (rule.chain, rule.value("-j"))}
        for family, chain in sorted(touched):
            if (re.fullmatch(r"NETAVARK-(DN-)?[0-9A-F]{13}", chain) and (family, "nat", chain) in chains
                    and (family, chain) not in kept_jumps and (family, chain) not in kept_in):
                self.leaks.append(Leak("rule", f"{family} nat chain {chain}",
                                       "chain of a network whose rules are all leaked"))

    def _no_masquerade(self, rules: list[Rule], routes: dict[Any, set[str]], add: Any) -> None:
        """lamina's ``enable_ip_masquerade=false`` rules (:mod:`lamina.network.bridges`) of a
        network that is none of this engine's and whose subnet no host route covers any more:
        its bridge is gone, so no engine's network uses the rule (one whose bridge is down for
        another reason gets it back at its next set-up)."""
        known = {network.Id[:12] for network in self.networks}
        for rule in rules:
            match = bridges.NO_MASQUERADE.match(rule.value("--comment"))
            if not match or rule.table != "nat" or rule.chain != "POSTROUTING" or match.group(1) in known:
                continue
            try:
                subnet = ipaddress.ip_network(rule.value("-s"))
            except ValueError:
                continue
            if subnet not in routes:
                add(rule, f"no-masquerade rule of network {match.group(1)}, which is gone (no route to {subnet})")

    def _port_forwards(self, network: Network, rules: list[Rule], add: Any) -> None:
        holders = {container_id for container_id, record in self.records.items()
                   if any(endpoint.get("NetworkID") == network.Id for endpoint in record.get("Endpoints", {}).values())}
        subnets = _subnets(network)
        names = netavark_names(network)
        dn_chains = _chains(network, "NETAVARK-DN-")
        for rule in rules:
            dn_chain = rule.value("-j")
            if rule.chain != "NETAVARK-HOSTPORT-DNAT" or not dn_chain.startswith("NETAVARK-DN-"):
                continue
            if network.Name and dn_chain not in dn_chains:
                continue  # a recordless network (no name): any chain with targets in its subnets
            match = _DNAT_COMMENT.search(rule.value("--comment"))
            if not match or (network.Name and match.group(1) not in names) or match.group(2) in holders:
                continue
            port, protocol = rule.value("--dport"), rule.value("-p")
            same_port = [other for other in rules if other.family == rule.family and other.chain == dn_chain
                         and other.value("--dport") == port and other.value("-p") == protocol]
            # the DNAT rules to this network's subnet name the host address (-d) of this forward;
            # the chain (one per netavark name) may hold another engine's forward of the port (a
            # Docker name's, which a lamina of before the netavark names shared)
            host_addresses = set()
            for other in same_port:
                address = _address_of(other.value("--to-destination"))
                if address is not None and any(address in subnet for subnet in subnets
                                               if address.version == subnet.version):
                    host_addresses.add(other.value("-d"))
            if not host_addresses:
                continue  # another engine's network of the same name
            own = [other for other in same_port if other.value("-d") in host_addresses]
            container = match.group(2)[:12]
            add(rule, f"port forward of {protocol} port {port} to container {container}, which has no sandbox "
                      f"on network {network.Name or match.group(1)}")
            for other in own:
                add(other, f"port forward of {protocol} port {port} to container {container}")


def _subnets(network: Network) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text) for text in (network.Subnet, network.IPv6Subnet) if text]


def _address_of(target: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a DNAT target: ``10.1.2.3:80`` or ``[fd00::3]:80``."""
    host = target[1:target.find("]")] if target.startswith("[") else target.rsplit(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def find(store: NetworkStore, netns_dir: str, data_root: str) -> list[Leak]:
    """The leaked objects of this engine that no sandbox record describes (see the module
    docstring).  The caller holds the engine's and the host-wide network locks and the store's lock."""
    scan = _Scan(store, netns_dir, data_root)
    scan.namespaces()
    scan.releasing_locks()
    scan.names()
    held = scan.held_peers()
    scan.anchors(held)
    scan.veths(held)
    rules, chains = read_rules() if scan.networks or scan.leaks else ([], set())
    gone = [network for network in scan.networks if not bridges.exists(network.BridgeName)]
    gone.extend(_recordless(scan.leaks))
    scan.rules(rules, chains, gone)
    return scan.leaks


def _recordless(leaks: list[Leak]) -> list[Network]:
    """Networks whose record is gone but whose bridge is a leak: their name is unknown, their
    bridge device and subnets are what its rules name."""
    found = []
    for leak in leaks:
        if leak.Kind == "interface" and leak.Message == _RECORDLESS_BRIDGE:
            for subnet in _bridge_subnets(leak.Object):
                found.append(Network(Id="", Name="", Created="", BridgeName=leak.Object, Subnet=subnet))
    return found


def remove(leaks: list[Leak]) -> list[str]:
    """Remove ``leaks`` (interfaces and namespaces first: their rules are found afterwards);
    what was removed."""
    removed = []
    order = {"namespace": 0, "interface": 1, "rule": 2}
    for leak in sorted(leaks, key=lambda item: (order.get(item.Kind, 3), " nat chain " in item.Object)):
        if leak.Kind == "namespace":
            namespace.remove(leak.Object)
        elif leak.Kind == "file":
            try:
                os.unlink(leak.Object)
            except FileNotFoundError:
                pass
            if os.path.basename(os.path.dirname(leak.Object)) == "aardvark-dns":
                _name_server(leak.Object).notify()   # the server drops the network, or exits with its last
        elif leak.Kind == "entry":
            path, container_id = leak.Object.rsplit(" ", 1)
            _name_server(path).remove(container_id, [os.path.basename(path)])
        elif leak.Kind == "interface":
            if bridges.exists(leak.Object):
                subprocess.run(["ip", "link", "del", leak.Object], capture_output=True, check=False)
            if bridges.exists(leak.Object):
                continue
        elif leak.Kind == "rule":
            if not _remove_rule(leak.Object):
                continue
        removed.append(f"removed leaked {leak.Kind} {leak.Object}")
    return removed


def _name_server(path: str) -> Any:
    """The :class:`~lamina.network.aardvark.Aardvark` of a file in its directory."""
    from lamina.network.aardvark import Aardvark

    return Aardvark(os.path.dirname(os.path.dirname(path)))


def _remove_rule(text: str) -> bool:
    family, table, *rest = shlex.split(text)
    command = "iptables" if family == "ipv4" else "ip6tables"
    if rest[0] == "chain":
        chain = rest[1]
        subprocess.run([command, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
        return subprocess.run([command, "-w", "-t", table, "-X", chain], capture_output=True,
                              check=False).returncode == 0
    return subprocess.run([command, "-w", "-t", table, "-D", *rest[1:]], capture_output=True,
                          check=False).returncode == 0
