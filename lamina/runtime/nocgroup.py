"""A container's processes without a cgroup of its own: rootless lamina where cgroups are not
delegated to the user (a cgroup v1 host, or v2 without systemd's user delegation, or a lamina
process started outside the delegated cgroup).  Where a cgroup is delegated
(:mod:`lamina.runtime.delegation`) containers get a :class:`~lamina.runtime.cgroups.CgroupManager`
rooted there instead, and :func:`refuse_limits` refuses only the limits whose controller is
not enabled, naming it.

The container's processes are then those of its pid namespace: the namespace whose init is
the container's PID 1 (``state.pid``).  :class:`PidNamespaceMembers` offers the parts of
:class:`~lamina.runtime.cgroups.CgroupManager` the native runtime uses, by that rule:

- ``pids()``: the processes whose ``/proc/<pid>/ns/pid`` is the container's namespace, found by
  a walk of ``/proc``; empty when ``state.pid`` is gone or is no longer the init of a pid
  namespace (its pid was reused).  With the host's pid namespace (``--pid host``) only
  ``state.pid`` itself is known.
- ``kill_all(SIGKILL)``: SIGKILL to PID 1 (the kernel then kills the whole namespace), other
  signals to every member.
- limits (``apply``), ``freeze``/``thaw`` and OOM accounting need a cgroup: limits and the
  freezer are refused with :class:`~lamina.errdefs.FailedPrecondition` naming the cause; OOM
  kills are not known (False); ``stats`` reports what ``/proc`` tells (pids, cpu time, rss).
"""

from __future__ import annotations

import os
import signal as signal_module

from typing import Protocol

from lamina import errdefs
from lamina.runtime.api import Resources

__all__ = ["DelegatedControllers", "PidNamespaceMembers", "NO_CGROUP_REASON", "proc_usage", "refuse_limits"]

NO_CGROUP_REASON = ("rootless lamina: cgroups are not delegated to this user, so containers "
                    "have no cgroup of their own")


class DelegatedControllers(Protocol):
    """What the refusals need of a delegated cgroup (a
    :class:`~lamina.runtime.delegation.Delegation`)."""

    @property
    def controllers(self) -> tuple[str, ...]: ...

    def missing_reason(self, controller: str) -> str: ...


def refuse_limits(resources: Resources, delegation: DelegatedControllers | None = None) -> None:
    """FailedPrecondition naming the options of ``resources`` that cannot be applied: without
    a delegated cgroup (``delegation`` None) every limit, with one each limit whose
    controller lamina could not enable there (the message names the controller)."""
    from lamina.runtime.delegation import LIMIT_CONTROLLERS, controller_of

    wanted = [(field, option) for field, option in LIMIT_CONTROLLERS if getattr(resources, field) is not None]
    if delegation is None:
        if wanted:
            raise errdefs.FailedPrecondition(
                f"{NO_CGROUP_REASON}: {', '.join(option for _, option in wanted)} cannot be applied")
        return
    for field, option in wanted:
        controller = controller_of(field)
        if controller not in delegation.controllers:
            raise errdefs.FailedPrecondition(
                f"rootless lamina: {delegation.missing_reason(controller)}: {option} cannot be applied")


def proc_usage(pids: list[int]) -> tuple[int, int, int]:
    """(user cpu ns, kernel cpu ns, resident bytes) of ``pids`` summed from ``/proc/<pid>/stat``."""
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    user_ns = kernel_ns = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "r", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            user_ns += int(fields[11]) * tick_ns
            kernel_ns += int(fields[12]) * tick_ns
            rss += int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    return user_ns, kernel_ns, rss


def _namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _is_namespace_init(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", "r", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return line.split()[-1] == "1"
    except OSError:
        pass
    return False


class PidNamespaceMembers:
    """The processes of the container whose PID 1 is ``pid`` (None: not started yet)."""

    def __init__(self, path: str, pid: int | None = None) -> None:
        self.path = path
        self.pid = pid

    def exists(self) -> bool:
        return bool(self.pids())

    def create(self) -> None:
        """Nothing to make."""

    def remove(self, timeout: float = 2.0) -> None:
        """Nothing to remove."""

    def apply(self, resources: Resources) -> None:
        refuse_limits(resources)

    def allow_devices(self, rules: tuple[str, ...]) -> None:
        """No devices cgroup: the nodes the container gets are binds of the host's, which the
        user can open only where the host lets them."""

    def open_procs_files(self) -> list[int]:
        return []

    def pids(self) -> list[int]:
        if self.pid is None:
            return []
        namespace = _namespace(self.pid)
        if namespace is None:
            return []
        if namespace == _namespace(os.getpid()):
            return [self.pid]
        if not _is_namespace_init(self.pid):
            return []  # the pid was reused by a process that is no container's PID 1
        members = []
        for name in os.listdir("/proc"):
            if name.isdigit() and _namespace(int(name)) == namespace:
                members.append(int(name))
        return sorted(members)

    def kill_all(self, signal: int = signal_module.SIGKILL) -> None:
        targets = self.pids()
        if signal == signal_module.SIGKILL and self.pid in targets and len(targets) > 1 \
                and _is_namespace_init(self.pid):
            targets = [self.pid]  # the kernel kills the rest of the namespace with its init
        for pid in targets:
            try:
                os.kill(pid, signal)
            except ProcessLookupError:
                pass

    def kill_remaining(self, timeout: float = 0.1) -> list[int]:
        remaining = self.pids()
        if not remaining:
            return []
        from lamina.runtime.cgroups import kill_until_gone

        return kill_until_gone(self, timeout)

    def freeze(self) -> None:
        raise errdefs.FailedPrecondition(f"{NO_CGROUP_REASON}: pause needs the cgroup freezer")

    def thaw(self) -> None:
        raise errdefs.FailedPrecondition(f"{NO_CGROUP_REASON}: unpause needs the cgroup freezer")

    def oom_killed(self) -> bool:
        return False

    def stats(self) -> dict[str, object]:
        """What /proc tells of the members: their number, cpu time and resident memory."""
        from lamina.runtime.cgroup_stats import host_memory_total, system_cpu_usage

        pids = self.pids()
        user_ns, kernel_ns, rss = proc_usage(pids)
        return {
            "cpu_stats": {"cpu_usage": {"total_usage": user_ns + kernel_ns, "usage_in_usermode": user_ns,
                                        "usage_in_kernelmode": kernel_ns},
                          "system_cpu_usage": system_cpu_usage(), "online_cpus": os.cpu_count() or 1},
            "memory_stats": {"usage": rss, "limit": host_memory_total()},  # no limit: the host's memory
            "pids_stats": {"current": len(pids)},
            "blkio_stats": {},
        }
