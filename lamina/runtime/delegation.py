"""Rootless lamina's cgroups where the host delegates a cgroup v2 subtree to the user.

systemd's ``Delegate=yes`` (``user@<uid>.service``, or ``systemd-run --user --scope -p
Delegate=yes``) hands a cgroup to a user by ownership, per the kernel's cgroup-v2 delegation
rules: the directory and its ``cgroup.procs``, ``cgroup.subtree_control`` and
``cgroup.threads`` belong to the user, who may then make child cgroups, move its processes
between them and enable in the children what the parent offers.  cgroup v1 hierarchies are
never delegated, and on a hybrid host (v1 controllers plus a v2 tree at
``/sys/fs/cgroup/unified``) the v2 tree has no controllers: there a delegated cgroup gives the
freezer (``cgroup.freeze``), ``cgroup.kill`` and membership (``cgroup.procs``) but no limit.

The delegated cgroup ``D`` is the v2 cgroup (``/proc/self/cgroup`` line ``0::<path>``) that a
rootless ``lamina`` process starts in, when it is not the root and the user owns those four
entries.  At rootless start-up (:func:`enter`, before the user namespace is joined) lamina
lays out, under ``<v2 mount>/D``::

    lamina/            no processes of its own (the kernel's "no internal processes" rule)
    lamina/engine/     the lamina processes: the CLI, ``lamina serve``, the monitors
    lamina/pause/      the pause process (:mod:`lamina.rootless`), moved there when made
    lamina/<id>/       one leaf per running container (cgroup_parent ``lamina`` + the id)

moves itself into ``lamina/engine``, then enables in ``D``'s and ``lamina``'s
``cgroup.subtree_control`` every controller the parent offers (``D`` can enable them only once
no process is left in it: the kernel refuses with EBUSY while the user's shell, say, is
there).  The controllers a container can be limited by are those enabled in
``lamina/cgroup.subtree_control``; the others are refused by name
(:func:`lamina.runtime.nocgroup.refuse_limits`).

The tree is the record: :func:`current` finds the delegation again from the process's own
cgroup (``<D>/lamina/engine``) and the files, so a monitor or a server started by a delegated
CLI sees the same; there is no file of lamina's own and nothing to cache (a read of
``/proc/self/cgroup`` and ``/proc/self/mountinfo`` and a few stats).  A process started
outside ``D`` is not delegated and runs containers without cgroups, as before.

Commit point and clean-up: a container's leaf is made by
:meth:`~lamina.runtime.cgroups.CgroupManager.create` before its PID 1 is forked and removed
by the runtime's ``delete`` when the monitor cleans up.  A leaf left behind (a monitor
killed) is swept at start-up by :func:`enter`: an unpopulated leaf whose container has no
monitor (no process holds ``<exec-root>/containers/<id>/monitor.lock``) is removed, at
WARNING level.  ``lamina``, ``engine`` and ``pause`` are kept.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from lamina.log import get_logger
from lamina.records import dataclass

if TYPE_CHECKING:
    from lamina.runtime.cgroups import CgroupLayout, CgroupManager
    from lamina.runtime.nocgroup import PidNamespaceMembers

__all__ = ["Delegation", "LAMINA_CGROUP", "ENGINE_LEAF", "PAUSE_LEAF", "LIMIT_CONTROLLERS", "controller_of",
           "current", "enter", "start_up", "engine_leaf", "own_cgroup", "probe", "process_group"]

log = get_logger("lamina.runtime")

LAMINA_CGROUP = "lamina"
ENGINE_LEAF = "engine"
PAUSE_LEAF = "pause"
_DELEGATED_FILES = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")
# lamina.runtime.cgroups.V2_CONTROLLERS (not imported: a process that is not delegated never
# loads the cgroup modules here)
_V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")
# the container options each controller serves, for the refusals and lamina info
LIMIT_CONTROLLERS = (
    ("memory", "--memory"), ("memory_swap", "--memory-swap"), ("memory_reservation", "--memory-reservation"),
    ("cpu_quota", "--cpus"), ("cpu_period", "--cpu-period"), ("cpu_shares", "--cpu-shares"),
    ("cpuset_cpus", "--cpuset-cpus"), ("cpuset_mems", "--cpuset-mems"), ("pids_limit", "--pids-limit"),
)
_CONTROLLER_OF = {"memory": "memory", "memory_swap": "memory", "memory_reservation": "memory",
                  "cpu_quota": "cpu", "cpu_period": "cpu", "cpu_shares": "cpu",
                  "cpuset_cpus": "cpuset", "cpuset_mems": "cpuset", "pids_limit": "pids"}


def controller_of(field: str) -> str:
    """The v2 controller a :class:`~lamina.runtime.api.Resources` field is written through."""
    return _CONTROLLER_OF[field]


@dataclass(frozen=True)
class Delegation:
    """A cgroup delegated to the rootless user, and what lamina could enable in it."""

    mount: str                       # where the v2 tree is mounted
    path: str                        # the delegated cgroup D, relative to ``mount``
    controllers: tuple[str, ...]     # enabled for containers (lamina/cgroup.subtree_control)
    offered: tuple[str, ...]         # what D's parent gives D (D/cgroup.controllers)
    busy: bool = False               # D has processes of its own: nothing could be enabled in it

    @property
    def directory(self) -> str:
        return os.path.join(self.mount, self.path)

    def leaf(self, name: str) -> str:
        return os.path.join(self.directory, LAMINA_CGROUP, name)

    def layout(self) -> CgroupLayout:
        """The layout a :class:`~lamina.runtime.cgroups.CgroupManager` uses for containers:
        v2, rooted at D, with the enabled controllers."""
        from lamina.runtime.cgroups import CgroupLayout

        mounts = (("", self.mount),) + tuple((name, self.mount) for name in self.controllers)
        return CgroupLayout(2, mounts, delegated=self.path)

    def missing_reason(self, controller: str) -> str:
        """Why ``controller`` cannot limit a container (for the refusals and ``lamina info``)."""
        if controller in self.offered and self.busy:
            return (f"the {controller} controller cannot be enabled in the delegated cgroup {self.directory}, "
                    "which has processes of its own (run lamina alone in its cgroup, e.g. with "
                    "systemd-run --user --scope -p Delegate=yes)")
        return f"the {controller} controller is not delegated to this user"


def own_cgroup(path: str = "/proc/self/cgroup") -> str | None:
    """The calling process's cgroup v2 path (``0::`` line, without the leading slash; ``""``
    is the root), or None without a v2 hierarchy."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n").strip("/")
    except OSError:
        pass
    return None


