"""Every field of a create request's ``Config`` and ``HostConfig``: what lamina does with it, as
data (:data:`HOST_CONFIG_FIELDS`, :data:`CONFIG_FIELDS`), and the checks of the values that
Docker checks before anything is created.

A field's status is one of:

- ``applied``: the container gets it (the ``how`` says where);
- ``network``: applied by the container's network (``NetworkMode``, ports, DNS);
- ``stored``: kept for ``inspect`` and the client, with no effect on the process (as in Docker:
  ``ContainerIDFile`` is written by the CLI, ``OnBuild`` only matters to a build);
- ``ignored``: Docker ignores it on Linux too (Windows-only fields), with Docker's warning;
- ``refused``: lamina does not do it: a value other than the zero value is a 400 naming the
  field (:func:`refuse_unsupported`).

:func:`check_host_values` holds the value rules (ranges, sysctl namespaces, security options,
devices, mount destinations under ``/proc``); the runtime spec's pieces built from them
(:func:`sysctls`, :func:`security_options`, :func:`devices`) are pure functions of the
HostConfig and the host's ``/dev``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import resource
import stat
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.records import dataclass
from lamina.runtime.api import DeviceSpec

__all__ = [
    "CONFIG_FIELDS",
    "HOST_CONFIG_FIELDS",
    "INIT_BINARY",
    "INIT_PATH",
    "SecurityOptions",
    "check_config_values",
    "check_host_values",
    "check_userns",
    "devices",
    "host_devices",
    "refuse_unsupported",
    "security_options",
    "sysctls",
]

# Debian's static tini, Docker's docker-init; mounted read-only at INIT_PATH under --init
INIT_BINARY = "/usr/bin/tini-static"
INIT_PATH = "/sbin/docker-init"

# (status, how) per field; see the module docstring
HOST_CONFIG_FIELDS: dict[str, tuple[str, str]] = {
    "CpuShares": ("applied", "cpu.shares (v1) / cpu.weight (v2)"),
    "Memory": ("applied", "memory.limit_in_bytes / memory.max"),
    "CgroupParent": ("applied", "the cgroup directory the container's cgroup is made under"),
    "BlkioWeight": ("refused", "block I/O weights need BFQ; lamina sets none"),
    "BlkioWeightDevice": ("refused", "block I/O weights need BFQ; lamina sets none"),
    "BlkioDeviceReadBps": ("refused", "block I/O throttling is not implemented"),
    "BlkioDeviceWriteBps": ("refused", "block I/O throttling is not implemented"),
    "BlkioDeviceReadIOps": ("refused", "block I/O throttling is not implemented"),
    "BlkioDeviceWriteIOps": ("refused", "block I/O throttling is not implemented"),
    "CpuPeriod": ("applied", "cpu.cfs_period_us / cpu.max"),
    "CpuQuota": ("applied", "cpu.cfs_quota_us / cpu.max"),
    "CpuRealtimePeriod": ("refused", "real-time scheduling cgroups are not implemented"),
    "CpuRealtimeRuntime": ("refused", "real-time scheduling cgroups are not implemented"),
    "CpusetCpus": ("applied", "cpuset.cpus"),
    "CpusetMems": ("applied", "cpuset.mems"),
    "Devices": ("applied", "device nodes in /dev and the devices cgroup (v1)"),
    "DeviceCgroupRules": ("applied", "devices.allow (v1)"),
    "DeviceRequests": ("refused", "no device drivers (GPUs) are available"),
    "KernelMemory": ("refused", "kernel memory limits are deprecated and not set"),
    "KernelMemoryTCP": ("refused", "kernel memory limits are deprecated and not set"),
    "MemoryReservation": ("applied", "memory.soft_limit_in_bytes / memory.low"),
    "MemorySwap": ("applied", "memory.memsw.limit_in_bytes / memory.swap.max"),
    "MemorySwappiness": ("refused", "memory.swappiness is not set"),
    "NanoCpus": ("applied", "CFS quota over a 100 ms period"),
    "OomKillDisable": ("refused", "the OOM killer cannot be disabled"),
    "Init": ("applied", "tini (static) as PID 1"),
    "PidsLimit": ("applied", "pids.max"),
    "Ulimits": ("applied", "setrlimit before exec, never above the engine's hard limit"),
    "CpuCount": ("ignored", "Windows only"),
    "CpuPercent": ("ignored", "Windows only"),
    "IOMaximumIOps": ("refused", "Windows only"),
    "IOMaximumBandwidth": ("refused", "Windows only"),
    "Binds": ("applied", "bind mounts and volumes"),
    "ContainerIDFile": ("stored", "written by the client"),
    "LogConfig": ("applied", "json-file, local (json-file format) or none"),
    "NetworkMode": ("network", "the container's network, or container:<name|id>: another container's namespace"),
    "PortBindings": ("network", "published ports"),
    "RestartPolicy": ("applied", "the monitor restarts the container"),
    "AutoRemove": ("applied", "the monitor removes the container"),
    "VolumeDriver": ("applied", "the volume driver of Binds"),
    "VolumesFrom": ("applied", "another container's mounts"),
    "Mounts": ("applied", "bind, volume and tmpfs mounts"),
    "ConsoleSize": ("applied", "the terminal's size"),
    "Annotations": ("stored", "kept for inspect"),
    "CapAdd": ("applied", "capability sets"),
    "CapDrop": ("applied", "capability sets"),
    "CgroupnsMode": ("applied", "private or host cgroup namespace"),
    "Dns": ("network", "resolv.conf"),
    "DnsOptions": ("network", "resolv.conf"),
    "DnsSearch": ("network", "resolv.conf"),
    "ExtraHosts": ("network", "/etc/hosts"),
    "GroupAdd": ("applied", "supplementary groups (numbers or names in the image's /etc/group)"),
    "IpcMode": ("applied", "private, shareable (a /dev/shm on the host), none (no /dev/shm), host or "
                           "container:<name|id>"),
    "Cgroup": ("refused", "joining another container's cgroup is not implemented"),
    "Links": ("network", "legacy links"),
    "OomScoreAdj": ("applied", "/proc/<pid>/oom_score_adj"),
    "PidMode": ("applied", "private, host or container:<name|id> PID namespace"),
    "Privileged": ("applied", "all capabilities, host devices, no seccomp, no masked paths, /sys read-write"),
    "PublishAllPorts": ("network", "published ports"),
    "ReadonlyRootfs": ("applied", "the root filesystem mounted read-only"),
    "SecurityOpt": ("applied", "seccomp=unconfined|builtin|<profile JSON>, no-new-privileges; label/apparmor refused"),
    "StorageOpt": ("refused", "per-container storage options (size quotas) are not implemented"),
    "Tmpfs": ("applied", "tmpfs mounts"),
    "UTSMode": ("applied", "private, host or container:<name|id> UTS namespace"),
    "UsernsMode": ("applied", "'host' opts out of the engine's --userns-remap; '' runs in a remapped user "
                              "namespace when the engine has one"),
    "ShmSize": ("applied", "the size of the /dev/shm tmpfs"),
    "Sysctls": ("applied", "written under /proc/sys in the container's namespaces"),
    "Runtime": ("applied", "the runtime that starts the container"),
    "Isolation": ("applied", "'default' only, as Docker on Linux"),
    "MaskedPaths": ("applied", "masked paths"),
    "ReadonlyPaths": ("applied", "read-only paths"),
}

CONFIG_FIELDS: dict[str, tuple[str, str]] = {
    "Hostname": ("applied", "the UTS hostname and /etc/hostname"),
    "Domainname": ("applied", "the UTS domain name and /etc/hosts"),
    "User": ("applied", "uid, gid and groups from the image's passwd and group files"),
    "AttachStdin": ("applied", "the client's attach"), "AttachStdout": ("applied", "the client's attach"),
    "AttachStderr": ("applied", "the client's attach"), "Tty": ("applied", "a pty"),
    "OpenStdin": ("applied", "stdin kept open"), "StdinOnce": ("applied", "stdin closed after one attach"),
    "ExposedPorts": ("network", "exposed ports"), "Env": ("applied", "the process environment"),
    "Cmd": ("applied", "the command"), "Entrypoint": ("applied", "the command"),
    "Healthcheck": ("applied", "the monitor's health probe"), "ArgsEscaped": ("ignored", "Windows only"),
    "Image": ("applied", "the root filesystem"), "Volumes": ("applied", "anonymous volumes"),
    "WorkingDir": ("applied", "the working directory"), "NetworkDisabled": ("network", "no network"),
    "MacAddress": ("network", "the endpoint's MAC address"), "OnBuild": ("stored", "used by builds only"),
    "Labels": ("applied", "labels"), "StopSignal": ("applied", "the signal of stop"),
    "StopTimeout": ("applied", "the grace period of stop"), "Shell": ("stored", "used by builds only"),
}

_ALLOWED_NONZERO = {"Isolation": ("default",), "UsernsMode": ("host",), "MemorySwappiness": (-1,)}
_INT64 = (-(1 << 63), (1 << 63) - 1)
# sysctls in a namespace of their own (runc's validation): IPC, UTS and network ones
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
_SYSCTL_KEY = re.compile(r"^[a-z0-9_][a-z0-9_.\-/]*$")
_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
# runc allows these under /proc as bind destinations (lxcfs and friends)
_PROC_ALLOWED = frozenset({"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                           "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                           "/proc/sys/kernel/ns_last_pid"})
_SECCOMP_ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                              "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
                              "SCMP_ACT_NOTIFY"})
_CAP_SYS_RESOURCE = 24
_HOST_DEVICE_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def _is_zero(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def refuse_unsupported(host: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """400 naming the first field set that lamina does not do; the warnings of the ignored ones
    (whose values are then dropped, as Docker does)."""
    warnings: list[str] = []
    for table, fields, prefix in ((HOST_CONFIG_FIELDS, host, "HostConfig."), (CONFIG_FIELDS, config, "Config.")):
        for name, (status, how) in table.items():
            value = fields.get(name)
            if _is_zero(value) or value in _ALLOWED_NONZERO.get(name, ()):
                continue
            if status == "refused":
                raise errdefs.InvalidArgument(f"{prefix}{name} is not supported by lamina ({how}): {value!r}")
            if status == "ignored" and prefix == "HostConfig.":
                warnings.append(f"linux does not support {name}; {name} discarded ({how})")
    return warnings


# --------------------------------------------------------------------------------------------
# value rules


def _int64(value: Any, path: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        raise errdefs.InvalidArgument(f"json: cannot unmarshal number {value} into Go struct field {path} of type int64")


def check_config_values(config: Mapping[str, Any]) -> None:
    """Docker's and the kernel's limits on Config's strings."""
    for name in ("Hostname", "Domainname"):
        value = config.get(name) or ""
        if len(value) > 64:
            raise errdefs.InvalidArgument(f"Config.{name} is {len(value)} characters long: the kernel allows 64")
        if any(char.isspace() or not char.isprintable() or char == "/" for char in value):
            raise errdefs.InvalidArgument(f"invalid {name} {value!r}: no spaces, control characters or '/'")
    _check_ports(config.get("ExposedPorts"), "Config.ExposedPorts")


