"""The data plane: Podman's network stack, ``netavark`` and ``aardvark-dns`` (Debian packages).

Why netavark: it is a maintained network stack made for containers, driven by one JSON
document on stdin (``netavark setup|teardown <netns-path>``), and it does everything a bridge
endpoint needs in one ~50-80 ms call: the bridge device, the veth pair moved into the
namespace and renamed, addresses, routes, ``ip_forward``, masquerading, Docker-like isolation
between bridges (its ``isolate`` option), ``Internal`` networks (no route out), published ports
(DNAT, also for ``127.0.0.1`` through ``route_localnet``), and it starts ``aardvark-dns`` on
the gateway address of networks with DNS, as Docker's embedded 127.0.0.11 resolver does.  The
CNI plugins would need four plugins chained and a separate DNS server; ``pyroute2`` plus
nftables by hand would be lamina's own firewall strings, which DESIGN.md §6 rules out.
netavark removes a bridge with the teardown of its last endpoint; lamina keeps it up while
the network exists (:mod:`lamina.network.bridges`).

What netavark is used for: a network's plumbing (bridge, gateway address, forwarding,
masquerading, isolation, the ``NETAVARK-*`` chains, aardvark-dns), made by the first set-up
of an endpoint on it, and the endpoints only it can make: published ports (per-container
DNAT), IPv6, macvlan, and DNS-enabled networks whose aardvark-dns does not serve them yet.
Any other bridge endpoint is plugged by the CNI ``bridge`` plugin (:mod:`lamina.network.cni`):
netavark 1.4's ``setup`` runs ``iptables`` ~22 times per endpoint (version probes, ``-S``
listings and ``-C`` checks of chains that exist while the network's bridge is kept), 5-10 ms
each with the nf_tables backend, which was most of what a bridge endpoint added to ``lamina
run``.  The sandbox record names the plumbing of each endpoint, and its teardown goes to the
same plane.

Names: netavark names a network's ``NETAVARK-<hash>`` and ``NETAVARK-DN-<hash>`` chains
after the sha512 of the request's ``network_info[...]["name"]``, and its aardvark-dns file
and port forwards' comments (``dnat name: <name> id: <container id>``) after that name
itself.  Docker's network names are per engine (two engines, or Podman, on one host may each
have a ``shared`` network, and every engine has a ``bridge``): a name they shared would put
their networks' rules in one chain, and one network's removal would delete the other's
masquerading rule.  lamina hands netavark each network's
:attr:`~lamina.network.api.Network.netavark_name` instead (its id; a hash of the id and the
bridge device for the default ``bridge``), records it per endpoint (the sandbox record's
``NetavarkName``, :mod:`lamina.network.store`) and tears down with the recorded name.  The
request netavark reads is keyed by that name too (lamina's own is keyed by Docker's names, as
its records are): netavark's set-up writes aardvark-dns entries to the file of a network's
``name``, its teardown removes them from the file of its key.

The caller serialises the calls (:mod:`lamina.network.sandbox` holds a host-wide lock around
them: bridges, routes and firewall rules belong to the host, whatever the data root).
``aardvark-dns``'s configuration lives under ``<exec-root>/network/aardvark-dns/`` (run-time
state: after a reboot nothing is left to sweep).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from lamina import errdefs

__all__ = ["Netavark", "find_binary"]

_SEARCH = ("/usr/libexec/podman", "/usr/lib/podman", "/usr/local/libexec/podman", "/usr/local/lib/podman")


def find_binary(name: str) -> str:
    for directory in _SEARCH:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise errdefs.Unavailable(f"{name} is not installed (Debian package {name}): lamina needs it for bridge networks")


def _keyed_by_name(request: dict[str, Any]) -> dict[str, Any]:
    """``request`` (keyed by Docker's network names, as the sandbox records are) keyed by each
    network's ``name`` instead, as netavark expects: its set-up writes a network's aardvark-dns
    entries to the file of its ``name``, its teardown removes them from the file of its key."""
    names = {key: str(info["name"]) for key, info in request["network_info"].items()}
    return {**request, "networks": {names[key]: value for key, value in request["networks"].items()},
            "network_info": {names[key]: info for key, info in request["network_info"].items()}}


class Netavark:
    """:class:`lamina.network.api.DataPlane` on the ``netavark`` binary."""

    def __init__(self, *, config_dir: str, binary: str | None = None, aardvark: str | None = None) -> None:
        self.config_dir = config_dir
        self.binary = binary      # None: found at the first call (listing networks needs no netavark)
        self.aardvark = aardvark

    def _run(self, command: str, netns_path: str, request: dict[str, Any]) -> dict[str, Any]:
        os.makedirs(self.config_dir, mode=0o700, exist_ok=True)
        binary = self.binary or find_binary("netavark")
        aardvark = self.aardvark or find_binary("aardvark-dns")
        argv = [binary, "--config", self.config_dir, "--aardvark-binary", aardvark, command, netns_path]
        result = subprocess.run(argv, input=json.dumps(_keyed_by_name(request)).encode(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, check=False, close_fds=True,
                                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            try:
                message = str(json.loads(result.stdout)["error"])
            except (ValueError, KeyError, TypeError):
                pass
            raise errdefs.System(f"netavark {command} failed: {message or f'exit status {result.returncode}'}")
        if command != "setup":
            return {}
        try:
            answer = json.loads(result.stdout)
        except ValueError as exc:
            raise errdefs.System(f"netavark setup answered no JSON: {result.stdout[:200]!r}") from exc
        return answer if isinstance(answer, dict) else {}

    def setup(self, netns_path: str, request: dict[str, Any]) -> dict[str, Any]:
        """netavark's answer, per network by the request's key (netavark answers by name)."""
        answer = self._run("setup", netns_path, request)
        keys = {str(info["name"]): key for key, info in request["network_info"].items()}
        return {keys.get(name, name): status for name, status in answer.items()}

    def teardown(self, netns_path: str, request: dict[str, Any]) -> None:
        self._run("teardown", netns_path, request)
