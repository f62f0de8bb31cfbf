"""The runtime contract: how a container's process is started, entered, signalled and limited.

A runtime turns a :class:`ContainerSpec` (plain data, close to the OCI runtime spec) into a
running process.  It does not know about images, layers or the container store: the caller
(the container's monitor) has already mounted the root filesystem at ``spec.rootfs`` and
prepared the stdio file descriptors.

Process model: the caller of :meth:`Runtime.start` becomes the parent (or, for runtimes that
double-fork, the child subreaper) of the container's PID 1 and reaps it with ``waitpid``.
:meth:`Runtime.exec` starts an extra process inside a running container (setns into its
namespaces and cgroup, then fork) whose parent is the caller.

Vocabulary: **id** the container id (64 hex); **pid** the host pid of the container's PID 1;
**cgroup path** ``<cgroup_parent>/<id>`` (``lamina/<id>``) under each hierarchy (v1) or the
unified tree (v2), the same for every runtime; :func:`cgroup_path` gives it for a state.
"""

from __future__ import annotations

from lamina.records import dataclass, field
from typing import Protocol

__all__ = ["DeviceSpec", "MountSpec", "ProcessSpec", "Resources", "ContainerSpec", "Stdio", "Runtime", "RuntimeCgroup",
           "RuntimeLifecycle", "RuntimeState", "cgroup_path", "DEFAULT_CAPABILITIES", "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS"]

# Docker's default capability set (moby oci/caps/defaults.go)
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# Docker's masked and read-only paths (moby oci/defaults.go)
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


@dataclass(frozen=True)
class MountSpec:
    """One mount inside the container, OCI style: ``destination`` is a path in the container."""

    destination: str
    type: str                      # "bind", "tmpfs", "proc", ...
    source: str
    options: tuple[str, ...] = ()  # "ro", "nosuid", "rbind", "size=64m", ...


