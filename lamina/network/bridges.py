"""A network's bridge kept up while the network exists, as Docker keeps ``docker0`` up.

netavark's ``teardown`` deletes a bridge, and its network's firewall chains, when no interface
is enslaved to it any more (the last endpoint gone): then the next container alone on the
network pays for creating them again (~200 ms of a ~300 ms ``setup`` + ``teardown``).  lamina
keeps them by enslaving an *anchor* to the bridge once netavark has created it: a veth pair
on the host, ``la<12 hex of sha256(bridge name)>`` attached to the bridge (down, with the
bridge's MTU, so the bridge's own MTU is unchanged) and its peer ``…p`` beside it.  A veth
because it needs no kernel module netavark does not need already.

``enable_ip_masquerade=false`` (netavark 1.4 masquerades every non-internal bridge network,
``nat POSTROUTING -s <subnet> -j NETAVARK-<hash>``): :func:`keep` also puts the network's
``nat POSTROUTING -s <subnet> ! -d <subnet> -m comment --comment "lamina <id12> no-masquerade"
-j RETURN`` first in the chain (``iptables``, and ``ip6tables`` for its IPv6 subnet: the
binaries netavark execs), checked at each set-up so a flushed table gets it back; :func:`remove`
deletes it with the bridge; :mod:`lamina.network.leaks` finds the ones whose network is gone.

Record: the anchor's name is a function of the network record's ``BridgeName`` (stored in
``<data-root>/network/networks/<id>.json``), so whoever holds the record finds the anchor.  Its
alias names the engine and the netavark name the plumbing it keeps was set up with
(``lamina<TAB><data root><TAB><exec root><TAB><netavark name>``): the network's
:attr:`~lamina.network.api.Network.netavark_name`, which names its ``NETAVARK-<hash>`` chains
and its aardvark-dns file.  An anchor of a lamina that named netavark's networks by their
Docker name has no fourth field (:func:`plumbing_name`: the network keeps that name, chains
and file until it is removed, so that its endpoints of before and after the upgrade share
them; aardvark-dns would listen twice on its gateway with two files).
Life: created by the first set-up of an endpoint on the network (under the host-wide network
lock); removed by :func:`remove`, when the network is removed (``network rm``, ``prune``) or a
test's engine is torn down: the anchor is deleted, then netavark tears down a placeholder
endpoint in a scratch namespace, which is its "last endpoint" teardown: the bridge, the
network's chains and rules go (and the isolation jump every network shares, which netavark
1.4 deletes with any one network, is put back, as is the masquerading rule of a chain another
network of the same netavark name still uses: networks set up before lamina named them
apart).  After a reboot nothing is left (interfaces and rules are run-time state); the first
endpoint creates the bridge and the anchor again.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from typing import Any

from lamina import errdefs
from lamina.digest import sha256_hex
from lamina.log import get_logger
from lamina.network import namespace
from lamina.network.api import DataPlane, Network

__all__ = ["anchor_name", "anchors", "chain_hash", "owner", "plumbing_name", "keep", "remove", "exists", "MASQUERADE",
           "masquerade_disabled", "no_masquerade_comment", "NO_MASQUERADE", "remove_no_masquerade"]

log = get_logger("lamina.network")

MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
NO_MASQUERADE = re.compile(r"^lamina ([0-9a-f]{12}) no-masquerade$")   # the rule's comment


def masquerade_disabled(network: Network) -> bool:
    return network.Driver == "bridge" and network.Options.get(MASQUERADE, "true").lower() in ("false", "0", "f")


def no_masquerade_comment(network_id: str) -> str:
    return f"lamina {network_id[:12]} no-masquerade"


def _no_masquerade_rules(network: Network) -> list[tuple[str, list[str]]]:
    """(binary, rule after ``-t nat -X``) of each of the network's subnets."""
    return [(command, ["POSTROUTING", "-s", subnet, "!", "-d", subnet, "-m", "comment", "--comment",
                       no_masquerade_comment(network.Id), "-j", "RETURN"])
            for command, subnet in (("iptables", network.Subnet), ("ip6tables", network.IPv6Subnet)) if subnet]


def _add_no_masquerade(network: Network) -> None:
    for command, rule in _no_masquerade_rules(network):
        if subprocess.run([command, "-w", "-t", "nat", "-C", *rule], capture_output=True,
                          check=False).returncode == 0:
            continue
        added = subprocess.run([command, "-w", "-t", "nat", "-I", rule[0], "1", *rule[1:]], capture_output=True,
                               text=True, check=False)
        if added.returncode != 0:
            raise errdefs.System(f"cannot turn masquerading off for network {network.Name} "
                                 f"(enable_ip_masquerade=false): {added.stderr.strip()}")


