"""A container's network for one run: from its HostConfig and NetworkingConfig to a sandbox.

``NetworkMode`` ``default``/``bridge`` or a network name (id, unique prefix) puts the container on
that network, plus every other network of ``NetworkingConfig.EndpointsConfig``; ``host``,
``none`` and ``container:<id>`` get no sandbox (the runtime shares or creates the namespace).
Per endpoint: ``Aliases`` (``--network-alias``), ``IPAMConfig.IPv4Address`` (``--ip``),
``MacAddress`` (``--mac-address``); aliases and a static address need a user-defined network,
as in Docker.  Ports: ``HostConfig.PortBindings`` (``{"80/tcp": [{"HostIp", "HostPort"}]}``,
container and host ranges ``8000-8001``, an empty host port for a random one) and
``PublishAllPorts`` (every ``ExposedPorts`` entry without a binding gets a random host port).
:func:`check` validates all of it when a container is created, so a bad request creates
nothing; :class:`RunNetwork` attaches and detaches when the run starts and ends.

The container's files: ``/etc/resolv.conf`` names the network's resolver (aardvark-dns on the
gateway) on user-defined networks, which forwards what it does not answer to the container's
``--dns`` servers when given (as Docker's embedded resolver does), else to the host's; ``/etc/hosts`` gets the
container's own addresses; ``--add-host NAME:host-gateway`` resolves to the gateway of the
container's first network.

Rootless (``rootless=True``): ``default``/``bridge`` is a private namespace per container that
pasta connects (:mod:`lamina.network.pasta`), with its records under the exec root; there are no
user-defined networks, bridges or rules to look after.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from lamina import errdefs, fsutil
from lamina.events.api import DISCARD, NETWORK, EventSink

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import re
    from typing import Any

    from lamina.network.api import PortMapping
    from lamina.network.pasta import PastaSandboxes
    from lamina.network.sandbox import EndpointRequest, Sandboxes
    from lamina.network.store import NetworkStore

__all__ = ["RunNetwork", "open_sandboxes", "open_store", "check", "endpoint_requests", "port_mappings", "host_entries", "name_servers",
           "HOST_GATEWAY"]

HOST_GATEWAY = "host-gateway"
# the vocabulary (lamina.network.api) is imported by what sets a run's network up: the sweep,
# the sandbox record of inspect and the records of a stopped container's run need none of it


@functools.cache
def _port_pattern() -> re.Pattern[str]:
    import re

    return re.compile(r"^(\d+)(?:-(\d+))?$")


def _mode(host: Mapping[str, Any]) -> str:
    return str(host.get("NetworkMode") or "default")


def endpoint_requests(config: Mapping[str, Any], host: Mapping[str, Any],
                      networking: Mapping[str, Any]) -> list[EndpointRequest] | None:
    """The endpoints a run needs; None: no sandbox (host, none, container:<id>)."""
    mode = _mode(host)
    if mode in ("host", "none") or mode.startswith("container:"):
        return None
    from lamina.network.api import DEFAULT_BRIDGE
    from lamina.network.sandbox import EndpointRequest  # not at import: a run on none/host needs none

    primary = DEFAULT_BRIDGE if mode in ("default", "bridge") else mode
    endpoints = dict(networking.get("EndpointsConfig") or {})
    names = [primary] + [name for name in endpoints if name != primary
                         and not (primary == DEFAULT_BRIDGE and name in ("default", "bridge"))]
    requests = []
    for index, name in enumerate(names):
        endpoint = endpoints.get(name) or (endpoints.get("default") if name == DEFAULT_BRIDGE else None) or {}
        if not isinstance(endpoint, Mapping):
            raise errdefs.InvalidArgument(f"invalid EndpointsConfig for network {name}: expected an object")
        ipam = endpoint.get("IPAMConfig") or {}
        if endpoint.get("DriverOpts"):
            raise errdefs.InvalidArgument("lamina does not support DriverOpts in EndpointsConfig")
        if endpoint.get("Links") and name == DEFAULT_BRIDGE:  # a user network's: /etc/hosts at start
            raise errdefs.InvalidArgument("links are only supported for user-defined networks")
        aliases = tuple(str(alias) for alias in endpoint.get("Aliases") or ())
        mac = str(endpoint.get("MacAddress") or (config.get("MacAddress") if index == 0 else "") or "")
        if name == DEFAULT_BRIDGE and aliases:
            raise errdefs.InvalidArgument("network-scoped alias is supported only for containers in user "
                                          "defined networks")
        if name == DEFAULT_BRIDGE and (ipam.get("IPv4Address") or ipam.get("IPv6Address")):
            raise errdefs.InvalidArgument("user specified IP address is supported on user defined networks only")
        requests.append(EndpointRequest(name, aliases=aliases, ipv4_address=str(ipam.get("IPv4Address") or ""),
                                        ipv6_address=str(ipam.get("IPv6Address") or ""), mac_address=mac))
    return requests


def _port_range(text: str, what: str) -> tuple[int, int]:
    match = _port_pattern().match(text)
    if not match:
        raise errdefs.InvalidArgument(f"invalid {what}: {text!r}")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 1 <= first <= last <= 65535:
        raise errdefs.InvalidArgument(f"invalid {what}: {text!r} (ports are 1-65535, ranges low-high)")
    return first, last


def port_mappings(config: Mapping[str, Any], host: Mapping[str, Any]) -> tuple[list[PortMapping], list[str]]:
    """(the published ports, every exposed ``port/proto``)."""
    from lamina.network.api import PortMapping

    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, Mapping):
        raise errdefs.InvalidArgument("PortBindings must be an object")
    exposed = set(config.get("ExposedPorts") or {})
    mappings = []
    for key, entries in bindings.items():
        port_text, _, protocol = str(key).partition("/")
        protocol = protocol or "tcp"
        if protocol not in ("tcp", "udp"):
            raise errdefs.InvalidArgument(f"lamina does not support the {protocol} protocol for published ports")
        first, last = _port_range(port_text, "container port")
        exposed.update(f"{port}/{protocol}" for port in range(first, last + 1))
        for entry in entries or [{}]:
            host_ip = str((entry or {}).get("HostIp") or "")
            host_port = str((entry or {}).get("HostPort") or "")
            if host_ip and host_ip not in ("0.0.0.0", "::"):
                import ipaddress

                try:
                    ipaddress.IPv4Address(host_ip)
                except ValueError as exc:
                    raise errdefs.InvalidArgument(f"invalid host IP for a published port: {host_ip!r}") from exc
            if host_ip in ("0.0.0.0", "::"):
                host_ip = ""
            if not host_port:
                for port in range(first, last + 1):
                    mappings.append(PortMapping(ContainerPort=port, Protocol=protocol, HostIp=host_ip))
                continue
            host_first, host_last = _port_range(host_port, "host port")
            if host_last - host_first != last - first:
                if first == last:  # a host range for one port: Docker takes the first free one
                    host_last = host_first
                else:
                    raise errdefs.InvalidArgument(f"invalid ranges specified for container and host ports: "
                                                  f"{port_text} and {host_port}")
            mappings.append(PortMapping(ContainerPort=first, Protocol=protocol, HostIp=host_ip,
                                        HostPort=host_first, Range=last - first + 1))
    if host.get("PublishAllPorts"):
        published = {f"{m.ContainerPort + offset}/{m.Protocol}" for m in mappings for offset in range(m.Range)}
        for key in sorted(exposed - published):
            port_text, _, protocol = key.partition("/")
            first, last = _port_range(port_text, "exposed port")
            for port in range(first, last + 1):
                mappings.append(PortMapping(ContainerPort=port, Protocol=protocol or "tcp"))
    return mappings, sorted(exposed)


def check(config: Mapping[str, Any], host: Mapping[str, Any], networking: Mapping[str, Any],
          find_network: Any = None) -> None:
    """Refuse at create what the run would refuse: bad endpoints, ports, unknown networks."""
    requests = endpoint_requests(config, host, networking)
    ports, _ = port_mappings(config, host)
    for server in host.get("Dns") or ():
        import ipaddress  # only with --dns: not on every create's path

        try:
            ipaddress.ip_address(str(server))
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid DNS server {server!r}: an IP address is expected") from exc
    if requests is None:
        if ports:
            raise errdefs.InvalidArgument(f"published ports need a network namespace of the container's own: "
                                          f"lamina does not publish ports with network mode {_mode(host)}")
        return
    if find_network is not None:
        for request in requests:
            network = find_network(request.network)
            if network.Driver not in ("bridge", "macvlan"):
                raise errdefs.InvalidArgument(f"container cannot be connected to {network.Name} with other networks")
            if request.ipv4_address and not network.IPAMConfigured:
                raise errdefs.InvalidArgument("user specified IP address is supported only when connecting to "
                                              "networks with user configured subnets")
            if request.ipv6_address and not network.IPv6Subnet:
                raise errdefs.InvalidArgument(f"network {network.Name} has no IPv6 subnet for the address "
                                              f"{request.ipv6_address} (create it with --ipv6)")


def name_servers(record: Mapping[str, Any] | None) -> list[str]:
    """The resolver of the container's networks with DNS (aardvark-dns), first network first."""
    servers: list[str] = []
    for endpoint in (record or {}).get("Endpoints", {}).values():
        for server in endpoint.get("DNSServers") or []:
            if server not in servers:
                servers.append(server)
    return servers


