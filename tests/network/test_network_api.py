"""``/networks`` through the router on a real network service (no container: records only,
nothing reaches netavark), and the network events."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

import lamina
from lamina.api.http import Request, Response
from lamina.api.router import Router
from lamina.config import EngineConfig
from lamina.events.log import EventLog
from lamina.network.ipam import DEFAULT_POOLS
from lamina.network.store import predefined_id
from lamina.services.compose import build_networks
from lamina.services.events import EventServiceImpl


class Services:
    def __init__(self, config: EngineConfig, log: EventLog) -> None:
        self.events = EventServiceImpl(log)
        self.networks = build_networks(config, events=log)


@pytest.fixture
def services(tmp_path) -> Services:
    config = EngineConfig(data_root=str(tmp_path / "root"), exec_root=str(tmp_path / "run"))
    return Services(config, EventLog(str(tmp_path / "root" / "events")))


@pytest.fixture
def router(services) -> Router:
    return Router(lambda: services)


def send(router: Router, method: str, target: str, body: Any = None) -> Response:
    data = None if body is None else io.BytesIO(json.dumps(body).encode())
    return router.handle(Request.from_target(method, target, body=data))


def answer(response: Response) -> Any:
    return json.loads(response.read_body() or b"null")


def create(router: Router, name: str, **fields: Any) -> Response:
    return send(router, "POST", "/v1.45/networks/create", {"Name": name, **fields})


def test_the_predefined_networks_are_listed_with_the_default_bridge_on_its_own_device(router, services) -> None:
    networks = answer(send(router, "GET", "/v1.45/networks"))
    assert [(n["Name"], n["Driver"], n["Scope"]) for n in networks] == [
        ("bridge", "bridge", "local"), ("host", "host", "local"), ("none", "null", "local")]
    bridge = networks[0]
    assert bridge["Id"] == predefined_id("bridge")
    # lamina0 for /var/lib/lamina; a device of its own for any other data root
    device = bridge["Options"]["com.docker.network.bridge.name"]
    assert device.startswith("lamina") and len(device) == 14
    # which pool is free depends on the host's routes (other bridges): the choice itself is
    # checked below in network namespaces whose routes the test sets
    assert len(bridge["IPAM"]["Config"]) == 1
    assert ipaddress.IPv4Network(bridge["IPAM"]["Config"][0]["Subnet"]) in DEFAULT_POOLS


# prints the default bridge's subnet as a network service on a fresh data root sees it
BRIDGE_SUBNET = """
import sys
from lamina.config import EngineConfig
from lamina.services.compose import build_networks
config = EngineConfig(data_root=sys.argv[1], exec_root=sys.argv[2])
bridge = next(n for n in build_networks(config).list() if n["Name"] == "bridge")
print(bridge["IPAM"]["Config"][0]["Subnet"])
"""


def default_bridge_subnet_with_routes(tmp_path, routes: list[str]) -> str:
    """The default bridge's subnet picked in a new network namespace (gone when its only
    process exits) whose only routes are ``routes``, on its loopback device."""
    setup = "".join(f"ip route add {route} dev lo && " for route in routes)
    script = f'ip link set lo up && {setup}exec "$0" -c "$1" "$2" "$3"'
    source = os.path.dirname(os.path.dirname(lamina.__file__))   # the lamina this test imports
    result = subprocess.run(["unshare", "--net", "sh", "-c", script, sys.executable, BRIDGE_SUBNET,
                             str(tmp_path / f"root{len(routes)}"), str(tmp_path / f"run{len(routes)}")],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": source})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.privileged
def test_the_default_bridge_takes_the_first_pool_no_route_overlaps(tmp_path) -> None:
    assert default_bridge_subnet_with_routes(tmp_path, []) == "172.17.0.0/16"
    assert default_bridge_subnet_with_routes(tmp_path, ["172.17.0.0/16", "172.18.5.0/24"]) == "172.19.0.0/16"
    every_172 = [f"172.{second}.0.0/16" for second in range(17, 32)]
    assert default_bridge_subnet_with_routes(tmp_path, every_172 + ["192.168.1.0/24"]) == "192.168.16.0/20"


def test_create_inspect_list_remove(router, services) -> None:
    response = create(router, "backend", Labels={"tier": "db"}, Internal=True,
                      IPAM={"Config": [{"Subnet": "10.251.3.0/24", "IPRange": "10.251.3.128/25",
                                        "AuxiliaryAddresses": {"router": "10.251.3.5"}}]},
                      Options={"com.docker.network.driver.mtu": "1400"})
    assert response.status == 201
    network_id = answer(response)["Id"]
    assert len(network_id) == 64
    resource = answer(send(router, "GET", f"/networks/{network_id[:10]}"))
    assert resource["Name"] == "backend" and resource["Internal"] is True and resource["Labels"] == {"tier": "db"}
    assert resource["IPAM"]["Config"] == [{"Subnet": "10.251.3.0/24", "Gateway": "10.251.3.1",
                                           "IPRange": "10.251.3.128/25",
                                           "AuxiliaryAddresses": {"router": "10.251.3.5"}}]
    assert resource["Containers"] == {} and resource["Scope"] == "local"
    assert resource["Options"] == {"com.docker.network.driver.mtu": "1400"}
    picked = answer(send(router, "GET", f"/networks/{answer(create(router, 'front'))['Id']}"))
    assert picked["IPAM"]["Config"][0]["Subnet"] != resource["IPAM"]["Config"][0]["Subnet"]
    names = [n["Name"] for n in answer(send(router, "GET", '/networks?filters={"type":["custom"]}'))]
    assert names == ["backend", "front"]
    assert [n["Name"] for n in answer(send(router, "GET", '/networks?filters={"label":["tier=db"]}'))] == ["backend"]
    assert [n["Name"] for n in answer(send(router, "GET", '/networks?filters={"dangling":["true"]}'))] == [
        "backend", "front"]
    assert send(router, "DELETE", "/networks/backend").status == 204
    assert send(router, "GET", f"/networks/{network_id}").status == 404
    actions = [(m["Type"], m["Action"], m["Actor"]["Attributes"]["name"])
               for m in services.events.events(since_ns=0, until_ns=time.time_ns())]
    assert actions == [("network", "create", "backend"), ("network", "create", "front"),
                       ("network", "destroy", "backend")]


BAD = [
    ({"Name": "bad name"}, 400, "invalid network name"),
    ({"Name": "bridge"}, 403, "pre-defined network"),
    ({"Name": "x", "Driver": "overlay"}, 404, 'plugin "overlay" not found'),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.1/24"}]}}, 400, "invalid subnet"),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.252.0.0/24", "Gateway": "10.9.9.1"}]}}, 400,
     "not in subnet"),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "bogus"}]}}, 400, "invalid subnet"),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "fd3a:11::/64"}]}}, 400, "needs IPv6 enabled"),
    ({"Name": "x", "EnableIPv6": True, "IPAM": {"Config": [{"Subnet": "fd3a:11::/64", "Gateway": "fd3a:12::1"}]}},
     400, "not in subnet"),
    ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.252.0.0/24"}, {"Subnet": "10.252.1.0/24"}]}}, 400,
     "one IPv4 and one IPv6"),
    ({"Name": "x", "Options": {"com.docker.network.bridge.enable_icc": "maybe"}}, 400, "enable_icc=maybe"),
    ({"Name": "x", "Options": {"com.docker.network.bridge.host_binding_ipv4": "1.2.3.4"}}, 400,
     "does not support the bridge network option"),
    ({"Name": "x", "Ingress": True}, 400, "Ingress"),
    ({"Name": "x", "IPAM": {"Driver": "dhcp"}}, 404, "IPAM driver"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[
    "a space in the name", "a predefined name", "an unknown driver", "host bits in the subnet",
    "a gateway outside the subnet", "a malformed subnet", "an IPv6 subnet without EnableIPv6",
    "an IPv6 gateway outside its subnet", "two IPv4 subnets", "enable_icc not a boolean", "an unknown option",
    "ingress", "an unknown IPAM driver"])
def test_bad_create_requests_are_refused_and_create_nothing(router, body, status, message) -> None:
    response = send(router, "POST", "/networks/create", body)
    assert response.status == status, answer(response)
    assert message in answer(response)["message"]
    assert [n["Name"] for n in answer(send(router, "GET", "/networks"))] == ["bridge", "host", "none"]


def test_duplicate_and_overlapping_networks_are_409(router) -> None:
    assert create(router, "one", IPAM={"Config": [{"Subnet": "10.253.0.0/16"}]}).status == 201
    duplicate = create(router, "one")
    assert duplicate.status == 409 and "already exists" in answer(duplicate)["message"]
    overlap = create(router, "two", IPAM={"Config": [{"Subnet": "10.253.7.0/24"}]})
    assert overlap.status == 409 and "overlaps" in answer(overlap)["message"]


def test_predefined_networks_cannot_be_removed_and_prune_keeps_them(router) -> None:
    response = send(router, "DELETE", "/networks/bridge")
    assert response.status == 403
    create(router, "old", Labels={"keep": "no"})
    create(router, "kept", Labels={"keep": "yes"})
    pruned = answer(send(router, "POST", '/networks/prune?filters={"label":["keep=no"]}'))
    assert pruned == {"NetworksDeleted": ["old"]}
    assert answer(send(router, "POST", '/networks/prune?filters={"until":["1h"]}')) == {"NetworksDeleted": None}
    assert answer(send(router, "POST", "/networks/prune")) == {"NetworksDeleted": ["kept"]}
    assert send(router, "GET", "/networks/missing").status == 404


def test_ipv6_without_a_subnet_gets_a_unique_local_64(router) -> None:
    response = send(router, "POST", "/networks/create", {"Name": "six", "EnableIPv6": True})
    assert response.status == 201, answer(response)
    config = answer(send(router, "GET", "/networks/six"))["IPAM"]["Config"]
    import ipaddress

    subnet = ipaddress.IPv6Network(config[1]["Subnet"])
    assert subnet.prefixlen == 64 and subnet.network_address.packed[0] == 0xFD
    assert config[1]["Gateway"] == str(subnet.network_address + 1)
