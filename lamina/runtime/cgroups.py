"""cgroup v1 and v2 management for one container: limits, membership, freezer, stats, OOM.

Layout detection (:func:`detect_layout`) reads ``/proc/self/mountinfo``:

- **v1** (legacy, or *hybrid*: v1 controllers plus a cgroup2 mount at
  ``/sys/fs/cgroup/unified``): one hierarchy per controller, mounted under
  ``/sys/fs/cgroup/<controllers>``; controllers may share a hierarchy (``cpu,cpuacct``).
  The v1 controllers win when both exist, as Docker does.
- **v2** (unified): one cgroup2 tree, usually at ``/sys/fs/cgroup``, whose root lists its
  controllers in ``cgroup.controllers``.

A container's cgroup is ``<hierarchy mount>/<path>`` with ``path`` = ``lamina/<id>`` (the
``cgroup_parent`` plus the id), absolute from the hierarchy root like Docker's cgroupfs
driver (``/docker/<id>``), whatever cgroup the caller is in.

Files written (v1 | v2):

- ``--memory``: ``memory.limit_in_bytes`` | ``memory.max``
- ``--memory-swap`` (memory + swap): ``memory.memsw.limit_in_bytes`` | ``memory.swap.max``
  (swap only: the total minus the memory limit)
- ``--cpus``: ``cpu.cfs_period_us`` + ``cpu.cfs_quota_us`` | ``cpu.max`` ("quota period")
- ``--cpu-shares``: ``cpu.shares`` | ``cpu.weight`` = 1 + (shares - 2) * 9999 / 262142
- ``--cpuset-cpus``: ``cpuset.cpus`` (v1: an empty ``cpuset.cpus``/``cpuset.mems`` of a new
  cgroup is copied from its parent first, or no task could join it) | ``cpuset.cpus``
- ``--pids-limit``: ``pids.max`` on both ("max" for unlimited)
- v1 ``devices``: deny all, then Docker's default allow list (null, zero, full, random,
  urandom, tty, console, ptmx, pts, tun, and mknod of any node).  v2 device control needs an
  eBPF program and is not done here.

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

from lamina import errdefs
from lamina.records import dataclass
from lamina.runtime.api import Resources

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "V1_CONTROLLERS",
    "V2_CONTROLLERS",
    "CgroupLayout",
    "CgroupManager",
    "detect_layout",
    "enter_cgroups",
    "host_memory_total",
    "shares_to_weight",
    "system_cpu_usage",
]

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")

# Docker's default device cgroup rules (v1 devices.allow syntax), after "a" is denied
DEFAULT_DEVICE_RULES = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
)

_UNLIMITED_V1 = 9223372036854771712  # PAGE_COUNTER_MAX * page size: v1's "no limit"
_FREEZE_TIMEOUT = 5.0


@dataclass(frozen=True)
class CgroupLayout:
    """Where the cgroup filesystems are mounted.

    ``version`` 1: ``mounts`` maps each v1 controller to its hierarchy's mount point.
    ``version`` 2: ``mounts`` maps each enabled controller (and ``""``) to the unified mount.
    """

    version: int
    mounts: tuple[tuple[str, str], ...]

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


def detect_layout(mountinfo: str = "/proc/self/mountinfo") -> CgroupLayout:
    """The cgroup layout of this mount namespace; FailedPrecondition when there is none."""
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


def shares_to_weight(shares: int) -> int:
    """Docker/runc's --cpu-shares to cgroup v2 cpu.weight conversion ([2, 262144] -> [1, 10000])."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds from ``/proc/stat`` (Docker's ``system_cpu_usage``)."""
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("cpu "):
                ticks = sum(int(value) for value in line.split()[1:8])  # user..softirq, steal
                return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


def host_memory_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


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

    # -- locations -------------------------------------------------------------------------

    def directory(self, controller: str) -> str | None:
        """The container's directory in the hierarchy of ``controller`` (``""``: v2 tree)."""
        point = self.layout.mount_point(controller)
        return None if point is None else os.path.join(point, self.path)

    def directories(self) -> list[str]:
        """One directory per hierarchy (co-mounted controllers share one)."""
        seen: list[str] = []
        for _, point in self.layout.mounts:
            directory = os.path.join(point, self.path)
            if directory not in seen:
                seen.append(directory)
        return seen

    def _file(self, controller: str, name: str) -> str | None:
        directory = self.directory(controller)
        return None if directory is None else os.path.join(directory, name)

    def _require(self, controller: str, name: str) -> str:
        path = self._file(controller, name)
        if path is None:
            raise errdefs.FailedPrecondition(
                f"the {controller} cgroup controller is not available (cgroup v{self.layout.version}); "
                f"cannot use {name}")
        return path

    # -- file access -----------------------------------------------------------------------

    @staticmethod
    def write(path: str, value: str) -> None:
        try:
            # O_TRUNC as runc does: ignored by cgroupfs, right for anything else
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as exc:
            raise _error(path, value, exc) from exc
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

    def _read_optional(self, controller: str, name: str) -> str | None:
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
        """Make the container's cgroup in every hierarchy (idempotent)."""
        if self.layout.version == 2:
            self._create_v2()
            return
        for directory in self.directories():
            point = directory[: -len(self.path) - 1]
            is_cpuset = directory == self.directory("cpuset")
            current = point
            for part in self.path.split("/"):
                parent, current = current, os.path.join(current, part)
                try:
                    os.mkdir(current, 0o755)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise errdefs.System(f"cannot create cgroup {current}: {exc.strerror}") from exc
                if is_cpuset:
                    self._inherit_cpuset(parent, current)
        devices = self.directory("devices")
        if devices is not None:
            self.write(os.path.join(devices, "devices.deny"), "a")
            for rule in DEFAULT_DEVICE_RULES:
                self.write(os.path.join(devices, "devices.allow"), rule)

    def _inherit_cpuset(self, parent: str, child: str) -> None:
        # a v1 cpuset cgroup starts with no cpus and no memory nodes: no task could join it
        for name in ("cpuset.cpus", "cpuset.mems"):
            if self.read(os.path.join(child, name)).strip():
                continue
            self.write(os.path.join(child, name), self.read(os.path.join(parent, name)).strip())

    def _create_v2(self) -> None:
        unified = self.layout.unified
        assert unified is not None
        current = unified
        wanted = [name for name in self.layout.controllers]
        for part in self.path.split("/"):
            # controllers must be enabled in every ancestor's subtree_control
            available = self.read(os.path.join(current, "cgroup.controllers")).split()
            enable = " ".join(f"+{name}" for name in wanted if name in available)
            if enable:
                self.write(os.path.join(current, "cgroup.subtree_control"), enable)
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass
            except OSError as exc:
                raise errdefs.System(f"cannot create cgroup {current}: {exc.strerror}") from exc

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

    # -- limits ---------------------------------------------------------------------------

    def apply(self, resources: Resources) -> None:
        """Write the limits of ``resources`` that are set (``None`` leaves a limit as it is)."""
        memory, swap = resources.memory, resources.memory_swap
        if memory is not None and memory > 0 and swap is not None and swap > 0 and swap < memory:
            raise errdefs.InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                                          "see usage")
        if resources.cpu_quota is not None and 0 < resources.cpu_quota < 1000:
            raise errdefs.InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if resources.cpu_period is not None and resources.cpu_period != 0 and not (
                1000 <= resources.cpu_period <= 1000000):
            raise errdefs.InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) "
                                          "or larger than 1s (i.e. 1000000)")
        if self.layout.version == 2:
            self._apply_v2(resources)
        else:
            self._apply_v1(resources)

    def _apply_v1(self, resources: Resources) -> None:
        memory, swap = resources.memory, resources.memory_swap
        if memory is not None or swap is not None:
            limit_file = self._require("memory", "memory.limit_in_bytes")
            swap_file = self._require("memory", "memory.memsw.limit_in_bytes") if swap is not None else None
            if swap_file is not None and not os.path.exists(swap_file):
                raise errdefs.FailedPrecondition(
                    f"{swap_file} does not exist: this kernel does not account swap (boot with "
                    "swapaccount=1), so --memory-swap cannot be applied")
            memory_value = None if memory is None else str(memory if memory > 0 else -1)
            swap_value = None if swap is None else str(swap if swap > 0 else -1)
            if memory_value is not None and swap_value is not None:
                # memsw must stay >= memory: raise memsw first when growing, memory first otherwise
                current_swap = int(self.read(swap_file).strip() or 0)  # type: ignore[arg-type]
                new_memory = memory if memory and memory > 0 else _UNLIMITED_V1
                if new_memory > current_swap:
                    self.write(swap_file, swap_value)  # type: ignore[arg-type]
                    self.write(limit_file, memory_value)
                else:
                    self.write(limit_file, memory_value)
                    self.write(swap_file, swap_value)  # type: ignore[arg-type]
            elif memory_value is not None:
                self.write(limit_file, memory_value)
            elif swap_value is not None:
                self.write(swap_file, swap_value)  # type: ignore[arg-type]
        if resources.cpu_period or resources.cpu_quota:
            if resources.cpu_period:
                self.write(self._require("cpu", "cpu.cfs_period_us"), str(resources.cpu_period))
            if resources.cpu_quota:
                quota = resources.cpu_quota if resources.cpu_quota > 0 else -1
                self.write(self._require("cpu", "cpu.cfs_quota_us"), str(quota))
        if resources.cpu_shares:
            self.write(self._require("cpu", "cpu.shares"), str(resources.cpu_shares))
        if resources.cpuset_cpus is not None and resources.cpuset_cpus != "":
            self.write(self._require("cpuset", "cpuset.cpus"), resources.cpuset_cpus)
        if resources.pids_limit is not None:
            value = str(resources.pids_limit) if resources.pids_limit > 0 else "max"
            self.write(self._require("pids", "pids.max"), value)

    def _apply_v2(self, resources: Resources) -> None:
        memory, swap = resources.memory, resources.memory_swap
        if memory is not None:
            self.write(self._require("memory", "memory.max"), str(memory) if memory > 0 else "max")
        if swap is not None:
            swap_file = self._require("memory", "memory.swap.max")
            if swap < 0 or swap == 0:
                swap_value = "max"
            elif memory is None or memory <= 0:
                raise errdefs.InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
            else:
                swap_value = str(swap - memory)
            self.write(swap_file, swap_value)
        if resources.cpu_period or resources.cpu_quota:
            cpu_max = self._require("cpu", "cpu.max")
            current = self.read(cpu_max).split() if os.path.exists(cpu_max) else ["max", "100000"]
            quota = current[0]
            period = current[1] if len(current) > 1 else "100000"
            if resources.cpu_quota:
                quota = str(resources.cpu_quota) if resources.cpu_quota > 0 else "max"
            if resources.cpu_period:
                period = str(resources.cpu_period)
            self.write(cpu_max, f"{quota} {period}")
        if resources.cpu_shares:
            self.write(self._require("cpu", "cpu.weight"), str(shares_to_weight(resources.cpu_shares)))
        if resources.cpuset_cpus is not None and resources.cpuset_cpus != "":
            self.write(self._require("cpuset", "cpuset.cpus"), resources.cpuset_cpus)
        if resources.pids_limit is not None:
            value = str(resources.pids_limit) if resources.pids_limit > 0 else "max"
            self.write(self._require("pids", "pids.max"), value)

    # -- freezer --------------------------------------------------------------------------

    def freeze(self) -> None:
        """Freeze every process of the container; returns once the kernel reports it frozen."""
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        if self.layout.version == 2:
            events = self._read_optional("", "cgroup.events") or ""
            return "frozen 1" in events.splitlines()
        return (self._read_optional("freezer", "freezer.state") or "").strip() == "FROZEN"

    def _set_frozen(self, frozen: bool) -> None:
        if self.layout.version == 2:
            path = self._require("", "cgroup.freeze")
            value = "1" if frozen else "0"
        else:
            path = self._require("freezer", "freezer.state")
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

    # -- accounting -----------------------------------------------------------------------

    def oom_kill_count(self) -> int:
        """How many processes of the container the kernel's OOM killer has killed."""
        if self.layout.version == 2:
            text = self._read_optional("memory", "memory.events") or ""
        else:
            text = self._read_optional("memory", "memory.oom_control") or ""
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return 0

    def oom_killed(self) -> bool:
        return self.oom_kill_count() > 0

    def stats(self) -> dict[str, object]:
        """Docker-shaped statistics: ``cpu_stats``, ``memory_stats``, ``pids_stats``,
        ``blkio_stats`` (the fields of ``GET /containers/{id}/stats``)."""
        if self.layout.version == 2:
            return self._stats_v2()
        return self._stats_v1()

    @staticmethod
    def _key_values(text: str | None) -> dict[str, int]:
        values: dict[str, int] = {}
        for line in (text or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                values[parts[0]] = int(parts[1])
        return values

    def _pids_stats(self) -> dict[str, int]:
        result: dict[str, int] = {}
        current = self._read_optional("pids", "pids.current")
        if current is not None and current.strip().isdigit():
            result["current"] = int(current)
        limit = self._read_optional("pids", "pids.max")
        if limit is not None and limit.strip().isdigit():
            result["limit"] = int(limit)
        return result

    def _stats_v1(self) -> dict[str, object]:
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        usage = self._read_optional("cpuacct", "cpuacct.usage")
        percpu = (self._read_optional("cpuacct", "cpuacct.usage_percpu") or "").split()
        acct = self._key_values(self._read_optional("cpuacct", "cpuacct.stat"))
        throttle = self._key_values(self._read_optional("cpu", "cpu.stat"))
        cpu_usage: dict[str, object] = {
            "total_usage": int(usage) if usage and usage.strip().isdigit() else 0,
            "usage_in_kernelmode": acct.get("system", 0) * tick_ns,
            "usage_in_usermode": acct.get("user", 0) * tick_ns,
        }
        if percpu:
            cpu_usage["percpu_usage"] = [int(value) for value in percpu]
        cpu_stats = {
            "cpu_usage": cpu_usage,
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": len(percpu) or os.cpu_count() or 1,
            "throttling_data": {
                "periods": throttle.get("nr_periods", 0),
                "throttled_periods": throttle.get("nr_throttled", 0),
                "throttled_time": throttle.get("throttled_time", 0),
            },
        }
        memory_stats: dict[str, object] = {}
        usage_text = self._read_optional("memory", "memory.usage_in_bytes")
        if usage_text is not None:
            stat = self._key_values(self._read_optional("memory", "memory.stat"))
            limit = stat.get("hierarchical_memory_limit") or int(
                (self._read_optional("memory", "memory.limit_in_bytes") or "0").strip() or 0)
            total = host_memory_total()
            if total and (not limit or limit > total):
                limit = total  # no limit: Docker reports the host's memory
            memory_stats = {
                "usage": int(usage_text),
                "max_usage": int((self._read_optional("memory", "memory.max_usage_in_bytes") or "0").strip() or 0),
                "failcnt": int((self._read_optional("memory", "memory.failcnt") or "0").strip() or 0),
                "limit": limit,
                "stats": stat,
            }
        blkio: dict[str, list[dict[str, object]]] = {}
        for key, names in (("io_service_bytes_recursive", ("blkio.throttle.io_service_bytes_recursive",
                                                           "blkio.io_service_bytes_recursive")),
                           ("io_serviced_recursive", ("blkio.throttle.io_serviced_recursive",
                                                      "blkio.io_serviced_recursive"))):
            entries: list[dict[str, object]] = []
            for name in names:
                text = self._read_optional("blkio", name)
                if text is None:
                    continue
                for line in text.splitlines():
                    parts = line.split()
                    if len(parts) == 3 and ":" in parts[0] and parts[2].isdigit():
                        major, _, minor = parts[0].partition(":")
                        entries.append({"major": int(major), "minor": int(minor), "op": parts[1],
                                        "value": int(parts[2])})
                break
            blkio[key] = entries
        return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": self._pids_stats(),
                "blkio_stats": blkio}

    def _stats_v2(self) -> dict[str, object]:
        cpu = self._key_values(self._read_optional("", "cpu.stat"))
        cpu_stats = {
            "cpu_usage": {
                "total_usage": cpu.get("usage_usec", 0) * 1000,
                "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                "usage_in_usermode": cpu.get("user_usec", 0) * 1000,
            },
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {
                "periods": cpu.get("nr_periods", 0),
                "throttled_periods": cpu.get("nr_throttled", 0),
                "throttled_time": cpu.get("throttled_usec", 0) * 1000,
            },
        }
        memory_stats: dict[str, object] = {}
        current = self._read_optional("memory", "memory.current")
        if current is not None:
            limit_text = (self._read_optional("memory", "memory.max") or "max").strip()
            total = host_memory_total()
            limit = int(limit_text) if limit_text.isdigit() else total
            if total and limit > total:
                limit = total
            memory_stats = {"usage": int(current), "limit": limit,
                            "stats": self._key_values(self._read_optional("memory", "memory.stat"))}
        entries_bytes: list[dict[str, object]] = []
        entries_ios: list[dict[str, object]] = []
        for line in (self._read_optional("io", "io.stat") or "").splitlines():
            parts = line.split()
            if not parts or ":" not in parts[0]:
                continue
            major, _, minor = parts[0].partition(":")
            values = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
            for op, key, target in (("read", "rbytes", entries_bytes), ("write", "wbytes", entries_bytes),
                                    ("read", "rios", entries_ios), ("write", "wios", entries_ios)):
                if key in values and values[key].isdigit():
                    target.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])})
        return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": self._pids_stats(),
                "blkio_stats": {"io_service_bytes_recursive": entries_bytes,
                                "io_serviced_recursive": entries_ios}}
