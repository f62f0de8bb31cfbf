"""Image configs: the JSON document whose sha256 is the image id.

Format (OCI image config, plus Docker's own keys)::

    {"architecture": "amd64", "os": "linux", "variant": "v8", "created": "<RFC 3339>",
     "author": "...", "comment": "...", "container": "<container id>",
     "docker_version": "...", "config": {<container config>},
     "container_config": {<container config>},
     "rootfs": {"type": "layers", "diff_ids": ["sha256:...", ...]},
     "history": [{"created": "...", "created_by": "...", "author": "...",
                  "comment": "...", "empty_layer": true}, ...],
     "os.version": "...", "os.features": [...]}

The container config inside (``config`` / ``container_config``) uses Docker's
``container.Config`` field names: Hostname, Domainname, User, AttachStdin, AttachStdout,
AttachStderr, ExposedPorts, Tty, OpenStdin, StdinOnce, Env, Cmd, Healthcheck, ArgsEscaped,
Image, Volumes, WorkingDir, Entrypoint, NetworkDisabled, MacAddress, OnBuild, Labels,
StopSignal, StopTimeout, Shell.

Vocabulary:

- **diff_id**: ``rootfs.diff_ids[i]``, the digest of layer *i*'s uncompressed tar, bottom first.
- **empty layer**: a history entry with ``empty_layer: true`` made no filesystem layer
  (ENV, CMD, ...).  Every other entry consumes the next diff_id, in order; that is how
  ``docker history`` pairs entries with layers (:meth:`ImageConfig.non_empty_history`).

Parsing (:meth:`ImageConfig.from_json`) validates types field by field and keeps unknown keys
(top level and inside the container config) so nothing is lost; errors are
:class:`lamina.errdefs.InvalidArgument` naming the field.  An existing image is always stored
and exported with its original bytes; :meth:`ImageConfig.to_json` is for *new* images and
writes what Docker writes: Go's encoding of moby's ``image.Image`` with the top-level keys
sorted (moby's ``Image.MarshalJSON``), the container config in ``container.Config`` field
order with its ``omitempty`` rules as in Docker 20.10 to 28 (``"OnBuild":null`` is written;
Docker 29 omits it), ``created`` in RFC 3339 with nanoseconds (trailing zeros dropped) and
``container_config`` always present.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lamina import errdefs
from lamina.digest import Digest, chain_id
from lamina.image import gojson
from lamina.records import dataclass, field

__all__ = [
    "HealthConfig",
    "ContainerConfig",
    "HistoryEntry",
    "ImageConfig",
    "EMPTY_LAYER_DIFF_ID",
    "new_config",
    "new_child_config",
    "apply_changes",
    "format_time",
    "parse_time",
    "host_architecture",
]

# diff_id of a tar with no entries (1024 zero bytes): Docker treats such a layer as empty.
EMPTY_LAYER_DIFF_ID = Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
                    float: "number", type(None): "null"}


def _invalid(where: str, message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid image config: {where}: {message}")


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(f"{where}{key}", f"expected a string, got {_type_name(value)}")
    return value


def _bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{where}{key}", f"expected a bool, got {_type_name(value)}")
    return value


def _integer(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _invalid(f"{where}{key}", f"expected an integer, got {_type_name(value)}")
    return value


def _string_list(data: Mapping[str, Any], key: str, where: str, *, allow_string: bool = False) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if allow_string and isinstance(value, str):
        # Docker's old strslice.StrSlice accepted a plain string for Cmd/Entrypoint.
        return (value,)
    if not isinstance(value, list):
        raise _invalid(f"{where}{key}", f"expected an array of strings, got {_type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid(f"{where}{key}[{index}]", f"expected a string, got {_type_name(item)}")
    return tuple(value)


def _string_set(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """A Go ``map[string]struct{}`` (ExposedPorts, Volumes): the keys, sorted."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{where}{key}", f"expected an object, got {_type_name(value)}")
    for name, item in value.items():
        if item is not None and not isinstance(item, dict):
            raise _invalid(f"{where}{key}[{name!r}]", f"expected an object, got {_type_name(item)}")
    return tuple(gojson.sorted_map(value))


def _string_map(data: Mapping[str, Any], key: str, where: str) -> dict[str, str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{where}{key}", f"expected an object, got {_type_name(value)}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise _invalid(f"{where}{key}[{name!r}]", f"expected a string, got {_type_name(item)}")
    return dict(value)


def _object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{where}{key}", f"expected an object, got {_type_name(value)}")
    return value


def _go_set(names: tuple[str, ...] | None) -> dict[str, Any] | None:
    if names is None:
        return None
    return gojson.sorted_map({name: {} for name in names})


# --------------------------------------------------------------------------------------------
# time


_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})")


