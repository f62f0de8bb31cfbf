"""Namespaces a container shares with another one: the ``container:<name|id>`` values of
``HostConfig.NetworkMode``, ``PidMode``, ``IpcMode`` and ``UTSMode``, and ``IpcMode``
``shareable``.

At create, :func:`resolve_modes` names the other container by its full id
(``container:<id>``, as ``docker inspect`` shows it; 404 when there is no such container,
but for the network's, found at the start, as Docker) and
:func:`check_network_conflicts` refuses what a container that has no network of its own cannot
have (Docker's "conflicting options" errors).  At each start, :func:`join` finds the other
container, which must be running, and returns what the run takes from it: the paths of its
namespaces (``/proc/<pid>/ns/<name>`` of its PID 1, opened by the runtime before it forks), and,
when the network is shared, its ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf`` and
its host and domain names (Docker's ``initializeNetworking``), when the IPC namespace is, its
``/dev/shm``.  When the other container stops, a container sharing its network keeps the
namespace with only ``lo`` (the endpoints go with their container), one sharing its pid
namespace is killed with it by the kernel, as in Docker.

``UTSMode`` ``container:<name|id>`` is lamina's (and Podman's); Docker has only ``host``.

On disk: the ``/dev/shm`` of a ``shareable`` container is a tmpfs mounted on the host at
``<containers>/<id>/mounts/shm`` (Docker's ShmPath) for the length of a run and bound onto the
container's ``/dev/shm`` and onto those of the containers that join its IPC namespace; the
monitor mounts it before the start (:func:`mount_shm`) and unmounts it when the run ends
(:func:`unmount_shm`); a removal unmounts what a crash left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from lamina import errdefs
from lamina.config import rootless_uid
from lamina.records import dataclass, field, replace
from lamina.runtime.api import ContainerSpec, MountSpec

__all__ = ["MODES", "Joined", "apply", "check_network_conflicts", "join", "mount_shm", "prepare", "release",
           "resolve_modes", "shm_path", "start_order", "target", "unmount_shm"]

# HostConfig field -> the namespace it names
MODES = (("NetworkMode", "network"), ("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts"))


def target(mode: Any) -> str:
    """The container named by a ``container:<name|id>`` mode; "" for any other mode."""
    if isinstance(mode, str) and mode.startswith("container:"):
        return mode[len("container:"):]
    return ""


def check_network_conflicts(config: Mapping[str, Any], host: Mapping[str, Any],
                            endpoints: Mapping[str, Any] | None = None) -> None:
    """Docker's refusals for ``NetworkMode`` ``container:<name|id>`` (``config`` as the
    client sent it, before the image's config is merged in; ``endpoints``: the request's
    ``NetworkingConfig.EndpointsConfig``)."""
    mode = host.get("NetworkMode") or ""
    if not isinstance(mode, str) or not mode.startswith("container:"):
        if config.get("MacAddress") and mode == "host":
            raise errdefs.InvalidArgument("conflicting options: mac-address and the network mode")
        return
    if not target(mode):
        raise errdefs.InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
    checks = (
        (config.get("Hostname"), "conflicting options: hostname and the network mode"),
        (host.get("Links"), "conflicting options: container type network can't be used with links. "
                            "This would result in undefined behavior"),
        (host.get("Dns"), "conflicting options: dns and the network mode"),
        (host.get("ExtraHosts"), "conflicting options: custom host-to-IP mapping and the network mode"),
        (config.get("MacAddress"), "conflicting options: mac-address and the network mode"),
        (host.get("PortBindings") or host.get("PublishAllPorts"),
         "conflicting options: port publishing and the container type network mode"),
        (config.get("ExposedPorts"), "conflicting options: port exposing and the container type network mode"),
        # lamina's: the options of a resolv.conf that is the other container's
        (host.get("DnsSearch"), "conflicting options: dns search and the network mode"),
        (host.get("DnsOptions"), "conflicting options: dns options and the network mode"),
    )
    for value, message in checks:
        if value:
            raise errdefs.InvalidArgument(message)
    for endpoint in (endpoints or {}).values():
        if not isinstance(endpoint, Mapping):
            continue
        if endpoint.get("Aliases"):
            raise errdefs.InvalidArgument("network-scoped alias is supported only for containers in user "
                                          "defined networks")
        addresses = endpoint.get("IPAMConfig") or {}
        if isinstance(addresses, Mapping) and (addresses.get("IPv4Address") or addresses.get("IPv6Address")):
            raise errdefs.InvalidArgument("user specified IP address is supported on user defined networks only")


def resolve_modes(host: dict[str, Any], config: Mapping[str, Any],
                  lookup: Callable[[str], Any]) -> None:
    """Name the containers of ``container:`` modes by their full ids, in place, as Docker's
    ``adaptSharedNamespaceContainer`` (``lookup``: reference -> Container, NotFound when there
    is none: a 404 for the pid, IPC and UTS modes; a network's is left to the start, as Docker)."""
    for key, _namespace in MODES:
        reference = target(host.get(key))
        if isinstance(host.get(key), str) and host[key].startswith("container:") and not reference:
            raise errdefs.InvalidArgument(f"invalid {key} {host[key]!r}: expected container:<name|id>")
        if not reference:
            continue
        try:
            host[key] = f"container:{lookup(reference).id}"
        except errdefs.NotFound:
            if key != "NetworkMode":
                raise
    if target(host.get("UTSMode")) and config.get("Hostname"):
        raise errdefs.InvalidArgument("conflicting options: hostname and the UTS mode")
    if target(host.get("UTSMode")) and config.get("Domainname"):
        raise errdefs.InvalidArgument("conflicting options: domainname and the UTS mode")


def shm_path(container_directory: str) -> str:
    """Docker's ShmPath: where a ``shareable`` container's /dev/shm is mounted on the host."""
    return os.path.join(container_directory, "mounts", "shm")


def mount_shm(path: str, size: int) -> None:
    """Mount the tmpfs of a shareable /dev/shm at ``path`` (nothing when one is mounted)."""
    from lamina import mount as mountlib

    os.makedirs(path, mode=0o700, exist_ok=True)
    if mountlib.is_mountpoint(path):
        return
    mountlib.Mount("tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", f"size={size}")).mount(path)