def _check_port(text: Any, path: str, *, allow_empty: bool) -> None:
    if not isinstance(text, str):
        raise errdefs.InvalidArgument(f"{path}: invalid port specification: {text!r}")
    if text == "" and allow_empty:
        return
    low, dash, high = text.partition("-")
    for part in (low, high) if dash else (low,):
        if not part.isdigit() or not 0 < int(part) <= 65535:
            raise errdefs.InvalidArgument(f'{path}: invalid port specification: "{text}"')
    if dash and int(high) < int(low):
        raise errdefs.InvalidArgument(f'{path}: invalid port range: "{text}"')


def _check_ports(ports: Any, path: str) -> None:
    if ports is None:
        return
    if not isinstance(ports, dict):
        raise errdefs.InvalidArgument(f"{path} must be an object keyed by port/protocol")
    for key in ports:
        port, slash, protocol = key.partition("/")
        _check_port(port, path, allow_empty=False)
        if slash and protocol.lower() not in ("tcp", "udp", "sctp"):
            raise errdefs.InvalidArgument(f'{path}: invalid proto: "{protocol}"')


def _check_port_bindings(bindings: Any) -> None:
    path = "HostConfig.PortBindings"
    _check_ports(bindings, path)
    for key, entries in (bindings or {}).items():
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise errdefs.InvalidArgument(f"{path}[{key}] must be an array of {{HostIp, HostPort}}")
        for entry in entries:
            if not isinstance(entry, dict):
                raise errdefs.InvalidArgument(f"{path}[{key}] must be an array of {{HostIp, HostPort}}")
            host_ip = entry.get("HostIp") or ""
            if not isinstance(host_ip, str) or (host_ip and not re.fullmatch(r"[0-9A-Fa-f:.\[\]]+", host_ip)):
                raise errdefs.InvalidArgument(f"{path}[{key}]: invalid IP address: {host_ip!r}")
            _check_port(entry.get("HostPort") or "", path, allow_empty=True)


