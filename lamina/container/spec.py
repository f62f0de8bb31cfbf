"""From Docker's create request to the runtime's :class:`ContainerSpec`: pure functions.

- :func:`split_create_body` separates ``POST /containers/create``'s body into the container
  ``Config`` (top-level fields), ``HostConfig`` and ``NetworkingConfig``.
- :func:`merge_image_config` fills the container config from the image's, exactly as Docker's
  ``merge`` does at create: User, WorkingDir, StopSignal, Healthcheck when unset; Env as the
  user's variables followed by the image's that the user did not set; Labels, ExposedPorts and
  Volumes united; Cmd (and ArgsEscaped) from the image only when neither Entrypoint nor Cmd was
  given, Entrypoint from the image only when the user did not give one at all.
- :func:`normalize_host_config` validates the HostConfig with Docker's messages and fills the
  defaults ``docker inspect`` shows (``MemorySwap`` twice ``Memory``, 64 MiB ``ShmSize``, ...);
  the resource limits are checked by :mod:`lamina.container.limits`, every other field by the
  table and value rules of :mod:`lamina.container.options` (applied, or refused with a 400).
- :func:`container_spec` and :func:`exec_process` build what the runtime runs: the command is
  Entrypoint + Cmd; the environment is ``PATH`` (default), ``HOSTNAME``, ``TERM=xterm`` with a
  TTY, overlaid by the config's Env, plus ``HOME`` from the image's passwd.
- :func:`resolv_conf` and :func:`hosts_file` write the container's DNS files the way Docker's
  libnetwork does: the host's resolv.conf without loopback or IPv6 nameservers (Google's
  public servers when none remain), a hosts file with the localhost entries and the hostname.
"""

from __future__ import annotations

import os
import posixpath
import re
import signal as signals
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.container import options as host_options
from lamina.container.limits import validate_resources
from lamina.container.logs import parse_log_options
from lamina.image.config import ContainerConfig
from lamina.runtime.api import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ContainerSpec,
    MountSpec,
    ProcessSpec,
    Resources,
)
from lamina.runtime.capabilities import CAPABILITIES
from lamina.runtime.user import ExecUser, group_ids_in_root
from lamina.volume.parse import mount_point_from_spec, parse_volume_spec, parse_volumes_from, validate_tmpfs
from lamina.volume.resolve import runtime_mounts

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHM_SIZE",
    "DEFAULT_STOP_TIMEOUT",
    "RESTART_POLICIES",
    "container_env",
    "container_spec",
    "entrypoint_and_args",
    "exec_process",
    "hosts_file",
    "log_options",
    "merge_image_config",
    "network_mode",
    "normalize_config",
    "normalize_host_config",
    "normalize_update",
    "parse_signal",
    "resolv_conf",
    "resources",
    "restart_policy",
    "split_create_body",
    "stop_signal",
    "stop_timeout",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
_GOOGLE_DNS = ("8.8.8.8", "8.8.4.4")
_LOOPBACK_NAMESERVER = re.compile(r"^\s*nameserver\s*((127\.\d{1,3}\.\d{1,3}\.\d{1,3})|(::1))\s*$")
_IPV6_NAMESERVER = re.compile(r"^\s*nameserver\s*[0-9a-fA-F]*:[0-9a-fA-F:.%a-zA-Z]*\s*$")
_HOSTS_HEADER = ("127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")

