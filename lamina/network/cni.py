"""The per-endpoint data plane: the CNI reference ``bridge`` plugin, layer 2 only.

Who owns what.  netavark (:mod:`lamina.network.netavark`) owns a network's plumbing: the
bridge device and its gateway address, ``ip_forward``, masquerading, the isolation between
bridges, the ``NETAVARK-*`` chains, ``aardvark-dns``; and every endpoint it cannot be
replaced for: the first endpoint of a network (it creates all of the above, then lamina's
anchor keeps them, :mod:`lamina.network.bridges`), an endpoint with published ports (its
DNAT rules are per container), an IPv6 endpoint (netavark sets ``accept_dad`` and
``autoconf`` sysctls on both ends and the bridge), macvlan, and an endpoint on a
DNS-enabled network whose ``aardvark-dns`` does not serve the network yet.  Every other
bridge endpoint is plugged here, :class:`CniBridge`, with the same result.

Why: netavark 1.4's ``setup`` of an endpoint runs ``iptables`` about 22 times (version
probes, listings and checks of the per-network chains that already exist, the
``NETAVARK-HOSTPORT`` checks), 5-10 ms each with the nf_tables backend, though the endpoint
adds no rule; the ``bridge`` plugin with ``"ipMasq": false`` runs none and plugs a veth in
a fraction of that time (``bench/network.py`` measures both).

What an endpoint gets, as netavark gives it: from the plugin, a veth pair, the container's
end named ``eth<N>`` with the endpoint's MAC (``runtimeConfig.mac``: Docker's ``02:42`` +
IPv4, or ``--mac-address``) and the network's MTU, up, the host's end (``veth<8 hex>``;
netavark's are ``veth<N>``) up on the bridge.  No IPAM plugin: with one (``static``) the
plugin also sets ``arp_notify`` and ``accept_dad`` in the namespace, and waits for the host
end's operational state with sleeps of 50 and 500 ms, which a loaded machine reaches; lamina
has leased the address already.  Then, in the namespace (a thread that joined it), one ``ip
-batch``: the leased address (``broadcast +``), and unless the network is ``Internal`` the
default route via the gateway with netavark's ``proto static metric 100`` (``prepend``:
netlink's create flag alone, as netavark adds it, so a second network's default route goes
beside the first's); IPv6 ``autoconf`` off on the interface; both ends' transmit queue
length and the host end's ``accept_ra``, which the plugin changes, put back.  On a
DNS-enabled network the container's names go into aardvark-dns's file
(:mod:`lamina.network.aardvark`).  The answer has netavark's shape (per network:
``dns_server_ips``, ``interfaces``).

The request is netavark's (:meth:`lamina.network.sandbox.Sandboxes._request`), so the
sandbox code builds one request and hands each endpoint to the plane its record names
(``Plumbing``).  A network is known here by the request's ``network_info`` ``name``, its
netavark name (the endpoint's recorded ``NetavarkName``), as netavark knows it: the
aardvark-dns file plugged and unplugged endpoints' names go to is the one netavark wrote.  The caller holds the engine's network lock (``<exec-root>/network.lock``,
which it also holds around every netavark call of the engine), not the host-wide one: the
plumbing here changes no host-wide rule, and the engine's aardvark-dns files are the
engine's.

The CNI contract (the CNI spec, 1.0.0): the plugin is run with ``CNI_COMMAND`` (``ADD``,
``DEL``), ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_PATH`` in its
environment and the network configuration as JSON on stdin; it answers a result (or, with a
non-zero exit, an error ``{"code", "msg", "details"}``) on stdout.  ``DEL`` of an interface
that is gone succeeds; lamina runs it to undo a failed ``ADD`` and deletes a working
endpoint's interface itself (:meth:`CniBridge.teardown` says why).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.log import get_logger
from lamina.network import bridges, namespace
from lamina.network.aardvark import Aardvark, entry_line

__all__ = ["CniBridge", "PLUGIN_DIRECTORIES", "find_plugin_directory", "run_plugin", "in_namespace"]

log = get_logger("lamina.network")

PLUGIN_DIRECTORIES = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
CNI_VERSION = "1.0.0"
_PLUGINS = ("bridge",)
_OPTIONS = frozenset({"isolate", "mtu"})    # netavark options the plumbing here gives the same result for
_ROUTE_METRIC = "100"                       # netavark's default route metric
_QUEUE_LENGTH = 1000                        # the kernel's default transmit queue length (a veth netavark makes)

# CNI's well-known error codes (spec: "Error") and the kind of each
_ERROR_KINDS: dict[int, type[errdefs.LaminaError]] = {
    1: errdefs.InvalidArgument,     # incompatible CNI version
    2: errdefs.InvalidArgument,     # unsupported field in the network configuration
    3: errdefs.NotFound,            # container unknown or does not exist
    4: errdefs.InvalidArgument,     # invalid environment variables
    5: errdefs.System,              # I/O failure
    6: errdefs.InvalidArgument,     # failed to decode content
    7: errdefs.InvalidArgument,     # invalid network configuration
    11: errdefs.Unavailable,        # try again later
}


def find_plugin_directory(plugins: tuple[str, ...] = _PLUGINS) -> str | None:
    """The first of :data:`PLUGIN_DIRECTORIES` holding every one of ``plugins``; None: none does
    (Debian package ``containernetworking-plugins``)."""
    for directory in PLUGIN_DIRECTORIES:
        if all(os.access(os.path.join(directory, plugin), os.X_OK) for plugin in plugins):
            return directory
    return None


def run_plugin(directory: str, plugin: str, command: str, *, container_id: str, netns_path: str, interface: str,
               config: dict[str, Any]) -> dict[str, Any]:
    """Run a CNI plugin; its result (``{}`` for ``DEL``).  A plugin's error is raised as the
    ``errdefs`` kind of its code."""
    environment = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns_path,
                   "CNI_IFNAME": interface, "CNI_PATH": directory,
                   "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    result = subprocess.run([os.path.join(directory, plugin)], input=json.dumps(config).encode(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, check=False,
                            close_fds=True)
    what = f"CNI {plugin} {command} of {interface}"
    if result.returncode != 0:
        try:
            error = json.loads(result.stdout)
            code = int(error.get("code", 0))
            message = str(error.get("msg", "")) + (f": {error['details']}" if error.get("details") else "")
        except (ValueError, TypeError, AttributeError):
            code = 0
            message = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        raise _ERROR_KINDS.get(code, errdefs.System)(f"{what} failed: {message}")
    if command != "ADD":
        return {}
    try:
        answer = json.loads(result.stdout)
    except ValueError as exc:
        raise errdefs.System(f"{what} answered no JSON: {result.stdout[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise errdefs.System(f"{what} answered {answer!r}, not a result")
    return answer


def in_namespace(netns_path: str, work: Callable[[], None]) -> None:
    """Run ``work`` in a thread that joined the network namespace at ``netns_path`` (the
    process's other threads keep theirs; a program it starts inherits the thread's)."""
    from lamina import sys as lsys

    failure: list[BaseException] = []

    def enter() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                lsys.setns(fd, lsys.CLONE_NEWNET)
            finally:
                os.close(fd)
            work()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=enter, name="netns-join")
    thread.start()
    thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, errdefs.LaminaError):
            raise exc
        raise errdefs.System(f"in network namespace {netns_path}: {exc}") from exc


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except FileNotFoundError:  # no IPv6 in this kernel
        pass


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def _set_queue_length(interface: str, length: int = _QUEUE_LENGTH) -> None:
    """The plugin creates the veth pair with a transmit queue length of 0 (netlink's zero
    value); netavark's get the kernel's default."""
    import fcntl
    import socket
    import struct

    siocsiftxqlen = 0x8943
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), siocsiftxqlen, struct.pack("16si20x", interface.encode(), length))


def _delete_link(interface: str) -> None:
    result = subprocess.run(["ip", "link", "del", interface], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            check=False)
    if result.returncode != 0 and os.path.exists(f"/proc/sys/net/ipv4/conf/{interface}"):
        raise errdefs.System(f"cannot delete {interface}: {result.stderr.decode(errors='replace').strip()}")


class CniBridge:
    """Plugs bridge endpoints with the CNI ``bridge`` plugin (see the module docstring).

    ``config_dir``: netavark's ``--config`` directory (aardvark-dns's files are under it);
    ``plugin_directory``: None finds it at the first use."""

    def __init__(self, *, config_dir: str, plugin_directory: str | None = None) -> None:
        self.aardvark = Aardvark(config_dir)
        self._plugin_directory = plugin_directory

    def plugin_directory(self) -> str | None:
        if self._plugin_directory is None:
            self._plugin_directory = find_plugin_directory() or ""
        return self._plugin_directory or None

    def fits(self, info: dict[str, Any], per_network: dict[str, Any]) -> bool:
        """Whether the endpoint (the request's ``network_info`` and ``networks`` entries of one
        network) can be plugged here with the result netavark would give, now: a bridge
        network with one IPv4 subnet, whose bridge and anchor exist (netavark made its
        plumbing), no option but the ones handled, aardvark-dns serving it when it has DNS,
        and the plugins installed.  The caller holds the engine's network lock and leaves
        endpoints with port mappings to netavark."""
        subnets = info.get("subnets") or []
        if info.get("driver") != "bridge" or info.get("ipv6_enabled") or len(subnets) != 1:
            return False
        if ipaddress.ip_network(subnets[0]["subnet"]).version != 4 or len(per_network.get("static_ips") or []) != 1:
            return False
        if not set(info.get("options") or {}) <= _OPTIONS:
            return False
        bridge = str(info.get("network_interface") or "")
        if not bridge or not bridges.exists(bridge) or not bridges.exists(bridges.anchor_name(bridge)):
            return False
        if info.get("dns_enabled") and not self.aardvark.serves(info["name"]):
            return False
        return self.plugin_directory() is not None

    def keep(self, info: dict[str, Any]) -> None:
        """aardvark-dns keeps answering on a DNS-enabled network netavark just set up, also
        when its last endpoint goes (:data:`lamina.network.aardvark.ANCHOR_LINE`)."""
        if info.get("dns_enabled") and info.get("driver") == "bridge":
            self.aardvark.keep(info["name"])

    def release(self, network_name: str) -> None:
        self.aardvark.release(network_name)

    @staticmethod
    def _config(info: dict[str, Any], per_network: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "cniVersion": CNI_VERSION, "name": info["name"], "type": "bridge", "bridge": info["network_interface"],
            "isGateway": False, "ipMasq": False, "capabilities": {"mac": True},
            "runtimeConfig": {"mac": per_network["static_mac"]} if per_network.get("static_mac") else {},
        }
        if (info.get("options") or {}).get("mtu"):
            config["mtu"] = int(info["options"]["mtu"])
        return config

    def setup(self, netns_path: str, request: dict[str, Any]) -> dict[str, Any]:
        """Plug every network of ``request``; netavark's answer.  Nothing is left when it raises."""
        if request.get("port_mappings"):
            raise errdefs.InvalidArgument("the CNI bridge plumbing takes no port mappings (netavark's part)")
        directory = self.plugin_directory()
        if directory is None:
            raise errdefs.Unavailable("the CNI plugins are not installed (Debian package containernetworking-plugins)")
        answer: dict[str, Any] = {}
        done: list[str] = []
        try:
            for name, info in request["network_info"].items():
                done.append(name)
                answer[name] = self._plug(directory, netns_path, request, info, request["networks"][name])
        except BaseException:
            try:
                self._unplug(netns_path, request, done)
            except errdefs.LaminaError as exc:
                log.warning("undoing the CNI set-up of %s: %s", request["container_id"][:12], exc)
            raise
        return answer

    def _plug(self, directory: str, netns_path: str, request: dict[str, Any], info: dict[str, Any],
              per_network: dict[str, Any]) -> dict[str, Any]:
        interface = per_network["interface_name"]
        result = run_plugin(directory, "bridge", "ADD", container_id=request["container_id"], netns_path=netns_path,
                            interface=interface, config=self._config(info, per_network))
        mac = next((str(item.get("mac", "")) for item in result.get("interfaces") or []
                    if item.get("name") == interface and item.get("sandbox")), "")
        wanted = str(per_network.get("static_mac") or "")
        if wanted and mac.lower() != wanted.lower():
            raise errdefs.System(f"CNI bridge gave {interface} the MAC address {mac or 'none'}, not {wanted}")
        host_end = next((str(item.get("name", "")) for item in result.get("interfaces") or []
                         if not item.get("sandbox") and item.get("name") != info["network_interface"]), "")
        if host_end:
            _set_queue_length(host_end)
            default = _read_sysctl("/proc/sys/net/ipv6/conf/default/accept_ra")
            if default is not None:
                _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_end}/accept_ra", default)
        gateway = str(info["subnets"][0].get("gateway") or "")
        address = per_network["static_ips"][0]
        prefix = ipaddress.ip_network(info["subnets"][0]["subnet"]).prefixlen
        commands = f"address add {address}/{prefix} broadcast + dev {interface}\n"
        if gateway and not info.get("internal"):
            commands += f"route prepend default via {gateway} dev {interface} proto static metric {_ROUTE_METRIC}\n"

        def finish() -> None:
            _set_queue_length(interface)
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{interface}/autoconf", "0")
            done = subprocess.run(["ip", "-batch", "-"], input=commands.encode(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=False)
            if done.returncode != 0:
                raise errdefs.System(f"cannot address {interface} ({commands.strip()!r}): "
                                     f"{done.stderr.decode(errors='replace').strip()}")

        in_namespace(netns_path, finish)
        servers: list[str] = []
        if info.get("dns_enabled"):
            servers = [gateway] if gateway else []
            names = [request.get("container_name", ""), *(per_network.get("aliases") or [])]
            self.aardvark.add(info["name"], entry_line(request["container_id"], [address], [], names,
                                                       request.get("dns_servers") or []))
        elif request.get("dns_servers"):
            servers = list(request["dns_servers"])
        return {"dns_server_ips": servers, "dns_search_domains": [],
                "interfaces": {interface: {"mac_address": mac or wanted,
                                           "subnets": [{"ipnet": f"{address}/{prefix}", "gateway": gateway}]}}}

    def teardown(self, netns_path: str, request: dict[str, Any]) -> None:
        """Unplug every network of ``request``: the names from aardvark-dns first (as netavark
        does), then the container's interface, which takes its host end with it (none when
        the namespace is gone: its veths went with it).  Not the plugin's ``DEL``: without IPAM
        and masquerading it only deletes that interface, at the cost of a Go program's start."""
        self._remove_names(request, list(request["network_info"]))
        if not namespace.exists(netns_path):
            return
        interfaces = [request["networks"][name]["interface_name"] for name in request["network_info"]]
        in_namespace(netns_path, lambda: [_delete_link(interface) for interface in interfaces])

    def _remove_names(self, request: dict[str, Any], names: list[str]) -> None:
        infos = [request["network_info"][name] for name in names]   # by the request's keys
        self.aardvark.remove(request["container_id"], [info["name"] for info in infos if info.get("dns_enabled")])

    def _unplug(self, netns_path: str, request: dict[str, Any], names: list[str]) -> None:
        """Undo a set-up that failed: the plugin's ``DEL`` (the CNI contract after a failed ``ADD``)."""
        self._remove_names(request, names)
        directory = self.plugin_directory()
        if not names or directory is None or not namespace.exists(netns_path):
            return
        errors = []
        for name in names:
            info, per_network = request["network_info"][name], request["networks"][name]
            try:
                run_plugin(directory, "bridge", "DEL", container_id=request["container_id"], netns_path=netns_path,
                           interface=per_network["interface_name"], config=self._config(info, per_network))
            except errdefs.LaminaError as exc:
                errors.append(str(exc))
        if errors:
            raise errdefs.System("; ".join(errors))
