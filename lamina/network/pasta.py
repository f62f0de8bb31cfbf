"""Rootless containers' private network: a network namespace per container, connected by pasta.

Rootless lamina cannot make bridges, veth pairs or firewall rules in the host's network
namespace (they need CAP_NET_ADMIN there), so its ``bridge`` network (Docker rootless calls
RootlessKit's network ``bridge`` too; ``default`` is the same) is what Podman rootless does:
each container gets a network namespace of its own, made inside the rootless user namespace,
and a **pasta** process (Debian ``passt``) copies its traffic to and from sockets in the host's
namespace.  pasta over slirp4netns: pasta configures the namespace itself (``--config-net``:
``eth0`` with the host's address, the host's gateway, MTU 65520), forwards published ports
with its own listening sockets (``-t``/``-u``; local connections are spliced between the two
namespaces, not sent through the tap device) and needs no control socket; slirp4netns needs
its API socket for every port and its TCP stack in user space is slower.  Without pasta the
private network is refused with an error naming the package (``passt``): no slirp4netns
fallback, a second data plane would be half as capable and exercised by nothing.

What a container sees: ``eth0`` with the host's address and gateway (pasta's default: the
address of the host interface of the first default route), a random MAC address, ``lo``;
``/etc/resolv.conf`` names pasta's DNS forwarder :data:`DNS_FORWARDER` (pasta relays UDP port
53 there to the host's first resolver), unless ``--dns`` was given; ``/etc/hosts`` names the
container's address.  Connections to the gateway do not reach the host's loopback
(``--no-map-gw``, as Docker rootless's ``--disable-host-loopback``), and nothing the container
listens on is forwarded unless published (``-t none -u none -T none -U none`` otherwise: pasta's
default would forward every port).

Debian 12's pasta (passt 0.0~git20230309) has flaws lamina cannot mend: the replies of a UDP
flow whose port it translates (``-p 5353:53/udp``) are lost, and connections that reach it
through the tap device rather than the loopback splice (from the host's own non-loopback
address, here) did not complete in this environment; TCP and same-port UDP from 127.0.0.1
work, and the tests use those.

Published ports: pasta binds them in the host's network namespace as the user, so a host port
below ``net.ipv4.ip_unprivileged_port_start`` is refused with Docker rootless's message.  A
host port is taken when a sandbox record of this engine holds it (same protocol, overlapping
address) or when a socket cannot be bound to it (another program listens): this pasta does
not fail when it cannot bind a port, so the check comes first, under the lock.

``/dev/net/tun``: pasta opens it inside the namespace as the user; Debian's udev makes it 0666,
a host where it is not readable and writable by the user gets :class:`TunUnavailable`, naming
the device and its mode, before anything is made.

On-disk format (all under the exec root: nothing of it survives a reboot, nor should it)::

    <exec-root>/pasta/lock                 flock: held while host ports are chosen and recorded
    <exec-root>/pasta/<container-id>.json  the sandbox record: SandboxID, SandboxKey, Ports
                                           [{HostIp, HostPort, ContainerPort, Protocol}],
                                           Exposed, Endpoints {"bridge": {NetworkID, EndpointID,
                                           IPAddress, IPPrefixLen, Gateway, MacAddress, ...}}
    <exec-root>/pasta/<container-id>.pid   pasta's pid, written by pasta once it is set up
    <exec-root>/netns/<container-id>       the namespace (a bind mount of its nsfs file): the
                                           SandboxKey the container's runtime joins

Commit point: the record's rename, under the lock, before the namespace or pasta exist: the
record is the lease of its host ports, and a crash at any later step (kill -9 of the monitor)
leaves a record, a pid file written by pasta itself and a namespace file that
:meth:`PastaSandboxes.sweep` (the start-up sweep, ``system check --repair``) tears down.  pasta
exits when the namespace file is deleted; the teardown kills it by pid all the same (after a
crash the mount namespace that held the file may be gone, and pasta with it watching nothing).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from lamina import errdefs, fsutil
from lamina.network.api import PortMapping

__all__ = ["PastaSandboxes", "PastaUnavailable", "TunUnavailable", "DNS_FORWARDER", "INTERFACE", "TUN_DEVICE",
           "check_available", "check_host_ports", "unavailable_reason"]

DNS_FORWARDER = "169.254.1.1"   # Podman's: a link-local address nothing else answers on
INTERFACE = "eth0"
TUN_DEVICE = "/dev/net/tun"
_UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
_STOP_SECONDS = 2.0


class PastaUnavailable(errdefs.FailedPrecondition):
    """pasta (Debian ``passt``) is not installed: rootless containers get no private network."""


class TunUnavailable(errdefs.FailedPrecondition):
    """``/dev/net/tun`` cannot be opened by the user: pasta cannot make its tap device."""


def _which(name: str) -> str | None:
    """``shutil.which`` without importing shutil (on every rootless run's path)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _pasta_binary() -> str:
    path = _which("pasta")
    if path is None:
        raise PastaUnavailable(
            "rootless lamina's bridge network (the default) needs pasta (Debian package passt), which is not "
            "in PATH: install passt, or run the container with --network none or --network host")
    return path


def _check_tun(device: str = TUN_DEVICE) -> None:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise TunUnavailable(f"rootless lamina's bridge network needs {device}, which does not exist (is the "
                             "tun module loaded?): run the container with --network none or --network host") from exc
    except PermissionError as exc:
        import stat

        try:
            mode = os.stat(device).st_mode
            described = f"mode {stat.S_IMODE(mode):04o} ({stat.filemode(mode)})"
        except OSError:
            described = "not accessible"
        raise TunUnavailable(
            f"rootless lamina's bridge network needs {device} readable and writable by this user for pasta's tap "
            f"device, but it is {described}; Debian's udev makes it 0666 "
            "(/usr/lib/udev/rules.d/50-udev-default.rules): have root run 'chmod 0666 /dev/net/tun', or run the "
            "container with --network none or --network host") from exc
    os.close(fd)


def check_available() -> None:
    """Refuse a private network that cannot be made: no pasta, no usable ``/dev/net/tun``."""
    _pasta_binary()
    _check_tun()


def unavailable_reason() -> str | None:
    """Why rootless containers cannot get the bridge network here (None: they can)."""
    try:
        check_available()
    except errdefs.FailedPrecondition as exc:
        return str(exc)
    return None


def _unprivileged_port_start() -> int:
    try:
        with open(_UNPRIVILEGED_PORT_START, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 1024


def check_host_ports(ports: Iterable[PortMapping]) -> None:
    """Refuse host ports the user cannot bind (Docker rootless's message)."""
    start = _unprivileged_port_start()
    for mapping in ports:
        if mapping.HostPort and mapping.HostPort < start:
            raise errdefs.FailedPrecondition(
                f"cannot expose privileged port {mapping.HostPort}, you can add "
                f"'net.ipv4.ip_unprivileged_port_start={mapping.HostPort}' to /etc/sysctl.conf (currently "
                f"{start}), or choose a larger port number (>= {start}): rootless lamina's published ports "
                "are bound by pasta as this user")


def _overlaps(first: str, second: str) -> bool:
    return first in ("", "0.0.0.0") or second in ("", "0.0.0.0") or first == second


def _probe(host_ip: str, port: int, protocol: str) -> int:
    """Bind ``port`` (0: any) on the host to see that no program holds it; the port bound."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        if protocol == "tcp":  # a TIME_WAIT connection does not hold a port against a listener
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            raise errdefs.Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port} failed: "
                                   f"{'port is already allocated' if exc.errno == errno.EADDRINUSE else exc.strerror}"
                                   ) from exc
        return int(probe.getsockname()[1])


def _choose_ports(ports: Iterable[PortMapping], taken: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    for mapping in ports:
        for offset in range(mapping.Range):
            wanted = mapping.HostPort + offset if mapping.HostPort else 0
            for _ in range(64):
                host_port = _probe(mapping.HostIp, wanted, mapping.Protocol)
                clash = any(other["HostPort"] == host_port and other["Protocol"] == mapping.Protocol
                            and _overlaps(other["HostIp"], mapping.HostIp) for other in taken + chosen)
                if not clash:
                    break
                if wanted:
                    raise errdefs.Conflict(f"Bind for {mapping.HostIp or '0.0.0.0'}:{wanted} failed: "
                                           "port is already allocated")
            else:
                raise errdefs.Unavailable("no free host port found")
            chosen.append({"ContainerPort": mapping.ContainerPort + offset, "Protocol": mapping.Protocol,
                           "HostIp": mapping.HostIp, "HostPort": host_port})
    return chosen


def _forward_options(ports: list[dict[str, Any]]) -> list[str]:
    """pasta's ``-t``/``-u`` options for the chosen ports (``none`` for a protocol without)."""
    options: list[str] = []
    for protocol, flag in (("tcp", "-t"), ("udp", "-u")):
        specs = [(f"{port['HostIp']}/" if port["HostIp"] else "") + f"{port['HostPort']}:{port['ContainerPort']}"
                 for port in ports if port["Protocol"] == protocol]
        for spec in specs or ["none"]:
            options += [flag, spec]
    return options


def _read_interface(netns_path: str) -> dict[str, Any]:
    """What pasta configured on ``eth0`` in the namespace: addresses, prefix, gateway, MAC."""
    import fcntl
    import ipaddress
    import struct

    from lamina import sys as lsys

    found: dict[str, Any] = {}
    failure: list[BaseException] = []

    def read() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                lsys.setns(fd, lsys.CLONE_NEWNET)  # this thread only; it ends below
            finally:
                os.close(fd)
            name = struct.pack("256s", INTERFACE.encode())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                hardware = fcntl.ioctl(sock.fileno(), 0x8927, name)[18:24]      # SIOCGIFHWADDR
                found["MacAddress"] = ":".join(f"{byte:02x}" for byte in hardware)
                try:
                    address = fcntl.ioctl(sock.fileno(), 0x8915, name)[20:24]   # SIOCGIFADDR
                    netmask = fcntl.ioctl(sock.fileno(), 0x891B, name)[20:24]   # SIOCGIFNETMASK
                    found["IPAddress"] = socket.inet_ntoa(address)
                    found["IPPrefixLen"] = bin(int.from_bytes(netmask, "big")).count("1")
                except OSError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:  # no IPv4 on the host: none in here
                        raise
            with open("/proc/thread-self/net/route", encoding="ascii") as handle:
                for line in handle.read().splitlines()[1:]:
                    fields = line.split()
                    if len(fields) > 2 and fields[0] == INTERFACE and fields[1] == "00000000":
                        found["Gateway"] = socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
            with open("/proc/thread-self/net/if_inet6", encoding="ascii") as handle:
                for line in handle.read().splitlines():
                    fields = line.split()
                    if len(fields) == 6 and fields[5] == INTERFACE and fields[3] == "00":  # global scope
                        found["GlobalIPv6Address"] = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
                        found["GlobalIPv6PrefixLen"] = int(fields[2], 16)
                        break
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=read, name="pasta-netns")
    thread.start()
    thread.join()
    if failure:
        raise errdefs.System(f"cannot read the network set up by pasta in {netns_path}: {failure[0]}") from failure[0]
    return found


def _is_pasta_of(pid: int, netns_path: str, *, exiting: bool = False) -> bool:
    """``pid`` is a live pasta serving ``netns_path`` (not a reused pid, not a zombie);
    ``exiting``: or a process on its way out (its command line already empty, its sockets
    maybe not yet closed), such as a pasta that was sent SIGTERM."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
    except OSError:
        return False
    if netns_path.encode() not in command.split(b"\0") and not (exiting and not command):
        return False
    return _running(pid)


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie: a process becomes one after its files are closed, so
    when this is False a stopped pasta's sockets are gone (its command line empties earlier)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class PastaSandboxes:
    """The private networks of one rootless engine's containers (see the module docstring)."""

    def __init__(self, exec_root: str, *, tun_device: str = TUN_DEVICE) -> None:
        self.directory = os.path.join(exec_root, "pasta")
        self.netns_dir = os.path.join(exec_root, "netns")
        self.tun_device = tun_device

    def _record_path(self, container_id: str) -> str:
        return os.path.join(self.directory, f"{container_id}.json")

    def _pid_path(self, container_id: str) -> str:
        return os.path.join(self.directory, f"{container_id}.pid")

    def netns_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    # -- records ---------------------------------------------------------------------------------

    def sandbox(self, container_id: str) -> dict[str, Any] | None:
        try:
            record = fsutil.read_json(self._record_path(container_id))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def container_ids(self) -> list[str]:
        """The containers with something recorded here (a record or a pid file)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted({name.rsplit(".", 1)[0] for name in names if name.endswith((".json", ".pid"))})

    def _pid(self, container_id: str) -> int | None:
        try:
            with open(self._pid_path(container_id), encoding="ascii") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    # -- set-up and tear-down --------------------------------------------------------------------

    def attach(self, container_id: str, *, ports: list[PortMapping], exposed: list[str], dns: list[str],
               is_live: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """Make the namespace and start pasta on it; the sandbox record.  A host port held by
        the pasta of a container that is not live (an ``--rm`` run's, stopping) is waited for."""
        binary = _pasta_binary()
        _check_tun(self.tun_device)
        check_host_ports(ports)
        fsutil.make_dirs(self.directory, 0o700)
        netns_path = self.netns_path(container_id)
        record: dict[str, Any] = {"SandboxID": os.urandom(32).hex(), "SandboxKey": netns_path, "Exposed": exposed}
        deadline = time.monotonic() + _STOP_SECONDS
        while True:
            with fsutil.file_lock(os.path.join(self.directory, "lock")):
                holders = {other: held for other, held in self._records().items()
                           if other != container_id and self._holds_ports(other)}
                try:
                    record["Ports"] = _choose_ports(ports, [port for held in holders.values()
                                                            for port in held.get("Ports", [])])
                except errdefs.Conflict:
                    stopping = is_live is not None and any(not is_live(other) for other in holders)
                    if not stopping or time.monotonic() > deadline:
                        raise
                else:
                    fsutil.atomic_replace(self._record_path(container_id), _json(record), 0o600)
                    break
            time.sleep(0.01)
        try:
            from lamina.network import namespace

            namespace.create(netns_path)
            self._start(binary, container_id, record, dns)
            from lamina.network.store import predefined_id

            interface = _read_interface(netns_path)
            record["Endpoints"] = {"bridge": {
                "NetworkID": predefined_id("bridge"), "EndpointID": os.urandom(32).hex(),
                "IPAddress": interface.get("IPAddress", ""), "IPPrefixLen": interface.get("IPPrefixLen", 0),
                "Gateway": interface.get("Gateway", ""), "MacAddress": interface.get("MacAddress", ""),
                "GlobalIPv6Address": interface.get("GlobalIPv6Address", ""),
                "GlobalIPv6PrefixLen": interface.get("GlobalIPv6PrefixLen", 0), "IPv6Gateway": "",
                "Aliases": [], "InterfaceName": INTERFACE, "DNSServers": [] if dns else [DNS_FORWARDER]}}
            fsutil.atomic_replace(self._record_path(container_id), _json(record), 0o600)
        except BaseException:
            self.detach(container_id)
            raise
        return record

    def _start(self, binary: str, container_id: str, record: dict[str, Any], dns: list[str]) -> None:
        """pasta on the namespace; it forks into the background once the namespace is set up."""
        import subprocess

        arguments = [binary, "--config-net", "--ns-ifname", INTERFACE, "--netns", record["SandboxKey"],
                     "--pid", self._pid_path(container_id), "--quiet", "--no-map-gw", "-T", "none", "-U", "none",
                     *_forward_options(record["Ports"])]
        if not dns:
            arguments += ["--dns-forward", DNS_FORWARDER]
        try:
            done = subprocess.run(arguments, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=60)
        except subprocess.TimeoutExpired as exc:
            raise errdefs.System(f"pasta did not set up the network of container {container_id} within 60s") from exc
        if done.returncode != 0:
            messages = [line for line in (done.stderr + done.stdout).splitlines()
                        if line.strip() and "to syslog" not in line]
            if any("tun" in line for line in messages):
                _check_tun(self.tun_device)  # the clear error when the device is the cause
            raise errdefs.System(f"pasta could not set up the network of container {container_id}: "
                                 f"{'; '.join(messages) or f'exit status {done.returncode}'}")
        if self._pid(container_id) is None:
            raise errdefs.System(f"pasta set up the network of container {container_id} but wrote no pid file")

    def _holds_ports(self, container_id: str) -> bool:
        """The record's ports are taken: its pasta runs, or it has none yet (being set up, or
        set up by a process that crashed before: the sweep's to remove)."""
        pid = self._pid(container_id)
        return pid is None or _is_pasta_of(pid, self.netns_path(container_id), exiting=True)

    def begin_release(self, container_id: str) -> None:
        """The container is gone: stop pasta now (its host ports are free sooner); the
        :meth:`detach` that follows waits for it and removes the rest."""
        pid = self._pid(container_id)
        if pid is not None and _is_pasta_of(pid, self.netns_path(container_id)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def detach(self, container_id: str) -> None:
        """Stop pasta, remove the namespace and the record; whatever of it exists."""
        netns_path = self.netns_path(container_id)
        pid = self._pid(container_id)
        if pid is not None:
            _stop(pid, netns_path)
        if os.path.lexists(netns_path):
            from lamina.network import namespace

            namespace.remove(netns_path)
        for path in (self._pid_path(container_id), self._record_path(container_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _records(self) -> dict[str, dict[str, Any]]:
        records = {}
        for container_id in self.container_ids():
            record = self.sandbox(container_id)
            if record is not None:
                records[container_id] = record
        return records

    # -- after a crash ---------------------------------------------------------------------------

    def sweep(self, is_live: Callable[[str], bool]) -> list[str]:
        """Tear down what containers whose monitor is gone left (pasta, namespace, record)."""
        removed = []
        for container_id in self.container_ids():
            if not is_live(container_id):
                self.detach(container_id)
                removed.append(f"removed leaked pasta network of container {container_id}")
        return removed

    def problems(self, is_live: Callable[[str], bool]) -> list[dict[str, str]]:
        problems = []
        for container_id in self.container_ids():
            if is_live(container_id):
                continue
            pid = self._pid(container_id)
            running = pid is not None and _is_pasta_of(pid, self.netns_path(container_id))
            ports = ", ".join(f"{port['HostPort']}/{port['Protocol']}"
                              for port in (self.sandbox(container_id) or {}).get("Ports", []))
            problems.append({"Kind": "network", "Object": container_id,
                             "Message": "pasta network of a container that is not running: "
                                        f"pasta {'pid ' + str(pid) if running else 'not running'}; "
                                        f"host ports {ports or 'none'}"})
        return problems


def _stop(pid: int, netns_path: str) -> None:
    """SIGTERM pasta, SIGKILL it if it is still there after :data:`_STOP_SECONDS`; wait until
    its sockets are closed (the host ports free)."""
    if not _is_pasta_of(pid, netns_path, exiting=True):
        return
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sent)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _STOP_SECONDS
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.005)
    raise errdefs.System(f"pasta (pid {pid}) of {netns_path} does not exit")


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
