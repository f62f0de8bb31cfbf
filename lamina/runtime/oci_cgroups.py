"""The cgroup hierarchies as the OCI runtimes see them, the host preparation crun needs, and
Docker-shaped stats read from an OCI container's cgroup.

Host quirk (cgroup v1 "hybrid" hosts): crun refuses to run while any controller is attached to
the cgroup2 hierarchy next to the v1 ones ("cgroups in hybrid mode not supported, drop all
controllers from cgroupv2"), which happens to ``hugetlb`` when no v1 hierarchy mounts it.
:func:`ensure_v1_hierarchies` mounts each such controller as its own v1 hierarchy
(``mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb``), logged at INFO.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.log import get_logger
from lamina.mount import Mount
from lamina.records import dataclass, field

__all__ = ["CgroupHierarchies", "cgroup_stats", "controllers_on_cgroup2", "ensure_v1_hierarchies",
           "swap_limit_supported"]

log = get_logger("lamina.runtime.oci")

_CGROUP2_CONTROLLERS_FILE = "cgroup.controllers"

def _unescape_mountinfo(value: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), value)


@dataclass(frozen=True)
class CgroupHierarchies:
    """Where the cgroup hierarchies are mounted (from ``/proc/self/mountinfo``).

    ``v1`` maps each v1 controller (and ``name=<x>`` hierarchies) to its mount point;
    ``unified`` is the cgroup2 mount point (``/sys/fs/cgroup`` on a pure v2 host,
    ``/sys/fs/cgroup/unified`` on a hybrid one), or None.
    """

    v1: Mapping[str, str] = field(default_factory=dict)
    unified: str | None = None

    @classmethod
    def parse(cls, mountinfo: str) -> CgroupHierarchies:
        v1: dict[str, str] = {}
        unified = None
        for line in mountinfo.splitlines():
            before, separator, after = line.partition(" - ")
            if not separator:
                continue
            fields = before.split(" ")
            tail = after.split(" ")
            if len(fields) < 5 or len(tail) < 3:
                continue
            target = _unescape_mountinfo(fields[4])
            if tail[0] == "cgroup2":
                unified = target
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    if option not in ("rw", "ro") and option not in v1:
                        v1[option] = target
        return cls(v1=v1, unified=unified)

    @classmethod
    def detect(cls) -> CgroupHierarchies:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
                return cls.parse(handle.read())
        except OSError as exc:
            raise errdefs.System(f"cannot read /proc/self/mountinfo: {exc.strerror}") from exc

    @property
    def unified_only(self) -> bool:
        return not self.v1 and self.unified is not None

    def controller_dir(self, controller: str, cgroup: str) -> str | None:
        """The directory of ``cgroup`` (relative to the roots) holding ``controller``'s files."""
        relative = cgroup.strip("/")
        if controller in self.v1:
            return os.path.join(self.v1[controller], relative)
        if self.unified is not None and self.unified_only:
            return os.path.join(self.unified, relative)
        return None

    def directories(self, cgroup: str) -> list[str]:
        """Every directory ``cgroup`` may have, deepest hierarchy order irrelevant."""
        relative = cgroup.strip("/")
        roots = sorted(set(self.v1.values()))
        if self.unified is not None:
            roots.append(self.unified)
        return [os.path.join(root, relative) for root in roots]

    def cgroup_root(self) -> str:
        """The directory the v1 hierarchies are mounted under (``/sys/fs/cgroup``)."""
        parents = {os.path.dirname(target) for target in self.v1.values()}
        return parents.pop() if len(parents) == 1 else "/sys/fs/cgroup"


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def controllers_on_cgroup2(hierarchies: CgroupHierarchies) -> list[str]:
    """Controllers attached to the cgroup2 hierarchy of a hybrid (v1) host: crun refuses those."""
    if not hierarchies.v1 or hierarchies.unified is None:
        return []
    text = _read_text(os.path.join(hierarchies.unified, _CGROUP2_CONTROLLERS_FILE)) or ""
    return [name for name in text.split() if name not in hierarchies.v1]


def ensure_v1_hierarchies(hierarchies: CgroupHierarchies | None = None) -> list[str]:
    """On a hybrid host, give each controller still attached to cgroup2 its own v1 hierarchy.

    crun refuses hybrid hosts where the cgroup2 hierarchy holds controllers; this mounts them
    (typically ``hugetlb``) at ``<cgroup root>/<name>``.  Returns the controllers mounted.
    Needs root; otherwise logs a warning and changes nothing.
    """
    hierarchies = hierarchies or CgroupHierarchies.detect()
    missing = controllers_on_cgroup2(hierarchies)
    if not missing:
        return []
    if os.geteuid() != 0:
        log.warning("cgroup controllers %s are attached to cgroup2 on a v1 host; crun will refuse to run "
                    "until they get v1 hierarchies (needs root)", ", ".join(missing))
        return []
    root = hierarchies.cgroup_root()
    mounted = []
    for name in missing:
        target = os.path.join(root, name)
        log.info("mounting the %s cgroup controller as its own v1 hierarchy on %s (crun needs it on a "
                 "hybrid host)", name, target)
        try:
            os.makedirs(target, exist_ok=True)
        except OSError as exc:
            raise errdefs.System(f"cannot create {target}: {exc.strerror}") from exc
        Mount("cgroup", "cgroup", (name,)).mount(target)
        mounted.append(name)
    return mounted


def swap_limit_supported(hierarchies: CgroupHierarchies) -> bool:
    if hierarchies.unified_only:
        return True
    memory = hierarchies.v1.get("memory")
    return memory is not None and os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes"))


# ---------------------------------------------------------------------------------------------
# stats (Docker's shape)

