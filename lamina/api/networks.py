"""Network endpoints for the networks lamina has: the three predefined ones.

=======  =======  ===========================================================================
name     Driver   what a container on it gets
=======  =======  ===========================================================================
bridge   bridge   lamina's default (``NetworkMode`` ``default`` or ``bridge``): a private network
                  namespace with only the loopback interface; no bridge device, no address,
                  no external connectivity yet (said in the network's ``Options`` and ``Labels``)
host     host     the host's network namespace
none     null     a private network namespace with only the loopback interface
=======  =======  ===========================================================================

``GET /networks`` (``filters``: ``name`` and ``id`` (regular expressions, searched), ``driver``,
``scope``, ``type`` (``builtin``/``custom``), ``label``, ``dangling``) answers Docker's
NetworkResource list (``Containers`` empty, as Docker lists them); ``GET /networks/{id}``
(an exact id, an exact name, or a unique id prefix; else 404 ``network x not found``) fills
``Containers`` with the running containers on that network, keyed by container id
(``Name``, ``EndpointID``, and empty addresses: lamina assigns none).  Ids are the sha256 of
``lamina network <name>``: the same on every lamina engine, stable across restarts.

``POST /networks/create``, ``/networks/{id}/connect``, ``/networks/{id}/disconnect`` and
``DELETE /networks/{id}`` answer 501 (user-defined networks do not exist yet);
``POST /networks/prune`` answers ``{"NetworksDeleted": null}`` (nothing to prune).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lamina import errdefs
from lamina.api import params
from lamina.api.http import Response
from lamina.api.streams import json_response

if TYPE_CHECKING:
    from lamina.api.call import Call

__all__ = [
    "LIST_FILTERS", "NETWORKS", "UNSUPPORTED_MESSAGE", "connect_network", "create_network",
    "disconnect_network", "find_network", "inspect_network", "list_networks", "network_id",
    "prune_networks", "remove_network",
]

UNSUPPORTED_MESSAGE = ("lamina does not support user-defined networks yet: containers can use the "
                       "predefined networks bridge (the default), host and none")
LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
_CREATED = "0001-01-01T00:00:00Z"  # predefined: they were never created
_BRIDGE_NOTE = ("lamina's bridge network is a private network namespace per container with only the "
                "loopback interface: no bridge device, no addresses, no external connectivity yet")

# name -> (driver, options, labels)
NETWORKS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "bridge": ("bridge", {"com.docker.network.bridge.default_bridge": "true", "lamina.network.mode": "private",
                          "lamina.network.note": _BRIDGE_NOTE},
               {"org.lamina.network.connectivity": "loopback-only"}),
    "host": ("host", {}, {}),
    "none": ("null", {}, {"org.lamina.network.connectivity": "loopback-only"}),
}


def _sha256(text: str) -> str:
    import hashlib  # not at import: loading OpenSSL costs every command a few ms

    return hashlib.sha256(text.encode()).hexdigest()


def network_id(name: str) -> str:
    return _sha256(f"lamina network {name}")


def _network_of_mode(mode: str) -> str | None:
    """The predefined network a container's ``NetworkMode`` puts it on."""
    if mode in ("", "default", "bridge"):
        return "bridge"
    if mode in ("host", "none"):
        return mode
    return None  # container:<id> shares another container's namespace


def _resource(name: str) -> dict[str, Any]:
    driver, options, labels = NETWORKS[name]
    return {
        "Name": name,
        "Id": network_id(name),
        "Created": _CREATED,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": dict(options),
        "Labels": dict(labels),
    }


def find_network(term: str) -> str:
    """The name of the network ``term`` designates (id, name, unique id prefix)."""
    by_id = {network_id(name): name for name in NETWORKS}
    if term in by_id:
        return by_id[term]
    if term in NETWORKS:
        return term
    matches = [name for identifier, name in by_id.items() if term and identifier.startswith(term)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise errdefs.InvalidArgument(f"network {term} is ambiguous ({len(matches)} matches found on id)")
    raise errdefs.NotFound(f"network {term} not found")


def _search(patterns: list[str], text: str) -> bool:
    for pattern in patterns:
        if pattern == text:
            return True
        try:
            if re.search(pattern, text):
                return True
        except re.error:
            continue
    return False


def _matches(resource: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if filters.get("name") and not _search(filters["name"], resource["Name"]):
        return False
    if filters.get("id") and not _search(filters["id"], resource["Id"]):
        return False
    if filters.get("driver") and resource["Driver"] not in filters["driver"]:
        return False
    if filters.get("scope") and resource["Scope"] not in filters["scope"]:
        return False
    if filters.get("type") and "builtin" not in filters["type"]:
        return False  # every lamina network is predefined
    for wanted in filters.get("label", []):
        key, equals, value = wanted.partition("=")
        if key not in resource["Labels"] or (equals and resource["Labels"][key] != value):
            return False
    # predefined networks are never dangling
    return not (filters.get("dangling") and filters["dangling"][0].lower() in params.TRUE_VALUES)


def list_networks(call: Call) -> Response:
    filters = params.filters(call.request, LIST_FILTERS)
    for value in filters.get("type", []):
        if value not in ("builtin", "custom"):
            raise errdefs.InvalidArgument(f"invalid filter: 'type'='{value}'")
    resources = [_resource(name) for name in sorted(NETWORKS)]
    return json_response([resource for resource in resources if _matches(resource, filters)])


def inspect_network(call: Call) -> Response:
    name = find_network(call.params["id"])
    resource = _resource(name)
    containers: dict[str, Any] = {}
    for summary in call.services.container_views.list_containers():
        mode = str((summary.get("HostConfig") or {}).get("NetworkMode") or "default")
        if _network_of_mode(mode) != name:
            continue
        container_id = str(summary["Id"])
        names = summary.get("Names") or [""]
        containers[container_id] = {
            "Name": str(names[0]).lstrip("/"),
            "EndpointID": _sha256(f"{container_id} {name}"),
            "MacAddress": "",
            "IPv4Address": "",
            "IPv6Address": "",
        }
    resource["Containers"] = containers
    return json_response(resource)


def create_network(call: Call) -> Response:
    raise errdefs.NotImplemented(UNSUPPORTED_MESSAGE)


def connect_network(call: Call) -> Response:
    find_network(call.params["id"])
    raise errdefs.NotImplemented(f"lamina cannot connect a container to a network: {UNSUPPORTED_MESSAGE}")


def disconnect_network(call: Call) -> Response:
    find_network(call.params["id"])
    raise errdefs.NotImplemented(f"lamina cannot disconnect a container from a network: {UNSUPPORTED_MESSAGE}")


def remove_network(call: Call) -> Response:
    name = find_network(call.params["id"])
    raise errdefs.NotImplemented(f"{name} is a pre-defined network and cannot be removed: {UNSUPPORTED_MESSAGE}")


def prune_networks(call: Call) -> Response:
    params.filters(call.request, frozenset({"until", "label", "label!"}))
    return json_response({"NetworksDeleted": None})