def _available_mems() -> set[int]:
    from lamina.container.limits import parse_cpuset

    try:
        with open("/sys/devices/system/node/online", encoding="ascii") as handle:
            return parse_cpuset(handle.read().strip())
    except (OSError, errdefs.InvalidArgument):
        return {0}


def _check_security_option(option: Any) -> None:
    if not isinstance(option, str):
        raise errdefs.InvalidArgument(f"HostConfig.SecurityOpt entries must be strings, not {option!r}")
    security_options([option])


def check_userns(host: Mapping[str, Any], *, remapped_engine: bool) -> bool:
    """Whether a container gets the engine's remapped user namespace, after Docker's checks of
    what cannot share the host's namespaces inside one (moby's verifyPlatformContainerSettings,
    with its messages); ``UsernsMode`` ``host`` opts out, and is accepted without a remap, as
    Docker does (it is the default there)."""
    if not remapped_engine or host.get("UsernsMode") == "host":
        return False
    if host.get("Privileged"):
        raise errdefs.InvalidArgument("privileged mode is incompatible with user namespaces.  You must run the "
                                      "container in the host namespace when running privileged mode")
    if host.get("NetworkMode") == "host":
        raise errdefs.InvalidArgument("cannot share the host's network namespace when user namespaces are enabled")
    if host.get("PidMode") == "host":
        raise errdefs.InvalidArgument("cannot share the host PID namespace when user namespaces are enabled")
    for key, namespace in (("NetworkMode", "network"), ("PidMode", "PID"), ("IpcMode", "IPC"), ("UTSMode", "UTS")):
        mode = host.get(key)
        if isinstance(mode, str) and mode.startswith("container:"):
            # the other container's namespaces belong to its own user namespace (or the host's)
            raise errdefs.InvalidArgument(f"cannot join the {namespace} namespace of container "
                                          f"{mode[len('container:'):]} when user namespaces are enabled "
                                          "(lamina does not share a user namespace between containers); "
                                          "use --userns=host")
    return True


