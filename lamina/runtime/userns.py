"""The native runtime's start of a container in a new user namespace (``--userns-remap``).

The container's pid namespace must belong to its user namespace (mounting ``/proc`` needs
CAP_SYS_ADMIN over the user namespace that owns the pid namespace), and a process cannot move
its caller into a new user namespace and back.  So the start takes one intermediate process:

1. the caller (the monitor) gets the user namespace with the container's maps from
   :func:`lamina.idmap.userns_fd` (the one its root filesystem's idmapped mounts were made
   with: one per monitor, so one per container), becomes a child subreaper and forks the
   *intermediate*;
2. the intermediate joins the container's network namespace when it has one to join (a
   sandbox lamina.network made: it belongs to the host's user namespace, which the
   intermediate leaves next) and writes the container's ``net.*`` sysctls there, then
   ``setns`` into the user namespace (the host's root may: it is a child of the host's);
3. the intermediate ``unshare(CLONE_NEWPID)`` (the new pid namespace belongs to the user
   namespace), forks the container's PID 1, writes its host pid on the pid pipe and exits; PID 1
   is reparented to the caller, which reaps the intermediate at once and PID 1 later.

PID 1 unshares its mount namespace and, still the host's uid 0 (unmapped inside, with
capabilities only over its own namespaces), opens the root filesystem and every bind source
(:func:`open_bind_sources`: lamina's directories are reachable by that uid only); then it
becomes the namespace's root (:func:`become_namespace_root`) and creates its other
namespaces, so that they and what it mounts belong to that root.  An error of the
intermediate goes to the status pipe like the child's (:mod:`lamina.runtime.child`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lamina import errdefs
from lamina import sys as lsys
from lamina.runtime import capabilities as caps
from lamina.runtime.api import MountSpec
from lamina.records import replace

__all__ = ["become_namespace_root", "fork_in_user_namespace", "open_bind_sources"]


def become_namespace_root() -> None:
    """Switch to uid and gid 0 of the current user namespace, keeping the capabilities."""
    caps.set_keep_capabilities(True)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    caps.set_keep_capabilities(False)


def open_bind_sources(mounts: tuple[MountSpec, ...]) -> tuple[MountSpec, ...]:
    """``mounts`` with each bind source opened (O_PATH, close-on-exec) and named as
    ``/proc/self/fd/N``: reached once with the host's uid 0, usable after the switch to the
    namespace's root.  A source that cannot be opened stays as it is (its mount reports it)."""
    out = []
    for item in mounts:
        if item.type == "bind" or "bind" in item.options or "rbind" in item.options:
            try:
                fd = os.open(item.source, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                out.append(item)
                continue
            item = replace(item, source=f"/proc/self/fd/{fd}")
        out.append(item)
    return tuple(out)


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 64)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_network_sysctls(sysctls: tuple[tuple[str, str], ...]) -> None:
    for key, value in sysctls:
        try:
            _write("/proc/sys/" + key.replace(".", "/"), value.encode())
        except OSError as exc:
            raise errdefs.System(f"write sysctl {key}={value}: {exc.strerror}") from exc


def fork_in_user_namespace(*, namespace_fd: int, network_namespace: str,
                           network_sysctls: tuple[tuple[str, str], ...] = (),
                           child: Callable[[], None], report: Callable[[BaseException], int]) -> int:
    """Fork ``child`` as PID 1 of a new pid namespace in the user namespace ``namespace_fd``
    (see the module docstring); returns its host pid, or -1 when the intermediate failed (its
    error is on the status pipe ``report`` writes to).  ``child`` never returns.
    ``network_sysctls`` (``net.*``) are written into the joined network namespace while the
    intermediate still has the host's capabilities over it."""
    caps.prctl(caps.PR_SET_CHILD_SUBREAPER, 1)
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC)
    intermediate = os.fork()
    if intermediate == 0:  # pragma: no cover - runs in the forked intermediate
        code = 125
        try:
            os.close(pid_read)
            if network_namespace:
                network_fd = os.open(network_namespace, os.O_RDONLY | os.O_CLOEXEC)
                lsys.setns(network_fd, lsys.CLONE_NEWNET)
                os.close(network_fd)
                _write_network_sysctls(network_sysctls)
            lsys.setns(namespace_fd, lsys.CLONE_NEWUSER)
            lsys.unshare(lsys.CLONE_NEWPID)
            pid = os.fork()
            if pid == 0:
                os.close(pid_write)
                child()
                os._exit(125)
            os.write(pid_write, str(pid).encode("ascii"))
            os.close(pid_write)  # EOF for the caller now, not after this process's teardown
            code = 0
        except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
            code = report(exc)
        finally:
            os._exit(code)
    os.close(pid_write)
    try:
        text = _read_all(pid_read)
    finally:
        os.close(pid_read)
        while True:
            try:
                os.waitpid(intermediate, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover
                continue
    return int(text) if text.isdigit() else -1
