"""A container in a user namespace under crun or runc (``--userns-remap``): what the OCI
runtime, which sets the container up as the namespace's root, needs beyond the spec's
``user`` namespace and ``uidMappings``/``gidMappings``.

runc switches to the namespace's root (the mapping's host root, e.g. uid 100000) before it
mounts anything, and crun before its pivot: from then on it resolves paths as an unprivileged
user of the host, with capabilities over its own namespaces only.  lamina's layer directories
(``<data-root>/overlay2/``, mode 0710 with group root) and the container's directory
(``<data-root>/containers/<id>/``, 0700) are closed to it, as they must stay to everyone else.
So, as containerd prepares a bundle for a user namespace and as Docker opens
``<data-root>/<uid>.<gid>/`` to the remapped root's group only:

- the bundle ``<exec-root>/oci/<id>/`` becomes mode 0710 with group the mapping's root gid, and
  the container's root filesystem (lamina's overlay, mounted beforehand with idmapped lower
  layers) is bound at ``<bundle>/rootfs``, which is ``root.path``.  The bind is a mount of the
  caller's mount namespace; :func:`release_rootfs` detaches it before the bundle is removed
  (a removal that descended into it would delete the container's files).  Every directory
  above the exec root must let others search it (``o+x``; Docker requires the same of its data
  root's parents): :func:`check_traversable` says which one does not;
- bind-mount sources are reached by the runtimes themselves: both open them before they
  leave the host's user namespace.  Each bind keeps the flags the kernel locks on its source's
  mount (:func:`keep_locked_flags`, Docker's ``getUnprivilegedMountFlags``): a remount in the
  user namespace that dropped one is refused;
- the container's network namespace, when lamina made it (a sandbox, owned by the host's user
  namespace), is joined before the user namespace is created, but its ``net.*`` sysctls cannot
  be written from inside, nor a sysfs mounted: :func:`prepare_network` writes them from the
  host's side before ``create``, as the native runtime's intermediate does
  (:mod:`lamina.runtime.userns`), and mounts a sysfs of that namespace at ``<bundle>/sys``,
  bound read-only on the container's ``/sys``;
- runc before 1.3 joins an exec's user namespace before its other namespaces, and then may not
  join that network namespace (EPERM; runc 1.3 joins the others first, as crun does): for it
  the namespace leaves the spec and the binary runs in it instead, ``create`` and every
  ``exec`` under ``nsenter --net`` (:func:`enter_network_namespace_around`; the container's
  processes inherit it, and the annotation ``org.lamina.network-namespace`` of ``config.json``
  keeps it for the execs).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from lamina import errdefs
from lamina import mount as lmount
from lamina import sys as lsys
from lamina.log import get_logger

__all__ = ["NETWORK_ANNOTATION", "ROOTFS", "check_traversable", "enter_network_namespace_around",
           "entered_network_namespace", "host_group_range", "host_root", "in_network_namespace", "keep_locked_flags",
           "open_to_search", "prepare_network", "prepare_rootfs", "release_mounts", "split_network_sysctls"]

log = get_logger("lamina.runtime.oci")

ROOTFS = "rootfs"   # the root filesystem's bind, inside the bundle
SYSFS = "sys"       # the sysfs of a joined network namespace, inside the bundle
SYSFS_OPTIONS = ("ro", "nosuid", "nodev", "noexec")
NETWORK_ANNOTATION = "org.lamina.network-namespace"


def host_root(mappings: Sequence[tuple[int, int, int]]) -> int:
    """The host id of the namespace's id 0 in ``mappings`` ((container, host, size) triples)."""
    for container_id, host_id, size in mappings:
        if container_id <= 0 < container_id + size:
            return host_id
    raise errdefs.InvalidArgument("the user namespace's mappings do not map its root")


def check_traversable(path: str, uid: int, gid: int) -> None:
    """Raise FailedPrecondition unless ``uid``/``gid`` (no capability on the host) may search
    every directory from ``/`` down to ``path``."""
    current = "/"
    for part in [item for item in os.path.abspath(path).split("/") if item]:
        current = os.path.join(current, part)
        try:
            info = os.stat(current)
        except OSError as exc:
            raise errdefs.System(f"cannot stat {current}: {exc.strerror}") from exc
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise errdefs.FailedPrecondition(
                f"{current} (mode {stat.S_IMODE(info.st_mode):04o}) restricts access to the remapped root "
                f"{uid}:{gid}, which an OCI runtime needs to reach {path}; allow 'o+x' on it")


