"""The flags of ``create`` / ``run`` (and the resource flags of ``update``), turned into the body
of ``POST /containers/create`` the way the docker CLI builds it.

Values are parsed like docker's: sizes are go-units' ``RAMInBytes`` (binary multiples, ``512m``,
``1.5g``; ``--memory-swap -1`` is unlimited), ``--cpus`` is a decimal number of CPUs sent as
``NanoCpus``, ``--restart`` is ``no|always|unless-stopped|on-failure[:N]``, ``-e KEY`` takes
KEY's value from the environment (and is dropped when it is unset), ``--env-file`` lines are
``KEY=VALUE`` or ``KEY`` with ``#`` comments.  A bad value raises :class:`FlagError` with
docker's wording (``invalid argument "12zz" for "-m, --memory" flag: invalid size: '12zz'``).

Also here, because ``logs`` needs them and they are the same kind of parsing: :func:`parse_time`
(``--since`` / ``--until``: a Go duration such as ``10m`` or ``1h30m`` before now, an RFC 3339
time, a date, or a unix timestamp).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterable, Mapping

from lamina.cli.errors import CommandError, UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EXIT_ENGINE",
    "FlagError",
    "configure_create",
    "configure_resources",
    "create_body",
    "parse_cpus",
    "parse_duration",
    "parse_env",
    "parse_key_values",
    "parse_labels",
    "parse_restart",
    "parse_size",
    "parse_swap",
    "parse_time",
    "read_env_file",
    "resources_body",
]

# docker run/create: the engine (or the CLI's own checks) refused: 125.
EXIT_ENGINE = 125


class FlagError(CommandError):
    """A flag value docker would refuse; exit code 125 like ``docker run``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_ENGINE)


def _invalid(value: str, flag: str, reason: str) -> FlagError:
    return FlagError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


# -- values ------------------------------------------------------------------------------------

# Patterns stay strings (re caches them when used): compiling at import costs the run path.
_SIZE = r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$"
_MULTIPLIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str, flag: str = "-m, --memory") -> int:
    """go-units ``RAMInBytes``: ``512m`` -> 536870912 (binary multiples)."""
    match = re.match(_SIZE, text.strip())
    if match is None:
        raise _invalid(text, flag, f"invalid size: '{text}'")
    try:
        number = float(match.group(1))
    except ValueError as exc:
        raise _invalid(text, flag, f"invalid size: '{text}'") from exc
    unit = (match.group(2) or "").lower()
    return int(number * _MULTIPLIERS.get(unit, 1))


def parse_swap(text: str) -> int:
    """``--memory-swap``: a size, or -1 for unlimited swap."""
    if text.strip() == "-1":
        return -1
    return parse_size(text, "--memory-swap")