def unmount_shm(path: str) -> None:
    """Unmount a shareable /dev/shm (lazily: a joiner may still hold it); no mount is fine."""
    from lamina import mount as mountlib

    if os.path.isdir(path):
        mountlib.unmount(path, detach=True)


@dataclass(frozen=True)
class Joined:
    """What a run takes from the containers it shares namespaces with."""

    namespace_paths: tuple[tuple[str, str], ...] = ()   # ("pid" | "ipc" | "uts", nsfs path)
    network_namespace: str = ""                         # /proc/<pid>/ns/net of the other container
    files: Mapping[str, str] = field(default_factory=dict)  # /etc/{hostname,hosts,resolv.conf} -> host path
    hostname: str = ""                                  # with files: the other container's names
    domainname: str = ""
    shm: str = ""                                       # the host directory bound onto /dev/shm


def _running(container: Any, namespace: str, reference: str) -> int:
    state = container.state
    if not state.get("Running") or not state.get("Pid"):
        if namespace == "network":
            raise errdefs.Conflict(f"cannot join network of a non running container: {reference}")
        raise errdefs.Conflict(f"container {reference} is not running")
    if state.get("Restarting"):
        raise errdefs.Conflict(f"Container {reference} is restarting, wait until the container is running")
    pid = int(state["Pid"])
    # the recorded pid is the container's only while it is in the container's cgroup (a run
    # that just ended leaves a pid the kernel may give to anything); rootless without delegated
    # cgroups a container has none: its PID 1 is then the init of a pid namespace, the rule by
    # which lamina.runtime.nocgroup tells its processes
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            member = container.id in handle.read()
    except OSError:
        member = False
    if not member and rootless_uid() is not None:
        from lamina.runtime.nocgroup import is_namespace_init

        member = is_namespace_init(pid)
    if not member:
        if namespace == "network":
            raise errdefs.Conflict(f"cannot join network of a non running container: {reference}")
        raise errdefs.Conflict(f"container {reference} is not running")
    return pid


def _other(container_id: str, namespace: str, reference: str, lookup: Callable[[str], Any]) -> tuple[Any, int]:
    """(the running container named by ``reference``, the host pid of its PID 1)."""
    try:
        other = lookup(reference)
    except errdefs.NotFound as exc:
        if namespace == "network":
            raise errdefs.NotFound(f"No such container: {reference}") from exc
        # Docker's: the container named by a pid or IPC mode is a parameter
        raise errdefs.InvalidArgument(f"No such container: {reference}") from exc
    if other.id == container_id:
        raise errdefs.InvalidArgument(f"cannot join own {namespace} namespace")
    return other, _running(other, namespace, reference)