def _owned(directory: str, uid: int) -> bool:
    """The user ``uid`` was delegated ``directory``: it owns it and its delegation files."""
    try:
        for name in ("", *_DELEGATED_FILES):
            if os.stat(os.path.join(directory, name)).st_uid != uid:
                return False
    except OSError:
        return False
    return True


def _read_words(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="ascii") as handle:
            return tuple(handle.read().split())
    except OSError:
        return ()


def _has_processes(directory: str) -> bool:
    return bool(_read_words(os.path.join(directory, "cgroup.procs")))


def probe(uid: int | None = None) -> Delegation | None:
    """The delegation of the cgroup the calling process is in, as it stands (nothing is
    written): None when there is no v2 tree, the process is in its root, or the user does
    not own the cgroup."""
    uid = os.geteuid() if uid is None else uid
    own = own_cgroup()
    if not own:
        return None
    mount = _v2_mount()
    if mount is None:
        return None
    return _delegation(mount, _delegated_root(own), uid)


def _v2_mount() -> str | None:
    """The v2 tree's mount point: a stat finds it at its usual places (only cgroup2 has a
    ``cgroup.controllers`` file), else ``/proc/self/mountinfo`` is read (~0.2 ms)."""
    for point in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(point, "cgroup.controllers")):
            return point
    from lamina.runtime.cgroups import unified_mount

    return unified_mount()


def _delegated_root(own: str) -> str:
    # a lamina process already placed in its leaf: D is two levels up
    parts = own.split("/")
    if len(parts) > 2 and parts[-2] == LAMINA_CGROUP and parts[-1] in (ENGINE_LEAF, PAUSE_LEAF):
        return "/".join(parts[:-2])
    return own


def _delegation(mount: str, path: str, uid: int) -> Delegation | None:
    directory = os.path.join(mount, path)
    if not path or not _owned(directory, uid):
        return None
    enabled = _read_words(os.path.join(directory, LAMINA_CGROUP, "cgroup.subtree_control"))
    offered = tuple(name for name in _read_words(os.path.join(directory, "cgroup.controllers"))
                    if name in _V2_CONTROLLERS)
    return Delegation(mount=mount, path=path, controllers=tuple(name for name in enabled if name in _V2_CONTROLLERS),
                      offered=offered, busy=_has_processes(directory))


def current() -> Delegation | None:
    """The delegation a lamina process works with: the one whose ``lamina/engine`` leaf it is
    in (put there by :func:`enter`, or born there: a monitor, a server); None otherwise."""
    own = own_cgroup()
    if not own or not own.endswith(f"/{LAMINA_CGROUP}/{ENGINE_LEAF}"):
        return None
    mount = _v2_mount()
    if mount is None:
        return None
    return _delegation(mount, _delegated_root(own), os.geteuid())


def engine_leaf() -> str:
    """The calling process's cgroup when it is a delegated ``lamina/engine`` leaf, else ``""``
    (one read of ``/proc/self/cgroup``): the monitor template serving a starter is keyed by it,
    so that monitors, like the processes that asked for them, are in the delegated cgroup or
    not."""
    own = own_cgroup() or ""
    return own if own.endswith(f"/{LAMINA_CGROUP}/{ENGINE_LEAF}") else ""