def open_to_search(directory: str) -> None:
    """Let others search ``directory`` (``o+x``, listing stays closed): lamina's exec root and
    the bundles' root, which an OCI runtime in a user namespace goes through."""
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(directory, mode | stat.S_IXOTH)
            log.info("%s: mode %04o -> %04o, for the OCI runtimes' user namespaces", directory, mode,
                     mode | stat.S_IXOTH)
    except OSError as exc:
        raise errdefs.System(f"cannot open {directory} to search: {exc.strerror}") from exc


def prepare_rootfs(bundle: str, rootfs: str, uid: int, gid: int) -> str:
    """Open ``bundle`` to the group ``gid`` (0710), bind ``rootfs`` at ``<bundle>/rootfs`` and
    return that path, after checking that ``uid``/``gid`` can reach it (the bundle's parent
    and grandparent, the state root and lamina's exec root, are opened to search)."""
    target = os.path.join(bundle, ROOTFS)
    state_root = os.path.dirname(bundle)
    for directory in (os.path.dirname(state_root), state_root):
        open_to_search(directory)
    try:
        os.chown(bundle, 0, gid)
        os.chmod(bundle, 0o710)
        os.mkdir(target, 0o700)
    except OSError as exc:
        raise errdefs.System(f"cannot prepare the bundle {bundle} for a user namespace: {exc.strerror}") from exc
    check_traversable(bundle, uid, gid)
    lmount.Mount("bind", rootfs, ("bind",)).mount(target)
    return target


def release_mounts(bundle: str) -> None:
    """Detach the root filesystem's bind and the sysfs from ``bundle`` (nothing when it has
    none); raise System if one is still mounted after, so that the bundle is not removed
    through it."""
    for name in (ROOTFS, SYSFS):
        target = os.path.join(bundle, name)
        if not os.path.isdir(target):
            continue
        for _attempt in range(8):  # stacked mounts: one detach each
            if not lmount.is_mountpoint(target):
                break
            lmount.unmount(target, detach=True)
        else:
            raise errdefs.System(f"{target} is still mounted; the bundle {bundle} is kept")


# statvfs flags a mount made in a user namespace inherits locked from its source's mount
_LOCKED_FLAGS = ((os.ST_RDONLY, "ro"), (os.ST_NOSUID, "nosuid"), (os.ST_NODEV, "nodev"), (os.ST_NOEXEC, "noexec"),
                 (os.ST_NOATIME, "noatime"), (os.ST_NODIRATIME, "nodiratime"), (os.ST_RELATIME, "relatime"))


def keep_locked_flags(config: dict[str, Any]) -> None:
    """Add to each bind mount of ``config`` the flags of its source's mount that the kernel
    locks for a user namespace (a bind remounted there without them is refused), as Docker
    does under remap."""
    for item in config.get("mounts", []):
        options = item.get("options") or []
        if item.get("type") != "bind" and "bind" not in options and "rbind" not in options:
            continue
        try:
            flags = os.statvfs(item["source"]).f_flag
        except OSError:
            continue  # the runtime reports a missing source
        item["options"] = options + [name for bit, name in _LOCKED_FLAGS if flags & bit and name not in options]


def split_network_sysctls(config: dict[str, Any]) -> dict[str, str]:
    """Remove the ``net.*`` sysctls from the OCI ``config`` and return them."""
    sysctls = config.get("linux", {}).get("sysctl") or {}
    network = {key: value for key, value in sysctls.items() if key.startswith("net.")}
    for key in network:
        del sysctls[key]
    if not sysctls:
        config.get("linux", {}).pop("sysctl", None)
    return network