def check_host_values(host: Mapping[str, Any]) -> None:
    """Docker's value rules for a HostConfig (ranges, namespaces, files named) with 400s that
    name the field and the value."""
    for name, value in host.items():
        _int64(value, f"HostConfig.{name}")
    score = host.get("OomScoreAdj") or 0
    if not -1000 <= score <= 1000:
        raise errdefs.InvalidArgument(f"Invalid value {score}, range for oom score adj is [-1000, 1000]")
    weight = host.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise errdefs.InvalidArgument("Range of blkio weight is from 10 to 1000")
    mems = host.get("CpusetMems") or ""
    if mems:
        from lamina.container.limits import format_cpuset, parse_cpuset

        available = _available_mems()
        try:
            requested = parse_cpuset(mems)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(f"Invalid value {mems} for cpuset mems") from exc
        if not requested <= available:
            raise errdefs.InvalidArgument(f"Requested memory nodes are not available - requested {mems}, "
                                          f"available: {format_cpuset(available)}")
    _check_port_bindings(host.get("PortBindings"))
    for option in host.get("SecurityOpt") or []:
        _check_security_option(option)
    sysctls(host)
    devices(host)
    for rule in host.get("DeviceCgroupRules") or []:
        if not isinstance(rule, str) or not _DEVICE_RULE.match(rule):
            raise errdefs.InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
    _check_ulimits(host.get("Ulimits") or [])
    _check_proc_destinations(host)


def _check_ulimits(items: list[Any]) -> None:
    if _has_capability(_CAP_SYS_RESOURCE):
        return
    for item in items:
        if not isinstance(item, Mapping):
            continue
        name = str(item.get("Name") or "")
        number = getattr(resource, f"RLIMIT_{name.upper()}", None)
        hard = item.get("Hard")
        if not isinstance(number, int) or not isinstance(hard, int):
            continue
        current = resource.getrlimit(number)[1]
        if current != resource.RLIM_INFINITY and (hard < 0 or hard > current):
            raise errdefs.InvalidArgument(
                f"HostConfig.Ulimits: the hard limit of {name} ({hard}) is above the engine's ({current}); "
                "raising it needs CAP_SYS_RESOURCE")


def _has_capability(number: int) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << number))
    except OSError:
        pass
    return False


def _destination(entry: Any) -> str:
    if isinstance(entry, str):
        parts = entry.split(":")
        return parts[1] if len(parts) >= 2 else parts[0]
    if isinstance(entry, Mapping):
        return str(entry.get("Target") or "")
    return ""