def format_time(nanoseconds: int | None = None) -> str:
    """Go's ``time.RFC3339Nano`` for a UTC instant (``2024-05-01T12:00:00.123456789Z``,
    trailing zeros of the fraction dropped).  Default: now."""
    if nanoseconds is None:
        nanoseconds = time.time_ns()
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def _timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """``calendar.timegm`` (same results and errors) without importing calendar and datetime
    (~2 ms): every image config read validates its times.  Days from the civil date by
    H. Hinnant's algorithm (proleptic Gregorian calendar, March-based years)."""
    if not 1 <= month <= 12:
        raise ValueError("month must be in 1..12")
    if not 1 <= year <= 9999:
        raise ValueError(f"year {year} is out of range")
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    return ((days + day - 1) * 24 + hour) * 3600 + minute * 60 + second


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (any offset, up to 9 fraction digits)."""
    match = _TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        seconds = _timegm(int(year), int(month), int(day), int(hour), int(minute), int(second))
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) < 24 and int(minute) < 60
                and int(second) < 61):
            raise ValueError("field out of range")
    except (ValueError, OverflowError) as exc:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {text!r}: {exc}") from exc
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= sign * offset
    nanos = int((fraction or "").ljust(9, "0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos


def host_architecture() -> str:
    """The host CPU architecture in Go's GOARCH spelling (``amd64``, ``arm64``, ...)."""
    machine = os.uname().machine.lower()  # what platform.machine() answers, without importing it
    return {
        "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
        "i386": "386", "i686": "386", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64",
    }.get(machine, machine)


def apply_changes(config: Mapping[str, Any], changes: Sequence[str], *, os: str = "linux") -> dict[str, Any]:
    """:func:`lamina.image.changes.apply_changes` (the ``--change`` engine is imported only
    when changes are applied: running a container never needs it)."""
    from lamina.image import changes as engine

    return engine.apply_changes(config, changes, os=os)


# --------------------------------------------------------------------------------------------
# container config


@dataclass(frozen=True)
class HealthConfig:
    """Docker's HealthcheckConfig; durations in nanoseconds, 0 means "inherit"."""

    test: tuple[str, ...] | None = None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "Healthcheck.") -> "HealthConfig":
        return cls(
            test=_string_list(data, "Test", where),
            interval=_integer(data, "Interval", where) or 0,
            timeout=_integer(data, "Timeout", where) or 0,
            start_period=_integer(data, "StartPeriod", where) or 0,
            start_interval=_integer(data, "StartInterval", where) or 0,
            retries=_integer(data, "Retries", where) or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        """Go field order, every field ``omitempty``."""
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, value in (("Interval", self.interval), ("Timeout", self.timeout),
                           ("StartPeriod", self.start_period), ("StartInterval", self.start_interval),
                           ("Retries", self.retries)):
            if value:
                out[key] = value
        return out


_CONTAINER_CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell",
)


