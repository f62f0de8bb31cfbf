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
it: the container-side interface's peer ifindex (``ip -o link`` in the sandbox's namespace:
``eth0@if<N>``) is the ifindex of one port in the bridge's ``brif/``.  :func:`apply` runs under
the host-wide network lock right after the data plane's set-up of the endpoint, before the
container's process starts; the caller undoes the endpoint when it raises.

Record: the option in the network record's ``Options`` (as given, shown by ``network inspect``
as Docker shows it).  Nothing else is stored: the isolation flag lives and dies with the veth.
"""

from __future__ import annotations

import os
import re
import subprocess

from lamina import errdefs
from lamina.network.api import Network

__all__ = ["ICC", "icc_disabled", "apply", "host_port"]

ICC = "com.docker.network.bridge.enable_icc"
_PEER = re.compile(r"^\d+: ([^@:]+)@if(\d+):", re.MULTILINE)
FALSE = frozenset({"false", "0", "f"})    # Go's strconv.ParseBool, which Docker uses


def icc_disabled(network: Network) -> bool:
    return network.Driver == "bridge" and network.Options.get(ICC, "true").lower() in FALSE


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def host_port(bridge: str, netns_path: str, interface: str) -> str:
    """The port of ``bridge`` whose veth peer is ``interface`` in the namespace ``netns_path``."""
    listing = subprocess.run(["nsenter", f"--net={netns_path}", "ip", "-o", "link", "show", "dev", interface],
                             capture_output=True, text=True, check=False)
    match = _PEER.search(listing.stdout)
    if listing.returncode != 0 or match is None:
        raise errdefs.System(f"cannot find the veth peer of {interface} in {netns_path}: "
                             f"{listing.stderr.strip() or listing.stdout.strip() or 'not a veth'}")
    peer_index = match.group(2)
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
