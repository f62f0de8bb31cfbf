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

Parsing (:meth:`ImageConfig.from_json`) validates types field by field (each record's fields
are a table of typed readers from :mod:`lamina.image.config_fields`) and keeps unknown keys
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
from collections.abc import Mapping, Sequence

from lamina import errdefs
from lamina.digest import Digest, chain_id
from lamina.image import gojson
from lamina.image.config_fields import (
    go_set,
    invalid,
    omit_empty,
    read_array,
    read_bool,
    read_command,
    read_count,
    read_fields,
    read_integer,
    read_object,
    read_string,
    read_string_list,
    read_string_map,
    read_string_set,
    read_time,
    type_name,
    unknown_keys,
)
from lamina.image.rfc3339 import format_time, parse_time  # parse_time: the services import it from here
from lamina.records import dataclass, field

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.image.config_fields import Field

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
        return cls(**read_fields(data, _HEALTH_FIELDS, where))

    def to_dict(self) -> dict[str, Any]:
        """Go field order, every field ``omitempty``."""
        return omit_empty({}, (("Test", list(self.test or ())), ("Interval", self.interval),
                               ("Timeout", self.timeout), ("StartPeriod", self.start_period),
                               ("StartInterval", self.start_interval), ("Retries", self.retries)))


_HEALTH_FIELDS: tuple[Field, ...] = (
    ("test", "Test", read_string_list), ("interval", "Interval", read_count), ("timeout", "Timeout", read_count),
    ("start_period", "StartPeriod", read_count), ("start_interval", "StartInterval", read_count),
    ("retries", "Retries", read_count),
)


def _read_healthcheck(data: Mapping[str, Any], key: str, where: str) -> HealthConfig | None:
    health = read_object(data, key, where)
    return HealthConfig.from_dict(health, f"{where}{key}.") if health is not None else None


# container.Config's fields in Go's order
_CONTAINER_FIELDS: tuple[Field, ...] = (
    ("hostname", "Hostname", read_string), ("domainname", "Domainname", read_string), ("user", "User", read_string),
    ("attach_stdin", "AttachStdin", read_bool), ("attach_stdout", "AttachStdout", read_bool),
    ("attach_stderr", "AttachStderr", read_bool), ("exposed_ports", "ExposedPorts", read_string_set),
    ("tty", "Tty", read_bool), ("open_stdin", "OpenStdin", read_bool), ("stdin_once", "StdinOnce", read_bool),
    ("env", "Env", read_string_list), ("cmd", "Cmd", read_command), ("healthcheck", "Healthcheck", _read_healthcheck),
    ("args_escaped", "ArgsEscaped", read_bool), ("image", "Image", read_string),
    ("volumes", "Volumes", read_string_set), ("working_dir", "WorkingDir", read_string),
    ("entrypoint", "Entrypoint", read_command), ("network_disabled", "NetworkDisabled", read_bool),
    ("mac_address", "MacAddress", read_string), ("on_build", "OnBuild", read_string_list),
    ("labels", "Labels", read_string_map), ("stop_signal", "StopSignal", read_string),
    ("stop_timeout", "StopTimeout", read_integer), ("shell", "Shell", read_string_list),
)
_CONTAINER_CONFIG_KEYS = frozenset(key for _, key, _ in _CONTAINER_FIELDS)


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
            raise invalid(where.rstrip("."), f"expected an object, got {type_name(data)}")
        return cls(**read_fields(data, _CONTAINER_FIELDS, where), extra=unknown_keys(data, _CONTAINER_CONFIG_KEYS))

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
            out["ExposedPorts"] = go_set(self.exposed_ports)
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
        out["Volumes"] = go_set(self.volumes)
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


