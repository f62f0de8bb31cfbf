"""OCI runtime driver: runs containers through ``crun`` or ``runc`` from an OCI runtime bundle.

:class:`OCIRuntime` implements :class:`lamina.runtime.api.Runtime` by translating a
:class:`ContainerSpec` into an OCI runtime-spec ``config.json`` (:func:`config_json`, equivalent
to what Docker 23+ generates for ``docker run``) and driving the binary's command line.

Bundle directory ``<state_root>/<id>/`` (mode 0700)::

    config.json            OCI runtime config, ociVersion 1.0.2
    pid                    host pid of the container's PID 1 (written by ``<binary> create``)
    runtime.log            the binary's own log (``--log``, ``--log-format json``: one
                           ``{"level":...,"msg":...,"time":...}`` per line); its errors become
                           the messages of the errdefs errors raised here
    exec-<n>.json/.pid     process.json and pid of one ``exec`` (removed once it started)
    resources-<n>.json     linux.resources handed to ``<binary> update`` (removed after)

The binary keeps its own state in ``<state_root>/<binary-name>/`` (its ``--root``).

Commit point of :meth:`OCIRuntime.start`: ``<binary> create`` exiting 0.  A failure before it
removes the bundle; a failure of ``<binary> start`` after it runs ``delete --force`` and removes
the bundle, so a failed start leaves no process, cgroup or bundle behind.  :meth:`delete` undoes a
container: ``delete --force`` (kills what is left, removes the cgroups), leftover empty cgroup
directories, then the bundle.

Process model: the caller becomes a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``) before
``create``/``exec``.  The binary exits once the process is set up, so the container's PID 1 and
exec'd processes are reparented to the caller, which reaps them with ``waitpid``.  Being a
subreaper, the caller may also inherit short-lived helper processes of the binary; a monitor
reaps with ``waitpid(-1)``.  stdio: the given descriptors are the binary's 0/1/2 and pass through
to the container's process (the binary's own error text also lands on that stderr, as with
containerd's shim; we read it from ``runtime.log``).

cgroups: ``linux.cgroupsPath`` is ``/<cgroup_parent>/<id>`` (cgroupfs style).  It is absolute on
purpose: runc resolves a relative path against its *own* cgroup, which would nest containers under
whatever cgroup the caller sits in; absolute, it is ``lamina/<id>`` under each hierarchy root,
the same place the native runtime uses.

Host quirk (cgroup v1 "hybrid" hosts): crun refuses to run while any controller is attached to the
cgroup2 hierarchy next to the v1 ones ("cgroups in hybrid mode not supported, drop all controllers
from cgroupv2"), which happens to ``hugetlb`` when no v1 hierarchy mounts it.  On first start, as
root, the runtime mounts each such controller as its own v1 hierarchy
(``mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb``), logged at INFO.

Not supported through OCI runtimes yet (``errdefs.NotImplemented``): ``terminal`` (needs a console
socket receiving the pty master), ``init`` (no init binary to bind-mount yet), user namespaces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import platform
import re
import resource
import shutil
import signal as signals
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lamina import errdefs
from lamina.fsutil import atomic_write_json, remove_tree
from lamina.log import get_logger
from lamina.mount import Mount
from lamina.records import dataclass, field
from lamina.runtime.api import (
    ContainerSpec,
    ProcessSpec,
    Resources,
    RuntimeState,
    Stdio,
    cgroup_path,
)

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "DEFAULT_MOUNTS",
    "OCI_VERSION",
    "CgroupHierarchies",
    "OCIRuntime",
    "cgroup_stats",
    "config_json",
    "controllers_on_cgroup2",
    "ensure_v1_hierarchies",
    "load_default_seccomp_profile",
    "open_runtime",
    "process_json",
    "resources_json",
    "seccomp_json",
]

if TYPE_CHECKING:
    from lamina.runtime.cgroups import CgroupManager

log = get_logger(__name__)

OCI_VERSION = "1.0.2"

# Docker's default mounts (moby oci/defaults.go DefaultLinuxSpec), in its order.
DEFAULT_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
)

# Docker's device cgroup rules: deny everything, then its allow list (moby oci/defaults.go),
# then what runc adds on its own for every container (so crun behaves the same).
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},     # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},     # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},     # /dev/urandom
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},     # /dev/random
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},     # /dev/tty
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},     # /dev/console
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # /dev/fuse
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},     # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},     # /dev/ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},               # /dev/pts/*
)

# Docker's order of namespaces (mount, network, uts, pid, ipc) plus cgroup.
_NAMESPACE_ORDER = ("mount", "network", "uts", "pid", "ipc", "cgroup")

# Docker (20.10+) lets unprivileged processes bind low ports and ping in a private netns.
_PRIVATE_NETWORK_SYSCTLS = {
    "net.ipv4.ip_unprivileged_port_start": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}

_RLIM_INFINITY_OCI = 2**64 - 1

# uname machine -> (Go GOARCH, libseccomp native arch), as moby's seccomp code names them
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
}

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PR_SET_CHILD_SUBREAPER = 36
_CGROUP2_CONTROLLERS_FILE = "cgroup.controllers"


# ---------------------------------------------------------------------------------------------
# config.json


def _clamp_rlimits(rlimits: Iterable[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """OCI rlimits, never above this process's hard limit (root may lack CAP_SYS_RESOURCE)."""
    out = []
    for name, soft, hard in rlimits:
        number = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
        if not isinstance(number, int):
            raise errdefs.InvalidArgument(f"unknown rlimit {name!r}")
        current_hard = resource.getrlimit(number)[1]
        ceiling = _RLIM_INFINITY_OCI if current_hard == resource.RLIM_INFINITY else current_hard
        hard_value = _RLIM_INFINITY_OCI if hard < 0 else hard
        soft_value = _RLIM_INFINITY_OCI if soft < 0 else soft
        if hard_value > ceiling:
            log.info("rlimit %s: hard %d clamped to the current hard limit %d", name, hard_value, ceiling)
            hard_value = ceiling
        soft_value = min(soft_value, hard_value)
        out.append({"type": name, "hard": hard_value, "soft": soft_value})
    return out