def host_entries(record: Mapping[str, Any] | None, hostname: str, extra_hosts: list[str] | None) -> tuple[str, list[str]]:
    """(``/etc/hosts`` lines of the container's own addresses, ``--add-host`` entries with
    ``host-gateway`` replaced by the first network's gateway)."""
    endpoints = list((record or {}).get("Endpoints", {}).values())
    lines = "".join(f"{address}\t{hostname}\n" for endpoint in endpoints
                    for address in (endpoint["IPAddress"], endpoint.get("GlobalIPv6Address")) if address)
    gateway = endpoints[0]["Gateway"] if endpoints else ""
    resolved = []
    for entry in extra_hosts or []:
        name, _, address = entry.partition(":")
        if address == HOST_GATEWAY:
            if not gateway:
                raise errdefs.InvalidArgument(f"--add-host {entry}: the container has no network gateway")
            address = gateway
        resolved.append(f"{name}:{address}")
    return lines, resolved


def open_sandboxes(data_root: str, exec_root: str) -> Sandboxes:
    """The sandboxes of one engine: the store under ``<data-root>/network``, netavark's state
    under ``<exec-root>/network``, the namespaces under ``<exec-root>/netns``; endpoints on
    networks netavark set up are plugged by the CNI bridge plugin (:mod:`lamina.network.cni`)."""
    from lamina.network.cni import CniBridge
    from lamina.network.netavark import Netavark
    from lamina.network.sandbox import Sandboxes

    config_dir = os.path.join(exec_root, "network")
    return Sandboxes(open_store(data_root), Netavark(config_dir=config_dir), netns_dir=os.path.join(exec_root, "netns"),
                     endpoint_plane=CniBridge(config_dir=config_dir))


