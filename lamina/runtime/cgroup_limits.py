"""cgroup limits: the files a :class:`~lamina.runtime.api.Resources` value is written to, on v1
and v2 (the table is in :mod:`lamina.runtime.cgroups`' docstring).

Only the limits that are set are written (``None`` leaves a limit as it is), in an order the
kernel accepts: on v1 ``memory.memsw.limit_in_bytes`` must stay at least
``memory.limit_in_bytes``, so the larger one moves first.  Every write the kernel refuses
raises an :mod:`lamina.errdefs` error naming the file and the value (see
:meth:`CgroupManager.write <lamina.runtime.cgroups.CgroupManager.write>`).
"""

from __future__ import annotations

import os
from typing import Protocol

from lamina import errdefs
from lamina.runtime.api import Resources

__all__ = ["CgroupFiles", "apply_resources", "shares_to_weight"]

_UNLIMITED_V1 = 9223372036854771712  # PAGE_COUNTER_MAX * page size: v1's "no limit"


class CgroupFiles(Protocol):
    """What writing limits needs of a container's cgroup (a
    :class:`~lamina.runtime.cgroups.CgroupManager`)."""

    @property
    def version(self) -> int: ...

    def require(self, controller: str, name: str) -> str:
        """The path of ``name`` in ``controller``'s directory; FailedPrecondition without it."""

    def read(self, path: str) -> str: ...

    def write(self, path: str, value: str) -> None: ...


def shares_to_weight(shares: int) -> int:
    """Docker/runc's --cpu-shares to cgroup v2 cpu.weight conversion ([2, 262144] -> [1, 10000])."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def apply_resources(cgroup: CgroupFiles, resources: Resources) -> None:
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
    if cgroup.version == 2:
        _apply_v2(cgroup, resources)
    else:
        _apply_v1(cgroup, resources)
    if resources.cpuset_cpus is not None and resources.cpuset_cpus != "":
        cgroup.write(cgroup.require("cpuset", "cpuset.cpus"), resources.cpuset_cpus)
    if resources.cpuset_mems is not None and resources.cpuset_mems != "":
        cgroup.write(cgroup.require("cpuset", "cpuset.mems"), resources.cpuset_mems)
    if resources.memory_reservation is not None:
        reservation = resources.memory_reservation
        if cgroup.version == 2:
            cgroup.write(cgroup.require("memory", "memory.low"), str(reservation) if reservation > 0 else "0")
        else:
            cgroup.write(cgroup.require("memory", "memory.soft_limit_in_bytes"),
                         str(reservation) if reservation > 0 else "-1")
    if resources.pids_limit is not None:
        value = str(resources.pids_limit) if resources.pids_limit > 0 else "max"
        cgroup.write(cgroup.require("pids", "pids.max"), value)


def _apply_v1(cgroup: CgroupFiles, resources: Resources) -> None:
    memory, swap = resources.memory, resources.memory_swap
    if memory is not None or swap is not None:
        limit_file = cgroup.require("memory", "memory.limit_in_bytes")
        swap_file = cgroup.require("memory", "memory.memsw.limit_in_bytes") if swap is not None else None
        if swap_file is not None and not os.path.exists(swap_file):
            raise errdefs.FailedPrecondition(
                f"{swap_file} does not exist: this kernel does not account swap (boot with "
                "swapaccount=1), so --memory-swap cannot be applied")
        memory_value = None if memory is None else str(memory if memory > 0 else -1)
        swap_value = None if swap is None else str(swap if swap > 0 else -1)
        if memory_value is not None and swap_file is not None and swap_value is not None:
            # memsw must stay >= memory: raise memsw first when growing, memory first otherwise
            current_swap = int(cgroup.read(swap_file).strip() or 0)
            new_memory = memory if memory and memory > 0 else _UNLIMITED_V1
            if new_memory > current_swap:
                cgroup.write(swap_file, swap_value)
                cgroup.write(limit_file, memory_value)
            else:
                cgroup.write(limit_file, memory_value)
                cgroup.write(swap_file, swap_value)
        elif memory_value is not None:
            cgroup.write(limit_file, memory_value)
        elif swap_file is not None and swap_value is not None:
            cgroup.write(swap_file, swap_value)
    if resources.cpu_period or resources.cpu_quota:
        if resources.cpu_period:
            cgroup.write(cgroup.require("cpu", "cpu.cfs_period_us"), str(resources.cpu_period))
        if resources.cpu_quota:
            quota = resources.cpu_quota if resources.cpu_quota > 0 else -1
            cgroup.write(cgroup.require("cpu", "cpu.cfs_quota_us"), str(quota))
    if resources.cpu_shares:
        cgroup.write(cgroup.require("cpu", "cpu.shares"), str(resources.cpu_shares))


def _apply_v2(cgroup: CgroupFiles, resources: Resources) -> None:
    memory, swap = resources.memory, resources.memory_swap
    if memory is not None:
        cgroup.write(cgroup.require("memory", "memory.max"), str(memory) if memory > 0 else "max")
    if swap is not None:
        swap_file = cgroup.require("memory", "memory.swap.max")
        if swap < 0 or swap == 0:
            swap_value = "max"
        elif memory is None or memory <= 0:
            raise errdefs.InvalidArgument("You should always set the Memory limit when using Memoryswap limit")
        else:
            swap_value = str(swap - memory)
        cgroup.write(swap_file, swap_value)
    if resources.cpu_period or resources.cpu_quota:
        cpu_max = cgroup.require("cpu", "cpu.max")
        current = cgroup.read(cpu_max).split() if os.path.exists(cpu_max) else ["max", "100000"]
        quota = current[0]
        period = current[1] if len(current) > 1 else "100000"
        if resources.cpu_quota:
            quota = str(resources.cpu_quota) if resources.cpu_quota > 0 else "max"
        if resources.cpu_period:
            period = str(resources.cpu_period)
        cgroup.write(cpu_max, f"{quota} {period}")
    if resources.cpu_shares:
        cgroup.write(cgroup.require("cpu", "cpu.weight"), str(shares_to_weight(resources.cpu_shares)))