def remove_no_masquerade(network: Network) -> None:
    """Delete the network's no-masquerade rules (every copy); none is fine."""
    for command, rule in _no_masquerade_rules(network):
        for _ in range(8):
            if subprocess.run([command, "-w", "-t", "nat", "-D", *rule], capture_output=True,
                              check=False).returncode != 0:
                break


def chain_hash(network_name: str) -> str:
    """netavark's chain suffix (``NETAVARK-<hash>``, ``NETAVARK-DN-<hash>``) of a network it
    knows by ``network_name``: the first 13 hex digits, upper case, of its sha512."""
    import hashlib  # not at import: OpenSSL would stay mapped in every monitor template

    return hashlib.sha512(network_name.encode()).hexdigest()[:13].upper()


def anchor_name(bridge: str) -> str:
    return "la" + sha256_hex(bridge.encode())[:12]


def exists(device: str) -> bool:
    return os.path.exists(f"/sys/class/net/{device}")


def _alias(anchor: str) -> list[str] | None:
    """The fields of ``anchor``'s alias (``lamina``, data root, exec root[, netavark name]);
    None: no such interface, or not an anchor."""
    try:
        with open(f"/sys/class/net/{anchor}/ifalias", encoding="utf-8") as handle:
            words = handle.read().rstrip("\n").split("\t")
    except OSError:
        return None
    return words if len(words) in (3, 4) and words[0] == "lamina" else None


def owner(anchor: str) -> tuple[str, str] | None:
    """(data root, exec root) of the engine that made ``anchor``, from its alias."""
    words = _alias(anchor)
    return (words[1], words[2]) if words is not None else None


def plumbing_name(network: Network) -> str:
    """The netavark name of ``network``'s plumbing: the one its anchor records; its Docker name
    when the anchor records none (made by a lamina that named netavark's networks so); its
    :attr:`~lamina.network.api.Network.netavark_name` when it has no anchor (its plumbing is
    made anew by its next endpoint)."""
    words = _alias(anchor_name(network.BridgeName)) if network.BridgeName else None
    if words is None:
        return network.netavark_name
    return words[3] if len(words) == 4 else network.Name


def anchors() -> list[str]:
    """The anchors on this host (whichever engine made them)."""
    return [name for name in os.listdir("/sys/class/net") if name.startswith("la") and len(name) == 14
            and owner(name) is not None]


