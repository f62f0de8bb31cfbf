"""Creating a network: Docker's ``POST /networks/create`` checks, then one store record.

Checked, each with Docker's message and kind: the name (``[a-zA-Z0-9][a-zA-Z0-9_.-]*``, not a
predefined one, unique: lamina always refuses a duplicate name, as Docker ≥ 25 does whatever
``CheckDuplicate`` says), the driver (``bridge``, ``macvlan`` with ``-o parent=IF`` an existing
interface no other macvlan network uses and ``-o macvlan_mode``; ``host``/``null`` are
predefined only; no ``ipvlan``: netavark 1.4 has none),
the IPAM config (one IPv4 subnet, no host bits, overlapping no network and no host route when
picked; gateway, ``IPRange`` and auxiliary addresses inside it), the driver options lamina
honours (:data:`BRIDGE_OPTIONS`, ``enable_icc`` and ``enable_ip_masquerade`` as booleans; any
other is refused), ``EnableIPv6`` with one IPv6 subnet
(given, or a random unique local ``/64``; an IPv6 subnet without ``EnableIPv6`` is refused).
The subnet is chosen and the record written under the store's lock, so two concurrent
creations never get one subnet.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from lamina import errdefs
from lamina.network import ipam
from lamina.network.api import PREDEFINED, Network
from lamina.network.store import NetworkStore, now_rfc3339

__all__ = ["BRIDGE_OPTIONS", "MACVLAN_OPTIONS", "create_network", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"
# option -> accepted values (None: any value the check below accepts)
# Go's strconv.ParseBool, which Docker parses these options with
_BOOLEAN = frozenset({"true", "false", "1", "0", "t", "f"})
BRIDGE_OPTIONS: Mapping[str, frozenset[str] | None] = {
    BRIDGE_NAME: None, MTU: None,
    # false: isolated bridge ports (lamina.network.isolation)
    "com.docker.network.bridge.enable_icc": _BOOLEAN,
    # false: a RETURN before netavark's masquerading (lamina.network.bridges)
    "com.docker.network.bridge.enable_ip_masquerade": _BOOLEAN,
}
PARENT = "parent"
MACVLAN_MODE = "macvlan_mode"
MACVLAN_OPTIONS: Mapping[str, frozenset[str] | None] = {
    PARENT: None, MTU: None, MACVLAN_MODE: frozenset({"bridge", "private", "vepa", "passthru"}),
}
_DEVICE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")


def _check_options(driver: str, options: Mapping[str, str]) -> None:
    accepted_options = MACVLAN_OPTIONS if driver == "macvlan" else BRIDGE_OPTIONS
    for key, value in options.items():
        if key not in accepted_options:
            raise errdefs.InvalidArgument(f"lamina does not support the {driver} network option {key}")
        accepted = accepted_options[key]
        if accepted is not None and value.lower() not in accepted:
            raise errdefs.InvalidArgument(f"lamina does not support {key}={value} (only "
                                          f"{', '.join(sorted(accepted))})")
    if BRIDGE_NAME in options and not _DEVICE.match(options[BRIDGE_NAME]):
        raise errdefs.InvalidArgument(f"invalid bridge name {options[BRIDGE_NAME]!r}")
    if MTU in options and not (options[MTU].isdigit() and 68 <= int(options[MTU]) <= 65535):
        raise errdefs.InvalidArgument(f"invalid MTU {options[MTU]!r}: expected a number from 68 to 65535")
    if driver == "macvlan":
        parent = options.get(PARENT, "")
        if not parent:
            raise errdefs.InvalidArgument("a macvlan network needs its parent interface (-o parent=IF)")
        if not _DEVICE.match(parent) or not os.path.exists(f"/sys/class/net/{parent}"):
            raise errdefs.InvalidArgument(f"-o parent interface {parent!r} was not found on the host")


def create_network(store: NetworkStore, name: str, *, driver: str = "bridge", subnet: str = "", gateway: str = "",
                   ip_range: str = "", auxiliary_addresses: Mapping[str, str] | None = None, internal: bool = False,
                   attachable: bool = False, enable_ipv6: bool = False, options: Mapping[str, str] | None = None,
                   labels: Mapping[str, str] | None = None, ipam_options: Mapping[str, str] | None = None,
                   ipv6_subnet: str = "", ipv6_gateway: str = "") -> Network:
    if not name or not NAME_PATTERN.match(name):
        raise errdefs.InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if name in PREDEFINED:
        raise errdefs.Forbidden(f"{name} is a pre-defined network and cannot be created")
    driver = driver or "bridge"
    if driver in ("host", "null"):
        raise errdefs.FailedPrecondition(f"only one instance of \"{driver}\" network is allowed")
    if driver not in ("bridge", "macvlan"):
        raise errdefs.NotFound(f"plugin \"{driver}\" not found: lamina's network drivers are bridge, macvlan, host, "
                               "null")
    if (ipv6_subnet or ipv6_gateway) and not enable_ipv6:
        raise errdefs.InvalidArgument("an IPv6 subnet or gateway needs IPv6 enabled on the network (EnableIPv6, "
                                      "--ipv6)")
    if ipv6_gateway and not ipv6_subnet:
        raise errdefs.InvalidArgument("an IPv6 gateway needs an IPv6 subnet")
    options = dict(options or {})
    _check_options(driver, options)
    if (gateway or ip_range or auxiliary_addresses) and not subnet:
        raise errdefs.InvalidArgument("a gateway, IP range or auxiliary address needs a subnet")
    with store.locked():
        existing = store.networks(locked=True)
        if any(network.Name == name for network in existing):
            raise errdefs.Conflict(f"network with name {name} already exists")
        chosen = _subnet(existing, subnet, "Subnet", ipam.parse_subnet,
                         lambda taken: ipam.pick_subnet([*taken, *ipam.host_routes()]))
        gateway_address = str(ipam.check_address(chosen, gateway, "gateway")) if gateway else str(next(chosen.hosts()))
        if ip_range:
            pool = ipam.parse_subnet(ip_range)
            if not pool.subnet_of(chosen):  # type: ignore[arg-type]
                raise errdefs.InvalidArgument(f"IP range {ip_range} is not in subnet {chosen}")
        auxiliary = {key: str(ipam.check_address(chosen, value, f"auxiliary address {key}"))
                     for key, value in (auxiliary_addresses or {}).items()}
        chosen6: ipaddress.IPv6Network | None = None
        gateway6 = ""
        if enable_ipv6:
            chosen6 = _subnet(existing, ipv6_subnet, "IPv6Subnet", ipam.parse_subnet6,
                              lambda taken: ipam.pick_subnet6([*taken, *ipam.host_routes6()]))
            gateway6 = str(ipam.check_address(chosen6, ipv6_gateway, "IPv6 gateway") if ipv6_gateway
                           else chosen6.network_address + 1)
        network_id = os.urandom(32).hex()
        bridge = (options.get(BRIDGE_NAME) or f"br-{network_id[:12]}") if driver == "bridge" else ""
        if bridge and any(other.BridgeName == bridge for other in existing):
            raise errdefs.Conflict(f"bridge {bridge} is already used by another network")
        parent = options.get(PARENT, "")
        for other in existing:
            if parent and other.Driver == "macvlan" and other.Options.get(PARENT) == parent:
                raise errdefs.Conflict(f"network {other.Name} is already using parent interface {parent}")
        network = Network(Id=network_id, Name=name, Created=now_rfc3339(), Driver=driver, Subnet=str(chosen),
                          Gateway=gateway_address, IPv6Subnet=str(chosen6 or ""), IPv6Gateway=gateway6,
                          EnableIPv6=bool(enable_ipv6), IPRange=ip_range, AuxiliaryAddresses=auxiliary,
                          BridgeName=bridge,
                          Internal=bool(internal), Attachable=bool(attachable), Options=options,
                          Labels=dict(labels or {}), IPAMOptions=dict(ipam_options or {}),
                          IPAMConfigured=bool(subnet))
        store.add(network)
        return network


def _subnet(existing: list[Network], given: str, field: str, parse: Callable[[str], Any],
            pick: Callable[[list[Any]], Any]) -> Any:
    """The subnet of a new network: ``given`` (parsed by ``parse``) unless it overlaps the
    ``field`` (``Subnet``/``IPv6Subnet``) of an existing network (Docker's 409), else the one
    ``pick`` chooses beside the existing networks' subnets."""
    taken = [parse(getattr(network, field)) for network in existing if getattr(network, field)]
    if not given:
        return pick(taken)
    chosen = parse(given)
    for other, subnet in zip([network for network in existing if getattr(network, field)], taken):
        if chosen.overlaps(subnet):
            raise errdefs.Conflict(f"invalid pool request: Pool overlaps with other one on this address "
                                   f"space ({getattr(other, field)} of network {other.Name})")
    return chosen