@dataclass(frozen=True)
class ProcessSpec:
    """The container's process: command, environment, identity, capabilities, limits."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    # (name, soft, hard) e.g. ("RLIMIT_NOFILE", 1024, 1024); never above the caller's hard limit
    rlimits: tuple[tuple[str, int, int], ...] = ()
    # an exec's seccomp profile JSON when the container has one of its own (None: the default)
    seccomp_profile: bytes | None = None


@dataclass(frozen=True)
class Resources:
    """cgroup limits (``None``: unlimited, as Docker's zero values)."""

    memory: int | None = None          # bytes (--memory)
    memory_swap: int | None = None     # bytes, memory+swap (--memory-swap); -1 unlimited
    cpu_quota: int | None = None       # microseconds per period (--cpus * period)
    cpu_period: int | None = None      # microseconds (100000 with --cpus)
    cpu_shares: int | None = None      # --cpu-shares (v2: converted to cpu.weight)
    cpuset_cpus: str | None = None     # --cpuset-cpus "0-1"
    pids_limit: int | None = None      # --pids-limit
    memory_reservation: int | None = None  # bytes, a soft limit (--memory-reservation)
    cpuset_mems: str | None = None     # --cpuset-mems "0"


@dataclass(frozen=True)
class DeviceSpec:
    """A host device node made inside the container (``--device``, ``--privileged``)."""

    path: str                      # the node's path in the container
    kind: str                      # "c" or "b"
    major: int
    minor: int
    mode: int = 0o666              # the permission bits of the node
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a runtime needs to start a container."""

    id: str
    rootfs: str                                   # the mounted root filesystem (merged dir)
    process: ProcessSpec
    hostname: str = ""
    domainname: str = ""                          # the UTS domain name (Config.Domainname)
    readonly_rootfs: bool = False
    mounts: tuple[MountSpec, ...] = ()            # beyond the defaults (/proc, /dev, /sys...)
    network: str = "private"                     # "private" (new netns, lo up), "none" (same), "host"
    # "private" only: join this network namespace (a bind-mounted nsfs file, the sandbox that
    # lamina.network set up, or /proc/<pid>/ns/net of another container) instead of creating one
    network_namespace: str = ""
    namespaces: frozenset[str] = frozenset({"pid", "mount", "uts", "ipc", "network", "cgroup"})
    # ("pid" | "ipc" | "uts", nsfs path): namespaces of ``namespaces`` joined instead of created
    # (OCI's namespaces[].path), e.g. ("pid", "/proc/1234/ns/pid") for --pid container:NAME
    namespace_paths: tuple[tuple[str, str], ...] = ()
    resources: Resources = field(default_factory=Resources)
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    seccomp: bool = True                          # Docker's default profile
    init: bool = False                            # run a small init as PID 1 (--init)
    cgroup_parent: str = "lamina"
    sysctls: tuple[tuple[str, str], ...] = ()     # ("net.ipv4.ip_forward", "1"), written after pivot_root
    shm_size: int = 64 * 1024 * 1024              # bytes of the /dev/shm tmpfs; 0: none (--ipc none, or a
                                                  # /dev/shm among ``mounts``: a shareable or joined IPC)
    oom_score_adj: int | None = None              # /proc/<pid>/oom_score_adj of the container's process
    devices: tuple[DeviceSpec, ...] = ()          # beyond the default nodes
    device_rules: tuple[str, ...] = ()            # devices cgroup (v1 devices.allow, v2 eBPF filter) rules allowed beyond the defaults
    privileged: bool = False                      # /sys read-write (capabilities, paths: the fields above)
    seccomp_profile: bytes | None = None          # a profile's JSON instead of the runtime's default
    # a new user namespace with these maps, /proc/<pid>/uid_map style (container id, host id, size);
    # empty: the host's user namespace.  "user" in ``namespaces`` goes with them.
    uid_mappings: tuple[tuple[int, int, int], ...] = ()
    gid_mappings: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class Stdio:
    """File descriptors the container's process gets as 0, 1, 2 (a pty slave for all three
    when ``terminal``).  The runtime dups them; the caller keeps ownership."""

    stdin: int
    stdout: int
    stderr: int


@dataclass(frozen=True)
class RuntimeState:
    """What the caller persists about a started container to reach it again later."""

    id: str
    pid: int
    runtime: str
    cgroup: str = ""          # the cgroup path relative to the hierarchy roots
    bundle: str = ""          # OCI runtimes: the bundle directory


def cgroup_path(state: RuntimeState) -> str:
    """The cgroup path of a started container: the one recorded, ``lamina/<id>`` for states
    written before the path was."""
    return state.cgroup or f"lamina/{state.id}"


class RuntimeLifecycle(Protocol):
    """A container's processes: start, enter, signal, freeze, and release."""

    def prepare(self) -> None:
        """Load, once, what every start reads alike (called by a process whose forks start
        containers: the monitor template).  A start that finds nothing loaded loads it."""

    def start(self, spec: ContainerSpec, stdio: Stdio) -> RuntimeState:
        """Create and start the container; the caller reaps the returned pid."""

    def exec(self, state: RuntimeState, process: ProcessSpec, stdio: Stdio) -> int:
        """Start ``process`` inside the running container; returns its host pid."""

    def kill(self, state: RuntimeState, signal: int, *, all: bool = False) -> None: ...

    def pause(self, state: RuntimeState) -> None: ...

    def resume(self, state: RuntimeState) -> None: ...

    def delete(self, state: RuntimeState, *, force: bool = False) -> None:
        """Release what the runtime holds for a stopped container (cgroups, bundle).

        Without ``force`` a container that still has processes is a Conflict.  With ``force``
        every process left in the cgroup is killed first (a paused container is thawed so the
        kill is delivered); Conflict still when processes remain after that, e.g. exited
        children of the caller that it has not reaped yet: reap and call again."""


class RuntimeCgroup(Protocol):
    """A container's cgroup: where it is, what is in it, what it used, its limits.  These read
    the cgroup whether or not the container still runs."""

    def cgroup_path(self, state: RuntimeState) -> str:
        """The container's cgroup path, relative to the hierarchy roots (``lamina/<id>``)."""

    def processes(self, state: RuntimeState) -> list[int]:
        """Host pids of the processes in the container's cgroup (what ``top`` lists); empty
        when the cgroup is gone."""

    def oom_killed(self, state: RuntimeState) -> bool:
        """Whether the kernel's OOM killer killed a process of the container (False when the
        cgroup is gone)."""

    def stats(self, state: RuntimeState) -> dict[str, object]:
        """Docker-shaped stats: cpu_stats, memory_stats, pids_stats, blkio_stats."""

    def update(self, state: RuntimeState, resources: Resources) -> None:
        """Change the limits of a running container (``None`` fields stay as they are)."""


class Runtime(RuntimeLifecycle, RuntimeCgroup, Protocol):
    """One container runtime, by its ``name`` (see :mod:`lamina.runtime.registry`).

    Every method but :meth:`start` takes the :class:`RuntimeState` that :meth:`start` returned
    (persisted by the caller).  A container whose processes are gone answers Conflict ("is not
    running") to :meth:`exec` and :meth:`kill`.
    """

    name: str