def process_json(process: ProcessSpec) -> dict[str, Any]:
    """The OCI ``process`` object (also the ``process.json`` of ``exec``)."""
    if not process.args:
        raise errdefs.InvalidArgument("no command specified")
    if not process.cwd.startswith("/"):
        raise errdefs.InvalidArgument(f"the working directory {process.cwd!r} is not an absolute path")
    user: dict[str, Any] = {"uid": process.uid, "gid": process.gid}
    if process.additional_gids:
        user["additionalGids"] = list(process.additional_gids)
    capabilities = list(process.capabilities)
    body: dict[str, Any] = {
        "terminal": process.terminal,
        "user": user,
        "args": list(process.args),
        "env": list(process.env),
        "cwd": process.cwd,
        # Docker 23+: no inheritable or ambient set (CVE-2022-24769)
        "capabilities": {"bounding": capabilities, "effective": capabilities, "permitted": capabilities},
        "noNewPrivileges": process.no_new_privileges,
        "oomScoreAdj": 0,
    }
    rlimits = _clamp_rlimits(process.rlimits)
    if rlimits:
        body["rlimits"] = rlimits
    return body


def resources_json(resources: Resources) -> dict[str, Any]:
    """The OCI ``linux.resources`` limits of ``resources`` (without device rules)."""
    out: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if resources.memory is not None:
        memory["limit"] = resources.memory
    if resources.memory_swap is not None:
        memory["swap"] = resources.memory_swap
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if resources.cpu_shares is not None:
        cpu["shares"] = resources.cpu_shares
    if resources.cpu_quota is not None:
        cpu["quota"] = resources.cpu_quota
    if resources.cpu_period is not None:
        cpu["period"] = resources.cpu_period
    if resources.cpuset_cpus is not None:
        cpu["cpus"] = resources.cpuset_cpus
    if cpu:
        out["cpu"] = cpu
    if resources.pids_limit is not None:
        out["pids"] = {"limit": resources.pids_limit}
    return out


def load_default_seccomp_profile() -> dict[str, Any]:
    """Docker's default seccomp profile (package data ``seccomp-default.json``)."""
    path = os.path.join(os.path.dirname(__file__), "seccomp-default.json")
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise errdefs.DataLoss(f"cannot read the default seccomp profile {path}: {exc}") from exc


def _kernel_version(release: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release)
    if not match:
        raise errdefs.InvalidArgument(f"cannot parse the kernel version {release!r}")
    return int(match.group(1)), int(match.group(2))


