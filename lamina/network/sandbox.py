"""Sandboxes: a container's network namespace and its endpoints, set up and torn down.

Life of a sandbox (one container)::

    attach(container, endpoints, ports)   lock: resolve networks, lease addresses and host
                                          ports, write the sandbox record (commit point;
                                          the host-wide lock too for host ports or while
                                          the default bridge's device is down);
                                          unlock; create <exec-root>/netns/<id>; data plane
                                          setup; record "SetUp"
    connect / disconnect                  one more / one less endpoint of a sandbox
    detach(container)                     mark the record "Releasing"; data plane teardown;
                                          remove the namespace; remove the record (the leases
                                          are free again).  A run's monitor detaches after
                                          the run's waiters are woken (off ``run --rm``'s
                                          path): an attach that wants an address or host port
                                          a releasing record holds waits for the record to go
    sweep(is_live)                        detach every sandbox whose container is not live

Everything is recorded before it is created, so a crash at any step (kill -9 of the process
that attached) leaves a record that ``sweep`` tears down: the namespace still exists (a
bind mount outlives its creator) and netavark's teardown removes the veth, the rules and the
name server entries; when the namespace is gone too (someone unmounted it), a scratch
namespace with veth interfaces of the recorded names lets the teardown remove the rules.

Names: the data plane knows a network by its netavark name, recorded per endpoint
(``NetavarkName``) when the address is leased: the network's plumbing's, which its anchor
records (:func:`lamina.network.bridges.plumbing_name`), else
:attr:`~lamina.network.api.Network.netavark_name`; set-up and teardown requests name the
network so (``network_info[...]["name"]``), a record without it by its Docker name, under which
a lamina of before the names set it up; such a network's plumbing goes with its last
endpoint of that name, and the next one makes it anew under its netavark name.  The requests
stay keyed by Docker's names.

Ports: a host port is taken when a sandbox record holds it (same protocol, overlapping host
address) or when a socket cannot be bound to it on the host (another program listens);
``HostPort`` 0 takes a free port the kernel picks.  A refused port or address raises before
anything is created (``Conflict``: Docker's ``Bind for 0.0.0.0:8080 failed: port is already
allocated``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lamina import errdefs, fsutil
from lamina.log import get_logger
from lamina.network import bridges, ipam, isolation, namespace
from lamina.network.api import DataPlane, EndpointPlane, Network, PortMapping
from lamina.network.store import NetworkStore
from lamina.records import dataclass

if TYPE_CHECKING:
    from lamina.network.leaks import Leak

__all__ = ["EndpointRequest", "HOST_LOCK", "Sandboxes"]

# Bridges, routes and firewall rules belong to the host, whatever the data root: every netavark
# call, and the choice of the default bridge's subnet, hold this lock.  The engine's own lock,
# <exec-root>/network.lock, is taken before it around every data plane call of the engine, and
# alone around the CNI plumbing (which touches no host-wide rule, and the engine's aardvark-dns
# files, which netavark 1.4 rewrites without its own lock): an engine's endpoints plugged by CNI
# never wait for other engines' netavark calls.  Order: engine lock, host lock, store lock.
HOST_LOCK = "/run/lamina-network.lock"

log = get_logger("lamina.network")

# an endpoint's ``Plumbing``: the data plane that made it
NETAVARK = "netavark"
CNI_BRIDGE = "cni-bridge"     # the endpoint plane of lamina.network.cni

# how long a run waits for an ended run's teardown that still holds the address or host port it asks for
RELEASE_WAIT = 10.0


class _Releasing(errdefs.Conflict):
    """What a run asks for is held by a sandbox being torn down (``Releasing`` in its record);
    :meth:`Sandboxes.attach` waits for it, other callers see a conflict."""

    def __init__(self, container_id: str) -> None:
        super().__init__(f"the address or host port is held by container {container_id[:12]}, whose network "
                         "teardown is under way")
        self.container_id = container_id


@dataclass(frozen=True)
class EndpointRequest:
    """What a container asks of one network (Docker's EndpointConfig)."""

    network: str                        # name, id or unique id prefix
    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""
    ipv6_address: str = ""
    mac_address: str = ""


def _part(request: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``request`` for the networks ``names`` only."""
    return {**request, "networks": {name: request["networks"][name] for name in names},
            "network_info": {name: request["network_info"][name] for name in names}}


class Sandboxes:
    def __init__(self, store: NetworkStore, dataplane: DataPlane, *, netns_dir: str,
                 host_lock: str = HOST_LOCK, endpoint_plane: EndpointPlane | None = None) -> None:
        self.store = store
        self.dataplane = dataplane
        self.endpoint_plane = endpoint_plane    # None: every endpoint through ``dataplane``
        self.netns_dir = netns_dir
        self.host_lock = host_lock
        self.engine_lock = os.path.join(os.path.dirname(netns_dir), "network.lock")
        self._releasing_locks: dict[str, fsutil.FileLock] = {}

    def _engine_locked(self) -> fsutil.FileLock:
        os.makedirs(os.path.dirname(self.engine_lock), mode=0o700, exist_ok=True)
        return fsutil.FileLock(self.engine_lock)

    def _setup(self, container_id: str, record: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Set up the endpoints ``names`` of ``record``, each by the plane chosen and recorded
        (``Plumbing``) here, before anything is created, then each bridge endpoint's options
        (:mod:`lamina.network.isolation`); the planes' answers.  The engine lock is held
        throughout, the host-wide lock only around netavark.  What it set up is torn down when
        it raises."""
        path = record["SandboxKey"]
        with self._engine_locked():
            request = self._request(container_id, record, names)
            plumbing = self._plan(container_id, record, request)
            answer: dict[str, Any] = {}
            on_netavark = _part(request, [name for name in names if plumbing[name] == NETAVARK])
            plugged = _part(request, [name for name in names if plumbing[name] == CNI_BRIDGE])
            made: list[tuple[DataPlane, dict[str, Any]]] = []    # undone, last first, when a step raises
            try:
                if on_netavark["networks"]:
                    with fsutil.file_lock(self.host_lock):
                        answer.update(self.dataplane.setup(path, on_netavark))
                        made.append((self.dataplane, on_netavark))
                        for info in on_netavark["network_info"].values():  # kept up while the network exists
                            if info["driver"] == "bridge":
                                bridges.keep(self.store.by_id(info["id"]), os.path.dirname(self.store.root),
                                             os.path.dirname(self.netns_dir), info["name"])
                    if self.endpoint_plane is not None:
                        for info in on_netavark["network_info"].values():
                            self.endpoint_plane.keep(info)
                if plugged["networks"] and self.endpoint_plane is not None:
                    answer.update(self.endpoint_plane.setup(path, plugged))
                    made.append((self.endpoint_plane, plugged))
                for name, info in request["network_info"].items():   # whichever plane made the endpoint
                    if info["driver"] == "bridge":
                        isolation.apply(self.store.by_id(info["id"]), path,
                                        request["networks"][name]["interface_name"])
            except BaseException:
                for plane, part in reversed(made):
                    host_wide = plane is self.dataplane
                    try:
                        with fsutil.file_lock(self.host_lock) if host_wide else contextlib.nullcontext():
                            plane.teardown(path, part)
                    except errdefs.LaminaError as exc:
                        log.warning("teardown after a failed set-up in %s: %s", path, exc)
                raise
            return answer

    def _plan(self, container_id: str, record: dict[str, Any], request: dict[str, Any]) -> dict[str, str]:
        """Each endpoint of ``request``'s plumbing, written to the sandbox record.  netavark
        takes every endpoint of a request with port mappings (its DNAT rules are per container)
        and any the endpoint plane does not fit.  The caller holds the engine lock."""
        plane = None if request["port_mappings"] else self.endpoint_plane
        plumbing = {name: CNI_BRIDGE if plane is not None and plane.fits(info, request["networks"][name]) else NETAVARK
                    for name, info in request["network_info"].items()}
        with self.store.locked():
            current = self.store.sandbox(container_id)
            if current is None:
                raise errdefs.NotFound(f"network sandbox of {container_id} was removed meanwhile")
            for name, chosen in plumbing.items():
                current["Endpoints"][name]["Plumbing"] = record["Endpoints"][name]["Plumbing"] = chosen
            self.store.write_sandbox(container_id, current)
        return plumbing

    def remove_network(self, network: Network) -> None:
        """Remove ``network``'s record and its bridge (anchor, device, firewall chains); a
        network with endpoints is refused (``Conflict``), after waiting for the teardowns under
        way (an ``--rm`` run that just ended)."""
        deadline = time.monotonic() + RELEASE_WAIT
        while True:
            with self._engine_locked(), fsutil.file_lock(self.host_lock), self.store.locked():
                users = self.endpoints(network.Id)
                releasing = self._releasing(network.Id)
                if not users and not releasing:
                    self._remove_plumbing(network)
                    self.store.remove(network)
                    return
            if users or not self._wait_released(releasing[0], deadline):
                names = ", ".join(user["Name"] for user in users.values()) or releasing[0][:12]
                raise errdefs.Conflict(f"error while removing network: network {network.Name} id {network.Id} has "
                                       f"active endpoints ({names})")

    def _releasing(self, network_id: str) -> list[str]:
        return [container_id for container_id, record in self.store.sandboxes().items() if record.get("Releasing")
                and any(endpoint["NetworkID"] == network_id for endpoint in record.get("Endpoints", {}).values())]

    def remove_bridges(self) -> None:
        """Take down the bridge of every network without endpoints (the networks stay: their
        next endpoint creates the bridge again).  For tests' engines, which leave no device."""
        with self._engine_locked(), fsutil.file_lock(self.host_lock), self.store.locked():
            used = {endpoint["NetworkID"] for record in self.store.sandboxes().values()
                    for endpoint in record.get("Endpoints", {}).values()}
            for network in self.store.stored():
                if network.Id not in used:
                    self._remove_plumbing(network)

    def _remove_plumbing(self, network: Network) -> None:
        """The network's aardvark-dns anchor, bridge and chains, under the netavark name its
        plumbing was set up with.  The caller holds every lock and saw no endpoint on it."""
        name = bridges.plumbing_name(network)   # before the anchor that records it goes
        if self.endpoint_plane is not None:
            self.endpoint_plane.release(name)
        bridges.remove(network, self.dataplane, os.path.join(self.netns_dir, f"remove-{network.Id[:12]}"), name)

    def _dataplane_teardown(self, netns_path: str, request: dict[str, Any]) -> None:
        with self._engine_locked(), fsutil.file_lock(self.host_lock):
            self.dataplane.teardown(netns_path, request)

    def sandbox_key(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    # -- leases ----------------------------------------------------------------------------------

    def _endpoint(self, container_id: str, name: str, network: Network, request: EndpointRequest,
                  interface: str, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if network.Driver not in ("bridge", "macvlan"):
            raise errdefs.InvalidArgument(f"container cannot be connected to network {network.Name} "
                                          f"(driver {network.Driver}) together with others")
        subnet = ipam.parse_subnet(network.Subnet)
        used = {network.Gateway, network.IPv6Gateway, *network.AuxiliaryAddresses.values()}
        releasing: dict[str, str] = {}   # address -> the container whose teardown still holds it
        for other_id, record in records.items():
            for endpoint in record.get("Endpoints", {}).values():
                if endpoint["NetworkID"] == network.Id:
                    addresses = (endpoint["IPAddress"], endpoint.get("GlobalIPv6Address", ""))
                    used.update(addresses)
                    if record.get("Releasing"):
                        releasing.update((address, other_id) for address in addresses if address)
        if request.ipv4_address:
            if not network.IPAMConfigured:
                raise errdefs.InvalidArgument("user specified IP address is supported only when connecting to "
                                              "networks with user configured subnets")
            address = str(ipam.check_address(subnet, request.ipv4_address, "IP address"))
            if address in releasing:
                raise _Releasing(releasing[address])
            if address in used:
                raise errdefs.Conflict(f"Address already in use: {address} on network {network.Name}")
        else:
            pool = ipam.parse_subnet(network.IPRange) if network.IPRange else subnet
            address = ipam.first_free_address(pool, subnet, used)
        ipv6: dict[str, Any] = {}
        if request.ipv6_address and not network.IPv6Subnet:
            raise errdefs.InvalidArgument(f"network {network.Name} has no IPv6 subnet for the address "
                                          f"{request.ipv6_address} (create it with --ipv6)")
        if network.IPv6Subnet:
            subnet6 = ipam.parse_subnet6(network.IPv6Subnet)
            if request.ipv6_address:
                address6 = str(ipam.check_address(subnet6, request.ipv6_address, "IPv6 address"))
                if address6 in releasing:
                    raise _Releasing(releasing[address6])
                if address6 in used:
                    raise errdefs.Conflict(f"Address already in use: {address6} on network {network.Name}")
            else:
                address6 = ipam.first_free_address(subnet6, subnet6, used)
            ipv6 = {"GlobalIPv6Address": address6, "GlobalIPv6PrefixLen": subnet6.prefixlen,
                    "IPv6Gateway": network.IPv6Gateway, "StaticIPv6Address": bool(request.ipv6_address)}
        short_id = container_id[:12]
        dns_names = [name, *request.aliases, short_id] if network.dns_enabled else []
        return {"NetworkID": network.Id, "NetavarkName": bridges.plumbing_name(network),
                "Driver": network.Driver, "EndpointID": os.urandom(32).hex(),
                "IPAddress": address,
                "IPPrefixLen": subnet.prefixlen, "Gateway": network.Gateway,
                "MacAddress": request.mac_address or ipam.mac_address(address),
                "Aliases": list(request.aliases), "DNSNames": [n for n in dns_names if n],
                "InterfaceName": interface, "StaticAddress": bool(request.ipv4_address), "SetUp": False, **ipv6}

    @staticmethod
    def _overlaps(first: str, second: str) -> bool:
        return first in ("", "0.0.0.0") or second in ("", "0.0.0.0") or first == second

    def _ports(self, ports: Iterable[PortMapping], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        taken = [port for record in records.values() for port in record.get("Ports", [])]
        releasing = [(container_id, port) for container_id, record in records.items() if record.get("Releasing")
                     for port in record.get("Ports", [])]
        chosen: list[dict[str, Any]] = []
        for mapping in ports:
            for offset in range(mapping.Range):
                wanted = mapping.HostPort + offset if mapping.HostPort else 0
                port = {"ContainerPort": mapping.ContainerPort + offset, "Protocol": mapping.Protocol,
                        "HostIp": mapping.HostIp, "HostPort": wanted}
                for _ in range(64):
                    host_port = self._probe(mapping.HostIp, wanted, mapping.Protocol)
                    clash = any(other["HostPort"] == host_port and other["Protocol"] == mapping.Protocol
                                and self._overlaps(other["HostIp"], mapping.HostIp) for other in taken + chosen)
                    if not clash:
                        break
                    for holder, other in releasing:
                        if other["HostPort"] == host_port and other["Protocol"] == mapping.Protocol:
                            raise _Releasing(holder)
                    if wanted:
                        raise errdefs.Conflict(f"Bind for {mapping.HostIp or '0.0.0.0'}:{wanted} failed: "
                                               "port is already allocated")
                else:
                    raise errdefs.Unavailable("no free host port found")
                port["HostPort"] = host_port
                chosen.append(port)
        return chosen

    @staticmethod
    def _probe(host_ip: str, port: int, protocol: str) -> int:
        """Bind ``port`` (0: any) on the host to see that no program holds it; the port bound."""
        family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host_ip or "0.0.0.0", port))
            except OSError as exc:
                raise errdefs.Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port} failed: {exc.strerror}") from exc
            return int(probe.getsockname()[1])

    # -- the data plane's request ----------------------------------------------------------------

    def _request(self, container_id: str, record: dict[str, Any], names: Iterable[str], *,
                 locked: bool = False) -> dict[str, Any]:
        networks: dict[str, Any] = {}
        info: dict[str, Any] = {}
        by_id = {network.Id: network for network in self.store.networks(locked=locked)}
        for name in names:
            endpoint = record["Endpoints"][name]
            network = by_id.get(endpoint["NetworkID"])
            if network is None:
                raise errdefs.NotFound(f"network {name} not found")
            addresses = [endpoint["IPAddress"], *([endpoint["GlobalIPv6Address"]]
                                                  if endpoint.get("GlobalIPv6Address") else [])]
            networks[name] = {"static_ips": addresses, "static_mac": endpoint["MacAddress"],
                              "aliases": endpoint.get("DNSNames", []), "interface_name": endpoint["InterfaceName"]}
            if network.Driver == "macvlan":
                options = {"mode": network.Options.get("macvlan_mode", "bridge")}
                interface = network.Options.get("parent", "")
            else:
                options = {"isolate": "true"}
                interface = network.BridgeName
            if network.Options.get("com.docker.network.driver.mtu"):
                options["mtu"] = network.Options["com.docker.network.driver.mtu"]
            subnets = [{"subnet": network.Subnet, "gateway": network.Gateway}]
            if network.IPv6Subnet:
                subnets.append({"subnet": network.IPv6Subnet, "gateway": network.IPv6Gateway})
            # the name it was set up with; a record of a lamina that recorded none: the Docker name
            info[name] = {"name": endpoint.get("NetavarkName") or name, "id": network.Id, "driver": network.Driver,
                          "network_interface": interface, "subnets": subnets,
                          "ipv6_enabled": bool(network.IPv6Subnet), "internal": network.Internal,
                          "dns_enabled": network.dns_enabled, "ipam_options": {"driver": "host-local"},
                          "options": options}
        primary = record.get("Primary")
        ports = [{"host_ip": port["HostIp"], "container_port": port["ContainerPort"], "host_port": port["HostPort"],
                  "range": 1, "protocol": port["Protocol"]}
                 for port in record.get("Ports", [])] if primary in networks else []
        request = {"container_id": container_id, "container_name": record.get("Name", ""), "port_mappings": ports,
                   "networks": networks, "network_info": info}
        if record.get("Dns"):  # aardvark-dns forwards this container's questions to them
            request["dns_servers"] = list(record["Dns"])
        return request

    # -- attach / connect / disconnect / detach ----------------------------------------------------

    def attach(self, container_id: str, *, name: str, endpoints: list[EndpointRequest],
               ports: Iterable[PortMapping] = (), exposed: Iterable[str] = (),
               dns: Iterable[str] = ()) -> dict[str, Any]:
        """Lease, record, then create the sandbox; the sandbox record.  Nothing is left when
        it raises.  ``dns``: the container's own upstream name servers (``--dns``), which the
        networks' resolver forwards its other questions to instead of the host's."""
        deadline = time.monotonic() + RELEASE_WAIT
        while True:
            try:
                record = self._lease(container_id, name, endpoints, ports, exposed, dns)
                break
            except _Releasing as busy:  # a run that just ended still tears down: wait for it
                if not self._wait_released(busy.container_id, deadline):
                    raise errdefs.Conflict(f"the address or host port is held by container "
                                           f"{busy.container_id[:12]}, whose network teardown did not end in "
                                           f"{RELEASE_WAIT:.0f} s") from None
        try:
            namespace.create(record["SandboxKey"])
            if record["Endpoints"]:
                answer = self._setup(container_id, record, list(record["Endpoints"]))
                record = self._set_up(container_id, answer)
        except BaseException:
            self._undo(container_id, record)
            raise
        return record

    def _lease(self, container_id: str, name: str, endpoints: list[EndpointRequest], ports: Iterable[PortMapping],
               exposed: Iterable[str], dns: Iterable[str]) -> dict[str, Any]:
        ports = list(ports)
        # host-wide choices: host ports, and the default bridge's subnet while its device is down
        host_wide = bool(ports) or not bridges.exists(self.store.default_bridge_device)
        with fsutil.file_lock(self.host_lock) if host_wide else contextlib.nullcontext(), self.store.locked():
            records = self.store.sandboxes()
            if container_id in records:
                raise errdefs.Conflict(f"container {container_id} already has a network sandbox")
            default_id = self.store.get("bridge", locked=True).Id
            if not any(endpoint["NetworkID"] == default_id for record in records.values()
                       for endpoint in record.get("Endpoints", {}).values()):
                self.store.refresh_default_bridge()
            record: dict[str, Any] = {"ContainerID": container_id, "Name": name, "SandboxID": os.urandom(32).hex(),
                                      "SandboxKey": self.sandbox_key(container_id), "Endpoints": {},
                                      "Primary": "", "Ports": [], "Exposed": sorted(set(exposed)),
                                      "Dns": list(dns)}
            for index, request in enumerate(endpoints):
                network = self.store.get(request.network, locked=True)
                if network.Name in record["Endpoints"]:
                    raise errdefs.Conflict(f"container is already connected to network {network.Name}")
                record["Endpoints"][network.Name] = self._endpoint(container_id, name, network, request,
                                                                   f"eth{index}", {**records, container_id: record})
                record["Primary"] = record["Primary"] or network.Name
            record["Ports"] = self._ports(ports, records) if record["Primary"] else []
            self.store.write_sandbox(container_id, record)
            return record

    def _wait_released(self, container_id: str, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.store.sandbox(container_id) is None:
                return True
            time.sleep(0.01)
        return False

    def _set_up(self, container_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        with self.store.locked():
            record = self.store.sandbox(container_id)
            if record is None:
                raise errdefs.NotFound(f"network sandbox of {container_id} was removed meanwhile")
            for name, result in answer.items():
                if name in record["Endpoints"]:
                    record["Endpoints"][name]["SetUp"] = True
                    servers = result.get("dns_server_ips") or []
                    record["Endpoints"][name]["DNSServers"] = [str(server) for server in servers]
            self.store.write_sandbox(container_id, record)
            return record

    def releasing_lock(self, container_id: str) -> str:
        """``<exec-root>/releasing/<container-id>.lock``: held by the process tearing the
        sandbox down, from :meth:`begin_release` until the record is gone."""
        return os.path.join(os.path.dirname(self.netns_dir), "releasing", f"{container_id}.lock")

    def begin_release(self, container_id: str) -> None:
        """Mark the sandbox ``Releasing`` (a run asking for its address or host port, and
        ``network rm``, wait for the record to go instead of failing) and hold its releasing
        lock until :meth:`detach` ends (the sweep leaves a held one alone)."""
        if container_id in self._releasing_locks:
            return
        path = self.releasing_lock(container_id)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        lock = fsutil.FileLock(path)
        lock.acquire()
        self._releasing_locks[container_id] = lock
        with self.store.locked():
            current = self.store.sandbox(container_id)
            if current is not None and not current.get("Releasing"):
                current["Releasing"] = True
                self.store.write_sandbox(container_id, current)

    def _end_release(self, container_id: str) -> None:
        lock = self._releasing_locks.pop(container_id, None)
        if lock is None:
            return
        try:
            os.unlink(self.releasing_lock(container_id))
        except FileNotFoundError:
            pass
        lock.release()

    def _undo(self, container_id: str, record: dict[str, Any]) -> None:
        self.begin_release(container_id)
        record = self.store.sandbox(container_id) or record   # with the plumbing chosen since
        try:
            self._teardown(container_id, record, list(record["Endpoints"]))
        finally:
            try:
                namespace.remove(record["SandboxKey"])
                with self.store.locked():
                    self.store.remove_sandbox(container_id)
            finally:
                self._end_release(container_id)
        self._retire_renamed(record, list(record["Endpoints"]))

    def _retire_renamed(self, record: dict[str, Any], names: list[str]) -> None:
        """A network whose plumbing a lamina of before the netavark names set up (under its
        Docker name, which another engine's network may share) loses it with its last endpoint,
        here one of ``names`` of ``record``, just torn down: the next endpoint makes it anew
        under the network's netavark name.  No lock is taken for the other networks."""
        renamed = [record["Endpoints"][name]["NetworkID"] for name in names
                   if (record["Endpoints"][name].get("NetavarkName") or name) == name]
        if not renamed:
            return
        with self._engine_locked(), fsutil.file_lock(self.host_lock), self.store.locked():
            used = {endpoint["NetworkID"] for other in self.store.sandboxes().values()
                    for endpoint in other.get("Endpoints", {}).values()}
            for network_id in renamed:
                try:
                    network = self.store.by_id(network_id)
                except errdefs.NotFound:
                    continue
                if (network_id not in used and network.Driver == "bridge" and network.netavark_name != network.Name
                        and bridges.plumbing_name(network) == network.Name):
                    self._remove_plumbing(network)

    def _teardown(self, container_id: str, record: dict[str, Any], names: list[str]) -> None:
        """Tear the endpoints ``names`` down, each by the plane its record names (netavark when
        none: a record of before the plumbing was recorded, or an engine without the endpoint plane)."""
        plugged = [name for name in names if record["Endpoints"][name].get("Plumbing") == CNI_BRIDGE]
        if plugged and self.endpoint_plane is not None:
            try:
                with self._engine_locked():
                    self.endpoint_plane.teardown(record["SandboxKey"], self._request(container_id, record, plugged))
            except errdefs.LaminaError as exc:
                log.warning("network teardown of %s: %s", container_id[:12], exc)
            names = [name for name in names if name not in plugged]
        if not names:
            return
        request = self._request(container_id, record, names)
        path = record["SandboxKey"]
        if namespace.exists(path):
            try:
                self._dataplane_teardown(path, request)
            except errdefs.System as exc:
                log.warning("network teardown of %s: %s", container_id[:12], exc)
            return
        # the namespace is gone (its interfaces with it): a scratch one with interfaces of the
        # recorded names lets the teardown remove the rules and the name server entries
        scratch = f"{path}.teardown"
        namespace.remove(scratch)
        namespace.create(scratch)
        try:
            for endpoint in (record["Endpoints"][name] for name in names):
                subprocess.run(["nsenter", f"--net={scratch}", "ip", "link", "add", endpoint["InterfaceName"],
                                "type", "veth", "peer", "name", f"p{endpoint['InterfaceName']}"],
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self._dataplane_teardown(scratch, request)
            except errdefs.System as exc:
                log.warning("network teardown of %s: %s", container_id[:12], exc)
        finally:
            namespace.remove(scratch)

    def connect(self, container_id: str, request: EndpointRequest) -> dict[str, Any]:
        """One more endpoint for an existing sandbox (a running container)."""
        with self.store.locked():
            records = self.store.sandboxes()
            record = records.get(container_id)
            if record is None:
                raise errdefs.NotFound(f"container {container_id} has no network sandbox")
            network = self.store.get(request.network, locked=True)
            if network.Name in record["Endpoints"]:
                raise errdefs.Conflict(f"endpoint with name {record['Name']} already exists in network "
                                       f"{network.Name}")
            used = {endpoint["InterfaceName"] for endpoint in record["Endpoints"].values()}
            interface = next(f"eth{index}" for index in range(len(used) + 1) if f"eth{index}" not in used)
            record["Endpoints"][network.Name] = self._endpoint(container_id, record["Name"], network, request,
                                                               interface, records)
            self.store.write_sandbox(container_id, record)
        try:
            answer = self._setup(container_id, record, [network.Name])
        except BaseException:
            with self.store.locked():
                current = self.store.sandbox(container_id)
                if current is not None:
                    current["Endpoints"].pop(network.Name, None)
                    self.store.write_sandbox(container_id, current)
            raise
        return self._set_up(container_id, answer)

    def disconnect(self, container_id: str, network_term: str) -> dict[str, Any]:
        record = self.store.sandbox(container_id)
        network = self.store.get(network_term)
        if record is None or network.Name not in record["Endpoints"]:
            raise errdefs.NotFound(f"container {container_id[:12]} is not connected to network {network.Name}")
        self._teardown(container_id, record, [network.Name])
        with self.store.locked():
            current = self.store.sandbox(container_id) or record
            current["Endpoints"].pop(network.Name, None)
            if current.get("Primary") == network.Name:
                current["Ports"] = []
            self.store.write_sandbox(container_id, current)
        self._retire_renamed(record, [network.Name])
        return current

    def detach(self, container_id: str) -> None:
        """Tear the sandbox down and release its leases; no sandbox is fine."""
        record = self.store.sandbox(container_id)
        if record is None:
            return
        self._undo(container_id, record)

    def sweep(self, is_live: Callable[[str], bool]) -> list[str]:
        """Detach the sandboxes of containers that are not live; what was removed."""
        removed = []
        for container_id in self.store.sandboxes():
            if is_live(container_id):
                continue
            self.detach(container_id)
            removed.append(f"removed leaked network sandbox of container {container_id}")
        return removed

    def leaks(self) -> list[Leak]:
        """Leaked objects of this engine that no sandbox record describes (:mod:`lamina.network.leaks`)."""
        from lamina.network import leaks

        with self._engine_locked(), fsutil.file_lock(self.host_lock), self.store.locked():
            return leaks.find(self.store, self.netns_dir, os.path.dirname(self.store.root))

    def remove_leaks(self) -> list[str]:
        """Remove what :meth:`leaks` finds; what was removed."""
        from lamina.network import leaks

        with self._engine_locked(), fsutil.file_lock(self.host_lock), self.store.locked():
            return leaks.remove(leaks.find(self.store, self.netns_dir, os.path.dirname(self.store.root)))

    def endpoints(self, network_id: str) -> dict[str, dict[str, Any]]:
        """Docker's ``Containers`` of a network: container id -> Name, EndpointID, MacAddress,
        IPv4Address, IPv6Address (not the sandboxes being torn down)."""
        found = {}
        for container_id, record in self.store.sandboxes().items():
            if record.get("Releasing"):  # its run ended; the teardown finishes
                continue
            for endpoint in record.get("Endpoints", {}).values():
                if endpoint["NetworkID"] == network_id:
                    found[container_id] = {
                        "Name": record.get("Name", ""), "EndpointID": endpoint["EndpointID"],
                        "MacAddress": endpoint["MacAddress"],
                        "IPv4Address": f"{endpoint['IPAddress']}/{endpoint['IPPrefixLen']}",
                        "IPv6Address": (f"{endpoint['GlobalIPv6Address']}/{endpoint['GlobalIPv6PrefixLen']}"
                                        if endpoint.get("GlobalIPv6Address") else "")}
        return found