def keep(network: Network, data_root: str, exec_root: str, name: str = "") -> None:
    """Attach the anchor to the network's bridge (created by netavark's setup just before, the
    network named ``name`` to it) if it has none; its alias names the engine and ``name``
    (``lamina<TAB>data root<TAB>exec root<TAB>name``; without ``name``, the network was named
    by its Docker name, and the alias says so by having no fourth field).  With
    ``enable_ip_masquerade=false``, make sure the no-masquerade rule is there (``System`` when it
    cannot be added).  The caller holds the host-wide network lock."""
    if masquerade_disabled(network):
        _add_no_masquerade(network)
    bridge = network.BridgeName
    anchor = anchor_name(bridge)
    if exists(anchor) or not exists(bridge):
        return
    try:
        with open(f"/sys/class/net/{bridge}/mtu", encoding="ascii") as handle:
            mtu = handle.read().strip()
    except OSError:
        mtu = "1500"
    result = subprocess.run(["ip", "link", "add", anchor, "mtu", mtu, "master", bridge, "type", "veth", "peer",
                             "name", f"{anchor}p"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if result.returncode == 0:
        result = subprocess.run(["ip", "link", "set", anchor, "alias",
                                 "\t".join(["lamina", data_root, exec_root, *([name] if name else [])])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0 and not exists(anchor):
        # not fatal: the bridge then goes with its last endpoint, as before
        log.warning("cannot keep bridge %s up: %s", bridge, result.stderr.decode(errors="replace").strip())


def _placeholder_request(network: Network, name: str) -> dict[str, Any]:
    subnet = ipaddress.ip_network(network.Subnet)
    addresses = [str(subnet.broadcast_address - 1)]
    subnets = [{"subnet": network.Subnet, "gateway": network.Gateway}]
    if network.IPv6Subnet:
        subnet6 = ipaddress.ip_network(network.IPv6Subnet)
        addresses.append(str(subnet6.broadcast_address - 1))
        subnets.append({"subnet": network.IPv6Subnet, "gateway": network.IPv6Gateway})
    return {"container_id": "0" * 64, "container_name": "lamina-bridge-removal", "port_mappings": [],
            "networks": {network.Name: {"static_ips": addresses, "aliases": [], "interface_name": "eth0"}},
            "network_info": {network.Name: {
                "name": name, "id": network.Id, "driver": "bridge", "network_interface": network.BridgeName,
                "subnets": subnets, "ipv6_enabled": bool(network.IPv6Subnet),
                "internal": network.Internal, "dns_enabled": False, "ipam_options": {"driver": "host-local"},
                "options": {"isolate": "true"}}}}


def remove(network: Network, dataplane: DataPlane, scratch: str, name: str | None = None) -> None:
    """Delete the anchor, the bridge and the network's firewall chains, those of its netavark
    name ``name`` (None: :func:`plumbing_name`, read before the anchor goes).  The caller holds
    the host-wide network lock and made sure no endpoint is on the network; ``scratch`` is a
    path for a scratch namespace."""
    if network.Driver != "bridge" or not network.BridgeName:
        return
    if name is None:
        name = plumbing_name(network)
    if masquerade_disabled(network):
        remove_no_masquerade(network)
    anchor = anchor_name(network.BridgeName)
    if exists(anchor):
        subprocess.run(["ip", "link", "del", anchor], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    if not exists(network.BridgeName):
        return
    namespace.remove(scratch)
    namespace.create(scratch)
    try:
        subprocess.run(["nsenter", f"--net={scratch}", "ip", "link", "add", "eth0", "type", "veth", "peer", "name",
                        "peth0"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            dataplane.teardown(scratch, _placeholder_request(network, name))
        except errdefs.System as exc:
            log.warning("removal of bridge %s: %s", network.BridgeName, exc)
    finally:
        namespace.remove(scratch)
    if exists(network.BridgeName):  # netavark left it (another program's port on it): ours to remove
        subprocess.run(["ip", "link", "del", network.BridgeName], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    _restore_isolation()
    if name == network.Name:  # a Docker name, which other networks may share; a netavark name is the network's own
        _restore_shared_chains(network, name)


def _restore_shared_chains(network: Network, name: str) -> None:
    """netavark 1.4's complete teardown of a network deletes the masquerading rule of its
    ``NETAVARK-<hash>`` chain and its empty ``NETAVARK-DN-<hash>`` chain, and keeps the first
    when rules are left in it: another network of the same netavark ``name`` uses it (a lamina
    of before the netavark names gave netavark Docker's name, which another engine's network,
    or Podman's, may have too).  Put the rule and the chain back for that network, as netavark
    makes them (its teardown fails on a missing one)."""
    chain = f"NETAVARK-{chain_hash(name)}"
    port_chain = f"NETAVARK-DN-{chain_hash(name)}"
    for command, subnet, multicast in (("iptables", network.Subnet, "224.0.0.0/4"),
                                       ("ip6tables", network.IPv6Subnet, "ff00::/8")):
        if not subnet:
            continue
        listed = subprocess.run([command, "-w", "-t", "nat", "-S", chain], capture_output=True, text=True,
                                check=False)
        if listed.returncode != 0 or f"-A {chain} " not in listed.stdout:
            continue  # the chain went with the network: no other one used it
        rule = [chain, "!", "-d", multicast, "-j", "MASQUERADE"]
        if subprocess.run([command, "-w", "-t", "nat", "-C", *rule], capture_output=True, check=False).returncode:
            log.info("network %s shares netavark's chain %s with another network (of the same name, set up "
                        "before lamina named netavark's networks apart): its masquerading rule is put back",
                        network.Name, chain)
            subprocess.run([command, "-w", "-t", "nat", "-A", *rule], capture_output=True, check=False)
        subprocess.run([command, "-w", "-t", "nat", "-N", port_chain], capture_output=True, check=False)


def _restore_isolation() -> None:
    """netavark 1.4's complete teardown of one network deletes ``FORWARD -j NETAVARK_ISOLATION_1``,
    a rule every isolated network shares: the other networks' bridges would reach each other
    until the next set-up adds it again.  Put it back while any network's isolation rule is left."""
    listed = subprocess.run(["iptables", "-w", "-S", "NETAVARK_ISOLATION_1"], capture_output=True, text=True,
                            check=False)
    if listed.returncode != 0 or "-A NETAVARK_ISOLATION_1" not in listed.stdout:
        return
    jump = ["FORWARD", "-j", "NETAVARK_ISOLATION_1"]
    if subprocess.run(["iptables", "-w", "-C", *jump], capture_output=True, check=False).returncode != 0:
        subprocess.run(["iptables", "-w", "-I", jump[0], "1", *jump[1:]], capture_output=True, check=False)
