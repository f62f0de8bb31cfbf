"""Mount specifications as users write them: ``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from``.

Three kinds of input, parsed with Docker's rules and messages:

- ``-v`` / ``HostConfig.Binds`` (:func:`parse_volume_spec`, the daemon's ``ParseMountRaw``):
  ``/dest`` (anonymous volume), ``NAME:/dest[:MODE]`` (named volume), ``/host:/dest[:MODE]``
  (bind).  MODE is a comma list of at most one each of ``ro|rw``, ``z|Z``, a propagation
  (``[r]private|[r]shared|[r]slave``, binds only), ``nocopy``, a consistency
  (``consistent|cached|delegated``).  A source that is not absolute is a volume *name*, so a
  relative host path fails as a bad volume name, as in Docker.
- ``--mount`` (:func:`parse_mount_spec`, the docker CLI's csv syntax) gives the API's
  ``HostConfig.Mounts`` item (``{"Type", "Source", "Target", "ReadOnly", "BindOptions",
  "VolumeOptions", "TmpfsOptions"}``), which :func:`mount_point_from_spec` validates
  (the daemon's ``ParseMountSpec``).
- ``--tmpfs /dest[:OPTIONS]`` (:func:`parse_tmpfs_spec`) gives ``HostConfig.Tmpfs`` entries.

Each parse gives a :class:`MountPoint` (Docker's ``config.v2.json`` ``MountPoints`` entry, and
the ``Mounts`` of ``inspect``) or the API's JSON; nothing here touches the disk except the
``--mount type=bind`` check that its source exists.  :mod:`lamina.volume.resolve` turns the
parsed mounts of a container into volumes and runtime mounts.

This module only deals in clean absolute container paths; the runtime resolves each
destination inside the container's root by file descriptor.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from lamina import errdefs
from lamina.records import dataclass, field, replace
from lamina.volume.local import go_quote, parse_ram_size

__all__ = [
    "MountPoint",
    "parse_volume_spec", "parse_mount_spec", "parse_tmpfs_spec", "parse_volumes_from", "validate_tmpfs",
    "mount_point_from_spec", "split_volume_flags", "tmpfs_options", "tmpfs_words",
    "clean_path", "destination_problem", "read_write",
    "PROPAGATION_MODES", "DEFAULT_PROPAGATION",
]

PROPAGATION_MODES = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_COPY_MODES = ("nocopy",)
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
# tmpfs options lamina.mount understands (flag words) and the data keys tmpfs takes
_TMPFS_FLAGS = frozenset({"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime",
                          "relatime", "strictatime", *PROPAGATION_MODES})
_TMPFS_KEYS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge"})
# what the kernel's tmpfs accepts for each value (a size with a k/m/g suffix or a percentage)
_ANY = re.compile(r".+")
_TMPFS_VALUES = {"size": re.compile(r"[0-9]+[kKmMgGtTpPeE%]?"), "nr_blocks": re.compile(r"[0-9]+[kKmMgG]?"),
                 "nr_inodes": re.compile(r"[0-9]+[kKmMgG]?"), "mode": re.compile(r"[0-7]{1,4}"),
                 "uid": re.compile(r"[0-9]+"), "gid": re.compile(r"[0-9]+")}


# -- values ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountPoint:
    """Docker's ``MountPoint``: where a volume, host path or tmpfs appears in a container.

    ``source`` is the host path (a bind's source, a volume's mountpoint; empty for tmpfs);
    ``mode`` is the user's mode text (persisted as ``Relabel``, shown as ``Mode``); ``spec`` is
    the API ``Mount`` the request described (``{}`` for ``VOLUME``s and legacy forms).
    """

    type: str
    destination: str
    source: str = ""
    rw: bool = True
    name: str = ""
    driver: str = ""
    mode: str = ""
    propagation: str = ""
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    skip_mountpoint_creation: bool = False

    @property
    def copy_data(self) -> bool:
        """Whether an empty volume gets the image's files (``nocopy`` turns it off)."""
        options = self.spec.get("VolumeOptions") or {}
        # a subpath mounts part of a volume that already holds it: nothing to populate
        return self.type == "volume" and not options.get("NoCopy") and not options.get("Subpath")

    @property
    def anonymous(self) -> bool:
        """A volume the request did not name (``-v /x``, ``VOLUME``, ``--mount`` without source)."""
        return self.type == "volume" and not self.spec.get("Source")

    def to_json(self) -> dict[str, Any]:
        """The ``config.v2.json`` form (Docker's field names and omissions)."""
        value: dict[str, Any] = {"Source": self.source, "Destination": self.destination, "RW": self.rw,
                                 "Name": self.name, "Driver": self.driver}
        if self.type:
            value["Type"] = self.type
        if self.mode:
            value["Relabel"] = self.mode
        if self.propagation:
            value["Propagation"] = self.propagation
        value["Spec"] = dict(self.spec)
        value["SkipMountpointCreation"] = self.skip_mountpoint_creation
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MountPoint:
        if not isinstance(value, Mapping):
            raise errdefs.DataLoss(f"a mount point record is not a JSON object: {value!r}")
        spec = value.get("Spec")
        return cls(type=str(value.get("Type") or ""), destination=str(value.get("Destination") or ""),
                   source=str(value.get("Source") or ""), rw=bool(value.get("RW")),
                   name=str(value.get("Name") or ""), driver=str(value.get("Driver") or ""),
                   mode=str(value.get("Relabel") or ""), propagation=str(value.get("Propagation") or ""),
                   spec=dict(spec) if isinstance(spec, Mapping) else {},
                   skip_mountpoint_creation=bool(value.get("SkipMountpointCreation")))

    def to_inspect(self) -> dict[str, Any]:
        """One item of ``inspect``'s ``Mounts`` (Docker's ``types.MountPoint``)."""
        value: dict[str, Any] = {"Type": self.type}
        if self.name:
            value["Name"] = self.name
        value["Source"] = self.source
        value["Destination"] = self.destination
        if self.driver:
            value["Driver"] = self.driver
        value.update({"Mode": self.mode, "RW": self.rw, "Propagation": self.propagation})
        return value