def open_store(data_root: str) -> NetworkStore:
    """The network store of one engine (``<data-root>/network``)."""
    from lamina.network.store import NetworkStore, default_bridge_device

    return NetworkStore(os.path.join(data_root, "network"), default_bridge_device=default_bridge_device(data_root))


class RunNetwork:
    """Sets up and tears down the sandboxes of runs, on ``<data-root>/network`` (rootless: the
    pasta networks under ``<exec-root>/pasta``)."""

    def __init__(self, data_root: str, exec_root: str, *, events: EventSink = DISCARD, rootless: bool = False) -> None:
        self.data_root = data_root
        self.exec_root = exec_root
        self.rootless = rootless  # the bridge network is pasta's (lamina.network.pasta)
        self._pasta: PastaSandboxes | None = None
        # Docker's network events of a run: connect per endpoint at its start, disconnect at its end
        self.events = events
        self._sandboxes: Sandboxes | None = None
        self._store: NetworkStore | None = None   # for reading records while no sandbox is set up here
        self._disconnected: set[str] = set()   # "disconnect" emitted by begin_release, before detach

    def _emit(self, action: str, container_id: str, record: Mapping[str, Any] | None) -> None:
        for name, endpoint in ((record or {}).get("Endpoints") or {}).items():
            self.events.emit(NETWORK, action, endpoint["NetworkID"],
                             {"name": name, "type": endpoint.get("Driver", "bridge"), "container": container_id})

    @property
    def pasta(self) -> PastaSandboxes:
        if self._pasta is None:
            from lamina.network.pasta import PastaSandboxes

            self._pasta = PastaSandboxes(self.exec_root)
        return self._pasta

    @property
    def sandboxes(self) -> Sandboxes:
        if self._sandboxes is None:
            self._sandboxes = open_sandboxes(self.data_root, self.exec_root)
        return self._sandboxes

    def attach(self, container_id: str, name: str, config: Mapping[str, Any], host: Mapping[str, Any],
               networking: Mapping[str, Any]) -> dict[str, Any] | None:
        """The sandbox record of the run (None: host, none, container:<id>)."""
        requests = endpoint_requests(config, host, networking)
        if requests is None:
            return None
        ports, exposed = port_mappings(config, host)
        # a record left by a run that died without its monitor's clean-up: gone before anew
        self.detach(container_id)
        dns = [str(server) for server in host.get("Dns") or ()]
        if self.rootless:
            record = self.pasta.attach(container_id, ports=ports, exposed=exposed, dns=dns, is_live=self.is_live)
            self._emit("connect", container_id, record)
            return record
        sandboxes = self.sandboxes
        record = sandboxes.attach(container_id, name=name, endpoints=requests, ports=ports, exposed=exposed, dns=dns)
        self._emit("connect", container_id, record)
        return self._record_links(container_id, networking) or record

    def _record_links(self, container_id: str, networking: Mapping[str, Any]) -> dict[str, Any] | None:
        """Keep the ``Links`` of the run's user-defined networks in its sandbox record (per
        endpoint), where a target starting later finds the containers linking to it
        (:meth:`linkers`); the updated record, None when there is none to keep."""
        from lamina.network.api import DEFAULT_BRIDGE

        wanted = {name: [str(spec) for spec in endpoint["Links"]]
                  for name, endpoint in (networking.get("EndpointsConfig") or {}).items()
                  if isinstance(endpoint, Mapping) and endpoint.get("Links") and name != DEFAULT_BRIDGE}
        if not wanted:
            return None
        store = self.sandboxes.store
        with store.locked():
            current = store.sandbox(container_id)
            if current is None:
                return None
            for name, specs in wanted.items():
                if name in current["Endpoints"]:
                    current["Endpoints"][name]["Links"] = specs
            store.write_sandbox(container_id, current)
            return current

    def linkers(self, sandbox: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
        """(container id, network name, its ``Links`` there) of the running containers with
        links on a user-defined network of the run whose sandbox record is ``sandbox``.  Reads
        every sandbox record, only for a run on a user-defined network."""
        from lamina.network.api import DEFAULT_BRIDGE

        networks = {endpoint["NetworkID"] for name, endpoint in (sandbox.get("Endpoints") or {}).items()
                    if name != DEFAULT_BRIDGE}
        if not networks:
            return []
        found = []
        for other_id, record in self.sandboxes.store.sandboxes().items():
            if other_id == sandbox.get("ContainerID") or record.get("Releasing"):
                continue
            for name, endpoint in (record.get("Endpoints") or {}).items():
                if endpoint.get("Links") and endpoint["NetworkID"] in networks:
                    found.append((other_id, name, list(endpoint["Links"])))
        return found

    def detach(self, container_id: str) -> None:
        if self.rootless:
            record = self.pasta.sandbox(container_id)
            self.pasta.detach(container_id)
            if record is not None and container_id not in self._disconnected:
                self._emit("disconnect", container_id, record)
        elif self.has_sandboxes():
            record = self.sandboxes.store.sandbox(container_id)
            self.sandboxes.detach(container_id)
            if container_id not in self._disconnected:
                self._emit("disconnect", container_id, record)
        self._disconnected.discard(container_id)

    def sandbox(self, container_id: str) -> dict[str, Any] | None:
        """The sandbox record of a container's run (None: it has none); read through the store
        alone (``inspect`` opens no network stack)."""
        if self.rootless:
            return self.pasta.sandbox(container_id)
        if not os.path.isdir(self._records_dir):
            return None  # no record ever: the store is not opened (it would make its directories)
        if self._sandboxes is not None:
            return self._sandboxes.store.sandbox(container_id)
        if self._store is None:
            self._store = open_store(self.data_root)
        return self._store.sandbox(container_id)

    def has_sandboxes(self) -> bool:
        """Any sandbox record exists (a cheap look before the store is opened)."""
        if self.rootless:
            return bool(self.pasta.container_ids())
        return bool(self.recorded_ids())

    @property
    def _records_dir(self) -> str:
        return os.path.join(self.data_root, "network", "sandboxes")

    def recorded_ids(self) -> list[str]:
        """The containers whose sandbox record file is there (``<data-root>/network/sandboxes/
        <id>.json``, :mod:`lamina.network.store`), from the directory alone: neither the store
        nor the network stack is opened (their modules cost a command ~10 ms to import)."""
        try:
            names = os.listdir(self._records_dir)
        except FileNotFoundError:
            return []
        return [name[:-5] for name in names if name.endswith(".json") and not name.startswith(".")]

    def sweep(self) -> list[str]:
        """Tear down the sandboxes of containers whose monitor is gone (a crash, a kill -9).
        Every command's engine runs it: the records of live containers are not read, and the
        store is opened only when a record's container is not live."""
        if self.rootless:
            return self.pasta.sweep(self.is_live)
        if not any(not self.is_live(container_id) for container_id in self.recorded_ids()):
            return []
        removed = []
        for container_id in list(self.sandboxes.store.sandboxes()):
            if not self.is_live(container_id):
                self.detach(container_id)
                removed.append(f"removed leaked network sandbox of container {container_id}")
        return removed

    def check(self, *, repair: bool = False) -> tuple[list[dict[str, str]], list[str]]:
        """(problems, what was repaired): the sandboxes of containers that are not running (their
        interfaces, rules and leases) and the leaked objects no sandbox record describes
        (:mod:`lamina.network.leaks`); ``repair`` tears the first down and removes the others.
        Rootless: the pasta networks of containers that are not running."""
        if self.rootless:
            problems = self.pasta.problems(self.is_live)
            return problems, (self.pasta.sweep(self.is_live) if repair and problems else [])
        if not os.path.isdir(os.path.join(self.data_root, "network")):
            return [], []
        store = self.sandboxes.store
        problems = []
        for container_id, record in store.sandboxes().items():
            if self.is_live(container_id):
                continue
            leases = ", ".join(f"{endpoint['IPAddress']} on {name}" for name, endpoint in
                               record.get("Endpoints", {}).items())
            ports = ", ".join(f"{port['HostPort']}/{port['Protocol']}" for port in record.get("Ports", []))
            problems.append({"Kind": "network", "Object": container_id,
                             "Message": "network sandbox (interfaces, rules, leases) of a container that is not "
                                        f"running: leases {leases or 'none'}; host ports {ports or 'none'}"})
        problems.extend(leak.problem() for leak in self.sandboxes.leaks())
        if not repair or not problems:
            return problems, []
        repaired = self.sweep()
        repaired.extend(self.sandboxes.remove_leaks())
        return problems, repaired

    def remove_bridges(self) -> None:
        """Take down the bridges of this data root's networks that have no endpoint (an engine
        going away for good: tests' data roots)."""
        if not self.rootless and os.path.isdir(os.path.join(self.data_root, "network", "networks")):
            self.sandboxes.remove_bridges()

    def is_live(self, container_id: str) -> bool:
        """The container's monitor runs (it holds ``monitor.lock`` for its whole life), or a
        process tears the sandbox down (it holds the releasing lock: an ``--rm`` run's monitor
        after the container's directory is gone)."""
        return (fsutil.lock_is_held(os.path.join(self.exec_root, "containers", container_id, "monitor.lock"))
                or fsutil.lock_is_held(os.path.join(self.exec_root, "releasing", f"{container_id}.lock")))

    def begin_release(self, container_id: str) -> None:
        """Mark the run's sandbox as being torn down before its waiters are woken; the
        :meth:`detach` that follows (in this process) finishes it."""
        if self.rootless:
            record = self.pasta.sandbox(container_id)
            self.pasta.begin_release(container_id)
            if record is not None:
                self._emit("disconnect", container_id, record)
                self._disconnected.add(container_id)
        elif self.has_sandboxes():
            record = self.sandboxes.store.sandbox(container_id)
            self.sandboxes.begin_release(container_id)
            # Docker's order: die, network disconnect, destroy (the teardown ends after destroy)
            self._emit("disconnect", container_id, record)
            self._disconnected.add(container_id)