def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` -> 1500000000 NanoCpus."""
    try:
        value = float(text)
    except ValueError as exc:
        raise _invalid(text, "--cpus", f"failed to parse {text} as a rational number") from exc
    if not math.isfinite(value):
        raise _invalid(text, "--cpus", f"failed to parse {text} as a rational number")
    nano = round(value * 1e9)
    if nano < 0:
        raise _invalid(text, "--cpus", "the number of CPUs cannot be negative")
    if value and nano == 0:
        raise _invalid(text, "--cpus", "value is too precise")
    return nano


def _integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise _invalid(text, flag, f'strconv.ParseInt: parsing "{text}": invalid syntax') from exc


_RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart(text: str) -> dict[str, Any]:
    """``on-failure:3`` -> ``{"Name": "on-failure", "MaximumRetryCount": 3}``."""
    name, colon, count = text.partition(":")
    if colon and not name:
        raise FlagError("invalid restart policy format: no policy provided before colon")
    if name not in _RESTART_NAMES:
        raise FlagError(f"invalid restart policy: unknown policy '{name}'; use one of "
                        "'no', 'always', 'on-failure', or 'unless-stopped'")
    policy: dict[str, Any] = {"Name": name, "MaximumRetryCount": 0}
    if colon:
        if name != "on-failure":
            raise FlagError("invalid restart policy: maximum retry count can only be used with 'on-failure'")
        try:
            policy["MaximumRetryCount"] = int(count)
        except ValueError as exc:
            raise FlagError("invalid restart policy format: maximum retry count must be an integer") from exc
        if policy["MaximumRetryCount"] < 0:
            raise FlagError("invalid restart policy: maximum retry count cannot be negative")
    return policy


def parse_env(values: Iterable[str], environment: Mapping[str, str] | None = None) -> list[str]:
    """``-e KEY=VALUE`` kept as is; ``-e KEY`` takes KEY's value here (dropped when unset)."""
    environment = os.environ if environment is None else environment
    result = []
    for value in values:
        key, equals, _ = value.partition("=")
        if not key:
            raise FlagError(f'invalid argument "{value}" for "-e, --env" flag: invalid environment variable: {value}')
        if equals:
            result.append(value)
        elif key in environment:
            result.append(f"{key}={environment[key]}")
    return result


def read_env_file(path: str, environment: Mapping[str, str] | None = None) -> list[str]:
    """docker's ``--env-file``: ``KEY=VALUE`` lines (the value as written), ``KEY`` lines from
    the environment, blank lines and ``#`` comments skipped."""
    environment = os.environ if environment is None else environment
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise FlagError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlagError(f"env file {path} contains invalid utf8 bytes") from exc
    lines = []
    for line_number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not key:
            raise FlagError(f"no variable name on line '{raw}' of {path}")
        if any(character.isspace() for character in key):
            raise FlagError(f"variable '{key.strip()}' contains whitespaces ({path}:{line_number})")
        if equals:
            lines.append(f"{key}={value}")
        elif key in environment:
            lines.append(f"{key}={environment[key]}")
    return lines


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, _, label = value.partition("=")
        if not key.strip():
            raise FlagError(f'invalid argument "{value}" for "-l, --label" flag: invalid label: {value}')
        labels[key] = label
    return labels


def parse_key_values(values: Iterable[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        key, equals, item = value.partition("=")
        if not equals or not key:
            raise _invalid(value, flag, f"invalid key=value pair: {value!r}")
        result[key] = item
    return result


_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """A Go duration (``1h30m``, ``-10s``, ``1.5h``) in seconds; None if it is not one."""
    body = text.strip()
    sign = 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    position = 0
    total = 0.0
    while position < len(body):
        match = re.compile(_DURATION_PART).match(body, position)
        if match is None:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return sign * total if body else None


def parse_time(text: str, now: float, flag: str = "--since") -> float:
    """docker's ``timetypes.GetTimestamp``: a duration before ``now``, an RFC 3339 time or
    date (local time when it has no zone), or a unix timestamp; returns unix seconds."""
    from datetime import datetime

    value = text.strip()
    if not value:
        return 0
    duration = parse_duration(value)
    if duration is not None:
        return now - duration
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    candidate = value.replace("z", "Z")
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise UsageError(f'invalid value for "{flag}": failed to parse value as time or duration: "{text}"') from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


# -- create / run ----------------------------------------------------------------------------

def configure_resources(parser: argparse.ArgumentParser) -> None:
    """Resource flags shared by create/run and update."""
    parser.add_argument("-m", "--memory", metavar="BYTES", help="memory limit (e.g. 512m, 1g)")
    parser.add_argument("--memory-swap", metavar="BYTES",
                        help="swap limit equal to memory plus swap: -1 to enable unlimited swap")
    parser.add_argument("--memory-reservation", metavar="BYTES", help="memory soft limit")
    parser.add_argument("--cpus", metavar="DECIMAL", help="number of CPUs")
    parser.add_argument("-c", "--cpu-shares", metavar="INT", help="CPU shares (relative weight)")
    parser.add_argument("--cpu-period", metavar="INT", help="limit CPU CFS (Completely Fair Scheduler) period")
    parser.add_argument("--cpu-quota", metavar="INT", help="limit CPU CFS (Completely Fair Scheduler) quota")
    parser.add_argument("--cpuset-cpus", metavar="CPUS", help="CPUs in which to allow execution (0-3, 0,1)")
    parser.add_argument("--cpuset-mems", metavar="MEMS", help="MEMs in which to allow execution (0-3, 0,1)")
    parser.add_argument("--pids-limit", metavar="INT", help="tune container pids limit (set -1 for unlimited)")
    parser.add_argument("--blkio-weight", metavar="UINT16", help="block IO (relative weight), between 10 and 1000")
    parser.add_argument("--restart", metavar="POLICY",
                        help="restart policy: no, on-failure[:max-retries], always, unless-stopped")


def resources_body(args: argparse.Namespace) -> dict[str, Any]:
    """The Resources fields (and RestartPolicy) named by the flags that were given."""
    body: dict[str, Any] = {}
    if args.memory is not None:
        body["Memory"] = parse_size(args.memory, "-m, --memory")
    if args.memory_swap is not None:
        body["MemorySwap"] = parse_swap(args.memory_swap)
    if args.memory_reservation is not None:
        body["MemoryReservation"] = parse_size(args.memory_reservation, "--memory-reservation")
    if args.cpus is not None:
        body["NanoCpus"] = parse_cpus(args.cpus)
    if args.cpu_shares is not None:
        body["CpuShares"] = _integer(args.cpu_shares, "-c, --cpu-shares")
    if args.cpu_period is not None:
        body["CpuPeriod"] = _integer(args.cpu_period, "--cpu-period")
    if args.cpu_quota is not None:
        body["CpuQuota"] = _integer(args.cpu_quota, "--cpu-quota")
    if args.cpuset_cpus is not None:
        body["CpusetCpus"] = args.cpuset_cpus
    if args.cpuset_mems is not None:
        body["CpusetMems"] = args.cpuset_mems
    if args.pids_limit is not None:
        body["PidsLimit"] = _integer(args.pids_limit, "--pids-limit")
    if args.blkio_weight is not None:
        body["BlkioWeight"] = _integer(args.blkio_weight, "--blkio-weight")
    if args.restart is not None:
        body["RestartPolicy"] = parse_restart(args.restart)
    if "NanoCpus" in body and ("CpuPeriod" in body or "CpuQuota" in body):
        raise FlagError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    return body


def configure_create(parser: argparse.ArgumentParser, *, run: bool = False) -> None:
    """The flags of ``create`` (and ``run``, which adds ``-d``, ``--rm`` semantics and ``-a``)."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    if run:
        parser.add_argument("-d", "--detach", action="store_true",
                            help="run container in background and print container ID")
        parser.add_argument("--sig-proxy", action="store_true", default=True,
                            help="proxy received signals to the process (default true)")
    parser.add_argument("-a", "--attach", action="append", default=[], metavar="STREAM",
                        choices=("stdin", "stdout", "stderr"), help="attach to STDIN, STDOUT or STDERR")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open even if not attached")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("--rm", action="store_true", help="automatically remove the container when it exits")
    parser.add_argument("--name", metavar="NAME", help="assign a name to the container")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set environment variables")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE",
                        help="read in a file of environment variables")
    parser.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    parser.add_argument("-u", "--user", metavar="USER", help="username or UID (format: <name|uid>[:<group|gid>])")
    parser.add_argument("--entrypoint", metavar="COMMAND", help="overwrite the default ENTRYPOINT of the image")
    parser.add_argument("-h", "--hostname", metavar="NAME", help="container host name")
    parser.add_argument("--domainname", metavar="NAME", help="container NIS domain name")
    parser.add_argument("--init", action="store_true",
                        help="run an init inside the container that forwards signals and reaps processes")
    parser.add_argument("--read-only", action="store_true", help="mount the container's root filesystem as read only")
    parser.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTIONS]", help="mount a tmpfs directory")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:OPTIONS]",
                        help="bind mount a volume")
    parser.add_argument("--mount", action="append", default=[], metavar="type=...,target=...",
                        help="attach a filesystem mount to the container (volume, bind or tmpfs)")
    parser.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]",
                        help="mount volumes from the specified container(s)")
    parser.add_argument("--volume-driver", metavar="DRIVER", help="optional volume driver for the container")
    parser.add_argument("-p", "--publish", action="append", default=[], metavar="PORTS",
                        help="publish a container's port(s) to the host")
    configure_resources(parser)
    parser.add_argument("--oom-kill-disable", action="store_true", help="disable OOM Killer")
    parser.add_argument("--shm-size", metavar="BYTES", help="size of /dev/shm")
    parser.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="ulimit options")
    parser.add_argument("--stop-signal", metavar="SIGNAL", help="signal to stop the container")
    parser.add_argument("--stop-timeout", metavar="SECONDS", help="timeout (in seconds) to stop a container")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                        help="set meta data on a container")
    parser.add_argument("--network", "--net", metavar="NETWORK",
                        help="connect a container to a network: bridge (default), host, none or a network's name")
    parser.add_argument("--network-alias", "--net-alias", action="append", default=[], metavar="ALIAS",
                        help="add a network-scoped alias for the container")
    parser.add_argument("--ip", default="", metavar="IPV4", help="IPv4 address (e.g. 172.30.100.104)")
    parser.add_argument("--ip6", default="", metavar="IPV6", help="IPv6 address (e.g. 2001:db8::33)")
    parser.add_argument("--mac-address", default="", metavar="MAC", help="container MAC address")
    parser.add_argument("-P", "--publish-all", action="store_true",
                        help="publish all exposed ports to random ports")
    parser.add_argument("--expose", action="append", default=[], metavar="PORT",
                        help="expose a port or a range of ports")
    parser.add_argument("--dns", action="append", default=[], metavar="IP", help="set custom DNS servers")
    parser.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN",
                        help="set custom DNS search domains")
    parser.add_argument("--dns-option", "--dns-opt", action="append", default=[], metavar="OPTION",
                        help="set DNS options")
    parser.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                        help="add a custom host-to-IP mapping (host:ip)")
    parser.add_argument("--link", action="append", default=[], metavar="NAME[:ALIAS]",
                        help="add a legacy link to another container (default bridge network only)")
    parser.add_argument("--log-driver", metavar="DRIVER", help="logging driver for the container")
    parser.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE", help="log driver options")
    parser.add_argument("--runtime", metavar="RUNTIME", help="runtime to use for this container: native, crun, runc")
    parser.add_argument("--privileged", action="store_true", help="give extended privileges to this container")
    parser.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add Linux capabilities")
    parser.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop Linux capabilities")
    parser.add_argument("--security-opt", action="append", default=[], metavar="OPTION", help="security options")
    parser.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE", help="sysctl options")
    parser.add_argument("--group-add", action="append", default=[], metavar="GROUP", help="add additional groups to join")
    _configure_host_options(parser)
    parser.add_argument("--platform", metavar="PLATFORM", help="set platform if server is multi-platform capable")
    parser.add_argument("--pull", choices=("missing", "never", "always"), default="missing",
                        help="pull image before running (default missing)")
    parser.add_argument("--detach-keys", metavar="KEYS", help="override the key sequence for detaching a container")
    configure_healthcheck(parser)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _configure_host_options(parser: argparse.ArgumentParser) -> None:
    """The namespace, device and process options of ``docker run``."""
    parser.add_argument("--oom-score-adj", metavar="INT", help="tune host's OOM preferences (-1000 to 1000)")
    parser.add_argument("--device", action="append", default=[], metavar="HOST[:CONTAINER[:PERMISSIONS]]",
                        help="add a host device to the container")
    parser.add_argument("--device-cgroup-rule", action="append", default=[], metavar="RULE",
                        help="add a rule to the cgroup allowed devices list")
    parser.add_argument("--ipc", metavar="MODE", help="IPC mode to use (private, shareable, none, host)")
    parser.add_argument("--pid", metavar="MODE", help="PID namespace to use (host)")
    parser.add_argument("--uts", metavar="MODE", help="UTS namespace to use (host)")
    parser.add_argument("--cgroupns", metavar="MODE", help="cgroup namespace to use (host, private)")
    parser.add_argument("--cgroup-parent", metavar="PATH", help="optional parent cgroup for the container")
    parser.add_argument("--cidfile", metavar="FILE", help="write the container ID to the file")
    parser.add_argument("--label-file", action="append", default=[], metavar="FILE",
                        help="read in a line delimited file of labels")


def _device(value: str) -> dict[str, str]:
    """docker's ``--device``: ``/dev/x``, ``/dev/x:/dev/y``, ``/dev/x:rw``, ``/dev/x:/dev/y:rwm``."""
    parts = value.split(":")
    permissions = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm") and not parts[-1].startswith("/"):
        permissions = parts.pop()
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise _invalid(value, "--device", f"invalid device specification: {value}")
    source = parts[0]
    return {"PathOnHost": source, "PathInContainer": parts[1] if len(parts) == 2 else source,
            "CgroupPermissions": permissions}


def _security_options(values: Iterable[str]) -> list[str]:
    """docker's ``--security-opt``: a ``seccomp=FILE`` sends the file's content."""
    result = []
    for value in values:
        key, equals, profile = value.partition("=")
        if key == "seccomp" and equals and profile not in ("unconfined", "builtin"):
            try:
                with open(profile, encoding="utf-8") as handle:
                    content = handle.read()
            except OSError as exc:
                raise _invalid(value, "--security-opt", f"opening seccomp profile ({profile}) failed: "
                               f"{(exc.strerror or str(exc)).lower()}") from exc
            try:
                compact = json.dumps(json.loads(content), separators=(",", ":"))
            except ValueError as exc:
                raise _invalid(value, "--security-opt", f"compacting json for seccomp profile ({profile}) "
                               f"failed: {exc}") from exc
            value = f"seccomp={compact}"
        result.append(value)
    return result


def _label_files(paths: Iterable[str]) -> list[str]:
    labels = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            raise FlagError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from exc
        labels.extend(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return labels


def _host_options(args: argparse.Namespace, host: dict[str, Any]) -> None:
    if args.oom_score_adj is not None:
        host["OomScoreAdj"] = _integer(args.oom_score_adj, "--oom-score-adj")
    if args.device:
        host["Devices"] = [_device(value) for value in args.device]
    if args.device_cgroup_rule:
        host["DeviceCgroupRules"] = list(args.device_cgroup_rule)
    for flag, key in (("ipc", "IpcMode"), ("pid", "PidMode"), ("uts", "UTSMode"), ("cgroupns", "CgroupnsMode"),
                      ("cgroup_parent", "CgroupParent")):
        if getattr(args, flag) is not None:
            host[key] = getattr(args, flag)
    if args.cidfile:
        host["ContainerIDFile"] = args.cidfile
    host["SecurityOpt"] = _security_options(args.security_opt) or None


def _ulimits(values: Iterable[str]) -> list[dict[str, Any]]:
    result = []
    for value in values:
        name, equals, limits = value.partition("=")
        soft_text, _, hard_text = limits.partition(":")
        try:
            soft = int(soft_text)
            hard = int(hard_text) if hard_text else soft
        except ValueError as exc:
            raise _invalid(value, "--ulimit", f"invalid ulimit argument: {value}") from exc
        if not equals or not name:
            raise _invalid(value, "--ulimit", f"invalid ulimit argument: {value}")
        if soft > hard:
            raise _invalid(value, "--ulimit", f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        result.append({"Name": name, "Soft": soft, "Hard": hard})
    return result


def _port_bindings(values: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``-p [ip:][host:]container[/proto]`` -> (ExposedPorts, PortBindings)."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for value in values:
        spec, _, protocol = value.partition("/")
        parts = spec.rsplit(":", 2)
        container_port = parts[-1]
        host_port = parts[-2] if len(parts) >= 2 else ""
        host_ip = parts[-3] if len(parts) == 3 else ""
        if not container_port or not re.fullmatch(r"\d+(-\d+)?", container_port):
            raise _invalid(value, "-p, --publish", f"invalid containerPort: {container_port}")
        key = f"{container_port}/{protocol or 'tcp'}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
    return exposed, bindings


def _volume_flags(values: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``-v`` like the docker CLI: a bare destination is an anonymous volume of Config.Volumes,
    anything else goes to HostConfig.Binds (which the daemon checks, with Docker's messages)."""
    if not values:
        return [], {}
    from lamina import errdefs
    from lamina.volume.parse import parse_volume_spec

    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for value in values:
        try:
            point = parse_volume_spec(value)
        except errdefs.InvalidArgument:
            binds.append(value)
            continue
        if point.type == "volume" and not point.name and ":" not in value:
            volumes[value] = {}
        else:
            binds.append(value)
    return binds, volumes


def _mount_flag(value: str) -> dict[str, Any]:
    from lamina import errdefs
    from lamina.volume.parse import parse_mount_spec

    try:
        return parse_mount_spec(value)
    except errdefs.InvalidArgument as exc:
        raise _invalid(value, "--mount", str(exc)) from exc


def configure_healthcheck(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--health-cmd", metavar="COMMAND", help="command to run to check health")
    for name, what in (("interval", "time between running the check"),
                       ("timeout", "maximum time to allow one check to run"),
                       ("start-period", "start period for the container to initialize before counting retries"),
                       ("start-interval", "time between running the check during the start period")):
        parser.add_argument(f"--health-{name}", metavar="DURATION", help=f"{what} (ms|s|m|h) (default 0s)")
    parser.add_argument("--health-retries", metavar="N", help="consecutive failures needed to report unhealthy")
    parser.add_argument("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")


def _health_duration(text: str | None, flag: str) -> int:
    """A ``--health-*`` Go duration in nanoseconds (0 when not given)."""
    if text is None:
        return 0
    seconds = parse_duration(text)
    if seconds is None:
        raise _invalid(text, flag, f'time: invalid duration "{text}"')
    if seconds < 0:
        raise FlagError(f"{flag} cannot be negative")
    return round(seconds * 1e9)


def healthcheck_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """Config.Healthcheck as the docker CLI builds it from the ``--health-*`` flags."""
    durations = {key: _health_duration(getattr(args, attribute), flag) for key, attribute, flag in (
        ("Interval", "health_interval", "--health-interval"), ("Timeout", "health_timeout", "--health-timeout"),
        ("StartPeriod", "health_start_period", "--health-start-period"),
        ("StartInterval", "health_start_interval", "--health-start-interval"))}
    retries = _integer(args.health_retries, "--health-retries") if args.health_retries is not None else 0
    if retries < 0:
        raise FlagError("--health-retries cannot be negative")
    configured = bool(args.health_cmd) or retries != 0 or any(durations.values())
    if args.no_healthcheck:
        if configured:
            raise FlagError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not configured:
        return None
    health: dict[str, Any] = {"Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else None, **durations,
                              "Retries": retries}
    return health


def create_body(args: argparse.Namespace, *, detach: bool = False) -> dict[str, Any]:
    """The ContainerCreateRequest the docker CLI would send for these flags."""
    attach = set(args.attach)
    if detach and attach:
        raise FlagError("Conflicting options: -a and -d")
    attach_stdin = "stdin" in attach or (args.interactive and not detach)
    attach_stdout = "stdout" in attach or (not attach and not detach)
    attach_stderr = "stderr" in attach or (not attach and not detach)
    if detach:
        attach_stdin = attach_stdout = attach_stderr = False

    environment: list[str] = []
    for path in args.env_file:
        environment.extend(read_env_file(path))
    environment.extend(parse_env(args.env))

    config: dict[str, Any] = {
        "Hostname": args.hostname or "",
        "Domainname": args.domainname or "",
        "User": args.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": attach_stdout,
        "AttachStderr": attach_stderr,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": bool(args.interactive and attach_stdin),
        "Env": environment,
        "Cmd": list(args.command) if args.command else None,
        "Image": args.image,
        "Volumes": {},
        "WorkingDir": args.workdir or "",
        "Entrypoint": None,
        "Labels": parse_labels([*_label_files(args.label_file), *args.label]),
    }
    if args.entrypoint is not None:
        config["Entrypoint"] = [args.entrypoint]
    if args.stop_signal:
        config["StopSignal"] = args.stop_signal
    if args.stop_timeout is not None:
        config["StopTimeout"] = _integer(args.stop_timeout, "--stop-timeout")
    healthcheck = healthcheck_body(args)
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck

    resources = resources_body(args)
    restart = resources.pop("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    if args.rm and restart.get("Name") not in ("", "no"):
        raise FlagError("Conflicting options: cannot specify both --restart and --rm")
    binds, anonymous = _volume_flags(args.volume)
    config["Volumes"] = anonymous
    host: dict[str, Any] = {
        "Binds": binds or None,
        "Mounts": [_mount_flag(value) for value in args.mount] or None,
        "VolumesFrom": list(args.volumes_from) or None,
        "VolumeDriver": args.volume_driver or "",
        "LogConfig": {"Type": args.log_driver or "", "Config": parse_key_values(args.log_opt, "--log-opt")},
        "NetworkMode": args.network or "default",
        "RestartPolicy": restart,
        "AutoRemove": bool(args.rm),
        "CapAdd": list(args.cap_add) or None,
        "CapDrop": list(args.cap_drop) or None,
        "Dns": list(args.dns),
        "DnsSearch": list(args.dns_search),
        "DnsOptions": list(args.dns_option),
        "PublishAllPorts": bool(args.publish_all),
        "ExtraHosts": list(args.add_host) or None,
        "Links": list(args.link) or None,
        "GroupAdd": list(args.group_add) or None,
        "Privileged": args.privileged,
        "ReadonlyRootfs": args.read_only,
        "SecurityOpt": list(args.security_opt) or None,
        "Tmpfs": {path: options for path, _, options in (value.partition(":") for value in args.tmpfs)} or None,
        "Sysctls": parse_key_values(args.sysctl, "--sysctl") or None,
        "Ulimits": _ulimits(args.ulimit) or None,
        "OomKillDisable": bool(args.oom_kill_disable),
        **resources,
    }
    exposed_ports: dict[str, Any] = {}
    for value in args.expose:
        port_text, _, protocol = value.partition("/")
        if not re.fullmatch(r"\d+(-\d+)?", port_text):
            raise _invalid(value, "--expose", f"invalid range format for --expose: {value}")
        first, _, last = port_text.partition("-")
        for port in range(int(first), int(last or first) + 1):
            exposed_ports[f"{port}/{protocol or 'tcp'}"] = {}
    if args.publish:
        exposed, bindings = _port_bindings(args.publish)
        exposed_ports.update(exposed)
        host["PortBindings"] = bindings
    if exposed_ports:
        config["ExposedPorts"] = exposed_ports
    if args.mac_address:
        config["MacAddress"] = args.mac_address
    if args.shm_size is not None:
        host["ShmSize"] = parse_size(args.shm_size, "--shm-size")
    if args.init:
        host["Init"] = True
    if args.runtime:
        host["Runtime"] = args.runtime
    _host_options(args, host)
    config["HostConfig"] = host
    endpoint: dict[str, Any] = {}
    if args.network_alias:
        endpoint["Aliases"] = list(args.network_alias)
    if args.ip or args.ip6:
        endpoint["IPAMConfig"] = {key: value for key, value in (("IPv4Address", args.ip),
                                                                ("IPv6Address", args.ip6)) if value}
    if args.mac_address:
        endpoint["MacAddress"] = args.mac_address
    network = args.network or "default"
    config["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint} if endpoint else {}}
    return config
