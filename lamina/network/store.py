"""The network store: network records and sandbox records (endpoints, leases, ports).

On-disk format (lamina's own)::

    <data-root>/network/lock                         flock: every change holds it exclusively
    <data-root>/network/networks/<network-id>.json    one :class:`~lamina.network.api.Network`
    <data-root>/network/sandboxes/<container-id>.json the sandbox of one container: SandboxKey
                                                     and, per network name, its endpoint
                                                     (NetworkID, EndpointID, IPAddress,
                                                     IPPrefixLen, Gateway, MacAddress, Aliases,
                                                     InterfaceName, Plumbing: the data plane
                                                     that makes it, ``netavark`` or
                                                     ``cni-bridge``, recorded before it does;
                                                     none: netavark; NetavarkName: the name
                                                     the data plane knows the network by,
                                                     recorded before the set-up, the one the
                                                     teardown uses; none: the Docker name,
                                                     the endpoint's key, under which a lamina
                                                     of before this field set it up), and its
                                                     port mappings

Commit points: a network exists once its record is renamed into place; a sandbox's endpoints,
IPAM leases and host ports exist once its record is renamed into place, which happens under
the lock *before* the data plane creates anything.  The sandbox records are therefore the
leases: an address or host port is taken iff a sandbox record holds it, so two processes
never hand out one address, and a crash at any step leaves a record the sweep can tear down
(:mod:`lamina.network.sandbox`).  A network record's write is tmp → fsync → rename →
fsync(dir); a sandbox record's is tmp → rename, without the fsyncs (a few ms of every run):
what it describes (namespace, veths, rules, a running container) does not survive a reboot,
so a record lost with a power loss leaves nothing behind, and a crashed process's writes are
in the page cache all the same.

``host`` and ``none`` are predefined and never stored; ``bridge`` (device ``lamina0``) is
stored on first use, when its subnet is picked.  Predefined ids are the sha256 of ``lamina
network <name>``: stable across restarts and engines.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lamina import errdefs, fsutil
from lamina.network import ipam
from lamina.network.api import DEFAULT_BRIDGE, DEFAULT_BRIDGE_DEVICE, PREDEFINED, Network

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NetworkStore", "predefined_id", "now_rfc3339", "default_bridge_device", "network_settings"]

_PREDEFINED_CREATED = "0001-01-01T00:00:00Z"


def predefined_id(name: str) -> str:
    import hashlib  # not at import: loading OpenSSL costs every command a few ms

    return hashlib.sha256(f"lamina network {name}".encode()).hexdigest()


def now_rfc3339() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def default_bridge_device(data_root: str, default_data_root: str = "/var/lib/lamina") -> str:
    """``lamina0`` for the default data root; ``lamina<8 hex of the root's sha256>`` for any other,
    so that two engines on one host (tests, a second daemon) never share a bridge device."""
    if os.path.abspath(data_root) == default_data_root:
        return DEFAULT_BRIDGE_DEVICE
    import hashlib

    return "lamina" + hashlib.sha256(os.path.abspath(data_root).encode()).hexdigest()[:8]


def _host_network(name: str) -> Network:
    return Network(Id=predefined_id(name), Name=name, Created=_PREDEFINED_CREATED,
                   Driver="host" if name == "host" else "null")


class NetworkStore:
    def __init__(self, root: str, *, default_bridge_device: str = DEFAULT_BRIDGE_DEVICE) -> None:
        self.root = root
        self.default_bridge_device = default_bridge_device
        self._networks = os.path.join(root, "networks")
        self._sandboxes = os.path.join(root, "sandboxes")
        for directory in (root, self._networks, self._sandboxes):
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise fsutil.system_error(f"cannot create {directory}", exc) from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        with fsutil.file_lock(os.path.join(self.root, "lock")):
            yield

    # -- networks --------------------------------------------------------------------------------

    def stored(self) -> list[Network]:
        """The stored networks (``bridge`` once used), without creating any."""
        return self._stored()

    def _stored(self) -> list[Network]:
        networks = []
        for entry in sorted(os.listdir(self._networks)):
            if entry.endswith(".json") and not entry.startswith("."):
                try:
                    networks.append(Network.from_json(fsutil.read_json(os.path.join(self._networks, entry))))
                except (OSError, ValueError, TypeError):
                    continue  # a record being removed
        return networks

    def networks(self, *, locked: bool = False) -> list[Network]:
        """Every network: the predefined ones (``bridge`` stored on first use) and the created.
        ``locked``: the caller holds the store's lock."""
        stored = self._stored()
        if not any(network.Name == DEFAULT_BRIDGE for network in stored):
            if locked:
                stored.append(self._create_default_bridge(stored))
            else:
                with self.locked():
                    stored = self._stored()
                    if not any(network.Name == DEFAULT_BRIDGE for network in stored):
                        stored.append(self._create_default_bridge(stored))
        return [_host_network("host"), _host_network("none"), *stored]

    def _create_default_bridge(self, stored: list[Network], created: str = "") -> Network:
        others = [ipam.parse_subnet(n.Subnet) for n in stored if n.Subnet and n.Name != DEFAULT_BRIDGE]
        subnet = ipam.pick_subnet([*ipam.host_routes(), *others])
        device = self.default_bridge_device
        network = Network(
            Id=predefined_id(DEFAULT_BRIDGE), Name=DEFAULT_BRIDGE, Created=created or now_rfc3339(), Driver="bridge",
            Subnet=str(subnet), Gateway=str(next(subnet.hosts())), BridgeName=device,
            Options={"com.docker.network.bridge.default_bridge": "true",
                     "com.docker.network.bridge.enable_icc": "true",
                     "com.docker.network.bridge.enable_ip_masquerade": "true",
                     "com.docker.network.bridge.name": device,
                     "com.docker.network.driver.mtu": "1500"})
        self._write(network)
        return network

    def refresh_default_bridge(self) -> None:
        """Pick the default bridge's subnet again when its device is down and a host route now
        overlaps it (another engine or program took it).  The caller holds the store's lock and
        the host-wide data plane lock, and no endpoint is on the default bridge."""
        stored = self._stored()
        bridge = next((network for network in stored if network.Name == DEFAULT_BRIDGE), None)
        if bridge is None or os.path.exists(f"/sys/class/net/{bridge.BridgeName}"):
            return
        subnet = ipam.parse_subnet(bridge.Subnet)
        if any(subnet.overlaps(route) for route in ipam.host_routes()):
            self._create_default_bridge(stored, bridge.Created)

    def by_id(self, network_id: str) -> Network:
        """The stored network of exactly ``network_id`` (one record read: the data plane's set-up)."""
        try:
            return Network.from_json(fsutil.read_json(os.path.join(self._networks, f"{network_id}.json")))
        except FileNotFoundError:
            raise errdefs.NotFound(f"network {network_id} not found") from None

    def get(self, term: str, *, locked: bool = False) -> Network:
        """The network ``term`` names: an exact id, an exact name, or a unique id prefix."""
        networks = self.networks(locked=locked)
        for network in networks:
            if network.Id == term:
                return network
        for network in networks:
            if network.Name == term:
                return network
        matches = [network for network in networks if term and network.Id.startswith(term)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(f"network {term} is ambiguous ({len(matches)} matches found on id)")
        raise errdefs.NotFound(f"network {term} not found")

    def add(self, network: Network) -> None:
        """Store a new network (the caller holds the lock and checked its name and subnet)."""
        self._write(network)

    def _write(self, network: Network) -> None:
        fsutil.atomic_write_json(os.path.join(self._networks, f"{network.Id}.json"), network.to_json(), mode=0o600)

    def remove(self, network: Network) -> None:
        if network.Name in PREDEFINED:
            raise errdefs.Forbidden(f"{network.Name} is a pre-defined network and cannot be removed")
        try:
            os.unlink(os.path.join(self._networks, f"{network.Id}.json"))
        except FileNotFoundError:
            return
        fsutil.fsync_dir(self._networks)

    # -- sandboxes -------------------------------------------------------------------------------

    def sandboxes(self) -> dict[str, dict[str, Any]]:
        """Container id -> its sandbox record."""
        found = {}
        for entry in os.listdir(self._sandboxes):
            if entry.endswith(".json") and not entry.startswith("."):
                try:
                    found[entry[:-5]] = fsutil.read_json(os.path.join(self._sandboxes, entry))
                except (OSError, ValueError):
                    continue
        return found

    def sandbox(self, container_id: str) -> dict[str, Any] | None:
        try:
            record = fsutil.read_json(os.path.join(self._sandboxes, f"{container_id}.json"))
        except FileNotFoundError:
            return None
        return record if isinstance(record, dict) else None

    def write_sandbox(self, container_id: str, record: dict[str, Any]) -> None:
        fsutil.atomic_replace(os.path.join(self._sandboxes, f"{container_id}.json"),
                              json.dumps(record, separators=(",", ":")), mode=0o600)

    def remove_sandbox(self, container_id: str) -> None:
        try:
            os.unlink(os.path.join(self._sandboxes, f"{container_id}.json"))
        except FileNotFoundError:
            pass


def _port_key(port: dict[str, Any]) -> str:
    return f"{port['ContainerPort']}/{port['Protocol']}"


def network_settings(record: dict[str, Any] | None) -> dict[str, Any]:
    """Docker's ``NetworkSettings`` for a sandbox record (empty values without one)."""
    settings: dict[str, Any] = {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "MacAddress": "", "Networks": {},
    }
    if not record:
        return settings
    settings["SandboxID"] = record.get("SandboxID", "")
    settings["SandboxKey"] = record.get("SandboxKey", "")
    ports: dict[str, Any] = {}
    for port in record.get("Ports", []):
        ports.setdefault(_port_key(port), []).append(
            {"HostIp": port["HostIp"] or "0.0.0.0", "HostPort": str(port["HostPort"])})
    for exposed in record.get("Exposed", []):
        ports.setdefault(exposed, None)
    settings["Ports"] = ports
    for name, endpoint in record.get("Endpoints", {}).items():
        settings["Networks"][name] = {
            "IPAMConfig": ({"IPv4Address": endpoint["IPAddress"] if endpoint.get("StaticAddress") else "",
                        "IPv6Address": endpoint.get("GlobalIPv6Address", "") if endpoint.get("StaticIPv6Address")
                        else ""} if endpoint.get("StaticAddress") or endpoint.get("StaticIPv6Address") else None),
            "Links": None, "Aliases": list(endpoint.get("Aliases", [])), "MacAddress": endpoint["MacAddress"],
            "DriverOpts": None, "NetworkID": endpoint["NetworkID"], "EndpointID": endpoint["EndpointID"],
            "Gateway": endpoint["Gateway"], "IPAddress": endpoint["IPAddress"],
            "IPPrefixLen": endpoint["IPPrefixLen"], "IPv6Gateway": endpoint.get("IPv6Gateway", ""),
            "GlobalIPv6Address": endpoint.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": endpoint.get("GlobalIPv6PrefixLen", 0),
            "DNSNames": list(endpoint.get("DNSNames", [])) or None,
        }
    default = record.get("Endpoints", {}).get("bridge")
    if default:
        settings.update(EndpointID=default["EndpointID"], Gateway=default["Gateway"],
                        IPAddress=default["IPAddress"], IPPrefixLen=default["IPPrefixLen"],
                        MacAddress=default["MacAddress"], IPv6Gateway=default.get("IPv6Gateway", ""),
                        GlobalIPv6Address=default.get("GlobalIPv6Address", ""),
                        GlobalIPv6PrefixLen=default.get("GlobalIPv6PrefixLen", 0))
    return settings