def join(container_id: str, host: Mapping[str, Any], lookup: Callable[[str], Any],
         directory: Callable[[str], str]) -> Joined:
    """The namespaces, files and /dev/shm that a start of ``container_id`` takes from others
    (``lookup``: reference -> Container; ``directory``: id -> the container's directory), with
    Docker's messages ("failed to join PID namespace: container <id> is not running")."""
    paths: list[tuple[str, str]] = []
    network, files, hostname, domainname, shm = "", {}, "", "", ""
    for key, namespace in MODES:
        reference = target(host.get(key))
        if not reference:
            continue
        if namespace == "network":
            other, pid = _other(container_id, namespace, reference, lookup)
            network = f"/proc/{pid}/ns/net"
            other_directory = directory(other.id)
            files = {"/etc/resolv.conf": other.data.get("ResolvConfPath") or os.path.join(other_directory,
                                                                                          "resolv.conf"),
                     "/etc/hostname": other.data.get("HostnamePath") or os.path.join(other_directory, "hostname"),
                     "/etc/hosts": other.data.get("HostsPath") or os.path.join(other_directory, "hosts")}
            hostname = str(other.config.get("Hostname") or other.id[:12])
            domainname = str(other.config.get("Domainname") or "")
            continue
        try:
            other, pid = _other(container_id, namespace, reference, lookup)
            if namespace == "ipc":
                shm = _shareable_shm(other, reference, directory)
        except errdefs.LaminaError as exc:
            raise type(exc)(f"failed to join {namespace.upper()} namespace: {exc}") from exc
        paths.append((namespace, f"/proc/{pid}/ns/{namespace}"))
    return Joined(namespace_paths=tuple(paths), network_namespace=network, files=files, hostname=hostname,
                  domainname=domainname, shm=shm)


def _shareable_shm(other: Any, reference: str, directory: Callable[[str], str]) -> str:
    """The /dev/shm of a container whose IPC namespace others may join."""
    ipc_mode = other.host_config.get("IpcMode") or ""
    if ipc_mode == "host":
        return "/dev/shm"
    if ipc_mode == "shareable":
        return shm_path(directory(other.id))
    if target(ipc_mode) and other.data.get("ShmPath"):
        return str(other.data["ShmPath"])  # a joiner's: the one it shares
    raise errdefs.InvalidArgument(f"container {reference}: non-shareable IPC (hint: use IpcMode:shareable for "
                                  "the donor container)")


def apply(spec: ContainerSpec, joined: Joined, own_shm: str = "") -> ContainerSpec:
    """``spec`` with the namespaces it joins and its /dev/shm: the other container's, or its
    own shareable one (``own_shm``) bound instead of a private tmpfs."""
    shm = joined.shm or own_shm
    mounts = spec.mounts
    if shm:
        mounts = tuple(sorted((*mounts, MountSpec("/dev/shm", "bind", shm, ("rbind", "nosuid", "noexec", "nodev"))),
                              key=lambda item: os.path.normpath(item.destination).count("/")))
    return replace(spec, namespace_paths=joined.namespace_paths,
                   network_namespace=joined.network_namespace or spec.network_namespace,
                   mounts=mounts, shm_size=0 if shm else spec.shm_size)


def prepare(spec: ContainerSpec, joined: Joined, host: Mapping[str, Any],
            directory: str) -> tuple[ContainerSpec, str]:
    """The spec of a run with what it joins (:func:`apply`), and the host directory bound onto
    its /dev/shm ("" for a tmpfs of its own or none): the host's for ``IpcMode`` ``host``; a
    ``shareable`` container's own tmpfs is mounted here, under its ``directory`` (undone by
    :func:`release`)."""
    own = ""
    if host.get("IpcMode") == "shareable":
        own = shm_path(directory)
        mount_shm(own, spec.shm_size)
    elif host.get("IpcMode") == "host" and os.path.isdir("/dev/shm"):
        own = "/dev/shm"  # the host's, as Docker binds it
    return apply(spec, joined, own), own or joined.shm


def release(host: Mapping[str, Any], directory: str) -> None:
    """Undo :func:`prepare` when a run ends or could not start."""
    if host.get("IpcMode") == "shareable":
        unmount_shm(shm_path(directory))


def start_order(containers: list[Any]) -> list[Any]:
    """``containers`` (records with ``id`` and ``host_config``) ordered so that each comes
    after those whose namespaces it joins (a restart after a reboot starts the others first);
    otherwise in the order given."""
    by_id = {container.id: container for container in containers}
    depth: dict[str, int] = {}

    def depth_of(container_id: str, seen: frozenset[str]) -> int:
        if container_id in depth:
            return depth[container_id]
        others = {target(by_id[container_id].host_config.get(key)) for key, _ in MODES} - {""}
        found = 1 + max((depth_of(other, seen | {other}) for other in others
                         if other in by_id and other not in seen), default=-1)
        depth[container_id] = found
        return found

    return sorted(containers, key=lambda container: depth_of(container.id, frozenset({container.id})))
