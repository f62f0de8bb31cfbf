"""IPAM for bridge networks: subnets picked like Docker, addresses leased from a subnet.

Subnets: the first of Docker's default pools (``172.17.0.0/16`` ... ``172.31.0.0/16``, then
``192.168.0.0/16`` cut in ``/20``) that overlaps no route of the host (``/proc/net/route``) and
no existing network; or the subnet the creator gave (checked: well formed, no host bits, no
overlap, gateway and ``IPRange`` inside it).  Addresses: the gateway is the first host address
unless given; a container gets the lowest free address of the ``IPRange`` (or subnet) that is
not the network or broadcast address, the gateway, an auxiliary address, or leased to another
endpoint.  Leases are the endpoint records of :mod:`lamina.network.store`, read under its lock.

IPv6 (``EnableIPv6``): a network has at most one IPv6 subnet beside its IPv4 one, the given one
or a random unique local ``/64`` (as Podman picks; Docker ≥ 27 takes ``/64`` subnets of ``fd00::/8``
too); the gateway is its first address after the subnet-router anycast one (``::1``), a
container the lowest free address above it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from lamina import errdefs

__all__ = ["DEFAULT_POOLS", "host_routes", "parse_subnet", "parse_subnet6", "pick_subnet", "pick_subnet6",
           "host_routes6", "first_free_address", "mac_address", "check_address"]

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network


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
        raise errdefs.InvalidArgument(f"{text} is an IPv6 subnet: an IPv4 one is expected here")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid subnet {text}: {exc}") from exc


def parse_subnet6(text: str) -> IPv6Network:
    try:
        subnet = ipaddress.IPv6Network(text, strict=True)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid IPv6 subnet {text}: {exc}") from exc
    if subnet.prefixlen > 126:
        raise errdefs.InvalidArgument(f"IPv6 subnet {text} is too small: at most /126")
    return subnet


def host_routes6(path: str = "/proc/net/ipv6_route") -> list[IPv6Network]:
    """The destinations of the host's IPv6 routes (default and host routes excluded)."""
    routes = []
    try:
        with open(path, encoding="ascii") as file:
            lines = file.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or not 0 < int(fields[1], 16) < 128:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        routes.append(ipaddress.IPv6Network((address, int(fields[1], 16)), strict=False))
    return routes


def pick_subnet6(taken: Iterable[IPv6Network]) -> IPv6Network:
    """A random unique local ``/64`` (RFC 4193: ``fd`` + 40 random bits of global id + subnet 0)
    that overlaps nothing ``taken``, as Podman picks one."""
    import os

    taken = list(taken)
    for _ in range(16):
        prefix = bytes([0xFD]) + os.urandom(5) + bytes(10)
        subnet = ipaddress.IPv6Network((prefix, 64))
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise errdefs.Unavailable("could not find an available, non-overlapping IPv6 address pool")


def pick_subnet(taken: Iterable[IPv4Network]) -> IPv4Network:
    taken = list(taken)
    for pool in DEFAULT_POOLS:
        if not any(pool.overlaps(other) for other in taken):
            return pool
    raise errdefs.Unavailable("could not find an available, non-overlapping IPv4 address pool among the "
                              "defaults to assign to the network")


def check_address(subnet: IPv4Network | IPv6Network, text: str,
                  what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid {what} {text}: {exc}") from exc
    if address.version != subnet.version or address not in subnet:
        raise errdefs.InvalidArgument(f"{what} {text} is not in subnet {subnet}")
    if subnet.version == 4 and subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        raise errdefs.InvalidArgument(f"{what} {text} is the network or broadcast address of {subnet}")
    return address


def first_free_address(pool: IPv4Network | IPv6Network, subnet: IPv4Network | IPv6Network, used: set[str]) -> str:
    for address in pool.hosts():  # a generator: a /64 is not listed
        if address in (subnet.network_address, subnet.broadcast_address):
            continue
        if str(address) not in used:
            return str(address)
    raise errdefs.Unavailable(f"no available IPv{subnet.version} addresses on the network's subnet {subnet}")


def mac_address(address: str) -> str:
    """Docker's MAC for an IPv4 address: ``02:42`` followed by the address's four bytes."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)
