"""The OCI runtime-spec ``config.json`` of a container, as Docker 23+ generates it for
``docker run``: :func:`config_json` turns a :class:`~lamina.runtime.api.ContainerSpec` into
it, :func:`process_json` the process of an ``exec`` (``--process``), :func:`resources_json`
the ``linux.resources`` of an ``update`` (``--resources``), :func:`seccomp_json` Docker's
seccomp profile filtered for the capabilities and the kernel, as moby does.

``ociVersion`` is :data:`OCI_VERSION`; the default mounts (:data:`DEFAULT_MOUNTS`) and device
rules (:data:`DEFAULT_DEVICE_RULES`) are Docker's; ``linux.cgroupsPath`` is
``/<cgroup_parent>/<id>`` (see :mod:`lamina.runtime.oci` for why it is absolute); rlimits are
clamped to this process's hard limits.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lamina import errdefs
from lamina.log import get_logger
from lamina.runtime.api import ContainerSpec, ProcessSpec, Resources

__all__ = ["DEFAULT_DEVICE_RULES", "DEFAULT_MOUNTS", "ID_PATTERN", "OCI_VERSION", "config_json",
           "load_default_seccomp_profile", "process_json", "resources_json", "seccomp_json"]

log = get_logger("lamina.runtime.oci")

# the container ids runc and crun accept
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

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


def _mapped_from_zero(mappings: Iterable[tuple[int, int, int]]) -> int:
    """How many ids from 0 up ``mappings`` ((inside, outside, size) triples) map without a gap."""
    covered = 0
    for inside, _, size in sorted(mappings):
        if inside != covered:
            break
        covered += size
    return covered


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
    if resources.memory_reservation is not None:
        memory["reservation"] = resources.memory_reservation
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
    if resources.cpuset_mems is not None:
        cpu["mems"] = resources.cpuset_mems
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
    if not spec.shm_size:
        overridden.add("/dev/shm")
    # a user mount on a default destination replaces it (e.g. --tmpfs /dev/shm), as in Docker
    defaults = [json.loads(json.dumps(item)) for item in DEFAULT_MOUNTS if item["destination"] not in overridden]
    for item in defaults:
        if item["destination"] == "/dev/shm":
            item["options"] = [f"size={spec.shm_size}" if option.startswith("size=") else option
                               for option in item["options"]]
        if item["destination"] == "/sys" and spec.privileged:
            item["options"] = [option for option in item["options"] if option != "ro"]
        if item["destination"] == "/dev/mqueue" and "user" in spec.namespaces and "ipc" not in spec.namespaces:
            # a user namespace cannot mount the mqueue of the host's ipc namespace: the host's,
            # bound where the host has one (as the native runtime and podman do)
            item.update(type="bind", source="/dev/mqueue", options=["rbind", "nosuid", "noexec", "nodev"])
    defaults = [item for item in defaults if item["type"] != "bind" or os.path.isdir(item["source"])]
    return defaults + user_mounts


def _device_rule(rule: str) -> dict[str, Any]:
    """``c 10:229 rwm`` (devices.allow syntax) as an OCI device cgroup rule."""
    kind, numbers, access = rule.split(" ")
    major, _, minor = numbers.partition(":")
    value: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        value["major"] = int(major)
    if minor != "*":
        value["minor"] = int(minor)
    return value


def config_json(spec: ContainerSpec, *, seccomp_profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OCI runtime config for ``spec``, equivalent to Docker's for the same container."""
    if not ID_PATTERN.match(spec.id):
        raise errdefs.InvalidArgument(f"invalid container id {spec.id!r}")
    if not os.path.isabs(spec.rootfs):
        raise errdefs.InvalidArgument(f"the root filesystem {spec.rootfs!r} is not an absolute path")
    unknown = set(spec.namespaces) - set(_NAMESPACE_ORDER) - {"user"}
    if unknown:
        raise errdefs.InvalidArgument(f"unknown namespaces: {', '.join(sorted(unknown))}")
    if "user" in spec.namespaces and not (spec.uid_mappings and spec.gid_mappings):
        raise errdefs.InvalidArgument("a user namespace needs uid and gid mappings")
    if spec.network not in ("private", "none", "host"):
        raise errdefs.InvalidArgument(f"unknown network mode {spec.network!r}")

    process = process_json(spec.process)
    joined = dict(spec.namespace_paths)
    if set(joined) - {"pid", "ipc", "uts"} or set(joined) - set(spec.namespaces):
        raise errdefs.InvalidArgument(f"cannot join namespaces {sorted(joined)} of {sorted(spec.namespaces)}")
    if spec.network_namespace:
        joined["network"] = spec.network_namespace
    namespaces = []
    for name in _NAMESPACE_ORDER:
        if name not in spec.namespaces:
            continue
        if name == "network" and spec.network == "host":
            continue
        if name in joined:
            namespaces.append({"type": name, "path": joined[name]})
            continue
        namespaces.append({"type": name})

    resources: dict[str, Any] = {"devices": [dict(rule) for rule in DEFAULT_DEVICE_RULES]}
    resources["devices"].extend(_device_rule(rule) for rule in spec.device_rules)
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
        if "user" in spec.namespaces:
            # the range is read in the writer's user namespace, where only the mapped groups exist
            linux["sysctl"]["net.ipv4.ping_group_range"] = f"0 {_mapped_from_zero(spec.gid_mappings) - 1}"
    if spec.sysctls:
        linux.setdefault("sysctl", {}).update(dict(spec.sysctls))
    if spec.devices:
        linux["devices"] = [{"path": device.path, "type": device.kind, "major": device.major, "minor": device.minor,
                             "fileMode": device.mode, "uid": device.uid, "gid": device.gid}
                            for device in spec.devices]
    if spec.oom_score_adj is not None:
        process["oomScoreAdj"] = spec.oom_score_adj
    if spec.seccomp:
        if seccomp_profile is None and spec.seccomp_profile is not None:
            seccomp_profile = json.loads(spec.seccomp_profile)
        profile = seccomp_profile if seccomp_profile is not None else load_default_seccomp_profile()
        linux["seccomp"] = seccomp_json(profile, spec.process.capabilities)

    if "user" in spec.namespaces:
        # the runtimes join the namespaces given by a path before they create the user
        # namespace, and create the others in it (lamina.runtime.oci_userns: the rest)
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": inside, "hostID": outside, "size": size}
                                for inside, outside, size in spec.uid_mappings]
        linux["gidMappings"] = [{"containerID": inside, "hostID": outside, "size": size}
                                for inside, outside, size in spec.gid_mappings]

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": _mounts(spec),
        "linux": linux,
    }
    # a hostname needs a UTS namespace of the container's own (runc refuses it otherwise)
    own_uts = "uts" in spec.namespaces and "uts" not in joined
    if spec.hostname and own_uts:
        config["hostname"] = spec.hostname
    if spec.domainname and own_uts:
        config["domainname"] = spec.domainname
    return config
