"""The network service: Docker's ``/networks`` shapes over :mod:`lamina.network`.

``create`` (Docker's NetworkCreateRequest: Name, Driver, Internal, Attachable, Ingress,
EnableIPv6, IPAM {Driver, Config [{Subnet, IPRange, Gateway, AuxiliaryAddresses}], Options},
Options, Labels, CheckDuplicate, ConfigOnly, ConfigFrom, Scope) answers ``{"Id", "Warning"}``;
what lamina does not do (``Ingress``, ``ConfigOnly``, ``ConfigFrom``, IPAM drivers other than
``default``, more than one IPv4 and one IPv6 subnet) is refused.  ``list`` takes every filter dockerd takes
(``dangling``, ``driver``, ``id``, ``label``, ``name``, ``scope``, ``type``); ``inspect`` fills
``Containers`` from the sandbox records; ``remove`` refuses a network with endpoints (409) and
the predefined ones (403); ``prune`` (``until``, ``label``, ``label!``) removes unused
user-defined networks.  Events (type ``network``, actor the network id, attributes ``name`` and
``type``): ``create``, ``destroy``, and ``connect`` / ``disconnect`` (attribute ``container``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container.state import seconds_of
from lamina.events.api import DISCARD, NETWORK, EventSink
from lamina.network.api import PREDEFINED, Network
from lamina.network.create import create_network
from lamina.network.sandbox import EndpointRequest, Sandboxes
from lamina.services.filters import all_labels_match, until_seconds

__all__ = ["NetworkServiceImpl", "LIST_FILTERS", "PRUNE_FILTERS"]

LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})
_TRUE = frozenset({"1", "t", "true"})
_FALSE = frozenset({"0", "f", "false"})


def _check_filters(filters: dict[str, list[str]] | None, accepted: frozenset[str]) -> dict[str, list[str]]:
    filters = dict(filters or {})
    for key in filters:
        if key not in accepted:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
    return filters


def _search(patterns: list[str], text: str) -> bool:
    for pattern in patterns:
        try:
            if re.search(pattern, text):
                return True
        except re.error:
            if pattern in text:
                return True
    return False


class NetworkServiceImpl:
    def __init__(self, sandboxes: Sandboxes, *, events: EventSink = DISCARD,
                 container_name: Callable[[str], tuple[str, str]] | None = None,
                 container_endpoints: Callable[[str, Callable[[str, dict[str, Any]], None]], None] | None = None
                 ) -> None:
        self.sandboxes = sandboxes
        self.store = sandboxes.store
        self.events = events
        # container name or id -> (id, name); connect/disconnect need it
        self._container_name = container_name
        # (container id, change(NetworkMode, NetworkSettings.Networks)): edits the endpoints a
        # container's next run gets, under the container's lock
        self._container_endpoints = container_endpoints
        self._prune_running = threading.Lock()

    # -- Docker's /networks ----------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise errdefs.InvalidArgument("network name is required")
        for field in ("Ingress", "ConfigOnly"):
            if body.get(field):
                raise errdefs.InvalidArgument(f"lamina does not support {field} networks")
        if (body.get("ConfigFrom") or {}).get("Network"):
            raise errdefs.InvalidArgument("lamina does not support ConfigFrom networks")
        if body.get("Scope") not in (None, "", "local"):
            raise errdefs.InvalidArgument(f"lamina does not support scope {body['Scope']!r}: only local")
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise errdefs.InvalidArgument("invalid IPAM: expected an object")
        if ipam.get("Driver") not in (None, "", "default"):
            raise errdefs.NotFound(f"IPAM driver {ipam['Driver']!r} not found: lamina has only default")
        configs = [config for config in (ipam.get("Config") or []) if config]
        if not all(isinstance(config, dict) for config in configs):
            raise errdefs.InvalidArgument("invalid IPAM config: expected an object")
        ipv6 = [config for config in configs if ":" in str(config.get("Subnet") or config.get("Gateway") or "")]
        ipv4 = [config for config in configs if config not in ipv6]
        if len(ipv4) > 1 or len(ipv6) > 1:
            raise errdefs.InvalidArgument("lamina supports one IPv4 and one IPv6 IPAM config (subnet) per network")
        config = ipv4[0] if ipv4 else {}
        config6 = ipv6[0] if ipv6 else {}
        for unsupported in ("IPRange", "AuxiliaryAddresses"):
            if config6.get(unsupported):
                raise errdefs.InvalidArgument(f"lamina does not support {unsupported} in an IPv6 IPAM config")
        for key, value in (("Options", body.get("Options")), ("Labels", body.get("Labels")),
                           ("IPAM.Options", ipam.get("Options")),
                           ("AuxiliaryAddresses", config.get("AuxiliaryAddresses"))):
            if value is not None and (not isinstance(value, dict) or not all(
                    isinstance(item, str) for item in value.values())):
                raise errdefs.InvalidArgument(f"invalid {key}: expected an object of strings")
        network = create_network(
            self.store, name, driver=str(body.get("Driver") or "bridge"), subnet=str(config.get("Subnet") or ""),
            gateway=str(config.get("Gateway") or ""), ip_range=str(config.get("IPRange") or ""),
            auxiliary_addresses=config.get("AuxiliaryAddresses"), internal=bool(body.get("Internal")),
            attachable=bool(body.get("Attachable")), enable_ipv6=bool(body.get("EnableIPv6")),
            options=body.get("Options"), labels=body.get("Labels"), ipam_options=ipam.get("Options"),
            ipv6_subnet=str(config6.get("Subnet") or ""), ipv6_gateway=str(config6.get("Gateway") or ""))
        self.events.emit(NETWORK, "create", network.Id, {"name": network.Name, "type": network.Driver})
        return {"Id": network.Id, "Warning": ""}

    def _matches(self, network: Network, filters: dict[str, list[str]], used: set[str]) -> bool:
        if filters.get("name") and not _search(filters["name"], network.Name):
            return False
        if filters.get("id") and not _search(filters["id"], network.Id):
            return False
        if filters.get("driver") and network.Driver not in filters["driver"]:
            return False
        if filters.get("scope") and "local" not in filters["scope"]:
            return False
        if filters.get("type"):
            kind = "builtin" if network.Name in PREDEFINED else "custom"
            if kind not in filters["type"]:
                return False
        if filters.get("label") and not all_labels_match(network.Labels, filters["label"]):
            return False
        if filters.get("dangling"):
            dangling = network.Name not in PREDEFINED and network.Id not in used
            return dangling == (filters["dangling"][0].lower() in _TRUE)
        return True

    def _used(self) -> set[str]:
        """Networks with endpoints (not counting sandboxes being torn down: ``remove`` waits
        for those)."""
        return {endpoint["NetworkID"] for record in self.store.sandboxes().values() if not record.get("Releasing")
                for endpoint in record.get("Endpoints", {}).values()}

    def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = _check_filters(filters, LIST_FILTERS)
        for value in filters.get("type", []):
            if value not in ("builtin", "custom"):
                raise errdefs.InvalidArgument(f"invalid filter: 'type'='{value}'")
        for value in filters.get("dangling", []):
            if value.lower() not in _TRUE | _FALSE:
                raise errdefs.InvalidArgument(f"invalid filter 'dangling={value}'")
        used = self._used() if filters.get("dangling") else set()
        return [network.resource() for network in sorted(self.store.networks(), key=lambda item: item.Name)
                if self._matches(network, filters, used)]

    def inspect(self, term: str, *, verbose: bool = False, scope: str = "") -> dict[str, Any]:
        if scope not in ("", "local"):
            raise errdefs.NotFound(f"network {term} not found")
        network = self.store.get(term)
        return network.resource(self.sandboxes.endpoints(network.Id))

    def remove(self, term: str) -> None:
        network = self.store.get(term)
        if network.Name in PREDEFINED:
            raise errdefs.Forbidden(f"{network.Name} is a pre-defined network and cannot be removed")
        self.sandboxes.remove_network(network)
        self.events.emit(NETWORK, "destroy", network.Id, {"name": network.Name, "type": network.Driver})

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        filters = _check_filters(filters, PRUNE_FILTERS)
        until = until_seconds(filters["until"][0]) if filters.get("until") else None
        deleted: list[str] = []
        with self._prune_running:
            used = self._used()
            for network in self.store.networks():
                if network.Name in PREDEFINED or network.Id in used:
                    continue
                if until is not None and seconds_of(network.Created) >= until:
                    continue
                if filters.get("label") and not all_labels_match(network.Labels, filters["label"]):
                    continue
                if filters.get("label!") and any(all_labels_match(network.Labels, [item]) for item in filters["label!"]):
                    continue
                try:
                    self.remove(network.Id)
                except (errdefs.Conflict, errdefs.NotFound):
                    continue
                deleted.append(network.Name)
        return {"NetworksDeleted": deleted or None}

    # -- endpoints of running containers ----------------------------------------------------------

    def connect(self, term: str, container: str, endpoint_config: dict[str, Any] | None = None) -> None:
        """Docker's connect: the endpoint is recorded in the container (its next runs get it)
        and, when it runs, set up in its sandbox now."""
        container_id, _ = self._resolve(container)
        network = self.store.get(term)
        config = dict(endpoint_config or {})
        ipam = config.get("IPAMConfig") or {}
        if config.get("DriverOpts"):
            raise errdefs.InvalidArgument("lamina does not support DriverOpts in network connect")
        connect_links: list[str] = []
        if config.get("Links"):
            from lamina.container import links

            if network.Name == "bridge":
                raise errdefs.InvalidArgument(links.USER_NETWORK_ONLY)
            if not isinstance(config["Links"], list):
                raise errdefs.InvalidArgument("EndpointConfig.Links must be a list of strings")
            for spec in config["Links"]:
                links.parse(spec)
            if self.store.sandbox(container_id) is not None:
                raise errdefs.Conflict("lamina writes the /etc/hosts entries of a link when the container starts: "
                                       "connect a running container without --link, or connect it while stopped")
            connect_links = [str(spec) for spec in config["Links"]]
        if network.Driver not in ("bridge", "macvlan"):
            raise errdefs.Forbidden(f"container cannot be disconnected from host network or connected to "
                                    f"{network.Name} network")
        if network.Name == "bridge" and (config.get("Aliases") or ipam.get("IPv4Address")
                                         or ipam.get("IPv6Address")):
            raise errdefs.InvalidArgument("network-scoped aliases and addresses are supported only for "
                                          "containers in user defined networks")
        endpoint = {"IPAMConfig": ipam or None, "Links": connect_links or None,
                    "Aliases": config.get("Aliases") or None,
                    "MacAddress": str(config.get("MacAddress") or ""), "NetworkID": network.Id}

        def add(mode: str, networks: dict[str, Any]) -> None:
            if mode in ("host", "none") or mode.startswith("container:"):
                raise errdefs.Forbidden(f"container sharing network namespace with another container or host "
                                        f"cannot be connected to any other network (network mode {mode})")
            if network.Name in networks:
                raise errdefs.Forbidden(f"endpoint with name {container.lstrip('/')} already exists in network "
                                        f"{network.Name}")
            networks[network.Name] = {**(networks.get(network.Name) or {}), **endpoint}

        self._endpoints(container_id, add)
        if self.store.sandbox(container_id) is not None:
            try:
                self.sandboxes.connect(container_id, EndpointRequest(
                    network.Name, aliases=tuple(config.get("Aliases") or ()),
                    ipv4_address=str(ipam.get("IPv4Address") or ""), ipv6_address=str(ipam.get("IPv6Address") or ""),
                    mac_address=str(config.get("MacAddress") or "")))
            except BaseException:
                self._endpoints(container_id, lambda mode, networks: networks.pop(network.Name, None))
                raise
        self.events.emit(NETWORK, "connect", network.Id,
                         {"name": network.Name, "type": network.Driver, "container": container_id})

    def disconnect(self, term: str, container: str, *, force: bool = False) -> None:
        container_id, _ = self._resolve(container)
        network = self.store.get(term)
        record = self.store.sandbox(container_id)
        running = record is not None and network.Name in record.get("Endpoints", {})
        found: list[bool] = []

        def remove(mode: str, networks: dict[str, Any]) -> None:
            found.append(networks.pop(network.Name, None) is not None)

        self._endpoints(container_id, remove)
        if not found[0] and not running:
            raise errdefs.NotFound(f"container {container_id[:12]} is not connected to network {network.Name}")
        if running:
            self.sandboxes.disconnect(container_id, network.Id)
        self.events.emit(NETWORK, "disconnect", network.Id,
                         {"name": network.Name, "type": network.Driver, "container": container_id})

    def _endpoints(self, container_id: str, change: Callable[[str, dict[str, Any]], None]) -> None:
        if self._container_endpoints is None:
            raise errdefs.NotImplemented("this engine cannot change the networks of containers")
        self._container_endpoints(container_id, change)

    def _resolve(self, container: str) -> tuple[str, str]:
        if self._container_name is None:
            raise errdefs.NotImplemented("this engine cannot resolve container names for networks")
        return self._container_name(container)
