"""cgroup v1 and v2 management for one container: layout, lifecycle, membership, freezer, kill.

The limits are written by :mod:`lamina.runtime.cgroup_limits` and the accounting (stats, OOM
kills) read by :mod:`lamina.runtime.cgroup_stats`, both through :class:`CgroupManager`'s files.

Layout detection (:func:`detect_layout`) reads ``/proc/self/mountinfo``:

- **v1** (legacy, or *hybrid*: v1 controllers plus a cgroup2 mount at
  ``/sys/fs/cgroup/unified``): one hierarchy per controller, mounted under
  ``/sys/fs/cgroup/<controllers>``; controllers may share a hierarchy (``cpu,cpuacct``).
  The v1 controllers win when both exist, as Docker does.
- **v2** (unified): one cgroup2 tree, usually at ``/sys/fs/cgroup``, whose root lists its
  controllers in ``cgroup.controllers``.

A container's cgroup is ``<hierarchy mount>/<path>`` with ``path`` = ``lamina/<id>`` (the
``cgroup_parent`` plus the id), absolute from the hierarchy root like Docker's cgroupfs
driver (``/docker/<id>``), whatever cgroup the caller is in.  Rootless lamina with a delegated
cgroup (:mod:`lamina.runtime.delegation`) roots the tree there instead: the layout's
``delegated`` path is inserted, ``<v2 mount>/<delegated>/lamina/<id>``; such a layout is v2
only (v1 hierarchies are never delegated), lists only the delegated controllers, and attaches
no device filter (an unprivileged user cannot load one; the device nodes a rootless container
gets are binds of the host's, usable only where the host lets the user use them).

Files written (v1 | v2):

- ``--memory``: ``memory.limit_in_bytes`` | ``memory.max``
- ``--memory-swap`` (memory + swap): ``memory.memsw.limit_in_bytes`` | ``memory.swap.max``
  (swap only: the total minus the memory limit)
- ``--cpus``: ``cpu.cfs_period_us`` + ``cpu.cfs_quota_us`` | ``cpu.max`` ("quota period")
- ``--cpu-shares``: ``cpu.shares`` | ``cpu.weight`` = 1 + (shares - 2) * 9999 / 262142
- ``--cpuset-cpus``: ``cpuset.cpus`` (v1: an empty ``cpuset.cpus``/``cpuset.mems`` of a new
  cgroup is copied from its parent first, or no task could join it) | ``cpuset.cpus``
- ``--pids-limit``: ``pids.max`` on both ("max" for unlimited)
- devices: deny all, then Docker's default allow list (null, zero, full, random, urandom, tty,
  console, ptmx, pts, tun, and mknod of any node), then the container's ``--device`` and
  ``--device-cgroup-rule`` rules (``a *:* rwm`` for ``--privileged``).  v1: ``devices.deny``
  "a" and one ``devices.allow`` write per rule | v2: no file; an eBPF device filter generated
  from the same rules (:mod:`lamina.runtime.devicefilter`) attached to the container's cgroup
  when it is created (the defaults) and replaced by :meth:`CgroupManager.allow_devices`, both
  before any process joins.

Every write that the kernel refuses raises an :mod:`lamina.errdefs` error naming the file and
the value.  Removal (:meth:`CgroupManager.remove`) rmdirs the container's directory in each
hierarchy once its processes are gone, retrying briefly while the kernel finishes exits; the
``cgroup_parent`` directory is shared and kept.
"""

from __future__ import annotations

import errno
import os
import signal as signal_module
import time
from typing import Protocol

from lamina import errdefs
from lamina.records import dataclass
from lamina.runtime import cgroup_stats, devicefilter
from lamina.runtime.api import Resources
from lamina.runtime.cgroup_limits import apply_resources

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "V1_CONTROLLERS",
    "V2_CONTROLLERS",
    "CgroupLayout",
    "CgroupManager",
    "detect_layout",
    "enter_cgroups",
    "unified_mount",
]

