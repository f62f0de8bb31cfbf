"""IPAM for bridge networks: subnets picked like Docker, addresses leased from a subnet.

Subnets: the first of Docker's default pools (``172.17.0.0/16`` ... ``172.31.0.0/16``, then
``192.168.0.0/16`` cut in ``/20``) that overlaps no route of the host (``/proc/net/route``) and
no existing network; or the subnet the creator gave (checked: well formed, no host bits, no
overlap, gateway and ``IPRange`` inside it).  Addresses: the gateway is the first host address
unless given; a container gets the lowest free address of the ``IPRange`` (or subnet) that is
not the network or broadcast address, the gateway, an auxiliary address, or leased to another
endpoint.  Leases are the endpoint records of :mod:`lamina.network.store`, read under its lock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from lamina import errdefs

__all__ = ["DEFAULT_POOLS", "host_routes", "parse_subnet", "pick_subnet", "first_free_address", "mac_address",
           "check_address"]

IPv4Network = ipaddress.IPv4Network


def _default_pools() -> list[IPv4Network]:
    pools = [ipaddress.IPv4Network(f"172.{second}.0.0/16") for second in range(17, 32)]
    pools.extend(ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20))
    return pools


DEFAULT_POOLS = tuple(_default_pools())


def host_routes(path: str = "/proc/net/route") -> list[IPv4Network]:
    """The destinations of the host's IPv4 routes (the default route excluded)."""
    routes = []
    try:
        with open(path) as file:
            lines = file.read().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination = int(fields[1], 16).to_bytes(4, "little")
        mask = int(fields[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue
        network = ipaddress.IPv4Network((ipaddress.IPv4Address(destination),
                                         bin(int.from_bytes(mask, "big")).count("1")), strict=False)
        routes.append(network)
    return routes


def parse_subnet(text: str) -> IPv4Network:
    if ":" in text:
        raise errdefs.InvalidArgument(f"lamina does not support IPv6 subnets yet: {text}")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid subnet {text}: {exc}") from exc


def pick_subnet(taken: Iterable[IPv4Network]) -> IPv4Network:
    taken = list(taken)
    for pool in DEFAULT_POOLS:
        if not any(pool.overlaps(other) for other in taken):
            return pool
    raise errdefs.Unavailable("could not find an available, non-overlapping IPv4 address pool among the "
                              "defaults to assign to the network")


def check_address(subnet: IPv4Network, text: str, what: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid {what} {text}: {exc}") from exc
    if address not in subnet:
        raise errdefs.InvalidArgument(f"{what} {text} is not in subnet {subnet}")
    if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        raise errdefs.InvalidArgument(f"{what} {text} is the network or broadcast address of {subnet}")
    return address


def first_free_address(pool: IPv4Network, subnet: IPv4Network, used: set[str]) -> str:
    for address in pool.hosts():
        if address in (subnet.network_address, subnet.broadcast_address):
            continue
        if str(address) not in used:
            return str(address)
    raise errdefs.Unavailable(f"no available IPv4 addresses on the network's subnet {subnet}")


def mac_address(address: str) -> str:
    """Docker's MAC for an IPv4 address: ``02:42`` followed by the address's four bytes."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)