def _check_proc_destinations(host: Mapping[str, Any]) -> None:
    destinations = [("Binds", _destination(entry)) for entry in host.get("Binds") or []]
    destinations += [("Mounts", _destination(entry)) for entry in host.get("Mounts") or []]
    destinations += [("Tmpfs", str(key)) for key in (host.get("Tmpfs") or {})]
    for field_name, destination in destinations:
        clean = posixpath.normpath(destination) if destination else ""
        if (clean == "/proc" or clean.startswith("/proc/")) and clean not in _PROC_ALLOWED:
            raise errdefs.InvalidArgument(
                f"HostConfig.{field_name}: mount destination {destination} is not allowed: it is under /proc")


# --------------------------------------------------------------------------------------------
# the runtime's pieces


def sysctls(host: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``HostConfig.Sysctls`` checked as runc checks them: only sysctls of a namespace the
    container has of its own (IPC: ``kernel.shm*``/``msg*``/``sem``, ``fs.mqueue.*``; UTS:
    ``kernel.hostname``/``domainname``; network: ``net.*``)."""
    values = host.get("Sysctls") or {}
    result = []
    for key, value in sorted(values.items()):
        text = f"'{key}={value}'"
        if not _SYSCTL_KEY.match(key) or ".." in key or any(char in value for char in "\x00\n"):
            raise errdefs.InvalidArgument(f"HostConfig.Sysctls: invalid sysctl {text}")
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if _shared(host, "IpcMode"):
                raise errdefs.InvalidArgument(
                    f"HostConfig.Sysctls: sysctl {text} is not allowed in the {_shared(host, 'IpcMode')} IPC namespace")
        elif key in ("kernel.hostname", "kernel.domainname"):
            if _shared(host, "UTSMode"):
                raise errdefs.InvalidArgument(
                    f"HostConfig.Sysctls: sysctl {text} is not allowed in the {_shared(host, 'UTSMode')} UTS namespace")
        elif key.startswith("net."):
            if _shared(host, "NetworkMode"):
                raise errdefs.InvalidArgument(f"HostConfig.Sysctls: sysctl {text} is not allowed in the "
                                              f"{_shared(host, 'NetworkMode')} network namespace")
        else:
            raise errdefs.InvalidArgument(
                f"HostConfig.Sysctls: sysctl {text} is not allowed: it is not in a separate kernel namespace")
        if not key.startswith("net.") and not os.path.exists("/proc/sys/" + key.replace(".", "/")):
            raise errdefs.InvalidArgument(f"HostConfig.Sysctls: sysctl {text}: this kernel has no {key}")
        result.append((key, value))
    return tuple(result)


def _shared(host: Mapping[str, Any], key: str) -> str:
    """Whose namespace a mode shares: "host's", "another container's", or "" (its own)."""
    value = host.get(key) or ""
    if value == "host":
        return "host's"
    if isinstance(value, str) and value.startswith("container:"):
        return "another container's"
    return ""


@dataclass(frozen=True)
class SecurityOptions:
    """What ``HostConfig.SecurityOpt`` asks for."""

    seccomp: bool = True                     # False: unconfined
    seccomp_profile: bytes | None = None     # a profile's JSON; None: the default one
    no_new_privileges: bool = True


def _security_error(option: str, why: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"HostConfig.SecurityOpt: invalid --security-opt {option!r}: {why}")


def security_options(options: list[str] | tuple[str, ...]) -> SecurityOptions:
    """Docker's SecurityOpt values (``key=value``, or the old ``key:value``)."""
    seccomp, profile, no_new_privileges = True, None, True
    for option in options:
        if option == "no-new-privileges":
            no_new_privileges = True
            continue
        key, separator, value = option.partition("=")
        if not separator:
            key, separator, value = option.partition(":")
        if not separator:
            raise _security_error(option, "expected key=value")
        if key == "no-new-privileges":
            if value not in ("true", "false"):
                raise _security_error(option, "no-new-privileges takes true or false")
            no_new_privileges = value == "true"
        elif key == "seccomp":
            if value == "unconfined":
                seccomp = False
            elif value == "builtin":
                seccomp, profile = True, None
            else:
                profile = _seccomp_profile(option, value)
        elif key == "label":
            if value != "disable":
                raise _security_error(option, _lsm_missing("SELinux", "/sys/fs/selinux/enforce"))
        elif key == "apparmor":
            if value != "unconfined":
                raise _security_error(option, _lsm_missing("AppArmor", "/sys/kernel/security/apparmor"))
        elif key == "systempaths":
            if value != "unconfined":
                raise _security_error(option, "systempaths takes 'unconfined'")
            raise _security_error(option, "unconfined system paths are not supported by lamina")
        else:
            raise _security_error(option, f"unknown option {key!r}")
    return SecurityOptions(seccomp=seccomp, seccomp_profile=profile, no_new_privileges=no_new_privileges)


def _lsm_missing(name: str, probe: str) -> str:
    if os.path.exists(probe):
        return f"lamina does not apply {name} labels or profiles"
    return f"this host has no {name}"


def _seccomp_profile(option: str, value: str) -> bytes:
    """A profile's JSON (the docker CLI sends the file's content, not its name)."""
    try:
        profile = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise _security_error(option[:60] + ("..." if len(option) > 60 else ""),
                              f"Decoding seccomp profile failed: {exc}") from exc
    if not isinstance(profile, dict):
        raise _security_error("seccomp", "Decoding seccomp profile failed: the profile must be a JSON object")
    action = profile.get("defaultAction")
    if action not in _SECCOMP_ACTIONS:
        raise _security_error("seccomp", f"seccomp profile: unknown defaultAction {action!r}")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list) or not all(isinstance(item, dict) for item in syscalls):
        raise _security_error("seccomp", "seccomp profile: syscalls must be an array of objects")
    for item in syscalls:
        if item.get("action") not in _SECCOMP_ACTIONS:
            raise _security_error("seccomp", f"seccomp profile: unknown action {item.get('action')!r}")
    return value.encode()