_HISTORY_FIELDS: tuple[Field, ...] = (
    ("created", "created", read_time), ("created_by", "created_by", read_string), ("author", "author", read_string),
    ("comment", "comment", read_string), ("empty_layer", "empty_layer", read_bool),
)
_HISTORY_KEYS = frozenset(key for _, key, _ in _HISTORY_FIELDS)


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
            raise invalid(where.rstrip("."), f"expected an object, got {type_name(data)}")
        return cls(**read_fields(data, _HISTORY_FIELDS, where),
                   extra=unknown_keys(data, _HISTORY_KEYS))

    def to_dict(self) -> dict[str, Any]:
        """The OCI ``History`` struct: field order kept, every field ``omitempty``."""
        out: dict[str, Any] = {} if self.created is None else {"created": self.created}
        omit_empty(out, (("created_by", self.created_by), ("author", self.author), ("comment", self.comment),
                         ("empty_layer", self.empty_layer)))
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


# the plain fields of an image config; created, config, container_config, rootfs and history are read apart
_IMAGE_FIELDS: tuple[Field, ...] = (
    ("architecture", "architecture", read_string), ("os", "os", read_string), ("variant", "variant", read_string),
    ("os_version", "os.version", read_string), ("os_features", "os.features", read_string_list),
    ("author", "author", read_string), ("comment", "comment", read_string), ("container", "container", read_string),
    ("docker_version", "docker_version", read_string), ("parent", "parent", read_string),
)
_IMAGE_KEYS = frozenset((*(key for _, key, _ in _IMAGE_FIELDS), "created", "config", "container_config", "rootfs",
                         "history"))


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
            raise errdefs.InvalidArgument(f"invalid image config: expected a JSON object, got {type_name(data)}")
        rootfs = data.get("rootfs")
        if rootfs is None:
            raise errdefs.InvalidArgument("invalid image config: no rootfs")
        if not isinstance(rootfs, dict):
            raise invalid("rootfs", f"expected an object, got {type_name(rootfs)}")
        rootfs_type = read_string(rootfs, "type", "rootfs.")
        if rootfs_type != "layers":
            raise invalid("rootfs.type", f"expected \"layers\", got {rootfs_type!r}")
        diff_ids: list[Digest] = []
        for index, item in enumerate(read_array(rootfs, "diff_ids", "rootfs.", "an array of digests")):
            if not isinstance(item, str):
                raise invalid(f"rootfs.diff_ids[{index}]", f"expected a digest string, got {type_name(item)}")
            try:
                diff_ids.append(Digest(item))
            except errdefs.InvalidArgument as exc:
                raise invalid(f"rootfs.diff_ids[{index}]", str(exc)) from exc

        history = tuple(HistoryEntry.from_dict(item, f"history[{index}].")
                        for index, item in enumerate(read_array(data, "history", "")))
        created = read_time(data, "created", "")
        config = read_object(data, "config", "")
        container_config = read_object(data, "container_config", "")
        return cls(
            **read_fields(data, _IMAGE_FIELDS, ""),
            created=created,
            config=ContainerConfig.from_dict(config, "config.") if config is not None else None,
            container_config=(ContainerConfig.from_dict(container_config, "container_config.")
                              if container_config is not None else None),
            rootfs_type=rootfs_type,
            rootfs_diff_ids=tuple(diff_ids),
            history=history,
            extra=unknown_keys(data, _IMAGE_KEYS),
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
        out: dict[str, Any] = {"created": self.created,
                               "container_config": (self.container_config or ContainerConfig()).to_dict()}
        if self.config is not None:
            out["config"] = self.config.to_dict()
        out["rootfs"] = omit_empty({"type": self.rootfs_type},
                                   (("diff_ids", [str(diff_id) for diff_id in self.rootfs_diff_ids]),))
        omit_empty(out, (("parent", self.parent), ("comment", self.comment), ("container", self.container),
                         ("docker_version", self.docker_version), ("author", self.author),
                         ("architecture", self.architecture), ("variant", self.variant), ("os", self.os),
                         ("history", [entry.to_dict() for entry in self.history]),
                         ("os.version", self.os_version), ("os.features", list(self.os_features or ()))))
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
    return new_config(diff_ids=diff_ids, history=(*base.history, entry), config=config,
                      architecture=base.architecture or None, os=os if os is not None else (base.os or "linux"),
                      variant=base.variant, created=created, author=author, container=container,
                      container_config=container_config, os_version=base.os_version, os_features=base.os_features)