# HostConfig as Docker fills it for a plain `docker create` (the order of `docker inspect`)
_HOST_CONFIG_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Binds", None), ("ContainerIDFile", ""), ("LogConfig", {"Type": "json-file", "Config": {}}),
    ("NetworkMode", "default"), ("PortBindings", {}), ("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0}),
    ("AutoRemove", False), ("VolumeDriver", ""), ("VolumesFrom", None), ("ConsoleSize", [0, 0]),
    ("CapAdd", None), ("CapDrop", None), ("CgroupnsMode", "private"), ("Dns", []), ("DnsOptions", []),
    ("DnsSearch", []), ("ExtraHosts", None), ("GroupAdd", None), ("IpcMode", "private"), ("Cgroup", ""),
    ("Links", None), ("OomScoreAdj", 0), ("PidMode", ""), ("Privileged", False), ("PublishAllPorts", False),
    ("ReadonlyRootfs", False), ("SecurityOpt", None), ("UTSMode", ""), ("UsernsMode", ""),
    ("ShmSize", DEFAULT_SHM_SIZE), ("Runtime", ""), ("Isolation", ""), ("CpuShares", 0), ("Memory", 0),
    ("NanoCpus", 0), ("CgroupParent", ""), ("BlkioWeight", 0), ("BlkioWeightDevice", []),
    ("BlkioDeviceReadBps", []), ("BlkioDeviceWriteBps", []), ("BlkioDeviceReadIOps", []),
    ("BlkioDeviceWriteIOps", []), ("CpuPeriod", 0), ("CpuQuota", 0), ("CpuRealtimePeriod", 0),
    ("CpuRealtimeRuntime", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("Devices", []),
    ("DeviceCgroupRules", None), ("DeviceRequests", None), ("MemoryReservation", 0), ("MemorySwap", 0),
    ("MemorySwappiness", None), ("OomKillDisable", False), ("PidsLimit", None), ("Ulimits", None),
    ("CpuCount", 0), ("CpuPercent", 0), ("IOMaximumIOps", 0), ("IOMaximumBandwidth", 0),
    ("Mounts", None), ("Init", None), ("Tmpfs", None), ("MaskedPaths", None), ("ReadonlyPaths", None),
)
_UPDATE_FIELDS = ("CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "CpuPeriod", "CpuQuota",
                  "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "MemoryReservation",
                  "MemorySwap", "MemorySwappiness", "KernelMemory", "OomKillDisable", "PidsLimit",
                  "RestartPolicy", "BlkioWeightDevice", "Devices", "Ulimits")


# --------------------------------------------------------------------------------------------
# the create request


def split_create_body(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Config fields, HostConfig, NetworkingConfig) of a create request body."""
    if not isinstance(body, Mapping):
        raise errdefs.InvalidArgument("the container configuration must be a JSON object")
    config = {key: value for key, value in body.items() if key not in ("HostConfig", "NetworkingConfig")}
    host = body.get("HostConfig") or {}
    networking = body.get("NetworkingConfig") or {}
    if not isinstance(host, Mapping):
        raise errdefs.InvalidArgument("HostConfig must be a JSON object")
    if not isinstance(networking, Mapping):
        raise errdefs.InvalidArgument("NetworkingConfig must be a JSON object")
    return config, dict(host), dict(networking)


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as Docker serialises ``container.Config`` (types checked)."""
    return ContainerConfig.from_dict(dict(config), "Config.").to_dict()


def _env_key(item: str) -> str:
    return item.split("=", 1)[0]


def merge_image_config(user: dict[str, Any], image: Mapping[str, Any] | None) -> dict[str, Any]:
    """Docker's ``merge(userConf, imageConf)`` (see the module docstring)."""
    merged = dict(user)
    image = dict(image or {})
    if not merged.get("User"):
        merged["User"] = image.get("User") or ""
    ports = dict(merged.get("ExposedPorts") or {})
    for port in image.get("ExposedPorts") or {}:
        ports.setdefault(port, {})
    if ports:
        merged["ExposedPorts"] = dict(sorted(ports.items()))
    user_env = list(merged.get("Env") or [])
    if not user_env:
        merged["Env"] = list(image.get("Env") or []) or merged.get("Env")
    else:
        keys = {_env_key(item) for item in user_env}
        merged["Env"] = user_env + [item for item in image.get("Env") or [] if _env_key(item) not in keys]
    labels = dict(merged.get("Labels") or {})
    for key, value in (image.get("Labels") or {}).items():
        labels.setdefault(key, value)
    merged["Labels"] = labels
    if not merged.get("Entrypoint"):
        if not merged.get("Cmd"):
            merged["Cmd"] = image.get("Cmd")
            if image.get("ArgsEscaped"):
                merged["ArgsEscaped"] = True
        if merged.get("Entrypoint") is None:
            merged["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck"):
        if not merged.get("Healthcheck"):
            merged["Healthcheck"] = image["Healthcheck"]
        else:
            health = dict(merged["Healthcheck"])
            for key, value in image["Healthcheck"].items():
                if not health.get(key):
                    health[key] = value
            merged["Healthcheck"] = health
    if not merged.get("WorkingDir"):
        merged["WorkingDir"] = image.get("WorkingDir") or ""
    volumes = dict(image.get("Volumes") or {})
    volumes.update(merged.get("Volumes") or {})
    merged["Volumes"] = dict(sorted(volumes.items())) if volumes else None
    if not merged.get("StopSignal") and image.get("StopSignal"):
        merged["StopSignal"] = image["StopSignal"]
    if merged.get("Entrypoint") == [""]:
        merged["Entrypoint"] = None  # `--entrypoint ""`: no entrypoint at all
    return merged


def entrypoint_and_args(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Docker's ``getEntrypointAndArgs``: (Path, Args)."""
    entrypoint = list(config.get("Entrypoint") or [])
    command = list(config.get("Cmd") or [])
    if entrypoint:
        return entrypoint[0], entrypoint[1:] + command
    if not command:
        raise errdefs.InvalidArgument("No command specified")
    return command[0], command[1:]


def parse_signal(text: str | int) -> int:
    """Docker's ``signal.ParseSignal``: ``9``, ``KILL``, ``SIGKILL``, ``SIGRTMIN+3``."""
    raw = str(text).strip()
    if raw.isdigit():
        number = int(raw)
        if 1 <= number <= signals.SIGRTMAX:
            return number
        raise errdefs.InvalidArgument(f"Invalid signal: {text}")
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    match = re.fullmatch(r"SIGRT(MIN|MAX)([+-]\d+)?", name)
    if match:
        base = signals.SIGRTMIN if match.group(1) == "MIN" else signals.SIGRTMAX
        number = base + int(match.group(2) or 0)
        if signals.SIGRTMIN <= number <= signals.SIGRTMAX:
            return number
        raise errdefs.InvalidArgument(f"Invalid signal: {text}")
    member = getattr(signals.Signals, name, None) if name in signals.Signals.__members__ else None
    if member is None:
        raise errdefs.InvalidArgument(f"Invalid signal: {text}")
    return int(member)


def stop_signal(config: Mapping[str, Any]) -> int:
    value = config.get("StopSignal")
    return parse_signal(value) if value else int(signals.SIGTERM)


def stop_timeout(config: Mapping[str, Any]) -> int:
    value = config.get("StopTimeout")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_STOP_TIMEOUT


def validate_config(config: dict[str, Any]) -> None:
    """Docker's create-time checks of the merged config."""
    working_dir = config.get("WorkingDir") or ""
    if working_dir:
        if not working_dir.startswith("/"):
            raise errdefs.InvalidArgument(
                f"the working directory '{working_dir}' is invalid, it needs to be an absolute path")
        config["WorkingDir"] = posixpath.normpath(working_dir).replace("//", "/")
    entrypoint_and_args(config)
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    for item in config.get("Env") or []:
        if not item or item.startswith("="):
            raise errdefs.InvalidArgument(f"invalid environment variable: {item}")
    host_options.check_config_values(config)
    host_options.refuse_unsupported({}, config)


# --------------------------------------------------------------------------------------------
# HostConfig


def restart_policy(host: Mapping[str, Any]) -> tuple[str, int]:
    policy = host.get("RestartPolicy") or {}
    return str(policy.get("Name") or "no"), int(policy.get("MaximumRetryCount") or 0)


def _validate_restart_policy(policy: Any) -> dict[str, Any]:
    if policy is None:
        return {"Name": "no", "MaximumRetryCount": 0}
    if not isinstance(policy, Mapping):
        raise errdefs.InvalidArgument("RestartPolicy must be a JSON object")
    name = policy.get("Name") or ""
    count = policy.get("MaximumRetryCount") or 0
    if not isinstance(count, int) or isinstance(count, bool):
        raise errdefs.InvalidArgument("invalid restart policy: maximum retry count must be a number")
    if name in ("always", "unless-stopped", "no"):
        if count != 0:
            message = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            if count < 0:
                message += " and cannot be negative"
            raise errdefs.InvalidArgument(message)
    elif name == "on-failure":
        if count < 0:
            raise errdefs.InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    elif name == "":
        name = "no"  # before Docker 25 an unset policy was stored with an empty name
    else:
        raise errdefs.InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', "
            f"or 'unless-stopped'")
    return {"Name": name, "MaximumRetryCount": count}


def _check_list(host: Mapping[str, Any], key: str) -> list[Any]:
    value = host.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise errdefs.InvalidArgument(f"HostConfig.{key} must be an array")
    return value


def _canonical_capability(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    canonical = upper if upper.startswith("CAP_") else "CAP_" + upper
    if canonical not in CAPABILITIES:
        raise errdefs.InvalidArgument(f"unknown capability: \"{name}\"")
    return canonical


def normalize_host_config(host: Mapping[str, Any], *, default_runtime: str = "native",
                          runtimes: tuple[str, ...] = ("native", "crun", "runc"),
                          cpu_count: int | None = None,
                          available_cpus: set[int] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Validate a HostConfig with Docker's messages; returns it with Docker's defaults filled
    in, and the warnings Docker would give."""
    given = dict(host)
    out: dict[str, Any] = {}
    for key, default in _HOST_CONFIG_DEFAULTS:
        value = given.pop(key, None)
        out[key] = default if value is None else value
    out.update(given)  # fields lamina does not know: kept as given
    cpu_count = cpu_count or os.cpu_count() or 1
    available = available_cpus if available_cpus is not None else set(os.sched_getaffinity(0))
    warnings = validate_resources(out, update=False, cpu_count=cpu_count, available=available)
    host_options.check_host_values(out)
    warnings += host_options.refuse_unsupported(out, {})
    for key, (status, _how) in host_options.HOST_CONFIG_FIELDS.items():
        if status == "ignored" and out.get(key):
            out[key] = 0
    isolation = out.get("Isolation") or ""
    if isolation not in ("", "default"):
        raise errdefs.InvalidArgument(f"Invalid isolation: {isolation!r} - linux only supports 'default'")
    out["RestartPolicy"] = _validate_restart_policy(host.get("RestartPolicy"))
    if out.get("AutoRemove") and out["RestartPolicy"]["Name"] != "no":
        raise errdefs.InvalidArgument("can't create 'AutoRemove' container with restart policy")
    mode = out.get("NetworkMode") or "default"
    out["NetworkMode"] = mode
    network_mode(out)
    log_config = out.get("LogConfig") or {}
    if not isinstance(log_config, Mapping):
        raise errdefs.InvalidArgument("LogConfig must be a JSON object")
    log_type = log_config.get("Type") or "json-file"
    options = log_config.get("Config") or {}
    if log_type not in ("json-file", "local", "none"):
        raise errdefs.InvalidArgument(
            f"logger: no log driver named '{log_type}' is registered")
    if log_type == "local" and set(options) - {"max-size", "max-file", "compress"}:
        unknown = sorted(set(options) - {"max-size", "max-file", "compress"})[0]
        raise errdefs.InvalidArgument(f"unknown log opt '{unknown}' for local log driver")
    if log_type in ("json-file", "local"):
        parse_log_options(options)
    elif options:
        raise errdefs.InvalidArgument("configuring options is not supported for the 'none' log driver")
    out["LogConfig"] = {"Type": log_type, "Config": dict(options)}
    runtime = out.get("Runtime") or default_runtime
    if runtime not in runtimes:
        raise errdefs.InvalidArgument(f"unknown or invalid runtime name: {runtime}")
    out["Runtime"] = runtime
    for key in ("CapAdd", "CapDrop"):
        for name in _check_list(out, key):
            if not isinstance(name, str):
                raise errdefs.InvalidArgument(f"HostConfig.{key} must hold strings")
            _canonical_capability(name)
    for key in ("PidMode", "IpcMode", "UTSMode", "CgroupnsMode", "UsernsMode"):
        value = out.get(key) or ""
        allowed = {"PidMode": ("", "host"), "IpcMode": ("", "private", "shareable", "host", "none"),
                   "UTSMode": ("", "host"), "CgroupnsMode": ("", "private", "host"), "UsernsMode": ("", "host")}[key]
        if key in ("PidMode", "IpcMode", "UTSMode") and isinstance(value, str) and value.startswith("container:"):
            if not value[len("container:"):]:
                raise errdefs.InvalidArgument(f"invalid {key} {value!r}: expected container:<name|id>")
            continue
        if value not in allowed:
            raise errdefs.InvalidArgument(f"HostConfig.{key} {value!r} is not supported by lamina")
    volume_driver = out.get("VolumeDriver") or ""
    if not isinstance(volume_driver, str):
        raise errdefs.InvalidArgument("HostConfig.VolumeDriver must be a string")
    for entry in _check_list(out, "Binds"):
        parse_volume_spec(entry, volume_driver)
    for entry in _check_list(out, "Mounts"):
        mount_point_from_spec(entry)
    for entry in _check_list(out, "VolumesFrom"):
        parse_volumes_from(entry)
    tmpfs = out.get("Tmpfs") or {}
    if not isinstance(tmpfs, Mapping):
        raise errdefs.InvalidArgument("HostConfig.Tmpfs must be an object")
    for destination, options in tmpfs.items():
        validate_tmpfs(destination, options)
    for item in _check_list(out, "Ulimits"):
        _ulimit(item)
    for item in _check_list(out, "ExtraHosts"):
        if not isinstance(item, str) or ":" not in item:
            raise errdefs.InvalidArgument(f"invalid extra host {item!r}: expected host:ip")
    for item in _check_list(out, "GroupAdd"):
        if not isinstance(item, str) or not item:
            raise errdefs.InvalidArgument(f"invalid group {item!r}")
    shm = out.get("ShmSize") or 0
    if shm < 0:
        raise errdefs.InvalidArgument("SHM size can not be less than 0")
    if not shm:
        out["ShmSize"] = DEFAULT_SHM_SIZE
    if out.get("Privileged"):
        out["MaskedPaths"] = None
        out["ReadonlyPaths"] = None
    else:
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    out["ConsoleSize"] = list(out.get("ConsoleSize") or [0, 0])
    return out, warnings


def normalize_update(host: dict[str, Any], update: Mapping[str, Any], *, cpu_count: int | None = None,
                     available_cpus: set[int] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The HostConfig after ``docker update`` (Docker's UpdateConfig: resources and RestartPolicy)."""
    if not isinstance(update, Mapping):
        raise errdefs.InvalidArgument("the update must be a JSON object")
    changed = dict(host)
    for key, value in update.items():
        if key not in _UPDATE_FIELDS:
            raise errdefs.InvalidArgument(f"unknown update field {key!r}")
        if key == "RestartPolicy":
            changed[key] = _validate_restart_policy(value)
        elif value is not None and value != 0 and value != "" or key == "PidsLimit" and value is not None:
            changed[key] = value
    host_options.refuse_unsupported({key: value for key, value in update.items() if key != "RestartPolicy"}, {})
    for key in ("Devices", "Ulimits"):
        if update.get(key):
            raise errdefs.InvalidArgument(f"HostConfig.{key} cannot be changed by an update")
    cpu_count = cpu_count or os.cpu_count() or 1
    available = available_cpus if available_cpus is not None else set(os.sched_getaffinity(0))
    warnings = validate_resources(changed, update=True, cpu_count=cpu_count, available=available)
    host_options.check_host_values({key: changed.get(key) for key in ("CpusetMems", "BlkioWeight")})
    memory = changed.get("Memory") or 0
    swap = changed.get("MemorySwap") or 0
    if "Memory" in update and memory and "MemorySwap" not in update and 0 < swap < memory:
        # Docker keeps the old swap limit; a limit below the new memory limit is refused
        raise errdefs.InvalidArgument(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the "
            "same time")
    if changed.get("AutoRemove") and changed["RestartPolicy"]["Name"] != "no":
        raise errdefs.InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the "
                                      "container")
    return changed, warnings


def network_mode(host: Mapping[str, Any]) -> str:
    """The runtime's network for a NetworkMode: ``private`` (default/bridge or a user-defined
    network, checked by the container service; or ``container:<id>``, another container's
    namespace that the start joins), ``none``, ``host``."""
    mode = host.get("NetworkMode") or "default"
    if mode in ("default", "bridge"):
        return "private"
    if mode in ("none", "host"):
        return mode
    if mode.startswith("container:"):
        if not mode[len("container:"):]:
            raise errdefs.InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
        return "private"  # another container's namespace (lamina.container.joining), joined
    return "private"  # a user-defined network: lamina.network sets the namespace up


def log_options(host: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    log_config = host.get("LogConfig") or {}
    return str(log_config.get("Type") or "json-file"), dict(log_config.get("Config") or {})


def resources(host: Mapping[str, Any]) -> Resources:
    memory = host.get("Memory") or 0
    swap = host.get("MemorySwap") or 0
    nano = host.get("NanoCpus") or 0
    period = host.get("CpuPeriod") or 0
    quota = host.get("CpuQuota") or 0
    if nano:
        period = 100_000
        quota = nano * period // 1_000_000_000
    pids = host.get("PidsLimit")
    return Resources(
        memory=memory or None,
        memory_swap=swap if swap else None,
        cpu_quota=quota or None,
        cpu_period=period or None,
        cpu_shares=host.get("CpuShares") or None,
        cpuset_cpus=host.get("CpusetCpus") or None,
        cpuset_mems=host.get("CpusetMems") or None,
        memory_reservation=host.get("MemoryReservation") or None,
        pids_limit=pids if pids and pids > 0 else None,
    )


# --------------------------------------------------------------------------------------------
# ulimits (mounts: lamina.volume.parse and lamina.volume.resolve)


def _ulimit(item: Any) -> tuple[str, int, int]:
    if not isinstance(item, Mapping) or not isinstance(item.get("Name"), str):
        raise errdefs.InvalidArgument("Ulimits entries must be {Name, Soft, Hard} objects")
    name = item["Name"]
    known = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
             "rss", "rtprio", "rttime", "sigpending", "stack", "as")
    if name not in known:
        raise errdefs.InvalidArgument(f"invalid ulimit type: {name}")
    soft, hard = int(item.get("Soft") or 0), int(item.get("Hard") or 0)
    if soft > hard >= 0:
        raise errdefs.InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return f"RLIMIT_{name.upper()}", soft, hard


# --------------------------------------------------------------------------------------------
# the runtime spec


def container_env(config: Mapping[str, Any], *, tty: bool, hostname: str,
                  linked_env: list[str] | None = None) -> list[str]:
    """Docker's ``CreateDaemonEnvironment``: PATH, HOSTNAME, TERM, the links' variables, then
    the config's Env."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    base = _replace_or_append(base, list(linked_env or []))
    return _replace_or_append(base, list(config.get("Env") or []))


def _replace_or_append(base: list[str], overrides: list[str]) -> list[str]:
    result = list(base)
    index_of = {}
    for index, existing in enumerate(result):
        index_of.setdefault(_env_key(existing), index)
    for item in overrides:
        key = _env_key(item)
        index = index_of.get(key)
        if index is None:
            index_of[key] = len(result)
            result.append(item)
        else:
            result[index] = item
    return result


def _capabilities(host: Mapping[str, Any], privileged: bool) -> tuple[str, ...]:
    if privileged:
        return CAPABILITIES
    caps = list(DEFAULT_CAPABILITIES)
    add = [_canonical_capability(c) for c in host.get("CapAdd") or []]
    drop = [_canonical_capability(c) for c in host.get("CapDrop") or []]
    if "ALL" in drop:
        caps = []
    else:
        caps = [c for c in caps if c not in drop]
    if "ALL" in add:
        caps = list(CAPABILITIES)
    else:
        caps.extend(c for c in add if c not in caps)
    return tuple(caps)


def _hostname(config: Mapping[str, Any], container_id: str) -> str:
    return str(config.get("Hostname") or container_id[:12])


def container_spec(*, container_id: str, config: Mapping[str, Any], host: Mapping[str, Any], rootfs: str,
                   user: ExecUser, files: Mapping[str, str], cgroup_parent: str = "lamina",
                   mount_points: Mapping[str, Any] | None = None, linked_env: list[str] | None = None) -> ContainerSpec:
    """The runtime spec of a container.  ``files`` maps /etc/hostname, /etc/hosts and
    /etc/resolv.conf to the host files bind-mounted over them; ``user`` is the resolved -u;
    ``mount_points`` are the container's stored MountPoints (volumes, binds, ``--mount``),
    mounted with ``HostConfig.Tmpfs`` after them, parents before children (a user mount at
    one of the ``files`` destinations replaces it, as in Docker); ``linked_env``: the variables
    of legacy links, which the config's ``Env`` overrides."""
    tty = bool(config.get("Tty"))
    hostname = _hostname(config, container_id)
    path, args = entrypoint_and_args(config)
    env = container_env(config, tty=tty, hostname=hostname, linked_env=linked_env)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={user.home or '/'}")
    privileged = bool(host.get("Privileged"))
    security = host_options.security_options([str(option) for option in host.get("SecurityOpt") or []])
    no_new_privileges = security.no_new_privileges and not privileged
    seccomp = security.seccomp and not privileged
    extra_gids = list(user.additional_gids)
    for gid in group_ids_in_root(rootfs, [str(group) for group in host.get("GroupAdd") or []]):
        if gid not in extra_gids:
            extra_gids.append(gid)
    init_mounts: list[MountSpec] = []
    if host.get("Init"):
        if not os.path.exists(host_options.INIT_BINARY):
            raise errdefs.FailedPrecondition(
                f"--init needs {host_options.INIT_BINARY} (Debian's tini package), which this host lacks")
        init_mounts.append(MountSpec(host_options.INIT_PATH, "bind", host_options.INIT_BINARY,
                                     ("bind", "ro", "nosuid", "nodev")))
        path, args = host_options.INIT_PATH, ["--", path, *args]
    device_nodes = list(host_options.host_devices()) if privileged else []
    device_rules = ["a *:* rwm"] if privileged else []
    for node, permissions in host_options.devices(host):
        device_nodes.append(node)
        device_rules.append(f"{node.kind} {node.major}:{node.minor} {permissions}")
    device_rules.extend(str(rule) for rule in host.get("DeviceCgroupRules") or [])
    process = ProcessSpec(
        args=(path, *args), env=tuple(env), cwd=config.get("WorkingDir") or "/", uid=user.uid, gid=user.gid,
        additional_gids=tuple(extra_gids), terminal=tty, capabilities=_capabilities(host, privileged),
        no_new_privileges=no_new_privileges,
        rlimits=tuple(_ulimit(item) for item in host.get("Ulimits") or []))
    readonly = bool(host.get("ReadonlyRootfs"))
    user_mounts = runtime_mounts(mount_points, host.get("Tmpfs"))
    taken = {item.destination for item in user_mounts}
    mounts: list[MountSpec] = [
        MountSpec(destination, "bind", source, ("rbind", "rprivate") + (("ro",) if readonly else ()))
        for destination, source in files.items() if posixpath.normpath(destination) not in taken]
    mounts.extend(user_mounts)
    mounts.extend(init_mounts)
    mounts.sort(key=lambda item: posixpath.normpath(item.destination).count("/"))
    namespaces = {"pid", "mount", "uts", "ipc", "network", "cgroup"}
    if host.get("PidMode") == "host":
        namespaces.discard("pid")
    if host.get("IpcMode") == "host":
        namespaces.discard("ipc")
    if host.get("UTSMode") == "host":
        namespaces.discard("uts")
    if host.get("CgroupnsMode") == "host":
        namespaces.discard("cgroup")
    return ContainerSpec(
        id=container_id, rootfs=rootfs, process=process, hostname=hostname, readonly_rootfs=readonly,
        domainname=str(config.get("Domainname") or ""),
        mounts=tuple(mounts), network=network_mode(host), namespaces=frozenset(namespaces),
        resources=resources(host),
        masked_paths=() if privileged else tuple(host.get("MaskedPaths") or DEFAULT_MASKED_PATHS),
        readonly_paths=() if privileged else tuple(host.get("ReadonlyPaths") or DEFAULT_READONLY_PATHS),
        seccomp=seccomp, init=False,
        cgroup_parent=str(host.get("CgroupParent") or cgroup_parent),
        sysctls=host_options.sysctls(host),
        shm_size=0 if host.get("IpcMode") == "none" else int(host.get("ShmSize") or DEFAULT_SHM_SIZE),
        oom_score_adj=int(host["OomScoreAdj"]) if host.get("OomScoreAdj") else None,
        devices=tuple(device_nodes), device_rules=tuple(device_rules), privileged=privileged,
        seccomp_profile=security.seccomp_profile)


def exec_process(*, container_id: str, config: Mapping[str, Any], host: Mapping[str, Any],
                 exec_config: Mapping[str, Any], user: ExecUser) -> ProcessSpec:
    """The process of ``docker exec`` (Docker's ExecConfig) inside the container."""
    command = list(exec_config.get("Cmd") or [])
    if not command:
        raise errdefs.InvalidArgument("No exec command specified")
    tty = bool(exec_config.get("Tty"))
    env = container_env(config, tty=tty, hostname=_hostname(config, container_id))
    env = _replace_or_append(env, list(exec_config.get("Env") or []))
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={user.home or '/'}")
    privileged = bool(exec_config.get("Privileged")) or bool(host.get("Privileged"))
    security = host_options.security_options([str(option) for option in host.get("SecurityOpt") or []])
    return ProcessSpec(
        args=tuple(command), env=tuple(env),
        cwd=exec_config.get("WorkingDir") or config.get("WorkingDir") or "/",
        uid=user.uid, gid=user.gid, additional_gids=user.additional_gids, terminal=tty,
        capabilities=_capabilities(host, privileged),
        no_new_privileges=security.no_new_privileges and not privileged,
        rlimits=tuple(_ulimit(item) for item in host.get("Ulimits") or []), seccomp_profile=security.seccomp_profile)


# --------------------------------------------------------------------------------------------
# DNS files


def resolv_conf(host_text: str, *, network: str, dns: list[str] | None = None,
                search: list[str] | None = None, options: list[str] | None = None) -> str:
    """The container's resolv.conf (see the module docstring)."""
    lines = host_text.splitlines()
    if network != "host":
        lines = [line for line in lines
                 if not _LOOPBACK_NAMESERVER.match(line) and not _IPV6_NAMESERVER.match(line)]
    if dns:
        lines = [line for line in lines if not line.strip().startswith("nameserver")]
        lines += [f"nameserver {server}" for server in dns]
    if search:
        lines = [line for line in lines if not line.strip().startswith(("search", "domain"))]
        lines.append("search " + " ".join(search))
    if options:
        lines = [line for line in lines if not line.strip().startswith("options")]
        lines.append("options " + " ".join(options))
    if network != "host" and not any(line.strip().startswith("nameserver") for line in lines):
        lines += [f"nameserver {server}" for server in _GOOGLE_DNS]
    return "\n".join(lines) + "\n"


def hosts_file(*, hostname: str, domainname: str = "", network: str, extra_hosts: list[str] | None = None,
               host_text: str = "") -> str:
    """The container's /etc/hosts (the host's for ``network="host"``)."""
    if network == "host":
        text = host_text if host_text.endswith("\n") or not host_text else host_text + "\n"
    else:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        text = _HOSTS_HEADER + f"127.0.0.1\t{names}\n"
    for entry in extra_hosts or []:
        name, _, address = entry.partition(":")
        text += f"{address}\t{name}\n"
    return text
