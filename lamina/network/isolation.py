"""``com.docker.network.bridge.enable_icc=false``: the containers of one bridge cannot talk to each other.

netavark 1.4 has no rule for it, so lamina uses the kernel's bridge port isolation: the host
side of every endpoint's veth pair on such a network is an *isolated* port
(``/sys/class/net/<veth>/brport/isolated`` = 1), and a bridge forwards nothing from one
isolated port to another.  What Docker's ICC=false still allows keeps working, because none of
it crosses two isolated ports: a container reaches the gateway (the bridge device: the host,
the name server, routed traffic to the outside, published ports through the host's DNAT), and
the host reaches the containers.  The bridge's anchor (:mod:`lamina.network.bridges`) stays a
normal port.

The host veth of a new endpoint is found from the container's side, whichever data plane made
it: the container-side interface's peer ifindex (``IFLA_LINK``, asked over rtnetlink from a
thread that joined the sandbox's namespace) is the ifindex of one port in the bridge's ``brif/``.  :func:`apply` runs under
the host-wide network lock right after the data plane's set-up of the endpoint, before the
container's process starts; the caller undoes the endpoint when it raises.

Record: the option in the network record's ``Options`` (as given, shown by ``network inspect``
as Docker shows it).  Nothing else is stored: the isolation flag lives and dies with the veth.
"""

from __future__ import annotations

import os

from lamina import errdefs
from lamina.network.api import Network

__all__ = ["ICC", "icc_disabled", "apply", "host_port"]

ICC = "com.docker.network.bridge.enable_icc"
FALSE = frozenset({"false", "0", "f"})    # Go's strconv.ParseBool, which Docker uses


def icc_disabled(network: Network) -> bool:
    return network.Driver == "bridge" and network.Options.get(ICC, "true").lower() in FALSE


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


_RTM_GETLINK, _RTM_NEWLINK, _NLMSG_ERROR, _NLM_F_REQUEST, _IFLA_LINK = 18, 16, 2, 1, 5


def _peer_index_in_thread(netns_path: str, interface: str) -> int:
    """``IFLA_LINK`` (a veth's peer ifindex) of ``interface``, asked over rtnetlink from inside
    the namespace (this thread joins it: call it in a thread of its own)."""
    import socket
    import struct

    from lamina import sys as lsys

    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        lsys.setns(fd, lsys.CLONE_NEWNET)
    finally:
        os.close(fd)
    index = socket.if_nametoindex(interface)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as netlink:
        netlink.settimeout(5)
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
        netlink.send(struct.pack("=IHHII", 16 + len(body), _RTM_GETLINK, _NLM_F_REQUEST, 1, 0) + body)
        answer = netlink.recv(65536)
    length, kind = struct.unpack_from("=IH", answer)
    if kind == _NLMSG_ERROR:
        raise OSError(-struct.unpack_from("=i", answer, 16)[0], f"RTM_GETLINK {interface}")
    offset = 16 + 16   # nlmsghdr, ifinfomsg
    while offset + 4 <= length:
        size, attribute = struct.unpack_from("=HH", answer, offset)
        if size < 4:
            break
        if attribute == _IFLA_LINK and kind == _RTM_NEWLINK:
            return int(struct.unpack_from("=I", answer, offset + 4)[0])
        offset += (size + 3) & ~3
    raise LookupError(f"{interface} has no peer (not a veth)")


def _peer_index(netns_path: str, interface: str) -> int:
    import threading

    found: list[int | BaseException] = []

    def ask() -> None:
        try:
            found.append(_peer_index_in_thread(netns_path, interface))
        except BaseException as exc:  # handed to the caller's thread
            found.append(exc)

    thread = threading.Thread(target=ask, name="netns-peer")
    thread.start()
    thread.join()
    if isinstance(found[0], BaseException):
        raise errdefs.System(f"cannot find the veth peer of {interface} in {netns_path}: {found[0]}") from found[0]
    return found[0]


def host_port(bridge: str, netns_path: str, interface: str) -> str:
    """The port of ``bridge`` whose veth peer is ``interface`` in the namespace ``netns_path``."""
    peer_index = str(_peer_index(netns_path, interface))
    try:
        ports = os.listdir(f"/sys/class/net/{bridge}/brif")
    except OSError as exc:
        raise errdefs.System(f"cannot list the ports of bridge {bridge}: {exc}") from exc
    for port in ports:
        try:
            if _read(f"/sys/class/net/{port}/ifindex") == peer_index:
                return port
        except OSError:
            continue  # a port that went away meanwhile
    raise errdefs.System(f"no port of bridge {bridge} is the veth peer (ifindex {peer_index}) of {interface}")


def apply(network: Network, netns_path: str, interface: str) -> None:
    """Make the host side of ``interface``'s veth an isolated port when ``network`` has ICC
    disabled (nothing otherwise).  Raises ``System`` when the port cannot be found or set."""
    if not icc_disabled(network):
        return
    port = host_port(network.BridgeName, netns_path, interface)
    try:
        with open(f"/sys/class/net/{port}/brport/isolated", "w", encoding="ascii") as handle:
            handle.write("1")
    except OSError as exc:
        raise errdefs.System(f"cannot isolate port {port} of bridge {network.BridgeName} (enable_icc=false): "
                             f"{exc}") from exc