def process_group(path: str, pid: int | None, layout: CgroupLayout | None) -> CgroupManager | PidNamespaceMembers:
    """What tracks the processes of the rootless container whose cgroup path is ``path``
    (``lamina/<id>``) and PID 1 ``pid`` (None: being started), for a runtime whose delegated
    layout is ``layout`` (None: not delegated): the cgroup its PID 1 is in when that is
    ``<D>/<path>`` in a cgroup D the user owns (whichever process asks: one started outside D
    still pauses and kills it through its cgroup), a new leaf under ``layout`` when starting,
    the leaf left under ``layout`` after its PID 1 exited, else its pid namespace's members."""
    from lamina.runtime.cgroups import CgroupManager
    from lamina.runtime.nocgroup import PidNamespaceMembers

    if pid is not None:
        found = _delegated_container(pid, path, layout)
        if found is not None:
            return CgroupManager(path, found)
    if layout is not None and layout.unified is not None and (
            pid is None or os.path.isdir(os.path.join(layout.unified, layout.delegated, path))):
        return CgroupManager(path, layout)
    return PidNamespaceMembers(path, pid)


def _delegated_container(pid: int, path: str, layout: CgroupLayout | None) -> CgroupLayout | None:
    """The layout rooted at D when ``pid`` is in the cgroup ``<D>/<path>`` and D is the
    user's; None otherwise (no such process, or one in another cgroup)."""
    cgroup = own_cgroup(f"/proc/{pid}/cgroup")
    if not cgroup or not cgroup.endswith(f"/{path}"):
        return None
    root = cgroup[: -len(path) - 1]
    if layout is not None and layout.delegated == root:
        return layout
    mount = _v2_mount()
    delegation = None if mount is None else _delegation(mount, root, os.geteuid())
    return None if delegation is None else delegation.layout()


def _make(directory: str) -> None:
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        pass


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def _enable(directory: str) -> None:
    """Enable in ``directory``'s children every v2 controller it is offered, one at a time
    (a refusal of one leaves the others)."""
    enabled = set(_read_words(os.path.join(directory, "cgroup.subtree_control")))
    for name in _read_words(os.path.join(directory, "cgroup.controllers")):
        if name in _V2_CONTROLLERS and name not in enabled:
            try:
                _write(os.path.join(directory, "cgroup.subtree_control"), f"+{name}")
            except OSError as exc:
                if exc.errno != errno.EBUSY:  # EBUSY: the cgroup has processes (reported by probe)
                    log.warning("cannot enable the %s controller in %s: %s", name, directory, exc.strerror)


def enter(exec_root: str) -> Delegation | None:
    """At rootless start-up, in the host's user namespace: when the process's cgroup is
    delegated to the user, lay out ``lamina/{engine,pause}``, move the process into
    ``lamina/engine``, enable the offered controllers and sweep the leaves of dead
    containers; the delegation (None: not delegated, nothing was touched)."""
    delegation = probe()
    if delegation is None:
        return None
    root = os.path.join(delegation.directory, LAMINA_CGROUP)
    try:
        for directory in (root, os.path.join(root, ENGINE_LEAF), os.path.join(root, PAUSE_LEAF)):
            _make(directory)
        if not engine_leaf():
            _write(os.path.join(root, ENGINE_LEAF, "cgroup.procs"), "0")
    except OSError as exc:
        log.warning("the delegated cgroup %s cannot be used, containers get no cgroup: %s",
                    delegation.directory, exc.strerror)
        return None
    _tidy(delegation.directory, exec_root)
    return _delegation(delegation.mount, delegation.path, os.geteuid())


def start_up(exec_root: str) -> None:
    """What :func:`enter` does at each command's start, for a process that lives on in the
    engine leaf inside the rootless namespaces (the engine cache, which runs the user's
    commands): enable the controllers offered since, sweep the leaves of dead containers."""
    delegation = current()
    if delegation is not None:
        _tidy(delegation.directory, exec_root)


def _tidy(directory: str, exec_root: str) -> None:
    """Enable the offered controllers in the delegated cgroup ``directory`` and its ``lamina``
    child, and sweep the leaves of dead containers."""
    root = os.path.join(directory, LAMINA_CGROUP)
    _enable(directory)
    _enable(root)
    _sweep(root, exec_root)


def _sweep(root: str, exec_root: str) -> None:
    from lamina import fsutil

    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        leaf = os.path.join(root, name)
        if name in (ENGINE_LEAF, PAUSE_LEAF) or not os.path.isdir(leaf):
            continue
        if "populated 0" not in _read_lines(os.path.join(leaf, "cgroup.events")):
            continue
        if fsutil.lock_is_held(os.path.join(exec_root, "containers", name, "monitor.lock")):
            continue  # its container is being started, or its monitor is cleaning up
        try:
            os.rmdir(leaf)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("cannot remove the cgroup %s of a dead container: %s", leaf, exc.strerror)
            continue
        log.warning("removed the cgroup %s left by a dead container", leaf)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().splitlines()
    except OSError:
        return []