@dataclass(frozen=True)
class ContainerConfig:
    """Docker's ``container.Config`` (the ``config`` of an image).  ``None`` for a list or map
    means absent (Go's nil, written as ``null``), an empty tuple means ``[]``.

    Serialisation follows Docker 20.10 to 28 (``OnBuild`` always written, ``MacAddress``
    omitted when empty), the versions whose configs lamina meets most."""

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: tuple[str, ...] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: tuple[str, ...] | None = None
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    network_disabled: bool = False
    mac_address: str = ""
    on_build: tuple[str, ...] | None = None
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None
    shell: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Lists become tuples, and the two sets (Go maps of empty structs) are kept in Go's
        # key order so that equal configs compare equal.
        for name in ("env", "cmd", "entrypoint", "on_build", "shell"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        for name in ("exposed_ports", "volumes"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(gojson.sorted_map(dict.fromkeys(value))))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config.") -> "ContainerConfig":
        if not isinstance(data, Mapping):
            raise _invalid(where.rstrip("."), f"expected an object, got {_type_name(data)}")
        health = _object(data, "Healthcheck", where)
        return cls(
            hostname=_string(data, "Hostname", where),
            domainname=_string(data, "Domainname", where),
            user=_string(data, "User", where),
            attach_stdin=_bool(data, "AttachStdin", where),
            attach_stdout=_bool(data, "AttachStdout", where),
            attach_stderr=_bool(data, "AttachStderr", where),
            exposed_ports=_string_set(data, "ExposedPorts", where),
            tty=_bool(data, "Tty", where),
            open_stdin=_bool(data, "OpenStdin", where),
            stdin_once=_bool(data, "StdinOnce", where),
            env=_string_list(data, "Env", where),
            cmd=_string_list(data, "Cmd", where, allow_string=True),
            healthcheck=HealthConfig.from_dict(health, where + "Healthcheck.") if health is not None else None,
            args_escaped=_bool(data, "ArgsEscaped", where),
            image=_string(data, "Image", where),
            volumes=_string_set(data, "Volumes", where),
            working_dir=_string(data, "WorkingDir", where),
            entrypoint=_string_list(data, "Entrypoint", where, allow_string=True),
            network_disabled=_bool(data, "NetworkDisabled", where),
            mac_address=_string(data, "MacAddress", where),
            on_build=_string_list(data, "OnBuild", where),
            labels=_string_map(data, "Labels", where),
            stop_signal=_string(data, "StopSignal", where),
            stop_timeout=_integer(data, "StopTimeout", where),
            shell=_string_list(data, "Shell", where),
            extra={key: value for key, value in data.items() if key not in _CONTAINER_CONFIG_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        """Go's encoding of ``container.Config``: field order and ``omitempty`` rules kept;
        unknown keys read from an existing config follow at the end."""
        out: dict[str, Any] = {
            "Hostname": self.hostname,
            "Domainname": self.domainname,
            "User": self.user,
            "AttachStdin": self.attach_stdin,
            "AttachStdout": self.attach_stdout,
            "AttachStderr": self.attach_stderr,
        }
        if self.exposed_ports:
            out["ExposedPorts"] = _go_set(self.exposed_ports)
        out["Tty"] = self.tty
        out["OpenStdin"] = self.open_stdin
        out["StdinOnce"] = self.stdin_once
        out["Env"] = list(self.env) if self.env is not None else None
        out["Cmd"] = list(self.cmd) if self.cmd is not None else None
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_dict()
        if self.args_escaped:
            out["ArgsEscaped"] = True
        out["Image"] = self.image
        out["Volumes"] = _go_set(self.volumes)
        out["WorkingDir"] = self.working_dir
        out["Entrypoint"] = list(self.entrypoint) if self.entrypoint is not None else None
        if self.network_disabled:
            out["NetworkDisabled"] = True
        if self.mac_address:
            out["MacAddress"] = self.mac_address
        # Docker 20.10 to 28 write OnBuild without omitempty ("OnBuild":null); Docker 29
        # started omitting it.  We match the widely deployed form.
        out["OnBuild"] = list(self.on_build) if self.on_build is not None else None
        out["Labels"] = gojson.sorted_map(self.labels) if self.labels is not None else None
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.stop_timeout is not None:
            out["StopTimeout"] = self.stop_timeout
        if self.shell:
            out["Shell"] = list(self.shell)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def get(self, name: str, default: Any = None) -> Any:
        """A field by its Docker name (``config.get("Labels")``), as in :meth:`to_dict`;
        ``default`` when the field is omitted or null."""
        value = self.to_dict().get(name)
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        values = self.to_dict()
        if name not in values:
            raise KeyError(name)
        return values[name]

    def keys(self) -> list[str]:
        """Docker field names present in :meth:`to_dict` (so ``dict(config)`` works)."""
        return list(self.to_dict())

    def apply_changes(self, changes: Sequence[str], *, os: str = "linux") -> "ContainerConfig":
        """This config with Dockerfile-style ``--change`` instructions applied."""
        return ContainerConfig.from_dict(apply_changes(self.to_dict(), list(changes), os=os))


# --------------------------------------------------------------------------------------------
# image config


_HISTORY_KEYS = ("created", "created_by", "author", "comment", "empty_layer")


@dataclass(frozen=True)
class HistoryEntry:
    """One ``history`` entry; ``created`` is the RFC 3339 text as stored."""

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "HistoryEntry":
        if not isinstance(data, dict):
            raise _invalid(where.rstrip("."), f"expected an object, got {_type_name(data)}")
        created = data.get("created")
        if created is not None:
            if not isinstance(created, str):
                raise _invalid(where + "created", f"expected a string, got {_type_name(created)}")
            _check_time(created, where + "created")
        return cls(
            created=created,
            created_by=_string(data, "created_by", where),
            author=_string(data, "author", where),
            comment=_string(data, "comment", where),
            empty_layer=_bool(data, "empty_layer", where),
            extra={key: value for key, value in data.items() if key not in _HISTORY_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The OCI ``History`` struct: field order kept, every field ``omitempty``."""
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def _check_time(text: str, where: str) -> None:
    try:
        parse_time(text)
    except errdefs.InvalidArgument as exc:
        raise _invalid(where, f"not an RFC 3339 time: {text!r}") from exc


_IMAGE_KEYS = ("architecture", "os", "variant", "os.version", "os.features", "created", "author",
               "comment", "container", "docker_version", "parent", "config", "container_config",
               "rootfs", "history")


@dataclass(frozen=True)
class ImageConfig:
    """A parsed image config.  ``rootfs_diff_ids`` are bottom first."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] | None = None
    created: str | None = None
    author: str = ""
    comment: str = ""
    container: str = ""
    docker_version: str = ""
    parent: str = ""
    config: ContainerConfig | None = None
    container_config: ContainerConfig | None = None
    rootfs_type: str = "layers"
    rootfs_diff_ids: tuple[Digest, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- parsing

    @classmethod
    def from_json(cls, data: bytes | str) -> "ImageConfig":
        """Parse and validate config JSON; :class:`errdefs.InvalidArgument` names the field."""
        try:
            value = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise errdefs.InvalidArgument(f"invalid image config: not valid JSON: {exc}") from exc
        return cls.from_dict(value)

    @classmethod
    def from_dict(cls, data: Any) -> "ImageConfig":
        if not isinstance(data, dict):
            raise errdefs.InvalidArgument(f"invalid image config: expected a JSON object, got {_type_name(data)}")
        rootfs = data.get("rootfs")
        if rootfs is None:
            raise errdefs.InvalidArgument("invalid image config: no rootfs")
        if not isinstance(rootfs, dict):
            raise _invalid("rootfs", f"expected an object, got {_type_name(rootfs)}")
        rootfs_type = _string(rootfs, "type", "rootfs.")
        if rootfs_type != "layers":
            raise _invalid("rootfs.type", f"expected \"layers\", got {rootfs_type!r}")
        raw_diff_ids = rootfs.get("diff_ids")
        if raw_diff_ids is None:
            raw_diff_ids = []
        if not isinstance(raw_diff_ids, list):
            raise _invalid("rootfs.diff_ids", f"expected an array of digests, got {_type_name(raw_diff_ids)}")
        diff_ids: list[Digest] = []
        for index, item in enumerate(raw_diff_ids):
            if not isinstance(item, str):
                raise _invalid(f"rootfs.diff_ids[{index}]", f"expected a digest string, got {_type_name(item)}")
            try:
                diff_ids.append(Digest(item))
            except errdefs.InvalidArgument as exc:
                raise _invalid(f"rootfs.diff_ids[{index}]", str(exc)) from exc

        raw_history = data.get("history")
        if raw_history is None:
            raw_history = []
        if not isinstance(raw_history, list):
            raise _invalid("history", f"expected an array, got {_type_name(raw_history)}")
        history = tuple(HistoryEntry.from_dict(item, f"history[{index}].") for index, item in enumerate(raw_history))

        created = data.get("created")
        if created is not None:
            if not isinstance(created, str):
                raise _invalid("created", f"expected a string, got {_type_name(created)}")
            _check_time(created, "created")

        config = _object(data, "config", "")
        container_config = _object(data, "container_config", "")
        return cls(
            architecture=_string(data, "architecture", ""),
            os=_string(data, "os", ""),
            variant=_string(data, "variant", ""),
            os_version=_string(data, "os.version", ""),
            os_features=_string_list(data, "os.features", ""),
            created=created,
            author=_string(data, "author", ""),
            comment=_string(data, "comment", ""),
            container=_string(data, "container", ""),
            docker_version=_string(data, "docker_version", ""),
            parent=_string(data, "parent", ""),
            config=ContainerConfig.from_dict(config, "config.") if config is not None else None,
            container_config=(ContainerConfig.from_dict(container_config, "container_config.")
                              if container_config is not None else None),
            rootfs_type=rootfs_type,
            rootfs_diff_ids=tuple(diff_ids),
            history=history,
            extra={key: value for key, value in data.items() if key not in _IMAGE_KEYS},
        )

    # ---- derived values

    @property
    def diff_ids(self) -> list[Digest]:
        return list(self.rootfs_diff_ids)

    def chain_id(self) -> Digest | None:
        """chainID of the top layer, or None for an image without layers."""
        return chain_id(self.rootfs_diff_ids) if self.rootfs_diff_ids else None

    def non_empty_history(self) -> list[tuple[HistoryEntry, Digest]]:
        """History entries that made a layer, each with its diff_id (Docker's pairing: every
        entry without ``empty_layer`` consumes the next diff_id).  Raises InvalidArgument when
        there are more such entries than layers."""
        pairs: list[tuple[HistoryEntry, Digest]] = []
        for entry in self.history:
            if entry.empty_layer:
                continue
            if len(pairs) >= len(self.rootfs_diff_ids):
                raise errdefs.InvalidArgument("invalid image config: too many non-empty layers in History section")
            pairs.append((entry, self.rootfs_diff_ids[len(pairs)]))
        return pairs

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The config as Docker serialises a new image (top-level keys sorted)."""
        out: dict[str, Any] = {}
        if self.parent:
            out["parent"] = self.parent
        if self.comment:
            out["comment"] = self.comment
        out["created"] = self.created
        if self.container:
            out["container"] = self.container
        out["container_config"] = (self.container_config or ContainerConfig()).to_dict()
        if self.docker_version:
            out["docker_version"] = self.docker_version
        if self.author:
            out["author"] = self.author
        if self.config is not None:
            out["config"] = self.config.to_dict()
        if self.architecture:
            out["architecture"] = self.architecture
        if self.variant:
            out["variant"] = self.variant
        if self.os:
            out["os"] = self.os
        rootfs: dict[str, Any] = {"type": self.rootfs_type}
        if self.rootfs_diff_ids:
            rootfs["diff_ids"] = [str(diff_id) for diff_id in self.rootfs_diff_ids]
        out["rootfs"] = rootfs
        if self.history:
            out["history"] = [entry.to_dict() for entry in self.history]
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return gojson.sorted_map(out)

    def to_json(self) -> bytes:
        """Bytes for a new image; the image id is their sha256."""
        return gojson.dumps(self.to_dict())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def new_config(
    *,
    diff_ids: Sequence[str],
    history: Sequence[HistoryEntry] = (),
    config: ContainerConfig | None = None,
    architecture: str | None = None,
    os: str = "linux",
    variant: str = "",
    created: str | None = None,
    author: str = "",
    comment: str = "",
    container: str = "",
    container_config: ContainerConfig | None = None,
    docker_version: str = "",
    os_version: str = "",
    os_features: Sequence[str] | None = None,
) -> ImageConfig:
    """A config for a new image (``docker import``, ``load`` of a plain rootfs, ...).

    ``created`` defaults to now; ``architecture`` to the host's.  Serialise with
    :meth:`ImageConfig.to_json`.
    """
    return ImageConfig(
        architecture=architecture if architecture is not None else host_architecture(),
        os=os,
        variant=variant,
        os_version=os_version,
        os_features=tuple(os_features) if os_features else None,
        created=created if created is not None else format_time(),
        author=author,
        comment=comment,
        container=container,
        docker_version=docker_version,
        config=config,
        container_config=container_config,
        rootfs_type="layers",
        rootfs_diff_ids=tuple(Digest(diff_id) for diff_id in diff_ids),
        history=tuple(history),
    )


def new_child_config(
    parent: ImageConfig | None,
    *,
    diff_id: str | None,
    config: ContainerConfig,
    container_config: ContainerConfig | None = None,
    author: str = "",
    comment: str = "",
    created_by: str | None = None,
    container: str = "",
    created: str | None = None,
    os: str | None = None,
) -> ImageConfig:
    """Docker's ``NewChildImage`` (``docker commit`` and classic-builder steps): the parent's
    layers plus ``diff_id`` (omitted when None or the empty layer), the parent's history plus
    one entry, whose ``created_by`` defaults to the container config's Cmd joined by spaces.
    Like Docker, ``comment`` goes into that history entry only (not the top-level field)."""
    container_config = container_config if container_config is not None else ContainerConfig()
    is_empty = diff_id is None or Digest(diff_id) == EMPTY_LAYER_DIFF_ID
    created = created if created is not None else format_time()
    if created_by is None:
        created_by = " ".join(container_config.cmd or ())
    entry = HistoryEntry(created=created, created_by=created_by, author=author, comment=comment,
                         empty_layer=is_empty)
    diff_ids = list(parent.rootfs_diff_ids) if parent is not None else []
    if not is_empty:
        diff_ids.append(Digest(diff_id))  # type: ignore[arg-type]
    base = parent if parent is not None else ImageConfig()
    return ImageConfig(
        architecture=base.architecture or host_architecture(),
        os=os if os is not None else (base.os or "linux"),
        variant=base.variant,
        os_version=base.os_version,
        os_features=base.os_features,
        created=created,
        author=author,
        container=container,
        config=config,
        container_config=container_config,
        rootfs_type="layers",
        rootfs_diff_ids=tuple(diff_ids),
        history=(*base.history, entry),
    )