# every v1 hierarchy gets the container's cgroup (hugetlb too: a container left at the root of
# a hierarchy could reach its release_agent), as runc does
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices", "hugetlb",
                  "net_cls", "net_prio", "perf_event", "rdma", "misc", "name=systemd")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")

# Docker's default device cgroup rules (v1 devices.allow syntax), after "a" is denied
DEFAULT_DEVICE_RULES = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
)

_FREEZE_TIMEOUT = 5.0


@dataclass(frozen=True)
class CgroupLayout:
    """Where the cgroup filesystems are mounted.

    ``version`` 1: ``mounts`` maps each v1 controller to its hierarchy's mount point.
    ``version`` 2: ``mounts`` maps each enabled controller (and ``""``) to the unified mount.
    ``delegated``: the cgroup, relative to the v2 mount, that a rootless user was delegated
    (containers' cgroups are made under it); ``""``: the hierarchy roots.
    """

    version: int
    mounts: tuple[tuple[str, str], ...]
    delegated: str = ""

    def mount_point(self, controller: str) -> str | None:
        for name, point in self.mounts:
            if name == controller:
                return point
        return None

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.mounts if name)

    @property
    def unified(self) -> str | None:
        return self.mount_point("") if self.version == 2 else None


def _unescape(value: str) -> str:
    return value.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _cgroup_filesystems(mountinfo: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> mount point, the first cgroup2 mount point or None)."""
    v1: dict[str, str] = {}
    unified: str | None = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise errdefs.FailedPrecondition(f"cannot read {mountinfo}: {exc.strerror}") from exc
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, point, super_options = tail[0], _unescape(fields[4]), tail[2].split(",")
        if fstype == "cgroup":
            for option in super_options:
                if option in V1_CONTROLLERS and option not in v1:
                    v1[option] = point
        elif fstype == "cgroup2" and unified is None:
            unified = point
    return v1, unified


def unified_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup v2 tree is mounted (``/sys/fs/cgroup`` on a v2 host,
    ``/sys/fs/cgroup/unified`` on a hybrid one), whichever version :func:`detect_layout`
    picks; None without one."""
    return _cgroup_filesystems(mountinfo)[1]


def detect_layout(mountinfo: str = "/proc/self/mountinfo") -> CgroupLayout:
    """The cgroup layout of this mount namespace; FailedPrecondition when there is none."""
    v1, unified = _cgroup_filesystems(mountinfo)
    if v1:
        return CgroupLayout(1, tuple(sorted(v1.items())))
    if unified is not None:
        try:
            with open(os.path.join(unified, "cgroup.controllers"), encoding="ascii") as handle:
                available = handle.read().split()
        except OSError as exc:
            raise errdefs.FailedPrecondition(f"cannot read {unified}/cgroup.controllers: {exc.strerror}") from exc
        mounts = [("", unified)] + [(name, unified) for name in V2_CONTROLLERS if name in available]
        return CgroupLayout(2, tuple(mounts))
    raise errdefs.FailedPrecondition("no cgroup filesystem is mounted (looked for cgroup and cgroup2 in "
                                     f"{mountinfo})")


def enter_cgroups(procs_fds: list[int]) -> None:
    """Move the calling (single-threaded) process into the cgroups whose membership files
    are open as ``procs_fds`` (from :meth:`CgroupManager.open_procs_files`) and close them.
    "0" names the writer itself, whatever pid namespace it is in."""
    try:
        for fd in procs_fds:
            os.write(fd, b"0")
    finally:
        for fd in procs_fds:
            os.close(fd)


def _error(path: str, value: str | None, exc: OSError) -> errdefs.LaminaError:
    what = f"cannot write {value!r} to {path}" if value is not None else f"cannot read {path}"
    if exc.errno == errno.ENOENT:
        return errdefs.FailedPrecondition(f"{what}: the file does not exist (controller not available?)")
    if exc.errno in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
        return errdefs.InvalidArgument(f"{what}: {exc.strerror}")
    if exc.errno == errno.EBUSY:
        return errdefs.Conflict(f"{what}: {exc.strerror}")
    return errdefs.System(f"{what}: {exc.strerror}")