_USER_HZ = os.sysconf("SC_CLK_TCK")
_V1_UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded 2**63-1


def _read_int(path: str | None) -> int | None:
    if path is None:
        return None
    text = _read_text(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_pairs(path: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    text = _read_text(path) if path else None
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _system_cpu() -> tuple[int, int]:
    """(system CPU time in ns, online CPUs) from /proc/stat, as Docker computes them."""
    total = 0
    cpus = 0
    for line in (_read_text("/proc/stat") or "").splitlines():
        if line.startswith("cpu "):
            total = sum(int(value) for value in line.split()[1:8]) * 1_000_000_000 // _USER_HZ
        elif line.startswith("cpu"):
            cpus += 1
    return total, cpus


def _machine_memory() -> int:
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _blkio_v1(path: str | None) -> list[dict[str, Any]]:
    entries = []
    for line in (_read_text(path) or "").splitlines() if path else []:
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return entries


def cgroup_stats(hierarchies: CgroupHierarchies, cgroup: str) -> dict[str, Any]:
    """Docker-shaped ``cpu_stats``, ``memory_stats``, ``pids_stats``, ``blkio_stats`` of ``cgroup``."""
    system_usage, online = _system_cpu()
    if hierarchies.unified_only:
        assert hierarchies.unified is not None
        base = os.path.join(hierarchies.unified, cgroup.strip("/"))
        if not os.path.isdir(base):
            raise errdefs.NotFound(f"cgroup {cgroup} does not exist")
        cpu = _read_pairs(os.path.join(base, "cpu.stat"))
        cpu_stats: dict[str, Any] = {
            "cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000,
                          "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                          "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
            "system_cpu_usage": system_usage, "online_cpus": online,
            "throttling_data": {"periods": cpu.get("nr_periods", 0),
                                "throttled_periods": cpu.get("nr_throttled", 0),
                                "throttled_time": cpu.get("throttled_usec", 0) * 1000},
        }
        limit = _read_int(os.path.join(base, "memory.max"))
        memory_stats: dict[str, Any] = {"usage": _read_int(os.path.join(base, "memory.current")) or 0,
                                        "stats": _read_pairs(os.path.join(base, "memory.stat")),
                                        "limit": limit if limit is not None else _machine_memory()}
        blkio = []
        for line in (_read_text(os.path.join(base, "io.stat")) or "").splitlines():
            device, _, rest = line.partition(" ")
            if ":" not in device:
                continue
            major, minor = (int(part) for part in device.split(":"))
            values = dict(item.split("=", 1) for item in rest.split() if "=" in item)
            for key, op in (("rbytes", "read"), ("wbytes", "write")):
                if key in values:
                    blkio.append({"major": major, "minor": minor, "op": op, "value": int(values[key])})
        blkio_stats: dict[str, Any] = {"io_service_bytes_recursive": blkio}
        pids_current = _read_int(os.path.join(base, "pids.current"))
        pids_limit = _read_int(os.path.join(base, "pids.max"))
    else:
        def file(controller: str, name: str) -> str | None:
            directory = hierarchies.controller_dir(controller, cgroup)
            return os.path.join(directory, name) if directory else None

        memory_dir = hierarchies.controller_dir("memory", cgroup)
        if memory_dir is None or not os.path.isdir(memory_dir):
            raise errdefs.NotFound(f"cgroup {cgroup} does not exist")
        ticks = _read_pairs(file("cpuacct", "cpuacct.stat"))
        percpu_text = _read_text(file("cpuacct", "cpuacct.usage_percpu") or "") or ""
        throttling = _read_pairs(file("cpu", "cpu.stat"))
        cpu_stats = {
            "cpu_usage": {"total_usage": _read_int(file("cpuacct", "cpuacct.usage")) or 0,
                          "percpu_usage": [int(value) for value in percpu_text.split()],
                          "usage_in_kernelmode": ticks.get("system", 0) * 1_000_000_000 // _USER_HZ,
                          "usage_in_usermode": ticks.get("user", 0) * 1_000_000_000 // _USER_HZ},
            "system_cpu_usage": system_usage, "online_cpus": online,
            "throttling_data": {"periods": throttling.get("nr_periods", 0),
                                "throttled_periods": throttling.get("nr_throttled", 0),
                                "throttled_time": throttling.get("throttled_time", 0)},
        }
        limit = _read_int(file("memory", "memory.limit_in_bytes"))
        machine = _machine_memory()
        if limit is None or limit >= _V1_UNLIMITED or (machine and limit > machine):
            limit = machine
        memory_stats = {"usage": _read_int(file("memory", "memory.usage_in_bytes")) or 0,
                        "max_usage": _read_int(file("memory", "memory.max_usage_in_bytes")) or 0,
                        "stats": _read_pairs(file("memory", "memory.stat")),
                        "failcnt": _read_int(file("memory", "memory.failcnt")) or 0,
                        "limit": limit}
        service_bytes = file("blkio", "blkio.throttle.io_service_bytes_recursive")
        serviced = file("blkio", "blkio.throttle.io_serviced_recursive")
        if service_bytes and not os.path.exists(service_bytes):
            service_bytes = file("blkio", "blkio.throttle.io_service_bytes")
            serviced = file("blkio", "blkio.throttle.io_serviced")
        blkio_stats = {"io_service_bytes_recursive": _blkio_v1(service_bytes),
                       "io_serviced_recursive": _blkio_v1(serviced)}
        pids_current = _read_int(file("pids", "pids.current"))
        pids_limit = _read_int(file("pids", "pids.max"))
    pids_stats: dict[str, Any] = {"current": pids_current or 0}
    if pids_limit is not None:
        pids_stats["limit"] = pids_limit
    return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": pids_stats,
            "blkio_stats": blkio_stats}