def enter_network_namespace_around(config: dict[str, Any], network_namespace: str) -> None:
    """For runc before 1.3, which joins an exec's user namespace before its other namespaces
    and then lacks the right to join one of the host's user namespace: the network namespace
    leaves ``config`` (runc leaves the container in the one it runs in) and is recorded in its
    annotations; ``create`` and every ``exec`` run the binary in it (``nsenter --net``)."""
    linux = config["linux"]
    linux["namespaces"] = [item for item in linux["namespaces"] if item["type"] != "network"]
    config.setdefault("annotations", {})[NETWORK_ANNOTATION] = network_namespace


def entered_network_namespace(config: dict[str, Any]) -> str | None:
    """The network namespace the binary runs in for ``config``'s container (None: none)."""
    return (config.get("annotations") or {}).get(NETWORK_ANNOTATION) or None


def host_group_range(value: str, gid_mappings: Sequence[tuple[int, int, int]]) -> str:
    """``net.ipv4.ping_group_range`` ``"low high"`` of container gids as host gids (the kernel
    reads it in the writer's user namespace); InvalidArgument when the range is not mapped as
    one piece."""
    try:
        low, high = (int(item) for item in value.split())
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid net.ipv4.ping_group_range {value!r}") from exc
    for inside, outside, size in gid_mappings:
        if inside <= low <= high < inside + size:
            return f"{outside + low - inside} {outside + high - inside}"
    raise errdefs.InvalidArgument(f"net.ipv4.ping_group_range {value!r}: the groups are not mapped in the "
                                  "container's user namespace")


def prepare_network(bundle: str, network_namespace: str, config: dict[str, Any],
                    gid_mappings: Sequence[tuple[int, int, int]]) -> None:
    """A joined network namespace that belongs to the host's user namespace: its ``net.*``
    sysctls of ``config`` written from here (``ping_group_range`` translated to host gids),
    and ``/sys`` a bind of a sysfs of that namespace mounted at ``<bundle>/sys`` (a sysfs mount
    needs CAP_SYS_ADMIN over the user namespace that owns the network namespace, which the
    container's root lacks).  ``config`` is changed to match."""
    sysctls = split_network_sysctls(config)
    if "net.ipv4.ping_group_range" in sysctls:
        sysctls["net.ipv4.ping_group_range"] = host_group_range(sysctls["net.ipv4.ping_group_range"], gid_mappings)
    sysfs = None
    for item in config.get("mounts", []):
        if item["destination"] == "/sys" and item["type"] == "sysfs":
            sysfs = os.path.join(bundle, SYSFS)
            try:
                os.mkdir(sysfs, 0o700)
            except OSError as exc:
                raise errdefs.System(f"cannot create {sysfs}: {exc.strerror}") from exc
            item.update(type="bind", source=sysfs, options=["rbind", *SYSFS_OPTIONS])
    in_network_namespace(network_namespace, sysctls, sysfs)


def in_network_namespace(network_namespace: str, sysctls: Mapping[str, str], sysfs: str | None) -> None:
    """From a child process that joins the network namespace at ``network_namespace`` (this
    process keeps its own): write ``sysctls`` (``net.*``) there and, with ``sysfs``, mount a
    read-only sysfs of that namespace at ``sysfs`` (in this mount namespace)."""
    if not sysctls and sysfs is None:
        return
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        code = 1
        what = f"join {network_namespace}"
        try:
            os.close(error_read)
            fd = os.open(network_namespace, os.O_RDONLY | os.O_CLOEXEC)
            lsys.setns(fd, lsys.CLONE_NEWNET)
            os.close(fd)
            for key, value in sysctls.items():
                what = f"write sysctl {key}={value}"
                target = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(target, value.encode())
                finally:
                    os.close(target)
            if sysfs is not None:
                what = f"mount its sysfs on {sysfs}"
                lmount.Mount("sysfs", "sysfs", SYSFS_OPTIONS).mount(sysfs)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            try:
                os.write(error_write, f"{what}: {exc}".encode()[:1024])
            except BaseException:  # noqa: BLE001
                pass
        finally:
            os._exit(code)
    os.close(error_write)
    try:
        message = b""
        while chunk := os.read(error_read, 4096):
            message += chunk
    finally:
        os.close(error_read)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by a monitor's SIGCHLD handling: its message tells
            status = 1 if message else 0
    if status != 0:
        raise errdefs.System(f"the network namespace {network_namespace}: "
                             f"{message.decode(errors='replace') or 'its preparation failed'}")