class CgroupManager:
    """The cgroups of one container, ``path`` (e.g. ``lamina/<id>``) in every hierarchy."""

    def __init__(self, path: str, layout: CgroupLayout | None = None) -> None:
        path = path.strip("/")
        if not path or any(part in ("", ".", "..") for part in path.split("/")):
            raise errdefs.InvalidArgument(f"invalid cgroup path {path!r}")
        self.path = path
        self.layout = layout if layout is not None else detect_layout()

    @property
    def version(self) -> int:
        """1 or 2: the cgroup version of the layout."""
        return self.layout.version

    # -- locations -------------------------------------------------------------------------

    def directory(self, controller: str) -> str | None:
        """The container's directory in the hierarchy of ``controller`` (``""``: v2 tree)."""
        point = self.layout.mount_point(controller)
        return None if point is None else os.path.join(point, self.layout.delegated, self.path)

    def directories(self) -> list[str]:
        """One directory per hierarchy (co-mounted controllers share one)."""
        seen: list[str] = []
        for _, point in self.layout.mounts:
            directory = os.path.join(point, self.layout.delegated, self.path)
            if directory not in seen:
                seen.append(directory)
        return seen

    def _file(self, controller: str, name: str) -> str | None:
        directory = self.directory(controller)
        return None if directory is None else os.path.join(directory, name)

    def require(self, controller: str, name: str) -> str:
        path = self._file(controller, name)
        if path is None:
            raise errdefs.FailedPrecondition(
                f"the {controller} cgroup controller is not available (cgroup v{self.layout.version}); "
                f"cannot use {name}")
        return path

    # -- file access -----------------------------------------------------------------------

    @staticmethod
    def write(path: str, value: str) -> None:
        CgroupManager.write_each(path, (value,))

    @staticmethod
    def write_each(path: str, values: tuple[str, ...] | list[str]) -> None:
        """Write each of ``values`` to ``path`` with a write of its own, through one descriptor
        (a v1 ``devices.allow`` takes one rule per write: one open for a dozen rules)."""
        if not values:
            return
        try:
            # O_TRUNC as runc does: ignored by cgroupfs, right for anything else
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(path, values[0], exc) from exc
        try:
            for value in values:
                try:
                    os.write(fd, value.encode())
                except OSError as exc:
                    raise _error(path, value, exc) from exc
        finally:
            os.close(fd)

    @staticmethod
    def read(path: str) -> str:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                return handle.read()
        except OSError as exc:
            raise _error(path, None, exc) from exc

    def read_optional(self, controller: str, name: str) -> str | None:
        path = self._file(controller, name)
        if path is None:
            return None
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    # -- lifecycle ------------------------------------------------------------------------

    def exists(self) -> bool:
        return any(os.path.isdir(directory) for directory in self.directories())

    def create(self) -> None:
        """Make the container's cgroup in every hierarchy (idempotent) and restrict its devices
        to Docker's defaults (v1 ``devices`` files, v2 a device filter that replaces any
        attached before)."""
        if self.layout.version == 2:
            self._create_v2()
            return
        for directory in self.directories():
            point = directory[: -len(self.path) - 1]
            is_cpuset = directory == self.directory("cpuset")
            current = point
            for part in self.path.split("/"):
                parent, current = current, os.path.join(current, part)
                _make_cgroup(current)
                if is_cpuset:
                    self._inherit_cpuset(parent, current)
        devices = self.directory("devices")
        if devices is not None:
            self.write(os.path.join(devices, "devices.deny"), "a")
            self.write_each(os.path.join(devices, "devices.allow"), DEFAULT_DEVICE_RULES)

    def allow_devices(self, rules: tuple[str, ...]) -> None:
        """Allow device rules (``c 10:229 rwm``, ``a *:* rwm``) beyond the defaults: v1 writes
        them to ``devices.allow``, v2 replaces the cgroup's device filter by one built from the
        defaults and ``rules``."""
        if self.layout.version == 2:
            if not self.layout.delegated:
                self._attach_device_filter(rules)
            return
        devices = self.directory("devices")
        if devices is None:
            return
        self.write_each(os.path.join(devices, "devices.allow"), ["a" if rule.startswith("a ") else rule for rule in rules])

    def _inherit_cpuset(self, parent: str, child: str) -> None:
        # a v1 cpuset cgroup starts with no cpus and no memory nodes: no task could join it
        for name in ("cpuset.cpus", "cpuset.mems"):
            if self.read(os.path.join(child, name)).strip():
                continue
            self.write(os.path.join(child, name), self.read(os.path.join(parent, name)).strip())

    def _create_v2(self) -> None:
        unified = self.layout.unified
        assert unified is not None
        current = os.path.join(unified, self.layout.delegated)
        wanted = [name for name in self.layout.controllers]
        for part in self.path.split("/"):
            # controllers must be enabled in every ancestor's subtree_control
            available = self.read(os.path.join(current, "cgroup.controllers")).split()
            enable = " ".join(f"+{name}" for name in wanted if name in available)
            if enable:
                self.write(os.path.join(current, "cgroup.subtree_control"), enable)
            current = os.path.join(current, part)
            _make_cgroup(current)
        if not self.layout.delegated:
            self._attach_device_filter(())

    def _attach_device_filter(self, rules: tuple[str, ...]) -> None:
        directory = self.directory("")
        assert directory is not None
        parsed = [devicefilter.parse_rule(rule) for rule in DEFAULT_DEVICE_RULES + tuple(rules)]
        devicefilter.attach(directory, parsed)

    def open_procs_files(self) -> list[int]:
        """Open, for writing, the file through which a process joins each hierarchy, to join
        later from a process that can no longer reach the cgroup filesystems (see
        :func:`enter_cgroups`).  v1: ``tasks`` — writing "0" there moves only the calling
        thread, which lets the kernel skip the global threadgroup lock whose RCU grace period
        costs ~17 ms per migration (the joining process is single-threaded, so the thread is
        the process); v2: ``cgroup.procs``."""
        name = "tasks" if self.layout.version == 1 else "cgroup.procs"
        fds: list[int] = []
        try:
            for directory in self.directories():
                path = os.path.join(directory, name)
                try:
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                except OSError as exc:
                    raise _error(path, "<pid>", exc) from exc
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def add(self, pid: int) -> None:
        """Move process ``pid`` (a host pid) into the container's cgroups."""
        for directory in self.directories():
            self.write(os.path.join(directory, "cgroup.procs"), str(pid))

    def remove(self, timeout: float = 2.0) -> None:
        """Remove the container's cgroups; processes must be gone (Conflict otherwise)."""
        deadline = time.monotonic() + timeout
        for directory in self.directories():
            delay = 0.005
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise errdefs.System(f"cannot remove cgroup {directory}: {exc.strerror}") from exc
                    if time.monotonic() >= deadline:
                        raise errdefs.Conflict(f"cannot remove cgroup {directory}: it still has processes "
                                               f"({self._procs_in(directory)})") from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)

    # -- limits and accounting (lamina.runtime.cgroup_limits, lamina.runtime.cgroup_stats) ----

    def apply(self, resources: Resources) -> None:
        """Write the limits of ``resources`` that are set (``None`` leaves a limit as it is)."""
        apply_resources(self, resources)

    def stats(self) -> dict[str, object]:
        """Docker-shaped statistics: ``cpu_stats``, ``memory_stats``, ``pids_stats``,
        ``blkio_stats`` (the fields of ``GET /containers/{id}/stats``).  A delegated cgroup
        may lack controllers: without pids, ``pids_stats`` counts ``cgroup.threads``; without
        memory, ``memory_stats`` is the members' resident memory from /proc (no limit: the
        host's memory), as for a container without a cgroup."""
        result = cgroup_stats.stats(self)
        if self.layout.version == 2 and not result.get("pids_stats"):
            threads = self.read_optional("", "cgroup.threads")
            if threads is not None:
                result["pids_stats"] = {"current": len(threads.split())}
        if self.layout.delegated and not result.get("memory_stats"):
            from lamina.runtime.nocgroup import proc_usage

            result["memory_stats"] = {"usage": proc_usage(self.pids())[2], "limit": cgroup_stats.host_memory_total()}
        return result

    def oom_kill_count(self) -> int:
        """How many processes of the container the kernel's OOM killer has killed."""
        return cgroup_stats.oom_kill_count(self)

    def oom_killed(self) -> bool:
        return self.oom_kill_count() > 0

    # -- freezer --------------------------------------------------------------------------

    def freeze(self) -> None:
        """Freeze every process of the container; returns once the kernel reports it frozen."""
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        if self.layout.version == 2:
            events = self.read_optional("", "cgroup.events") or ""
            return "frozen 1" in events.splitlines()
        return (self.read_optional("freezer", "freezer.state") or "").strip() == "FROZEN"

    def _set_frozen(self, frozen: bool) -> None:
        if self.layout.version == 2:
            path = self.require("", "cgroup.freeze")
            value = "1" if frozen else "0"
        else:
            path = self.require("freezer", "freezer.state")
            value = "FROZEN" if frozen else "THAWED"
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        delay = 0.001
        while True:
            self.write(path, value)
            if self.frozen() == frozen:
                return
            if time.monotonic() >= deadline:
                if frozen:
                    self.write(path, "0" if self.layout.version == 2 else "THAWED")
                raise errdefs.System(f"timed out waiting for {path} to become {value}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # -- processes ------------------------------------------------------------------------

    def _procs_in(self, directory: str) -> list[int]:
        try:
            with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as handle:
                return [int(line) for line in handle.read().split()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _error(os.path.join(directory, "cgroup.procs"), None, exc) from exc

    def pids(self) -> list[int]:
        """Host pids of the container's processes."""
        for controller in ("", "pids", "freezer", "memory", "cpu"):
            directory = self.directory(controller)
            if directory is not None and (self.layout.version == 2 or controller):
                return self._procs_in(directory)
        directories = self.directories()
        return self._procs_in(directories[0]) if directories else []

    def kill_all(self, signal: int = signal_module.SIGKILL) -> None:
        """Send ``signal`` to every process of the container.  SIGKILL is sent with the cgroup
        frozen (v1) or through ``cgroup.kill`` (v2), so a forking process cannot escape."""
        if signal == signal_module.SIGKILL and self.layout.version == 2:
            kill_file = self._file("", "cgroup.kill")
            if kill_file is not None and os.path.exists(kill_file):
                self.write(kill_file, "1")
                return
        freeze = signal == signal_module.SIGKILL and self.directory("freezer" if self.layout.version == 1 else "")
        frozen = False
        if freeze:
            try:
                self.freeze()
                frozen = True
            except errdefs.LaminaError:
                frozen = False
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def kill_remaining(self, timeout: float = 0.1) -> list[int]:
        """Thaw the cgroup, SIGKILL every process in it and wait up to ``timeout`` seconds for
        them to leave; the pids still there.  The wait is short: callers retry (a process
        in uninterruptible sleep leaves when its I/O ends)."""
        remaining = self.pids() if self.exists() else []
        if not remaining:
            return []
        try:
            self.thaw()
        except errdefs.LaminaError:
            pass  # no freezer: nothing was frozen
        return kill_until_gone(self, timeout)


def _make_cgroup(path: str) -> None:
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise errdefs.System(f"cannot create cgroup {path}: {exc.strerror}") from exc


class _Members(Protocol):
    def pids(self) -> list[int]: ...

    def kill_all(self, signal: int) -> None: ...


def kill_until_gone(members: _Members, timeout: float) -> list[int]:
    """SIGKILL every member, then wait up to ``timeout`` for them to go; the pids still
    there at the deadline (none when all went)."""
    members.kill_all(signal_module.SIGKILL)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        remaining = members.pids()
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