def _device_node(path: str, destination: str, permissions: str) -> DeviceSpec:
    info = os.stat(path)
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        raise errdefs.InvalidArgument(f"error gathering device information while adding custom device {path!r}: "
                                      "not a device node")
    mode = stat.S_IMODE(info.st_mode)
    if "w" not in permissions:
        mode &= ~0o222
    if "r" not in permissions:
        mode &= ~0o444
    return DeviceSpec(path=destination, kind=kind, major=os.major(info.st_rdev), minor=os.minor(info.st_rdev),
                      mode=mode, uid=info.st_uid, gid=info.st_gid)


def devices(host: Mapping[str, Any]) -> tuple[tuple[DeviceSpec, str], ...]:
    """The device nodes of ``HostConfig.Devices`` with their cgroup permissions (a directory
    adds every node under it, as Docker does)."""
    result: list[tuple[DeviceSpec, str]] = []
    for entry in host.get("Devices") or []:
        if not isinstance(entry, Mapping):
            raise errdefs.InvalidArgument(f"HostConfig.Devices: invalid device {entry!r}")
        source = str(entry.get("PathOnHost") or "")
        destination = str(entry.get("PathInContainer") or source)
        permissions = str(entry.get("CgroupPermissions") or "rwm")
        if not source.startswith("/") or not destination.startswith("/"):
            raise errdefs.InvalidArgument(f"HostConfig.Devices: {source!r} and {destination!r} must be absolute paths")
        if not permissions or set(permissions) - set("rwm"):
            raise errdefs.InvalidArgument(f"HostConfig.Devices: invalid device cgroup permissions {permissions!r}")
        try:
            if os.path.isdir(source):
                for directory, names, files in os.walk(source):
                    names.sort()
                    for name in sorted(files):
                        path = os.path.join(directory, name)
                        if stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISBLK(os.stat(path).st_mode):
                            inside = posixpath.join(destination, os.path.relpath(path, source))
                            result.append((_device_node(path, inside, permissions), permissions))
            else:
                result.append((_device_node(source, destination, permissions), permissions))
        except OSError as exc:
            raise errdefs.InvalidArgument(f"error gathering device information while adding custom device "
                                          f"{source!r}: {exc.strerror.lower() if exc.strerror else exc}") from exc
    return tuple(result)


def host_devices() -> tuple[DeviceSpec, ...]:
    """Every device node of the host's /dev (``--privileged``), as Docker's HostDevices."""
    result: list[DeviceSpec] = []
    for directory, names, files in os.walk("/dev"):
        names[:] = sorted(name for name in names if not (directory == "/dev" and name in _HOST_DEVICE_SKIP))
        for name in sorted(files):
            path = os.path.join(directory, name)
            if path in ("/dev/console", "/dev/ptmx"):
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                result.append(DeviceSpec(path=path, kind="c" if stat.S_ISCHR(info.st_mode) else "b",
                                         major=os.major(info.st_rdev), minor=os.minor(info.st_rdev),
                                         mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid))
    return tuple(result)