def seccomp_json(profile: Mapping[str, Any], capabilities: Sequence[str], *, machine: str | None = None,
                 kernel_release: str | None = None) -> dict[str, Any]:
    """Convert a Docker seccomp profile into the OCI ``linux.seccomp`` object.

    Like moby's ``setupSeccomp``: the architectures are the native one and its sub-architectures
    from ``archMap``; a rule is dropped when an ``excludes`` condition holds (an arch equal to the
    native Go arch, a capability in the bounding set, a kernel at least ``minKernel``) or an
    ``includes`` condition does not (every listed capability must be present).
    """
    machine = machine or platform.machine()
    go_arch, native = _ARCHES.get(machine, (machine, ""))
    kernel = _kernel_version(kernel_release or platform.release())
    bounding = set(capabilities)
    if profile.get("architectures") and profile.get("archMap"):
        raise errdefs.InvalidArgument("the seccomp profile has both 'architectures' and 'archMap'")

    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "")}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    architectures = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            architectures.append(entry["architecture"])
            architectures.extend(entry.get("subArchitectures") or [])
    if architectures:
        out["architectures"] = architectures
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])

    def at_least(minimum: str) -> bool:
        return kernel >= _kernel_version(minimum)

    syscalls = []
    for rule in profile.get("syscalls") or []:
        names = list(rule.get("names") or [])
        if rule.get("name"):
            if names:
                raise errdefs.InvalidArgument("a seccomp rule has both 'name' and 'names'")
            names = [rule["name"]]
        excludes = rule.get("excludes") or {}
        includes = rule.get("includes") or {}
        if go_arch in (excludes.get("arches") or []):
            continue
        if any(cap in bounding for cap in excludes.get("caps") or []):
            continue
        if excludes.get("minKernel") and at_least(excludes["minKernel"]):
            continue
        if includes.get("arches") and go_arch not in includes["arches"]:
            continue
        if not all(cap in bounding for cap in includes.get("caps") or []):
            continue
        if includes.get("minKernel") and not at_least(includes["minKernel"]):
            continue
        converted: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            converted["args"] = [dict(arg) for arg in rule["args"]]
        if rule.get("errnoRet") is not None:
            converted["errnoRet"] = rule["errnoRet"]
        syscalls.append(converted)
    out["syscalls"] = syscalls
    return out


def _mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    user_mounts = []
    for item in spec.mounts:
        if not item.destination.startswith("/"):
            raise errdefs.InvalidArgument(f"mount destination {item.destination!r} is not an absolute path")
        user_mounts.append({"destination": item.destination, "type": item.type, "source": item.source,
                            "options": list(item.options)})
    overridden = {item["destination"] for item in user_mounts}
    # a user mount on a default destination replaces it (e.g. --tmpfs /dev/shm), as in Docker
    defaults = [json.loads(json.dumps(item)) for item in DEFAULT_MOUNTS if item["destination"] not in overridden]
    return defaults + user_mounts


def config_json(spec: ContainerSpec, *, seccomp_profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OCI runtime config for ``spec``, equivalent to Docker's for the same container."""
    if not _ID_PATTERN.match(spec.id):
        raise errdefs.InvalidArgument(f"invalid container id {spec.id!r}")
    if not os.path.isabs(spec.rootfs):
        raise errdefs.InvalidArgument(f"the root filesystem {spec.rootfs!r} is not an absolute path")
    unknown = set(spec.namespaces) - set(_NAMESPACE_ORDER) - {"user"}
    if unknown:
        raise errdefs.InvalidArgument(f"unknown namespaces: {', '.join(sorted(unknown))}")
    if "user" in spec.namespaces:
        raise errdefs.NotImplemented("user namespaces are not supported through OCI runtimes yet")
    if spec.network not in ("private", "none", "host"):
        raise errdefs.InvalidArgument(f"unknown network mode {spec.network!r}")

    process = process_json(spec.process)
    namespaces = []
    for name in _NAMESPACE_ORDER:
        if name not in spec.namespaces:
            continue
        if name == "network" and spec.network == "host":
            continue
        namespaces.append({"type": name})

    resources: dict[str, Any] = {"devices": [dict(rule) for rule in DEFAULT_DEVICE_RULES]}
    resources.update(resources_json(spec.resources))

    linux: dict[str, Any] = {
        "resources": resources,
        "cgroupsPath": f"/{spec.cgroup_parent.strip('/')}/{spec.id}",
        "namespaces": namespaces,
        "maskedPaths": list(spec.masked_paths),
        "readonlyPaths": list(spec.readonly_paths),
    }
    if any(item["type"] == "network" for item in namespaces):
        linux["sysctl"] = dict(_PRIVATE_NETWORK_SYSCTLS)
    if spec.seccomp:
        profile = seccomp_profile if seccomp_profile is not None else load_default_seccomp_profile()
        linux["seccomp"] = seccomp_json(profile, spec.process.capabilities)

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": _mounts(spec),
        "linux": linux,
    }
    if spec.hostname:
        config["hostname"] = spec.hostname
    return config


