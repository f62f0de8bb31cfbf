"""A container's cgroup accounting in Docker's shape: ``cpu_stats``, ``memory_stats``,
``pids_stats``, ``blkio_stats`` (the fields of ``GET /containers/{id}/stats``), and the OOM
kill count.

Files read (v1 | v2): ``cpuacct.usage``, ``cpuacct.usage_percpu``, ``cpuacct.stat``,
``cpu.stat`` | ``cpu.stat``; ``memory.usage_in_bytes``, ``memory.max_usage_in_bytes``,
``memory.failcnt``, ``memory.limit_in_bytes``, ``memory.stat`` | ``memory.current``,
``memory.max``, ``memory.stat``; ``blkio.*io_service*_recursive`` | ``io.stat``;
``pids.current``, ``pids.max``; ``memory.oom_control`` | ``memory.events`` (``oom_kill``).  A
file that cannot be read leaves its fields out (or zero), as Docker does for a missing
controller.  With no memory limit the host's memory is reported as the limit.
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = ["CgroupReader", "host_memory_total", "oom_kill_count", "stats", "system_cpu_usage"]


class CgroupReader(Protocol):
    """What reading accounting needs of a container's cgroup (a
    :class:`~lamina.runtime.cgroups.CgroupManager`)."""

    @property
    def version(self) -> int: ...

    def read_optional(self, controller: str, name: str) -> str | None:
        """The text of ``name`` in ``controller``'s directory, or None when it cannot be read."""


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


def oom_kill_count(cgroup: CgroupReader) -> int:
    """How many processes of the container the kernel's OOM killer has killed."""
    if cgroup.version == 2:
        text = cgroup.read_optional("memory", "memory.events") or ""
    else:
        text = cgroup.read_optional("memory", "memory.oom_control") or ""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0


def stats(cgroup: CgroupReader) -> dict[str, object]:
    """Docker-shaped statistics of the container's cgroup."""
    if cgroup.version == 2:
        return _stats_v2(cgroup)
    return _stats_v1(cgroup)


def _key_values(text: str | None) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _pids_stats(cgroup: CgroupReader) -> dict[str, int]:
    result: dict[str, int] = {}
    current = cgroup.read_optional("pids", "pids.current")
    if current is not None and current.strip().isdigit():
        result["current"] = int(current)
    limit = cgroup.read_optional("pids", "pids.max")
    if limit is not None and limit.strip().isdigit():
        result["limit"] = int(limit)
    return result


def _stats_v1(cgroup: CgroupReader) -> dict[str, object]:
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    usage = cgroup.read_optional("cpuacct", "cpuacct.usage")
    percpu = (cgroup.read_optional("cpuacct", "cpuacct.usage_percpu") or "").split()
    acct = _key_values(cgroup.read_optional("cpuacct", "cpuacct.stat"))
    throttle = _key_values(cgroup.read_optional("cpu", "cpu.stat"))
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
    usage_text = cgroup.read_optional("memory", "memory.usage_in_bytes")
    if usage_text is not None:
        stat = _key_values(cgroup.read_optional("memory", "memory.stat"))
        limit = stat.get("hierarchical_memory_limit") or int(
            (cgroup.read_optional("memory", "memory.limit_in_bytes") or "0").strip() or 0)
        total = host_memory_total()
        if total and (not limit or limit > total):
            limit = total  # no limit: Docker reports the host's memory
        memory_stats = {
            "usage": int(usage_text),
            "max_usage": int((cgroup.read_optional("memory", "memory.max_usage_in_bytes") or "0").strip() or 0),
            "failcnt": int((cgroup.read_optional("memory", "memory.failcnt") or "0").strip() or 0),
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
            text = cgroup.read_optional("blkio", name)
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
    return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": _pids_stats(cgroup),
            "blkio_stats": blkio}


def _stats_v2(cgroup: CgroupReader) -> dict[str, object]:
    cpu = _key_values(cgroup.read_optional("", "cpu.stat"))
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
    current = cgroup.read_optional("memory", "memory.current")
    if current is not None:
        limit_text = (cgroup.read_optional("memory", "memory.max") or "max").strip()
        total = host_memory_total()
        limit = int(limit_text) if limit_text.isdigit() else total
        if total and limit > total:
            limit = total
        memory_stats = {"usage": int(current), "limit": limit,
                        "stats": _key_values(cgroup.read_optional("memory", "memory.stat"))}
    entries_bytes: list[dict[str, object]] = []
    entries_ios: list[dict[str, object]] = []
    for line in (cgroup.read_optional("io", "io.stat") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        values = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
        for op, key, target in (("read", "rbytes", entries_bytes), ("write", "wbytes", entries_bytes),
                                ("read", "rios", entries_ios), ("write", "wios", entries_ios)):
            if key in values and values[key].isdigit():
                target.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])})
    return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": _pids_stats(cgroup),
            "blkio_stats": {"io_service_bytes_recursive": entries_bytes,
                            "io_serviced_recursive": entries_ios}}