# -- small checks ---------------------------------------------------------------------------

def _invalid_spec(raw: str) -> str:
    return f"invalid volume specification: '{raw}'"


def _config_error(mount_type: str, message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid mount config for type {go_quote(mount_type)}: {message}")


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` for a container path (``//x`` is ``/x``)."""
    cleaned = posixpath.normpath(path) if path else path
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def destination_problem(target: str) -> str | None:
    """Docker's checks of a destination: not the root, absolute."""
    target = target.replace("\\", "/")
    if clean_path(target) == "/":
        return "invalid specification: destination can't be '/'"
    if not target.startswith("/"):
        return f"invalid mount path: '{target}' mount path must be absolute"
    return None


def _valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for word in mode.split(","):
        if word in _RW_MODES:
            counts["rw"] += 1
        elif word in _LABEL_MODES:
            counts["label"] += 1
        elif word in PROPAGATION_MODES:
            counts["propagation"] += 1
        elif word in _COPY_MODES:
            counts["copy"] += 1
        elif word in _CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(count <= 1 for count in counts.values())


def read_write(mode: str) -> bool:
    """Whether a ``-v`` / ``--volumes-from`` mode leaves the mount writable."""
    return _valid_mode(mode) and "ro" not in mode.split(",")


def _propagation_of(mode: str) -> str:
    for word in mode.split(","):
        if word in PROPAGATION_MODES:
            return word
    return ""


# -- -v ----------------------------------------------------------------------------------------

def parse_volume_spec(text: str, volume_driver: str = "") -> MountPoint:
    """Parse a ``-v`` / ``HostConfig.Binds`` entry; raises ``errdefs.InvalidArgument``.

    Named volumes get ``source`` empty (it is the volume's mountpoint once resolved); their
    name may still be invalid for the driver (checked by the resolver, as Docker's create does).
    """
    if not isinstance(text, str):
        raise errdefs.InvalidArgument(f"invalid volume specification: {text!r} is not a string")
    parts = text.split(":", 3)
    if parts[0] == "":
        raise errdefs.InvalidArgument(_invalid_spec(text))
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):
            # "/foo:rw": a destination with a mode but no source is not a volume
            raise errdefs.InvalidArgument(_invalid_spec(text))
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise errdefs.InvalidArgument(_invalid_spec(text))
    if not _valid_mode(mode):
        raise errdefs.InvalidArgument(f"invalid mode: {mode}")

    spec: dict[str, Any] = {"Type": "bind" if source.startswith("/") else "volume"}
    if source:
        spec["Source"] = source
    spec["Target"] = target
    if not read_write(mode):
        spec["ReadOnly"] = True
    if volume_driver and spec["Type"] == "volume":
        spec.setdefault("VolumeOptions", {})["DriverConfig"] = {"Name": volume_driver}
    if "nocopy" in mode.split(","):
        spec.setdefault("VolumeOptions", {})["NoCopy"] = True
    propagation = _propagation_of(mode)
    if propagation:
        spec["BindOptions"] = {"Propagation": propagation}
    try:
        point = _point_from_spec(spec, check_bind_source=False)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"{_invalid_spec(text)}: {exc}") from exc
    return replace(point, mode=mode)


def split_volume_flags(values: Iterable[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``-v`` values as the docker CLI sends them: entries with a source go to
    ``HostConfig.Binds``, bare destinations to ``Config.Volumes``.  Each is validated."""
    binds: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for value in values:
        point = parse_volume_spec(value)
        if point.type == "bind" or point.name:
            binds.append(value)
        else:
            volumes[value] = {}
    return binds, volumes


# -- --mount ---------------------------------------------------------------------------------

def _parse_bool(key: str, value: str, message: str | None = None) -> bool:
    lowered = value
    if lowered in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if lowered in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise errdefs.InvalidArgument(message or f"invalid value for {key}: {value}")


def _csv_fields(text: str) -> list[str]:
    """One record of Go's ``encoding/csv`` (what the docker CLI reads ``--mount`` with):
    fields split on commas, a field may be double-quoted (``""`` is a quote inside it), a
    quote anywhere else is an error."""
    fields: list[str] = []
    index = 0
    while True:
        if index < len(text) and text[index] == '"':
            value = []
            index += 1
            while True:
                end = text.find('"', index)
                if end < 0:
                    raise errdefs.InvalidArgument(
                        f"invalid mount specification {text!r}: extraneous or missing \" in quoted-field")
                value.append(text[index:end])
                index = end + 1
                if text.startswith('"', index):
                    value.append('"')
                    index += 1
                    continue
                break
            if index < len(text) and text[index] != ",":
                raise errdefs.InvalidArgument(
                    f"invalid mount specification {text!r}: extraneous or missing \" in quoted-field")
            fields.append("".join(value))
        else:
            end = text.find(",", index)
            field_text = text[index:] if end < 0 else text[index:end]
            if '"' in field_text:
                raise errdefs.InvalidArgument(f"invalid mount specification {text!r}: bare \" in non-quoted-field")
            fields.append(field_text)
            index = len(text) if end < 0 else end
        if index >= len(text):
            return fields
        index += 1  # the comma


def parse_mount_spec(text: str) -> dict[str, Any]:
    """Parse a ``--mount`` value (csv ``key=value`` fields) into the API's ``Mount`` JSON.

    Messages are the docker CLI's (``target is required``, ``unexpected key 'x' in 'x=1'``,
    ``cannot mix 'volume-*' options with mount type 'bind'``...).  ``source=./x`` becomes an
    absolute path, like the docker CLI does.
    """
    if not isinstance(text, str) or not text.strip():
        raise errdefs.InvalidArgument("invalid mount specification: it is empty")
    fields = _csv_fields(text)
    mount: dict[str, Any] = {"Type": "volume"}
    volume_options: dict[str, Any] | None = None
    bind_options: dict[str, Any] | None = None
    tmpfs_settings: dict[str, Any] | None = None

    def volume() -> dict[str, Any]:
        nonlocal volume_options
        if volume_options is None:
            volume_options = {"Labels": {}, "DriverConfig": {}}
        return volume_options

    def bind() -> dict[str, Any]:
        nonlocal bind_options
        if bind_options is None:
            bind_options = {}
        return bind_options

    def tmpfs() -> dict[str, Any]:
        nonlocal tmpfs_settings
        if tmpfs_settings is None:
            tmpfs_settings = {}
        return tmpfs_settings

    for item in fields:
        key, equals, value = item.partition("=")
        if not equals:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
            elif key == "volume-nocopy":
                volume()["NoCopy"] = True
            elif key == "bind-nonrecursive":
                bind()["NonRecursive"] = True
            else:
                raise errdefs.InvalidArgument(f"invalid field '{item}' must be a key=value pair")
            continue
        if key == "type":
            mount["Type"] = value.lower()
        elif key in ("source", "src"):
            mount["Source"] = os.path.abspath(value) if value == "." or value.startswith("./") else value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _parse_bool(key, value)
        elif key == "consistency":
            mount["Consistency"] = value.lower()
        elif key == "bind-propagation":
            bind()["Propagation"] = value.lower()
        elif key == "bind-nonrecursive":
            bind()["NonRecursive"] = _parse_bool(key, value)
        elif key == "volume-nocopy":
            volume()["NoCopy"] = _parse_bool(key, value, f"invalid value for volume-nocopy: {value}")
        elif key == "volume-label":
            label, _, label_value = value.partition("=")
            if label:
                volume()["Labels"][label] = label_value
        elif key == "volume-subpath":
            volume()["Subpath"] = value
        elif key == "volume-driver":
            volume()["DriverConfig"]["Name"] = value
        elif key == "volume-opt":
            option, _, option_value = value.partition("=")
            options = volume()["DriverConfig"].setdefault("Options", {})
            if option:
                options[option] = option_value
        elif key == "tmpfs-size":
            try:
                tmpfs()["SizeBytes"] = parse_ram_size(value)
            except errdefs.InvalidArgument as exc:
                raise errdefs.InvalidArgument(f"invalid value for {key}: {value}") from exc
        elif key == "tmpfs-mode":
            try:
                mode = int(value, 8)
            except ValueError:
                mode = -1
            if not 0 <= mode < 1 << 32:
                raise errdefs.InvalidArgument(f"invalid value for {key}: {value}")
            tmpfs()["Mode"] = mode
        else:
            raise errdefs.InvalidArgument(f"unexpected key '{key}' in '{item}'")

    if not mount["Type"]:
        raise errdefs.InvalidArgument("type is required")
    if not mount.get("Target"):
        raise errdefs.InvalidArgument("target is required")
    for options, prefix, kind in ((volume_options, "volume", "volume"), (bind_options, "bind", "bind"),
                                  (tmpfs_settings, "tmpfs", "tmpfs")):
        if options is not None and mount["Type"] != kind:
            raise errdefs.InvalidArgument(f"cannot mix '{prefix}-*' options with mount type '{mount['Type']}'")
    if volume_options is not None:
        mount["VolumeOptions"] = volume_options
    if bind_options is not None:
        mount["BindOptions"] = bind_options
    if tmpfs_settings is not None:
        mount["TmpfsOptions"] = tmpfs_settings
    return mount


def _expect(mount: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = mount.get(key)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is int)):
        raise errdefs.InvalidArgument(f"invalid mount config: {key} must be {what}, not {value!r}")
    return value


def tmpfs_options(tmpfs: Mapping[str, Any] | None, read_only: bool) -> str:
    """Docker's ``ConvertTmpfsOptions``: ``ro``, ``mode=%o``, ``size=<n>[kmg]`` as data text."""
    words = ["ro"] if read_only else []
    tmpfs = tmpfs or {}
    mode = _expect(tmpfs, "Mode", int, "an integer")
    size = _expect(tmpfs, "SizeBytes", int, "an integer")
    if mode:
        if mode < 0:
            raise errdefs.InvalidArgument(f"invalid tmpfs mode {mode}")
        words.append(f"mode={mode & 0o7777:o}")
    if size:
        if size < 0:
            raise errdefs.InvalidArgument(f"invalid tmpfs size {size}")
        suffix = ""
        for letter, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                size //= divisor
                suffix = letter
                break
        words.append(f"size={size}{suffix}")
    for option in _expect(tmpfs, "Options", list, "a list") or []:
        if not isinstance(option, list) or not 1 <= len(option) <= 2 or \
                not all(isinstance(part, str) for part in option):
            raise errdefs.InvalidArgument("invalid option array length")
        if option[0] not in ("exec", "noexec"):
            raise errdefs.InvalidArgument("invalid option: " + option[0])
        words.append("=".join(option))
    return ",".join(words)


def mount_point_from_spec(mount: Mapping[str, Any], *, check_bind_source: bool = True) -> MountPoint:
    """Validate one ``HostConfig.Mounts`` item (Docker's ``ParseMountSpec``)."""
    if not isinstance(mount, Mapping):
        raise errdefs.InvalidArgument(f"invalid mount config: expected a JSON object, not {mount!r}")
    return _point_from_spec(dict(mount), check_bind_source=check_bind_source)


def _point_from_spec(mount: dict[str, Any], *, check_bind_source: bool) -> MountPoint:
    mount_type = _expect(mount, "Type", str, "a string") or ""
    source = _expect(mount, "Source", str, "a string") or ""
    target = _expect(mount, "Target", str, "a string") or ""
    read_only = bool(_expect(mount, "ReadOnly", bool, "a boolean"))
    bind_options = _expect(mount, "BindOptions", dict, "an object")
    volume_options = _expect(mount, "VolumeOptions", dict, "an object")
    tmpfs = _expect(mount, "TmpfsOptions", dict, "an object")
    for key, options, kind in (("BindOptions", bind_options, "bind"), ("VolumeOptions", volume_options, "volume"),
                               ("TmpfsOptions", tmpfs, "tmpfs")):
        if options is not None and mount_type != kind:
            raise _config_error(mount_type, f"field {key} must not be specified")
    for key in ("ImageOptions", "ClusterOptions"):
        if mount.get(key) is not None:
            raise _config_error(mount_type, f"field {key} must not be specified")
    if not target:
        raise _config_error(mount_type, "field Target must not be empty")
    problem = destination_problem(target)
    if problem:
        raise _config_error(mount_type, problem)
    destination = clean_path(target.replace("\\", "/"))

    if mount_type == "bind":
        if not source:
            raise _config_error(mount_type, "field Source must not be empty")
        propagation = str((bind_options or {}).get("Propagation") or "")
        if propagation and propagation not in PROPAGATION_MODES:
            raise _config_error(mount_type, f"invalid propagation mode: {propagation}")
        if not source.replace("\\", "/").startswith("/"):
            raise _config_error(mount_type, f"invalid mount path: '{source}' mount path must be absolute")
        create = bool((bind_options or {}).get("CreateMountpoint"))
        if check_bind_source and not create and not os.path.exists(source):
            raise _config_error(mount_type, f"bind source path does not exist: {source}")
        return MountPoint(type="bind", destination=destination, source=clean_path(source), rw=not read_only,
                          propagation=propagation or DEFAULT_PROPAGATION, spec=mount,
                          skip_mountpoint_creation=check_bind_source and not create)
    if mount_type == "volume":
        options = volume_options or {}
        subpath = options.get("Subpath")
        if subpath is not None and not isinstance(subpath, str):
            raise errdefs.InvalidArgument("invalid mount config: VolumeOptions.Subpath must be a string")
        if subpath:
            from lamina.volume.subpath import check_subpath

            check_subpath(subpath, volume=source)
        driver_config = options.get("DriverConfig") or {}
        if not isinstance(driver_config, Mapping):
            raise errdefs.InvalidArgument("invalid mount config: VolumeOptions.DriverConfig must be an object")
        for key in ("Labels",):
            if options.get(key) is not None and not _string_map(options.get(key)):
                raise errdefs.InvalidArgument(f"invalid mount config: VolumeOptions.{key} must map strings to strings")
        if driver_config.get("Options") is not None and not _string_map(driver_config.get("Options")):
            raise errdefs.InvalidArgument("invalid mount config: VolumeOptions.DriverConfig.Options must map "
                                          "strings to strings")
        return MountPoint(type="volume", destination=destination, rw=not read_only, name=source,
                          driver=str(driver_config.get("Name") or ""), spec=mount)
    if mount_type == "tmpfs":
        if source:
            raise _config_error(mount_type, "field Source must not be specified")
        try:
            tmpfs_options(tmpfs, read_only)
        except errdefs.InvalidArgument as exc:
            raise _config_error(mount_type, str(exc)) from exc
        return MountPoint(type="tmpfs", destination=destination, rw=not read_only, spec=mount)
    raise _config_error(mount_type, "mount type unknown")


def _string_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


# -- --tmpfs and --volumes-from -------------------------------------------------------------

def tmpfs_words(destination: str, data: str) -> tuple[str, ...]:
    """The mount option words of a ``HostConfig.Tmpfs`` entry, each checked (``defaults`` dropped)."""
    words = []
    for word in data.split(",") if data else []:
        if word == "defaults":
            continue
        key, equals, value = word.partition("=")
        if (equals and key in _TMPFS_KEYS and value and _TMPFS_VALUES.get(key, _ANY).fullmatch(value)) or (
                not equals and word in _TMPFS_FLAGS):
            words.append(word)
            continue
        raise errdefs.InvalidArgument(f"invalid tmpfs option {go_quote(word)} for {destination}")
    return tuple(words)


def parse_tmpfs_spec(text: str) -> tuple[str, str]:
    """``--tmpfs /dest[:options]`` -> (destination, options) for ``HostConfig.Tmpfs``."""
    if not isinstance(text, str):
        raise errdefs.InvalidArgument(f"invalid tmpfs specification {text!r}")
    destination, _, options = text.partition(":")
    validate_tmpfs(destination, options)
    return destination, options


def validate_tmpfs(destination: str, options: str) -> None:
    """Check one ``HostConfig.Tmpfs`` entry: an absolute destination other than ``/``, and
    options lamina can mount (flags, ``size=``, ``mode=``, ``uid=``, ``gid=``, ...)."""
    if not isinstance(destination, str) or not isinstance(options, str):
        raise errdefs.InvalidArgument(f"invalid tmpfs mount {destination!r}: {options!r}")
    problem = destination_problem(destination)
    if problem:
        raise errdefs.InvalidArgument(problem)
    tmpfs_words(destination, options)


def parse_volumes_from(text: str) -> tuple[str, str]:
    """``CONTAINER[:ro|rw]`` -> (container, mode); Docker's ``ParseVolumesFrom``."""
    if not isinstance(text, str) or text == "":
        raise errdefs.InvalidArgument("volumes-from specification cannot be an empty string")
    container, _, mode = text.partition(":")
    if mode == "":
        return container, "rw"
    if not _valid_mode(mode) or _propagation_of(mode) or "nocopy" in mode.split(","):
        raise errdefs.InvalidArgument(f"invalid mode: {mode}")
    return container, mode