# ---------------------------------------------------------------------------------------------
# cgroup hierarchies


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


def _swap_limit_supported(hierarchies: CgroupHierarchies) -> bool:
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


# ---------------------------------------------------------------------------------------------
# the runtime


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise errdefs.System(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(err)}")


def _classify(action: str, message: str) -> type[errdefs.LaminaError]:
    lower = message.lower()
    # runc: "container does not exist"; crun: "error opening file `<root>/<id>/status`: No such file"
    if "container does not exist" in lower or ("/status`" in lower and "no such file" in lower):
        return errdefs.NotFound
    if action in ("create", "exec") and any(
            text in lower for text in ("executable file", "no such file or directory", "permission denied",
                                       "not a directory", "is a directory")):
        # Docker answers these with an invalid-parameter error (exit 127/126 at the CLI)
        return errdefs.InvalidArgument
    if any(text in lower for text in ("not running", "not paused", "is paused", "stopped container",
                                      "container is not", "cannot exec in a")):
        return errdefs.Conflict
    if "already exists" in lower or "file exists" in lower:
        return errdefs.AlreadyExists
    return errdefs.System


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait for ``pid`` if it is our child (it is, as subreaper, once the binary exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            log.warning("process %d did not exit after %.0f s", pid, timeout)
            return
        time.sleep(0.005)


class OCIRuntime:
    """The :class:`~lamina.runtime.api.Runtime` that hands OCI bundles to ``crun`` or ``runc``."""

    def __init__(self, binary: str, state_root: str = "/run/lamina/oci", *, timeout: float = 60.0) -> None:
        resolved = shutil.which(binary)
        if resolved is None:
            raise errdefs.FailedPrecondition(f"OCI runtime {binary!r} not found (looked in PATH)")
        self.binary = resolved
        self.name = os.path.basename(resolved)
        self.state_root = os.path.abspath(state_root)
        self.root = os.path.join(self.state_root, self.name)
        self.timeout = timeout
        self._host_checked = False

    # -- plumbing -------------------------------------------------------------------------------

    def _bundle(self, container_id: str) -> str:
        if not _ID_PATTERN.match(container_id):
            raise errdefs.InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self.state_root, container_id)

    def _environment(self) -> dict[str, str]:
        # a systemd notify socket in our environment would make runc talk to systemd
        return {key: value for key, value in os.environ.items()
                if key not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}

    def _invoke(self, action: str, arguments: Sequence[str], *, container_id: str,
                stdio: Stdio | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``<binary> --root ... <action> <arguments>``; failures become errdefs errors."""
        bundle = os.path.join(self.state_root, container_id)
        log_path = os.path.join(bundle, "runtime.log") if os.path.isdir(bundle) else None
        offset = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else 0
        command = [self.binary, "--root", self.root]
        if log_path:
            command += ["--log", log_path, "--log-format", "json"]
        command += [action, *arguments]
        if stdio is not None:
            streams: dict[str, Any] = {"stdin": stdio.stdin, "stdout": stdio.stdout, "stderr": stdio.stderr}
        else:
            streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        try:
            completed = subprocess.run(command, **streams, env=self._environment(), timeout=self.timeout,
                                       check=False)
        except subprocess.TimeoutExpired as exc:
            raise errdefs.Unavailable(f"{self.name} {action} {container_id} did not finish within "
                                      f"{self.timeout:.0f} s") from exc
        except OSError as exc:
            raise errdefs.System(f"cannot run {self.binary}: {exc.strerror}") from exc
        if completed.returncode != 0:
            message = self._error_text(log_path, offset, completed.stderr)
            kind = _classify(action, message)
            raise kind(f"{self.name} {action} {container_id}: {message or f'exit status {completed.returncode}'}")
        return completed

    @staticmethod
    def _error_text(log_path: str | None, offset: int, stderr: bytes | None) -> str:
        messages = []
        if log_path:
            try:
                with open(log_path, "rb") as handle:
                    handle.seek(offset)
                    new = handle.read()
            except OSError:
                new = b""
            for line in new.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
                    messages.append(str(entry.get("msg", "")))
        if not messages and stderr:
            text = stderr.decode(errors="replace").strip()
            messages = [re.sub(r'^time="[^"]*" level=\w+ msg=', "", line).strip('"')
                        for line in text.splitlines() if line.strip()]
        # runc repeats the final error; keep each message once, in order
        return "; ".join(dict.fromkeys(message for message in messages if message))

    def _prepare_host(self) -> CgroupHierarchies:
        hierarchies = CgroupHierarchies.detect()
        if not self._host_checked:
            if ensure_v1_hierarchies(hierarchies):
                hierarchies = CgroupHierarchies.detect()
            self._host_checked = True
        return hierarchies

    def _known(self, container_id: str) -> bool:
        try:
            self._invoke("state", [container_id], container_id=container_id)
        except errdefs.NotFound:
            return False
        return True

    def _read_pid(self, path: str, what: str) -> int:
        try:
            with open(path, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError) as exc:
            raise errdefs.System(f"{self.name} did not leave a pid for {what} in {path}: {exc}") from exc

    def _reap_helpers(self) -> None:
        """Reap the binary's helper processes that were reparented to us (the subreaper).

        After a failed ``exec`` crun's forked child, which lives in the container's pid namespace,
        stays our zombie; an unreaped zombie keeps that namespace's PID 1 from finishing its exit.
        Only children named after the binary are touched: the caller's own children are left
        to it.
        """
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                    text = handle.read()
            except OSError:
                continue
            command = text[text.find("(") + 1:text.rfind(")")]
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[1] == str(me) and command.startswith(self.name):
                _reap(int(entry), timeout=2.0)

    def _force_delete_quietly(self, container_id: str) -> None:
        try:
            self._invoke("delete", ["--force", container_id], container_id=container_id)
        except errdefs.LaminaError as exc:
            log.warning("cleaning up container %s: %s", container_id, exc)

    # -- Runtime --------------------------------------------------------------------------------

    def start(self, spec: ContainerSpec, stdio: Stdio) -> RuntimeState:
        bundle = self._bundle(spec.id)
        if spec.process.terminal:
            raise errdefs.NotImplemented(
                f"a terminal (-t) is not supported with the {self.name} runtime yet; use the native runtime")
        if spec.init:
            raise errdefs.NotImplemented(f"--init is not supported with the {self.name} runtime yet")
        hierarchies = self._prepare_host()
        config = config_json(spec)
        memory = config["linux"]["resources"].get("memory", {})
        if "swap" in memory and not _swap_limit_supported(hierarchies):
            log.warning("container %s: the kernel does not support swap limit capabilities or the cgroup "
                        "is not mounted; memory limited without swap", spec.id)
            del memory["swap"]

        try:
            os.makedirs(self.state_root, mode=0o711, exist_ok=True)
            try:
                os.mkdir(bundle, 0o700)
            except FileExistsError:
                if self._known(spec.id):
                    raise errdefs.AlreadyExists(f"container {spec.id} already exists in {self.name}") from None
                log.warning("removing the stale bundle %s", bundle)
                remove_tree(bundle)
                os.mkdir(bundle, 0o700)
        except OSError as exc:
            raise errdefs.System(f"cannot create the bundle {bundle}: {exc.strerror}") from exc

        pid_file = os.path.join(bundle, "pid")
        try:
            atomic_write_json(os.path.join(bundle, "config.json"), config, mode=0o600)
            _set_child_subreaper()
            self._invoke("create", ["--bundle", bundle, "--pid-file", pid_file, spec.id],
                         container_id=spec.id, stdio=stdio)
        except BaseException:
            self._force_delete_quietly(spec.id)
            self._reap_helpers()
            remove_tree(bundle)
            raise
        # committed: the container exists in the runtime
        pid = 0
        try:
            pid = self._read_pid(pid_file, f"container {spec.id}")
            self._invoke("start", [spec.id], container_id=spec.id)
        except BaseException:
            self._force_delete_quietly(spec.id)
            if pid:
                _reap(pid)
            remove_tree(bundle)
            raise
        return RuntimeState(id=spec.id, pid=pid, runtime=self.name,
                            cgroup=f"{spec.cgroup_parent.strip('/')}/{spec.id}", bundle=bundle)

    def exec(self, state: RuntimeState, process: ProcessSpec, stdio: Stdio) -> int:
        bundle = state.bundle or self._bundle(state.id)
        if process.terminal:
            raise errdefs.NotImplemented(
                f"a terminal (-t) is not supported with the {self.name} runtime yet; use the native runtime")
        name = f"exec-{uuid.uuid4().hex[:12]}"
        process_path = os.path.join(bundle, name + ".json")
        pid_path = os.path.join(bundle, name + ".pid")
        body = process_json(process)
        try:
            atomic_write_json(process_path, body, mode=0o600)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"container {state.id} has no bundle in {self.state_root}") from exc
        except OSError as exc:
            raise errdefs.System(f"cannot write {process_path}: {exc.strerror}") from exc
        try:
            _set_child_subreaper()
            self._invoke("exec", ["--process", process_path, "--pid-file", pid_path, "--detach", state.id],
                         container_id=state.id, stdio=stdio)
            return self._read_pid(pid_path, f"an exec in {state.id}")
        except BaseException:
            self._reap_helpers()
            raise
        finally:
            for path in (process_path, pid_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def kill(self, state: RuntimeState, signal: int, *, all: bool = False) -> None:
        number = int(signal)
        if not 1 <= number <= signals.SIGRTMAX:
            raise errdefs.InvalidArgument(f"invalid signal {signal}")
        arguments = (["--all"] if all else []) + [state.id, str(number)]
        self._invoke("kill", arguments, container_id=state.id)

    def pause(self, state: RuntimeState) -> None:
        self._invoke("pause", [state.id], container_id=state.id)

    def resume(self, state: RuntimeState) -> None:
        self._invoke("resume", [state.id], container_id=state.id)

    def update(self, state: RuntimeState, resources: Resources) -> None:
        body = resources_json(resources)
        if not body:
            return
        hierarchies = CgroupHierarchies.detect()
        if "swap" in body.get("memory", {}) and not _swap_limit_supported(hierarchies):
            log.warning("container %s: swap limit not supported by the kernel; ignored", state.id)
            del body["memory"]["swap"]
        bundle = state.bundle or self._bundle(state.id)
        path = os.path.join(bundle, f"resources-{uuid.uuid4().hex[:12]}.json")
        try:
            atomic_write_json(path, body, mode=0o600)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"container {state.id} has no bundle in {self.state_root}") from exc
        try:
            self._invoke("update", ["--resources", path, state.id], container_id=state.id)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def stats(self, state: RuntimeState) -> dict[str, object]:
        return cgroup_stats(CgroupHierarchies.detect(), cgroup_path(state))

    def status(self, state: RuntimeState) -> str:
        """The binary's view of the container: ``created``, ``running``, ``paused`` or ``stopped``."""
        completed = self._invoke("state", [state.id], container_id=state.id)
        try:
            return str(json.loads(completed.stdout)["status"])
        except (ValueError, KeyError, TypeError) as exc:
            raise errdefs.System(f"{self.name} state {state.id}: unexpected output") from exc

    def cgroup_path(self, state: RuntimeState) -> str:
        return cgroup_path(state)

    def _cgroup(self, state: RuntimeState) -> CgroupManager:
        from lamina.runtime.cgroups import CgroupManager

        return CgroupManager(cgroup_path(state))

    def oom_killed(self, state: RuntimeState) -> bool:
        return self._cgroup(state).oom_killed()

    def processes(self, state: RuntimeState) -> list[int]:
        return self._cgroup(state).pids()

    def delete(self, state: RuntimeState, *, force: bool = False) -> None:
        """``<binary> delete --force`` (it removes a stopped container's state and cgroups),
        then leftover empty cgroup directories and the bundle."""
        bundle = state.bundle or self._bundle(state.id)
        manager = self._cgroup(state)
        # runc and crun deliver the kill of --force only to what they still know of; a
        # forced delete empties the cgroup itself first
        remaining = manager.kill_remaining() if force else manager.pids() if manager.exists() else []
        if remaining:
            raise errdefs.Conflict(f"container {state.id} still has processes {remaining}; kill them first")
        try:
            self._invoke("delete", ["--force", state.id], container_id=state.id)
        except errdefs.NotFound:
            pass
        if state.cgroup:
            for directory in reversed(CgroupHierarchies.detect().directories(state.cgroup)):
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.EBUSY:
                        raise errdefs.Conflict(f"cgroup {directory} still has processes") from exc
                    raise errdefs.System(f"cannot remove the cgroup {directory}: {exc.strerror}") from exc
        remove_tree(bundle)


def open_runtime(name: str, exec_root: str) -> OCIRuntime:
    """The registry's factory (:mod:`lamina.runtime.registry`): the binary called ``name``,
    bundles under ``<exec_root>/oci``."""
    return OCIRuntime(name, state_root=os.path.join(exec_root, "oci"))
