"""HostConfig's resource limits (``Memory``, ``MemorySwap``, ``MemoryReservation``,
``NanoCpus``, ``CpuShares``, ``CpuPeriod``, ``CpuQuota``, ``CpusetCpus``, ``PidsLimit``, ...)
validated with Docker's messages, for ``create`` and ``update`` alike: pure functions over the
JSON, used by :mod:`lamina.container.spec`.

Integer fields must be JSON integers (Docker's ``json: cannot unmarshal ... of type int64``);
at create a ``Memory`` without ``MemorySwap`` gets twice the memory (as ``docker inspect``
shows); a ``PidsLimit`` of zero or less means unlimited (``None`` at create, ``0`` in an
update, which clears the limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina import errdefs

__all__ = ["MINIMUM_MEMORY", "format_cpuset", "integer_field", "parse_cpuset", "type_name", "validate_resources"]

MINIMUM_MEMORY = 6 * 1024 * 1024
_INTEGER_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
                   "CpuQuota", "ShmSize", "BlkioWeight", "OomScoreAdj", "CpuCount", "CpuPercent",
                   "CpuRealtimePeriod", "CpuRealtimeRuntime", "IOMaximumIOps", "IOMaximumBandwidth")


def type_name(value: Any) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def integer_field(host: Mapping[str, Any], key: str) -> int:
    value = host.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                          and not value.is_integer()):
        raise errdefs.InvalidArgument(
            f"json: cannot unmarshal {type_name(value)} into Go struct field HostConfig.{key} of type int64")
    return int(value)


def parse_cpuset(text: str) -> set[int]:
    """``0-2,4`` -> {0, 1, 2, 4}; InvalidArgument for anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, separator, high = part.partition("-")
        if not low.isdigit() or (separator and not high.isdigit()):
            raise errdefs.InvalidArgument(f"Invalid value {text} for cpuset cpus")
        first, last = int(low), int(high) if separator else int(low)
        if last < first:
            raise errdefs.InvalidArgument(f"Invalid value {text} for cpuset cpus")
        cpus.update(range(first, last + 1))
    return cpus


def format_cpuset(cpus: set[int]) -> str:
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and "-" in ranges[-1] and int(ranges[-1].split("-")[1]) == cpu - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        elif ranges and "-" not in ranges[-1] and int(ranges[-1]) == cpu - 1:
            ranges[-1] = f"{ranges[-1]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def validate_resources(host: dict[str, Any], *, update: bool, cpu_count: int, available: set[int]) -> list[str]:
    warnings: list[str] = []
    for key in _INTEGER_FIELDS:
        if key in host:
            host[key] = integer_field(host, key)
    memory = host.get("Memory") or 0
    swap = host.get("MemorySwap") or 0
    if memory < 0:
        raise errdefs.InvalidArgument("invalid memory limit: must not be negative")
    if memory and memory < MINIMUM_MEMORY:
        raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise errdefs.InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0 and not update:
        raise errdefs.InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage")
    reservation = host.get("MemoryReservation") or 0
    if reservation and memory and memory < reservation:
        raise errdefs.InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage")
    nano = host.get("NanoCpus") or 0
    if nano and (host.get("CpuPeriod") or 0):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and (host.get("CpuQuota") or 0):
        raise errdefs.InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano < 0 or nano > cpu_count * 1_000_000_000:
        raise errdefs.InvalidArgument(
            f"Range of CPUs is from 0.01 to {cpu_count}.00, as there are only {cpu_count} CPUs available")
    if 0 < nano < 10_000_000:
        raise errdefs.InvalidArgument(
            f"Range of CPUs is from 0.01 to {cpu_count}.00, as there are only {cpu_count} CPUs available")
    shares = host.get("CpuShares") or 0
    if shares < 0:
        raise errdefs.InvalidArgument(f"invalid CPU shares ({shares}): value must be a positive integer")
    period = host.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1_000_000:
        raise errdefs.InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s "
                                      "(i.e. 1000000)")
    quota = host.get("CpuQuota") or 0
    if quota and quota != -1 and quota < 1000:
        raise errdefs.InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    cpuset = host.get("CpusetCpus") or ""
    if cpuset:
        if not isinstance(cpuset, str):
            raise errdefs.InvalidArgument("CpusetCpus must be a string")
        requested = parse_cpuset(cpuset)
        if not requested <= available:
            raise errdefs.InvalidArgument(
                f"Requested CPUs are not available - requested {cpuset}, available: {format_cpuset(available)}")
    pids = host.get("PidsLimit")
    if pids is not None:
        if isinstance(pids, bool) or not isinstance(pids, int):
            raise errdefs.InvalidArgument(
                f"json: cannot unmarshal {type_name(pids)} into Go struct field HostConfig.PidsLimit of type int64")
        if pids <= 0:
            host["PidsLimit"] = 0 if update else None  # unlimited
    if memory > 0 and swap == 0 and not update:
        host["MemorySwap"] = memory * 2
    return warnings
