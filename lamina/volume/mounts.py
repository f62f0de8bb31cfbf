"""Mount specifications: ``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from``, image ``VOLUME``s.

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

:func:`resolve_mounts` turns a container's configuration into :class:`ResolvedMount` values:
volumes are created (or found) and referenced by the container, each mount gets its
:class:`MountPoint` (Docker's ``config.v2.json`` ``MountPoints`` entry, and the ``Mounts`` of
``inspect``) and its :class:`lamina.runtime.api.MountSpec` for the runtime.  Precedence is
Docker's: ``--volumes-from`` first, then ``Binds`` and ``Mounts`` (which replace a
volumes-from mount at the same destination; between themselves a repeated destination is
``Duplicate mount point: /x``), then anonymous volumes for ``Config.Volumes`` and the image's
``VOLUME``s at destinations nothing else covers.  On failure every reference taken is
released and every anonymous volume created is removed again.

The runtime resolves each destination inside the container's root by file descriptor, so a
symlink in the image cannot redirect a mount onto the host; this module only deals in clean
absolute container paths.
"""

from __future__ import annotations

import os
import re
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lamina import errdefs
from lamina.log import get_logger
from lamina.records import dataclass, field, replace
from lamina.runtime.api import MountSpec
from lamina.volume.api import DEFAULT_DRIVER, VolumeProvider
from lamina.volume.local import go_quote, parse_ram_size, validate_name

__all__ = [
    "MountPoint", "ResolvedMount", "VolumesFromLookup",
    "parse_volume_spec", "parse_mount_spec", "parse_tmpfs_spec", "parse_volumes_from", "validate_tmpfs",
    "mount_point_from_spec", "split_volume_flags", "tmpfs_options",
    "resolve_mounts", "runtime_mounts", "mount_points_json", "load_mount_points", "inspect_mounts",
    "volume_names", "release_mounts", "populate_volumes",
    "PROPAGATION_MODES", "DEFAULT_PROPAGATION",
]

log = get_logger("lamina.volume")

PROPAGATION_MODES = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_COPY_MODES = ("nocopy",)
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
_MOUNT_TYPES = ("bind", "volume", "tmpfs")
# tmpfs options lamina.mount understands (flag words) and the data keys tmpfs takes
_TMPFS_FLAGS = frozenset({"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime",
                          "relatime", "strictatime", *PROPAGATION_MODES})
_TMPFS_KEYS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge"})
# what the kernel's tmpfs accepts for each value (a size with a k/m/g suffix or a percentage)
_ANY = re.compile(r".+")
_TMPFS_VALUES = {"size": re.compile(r"[0-9]+[kKmMgGtTpPeE%]?"), "nr_blocks": re.compile(r"[0-9]+[kKmMgG]?"),
                 "nr_inodes": re.compile(r"[0-9]+[kKmMgG]?"), "mode": re.compile(r"[0-7]{1,4}"),
                 "uid": re.compile(r"[0-9]+"), "gid": re.compile(r"[0-9]+")}
_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", DEFAULT_PROPAGATION)

# name or id -> the other container's MountPoints (config.v2.json shape, keyed by destination)
VolumesFromLookup = Callable[[str], Mapping[str, Mapping[str, Any]]]


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
        return self.type == "volume" and not options.get("NoCopy")

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


@dataclass(frozen=True)
class ResolvedMount:
    """A mount of a container: its runtime mount, and its MountPoint (``None`` for
    ``HostConfig.Tmpfs`` entries, which Docker keeps out of ``MountPoints``)."""

    destination: str
    spec: MountSpec
    mount_point: MountPoint | None
    copy_data: bool = False     # an empty volume gets the image's files at create time


# -- small checks ---------------------------------------------------------------------------

def _invalid_spec(raw: str) -> str:
    return f"invalid volume specification: '{raw}'"


def _config_error(mount_type: str, message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid mount config for type {go_quote(mount_type)}: {message}")


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path) if path else path
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _target_problem(target: str) -> str | None:
    """Docker's checks of a destination: not the root, absolute."""
    target = target.replace("\\", "/")
    if _clean(target) == "/":
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


def _read_write(mode: str) -> bool:
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
    if not _read_write(mode):
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
    problem = _target_problem(target)
    if problem:
        raise _config_error(mount_type, problem)
    destination = _clean(target.replace("\\", "/"))

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
        return MountPoint(type="bind", destination=destination, source=_clean(source), rw=not read_only,
                          propagation=propagation or DEFAULT_PROPAGATION, spec=mount,
                          skip_mountpoint_creation=check_bind_source and not create)
    if mount_type == "volume":
        options = volume_options or {}
        if options.get("Subpath"):
            if not source:
                raise _config_error(mount_type, "must not set Subpath when using anonymous volumes")
            raise errdefs.NotImplemented(f"volume subpaths are not supported by lamina (Subpath "
                                         f"{options['Subpath']!r} of volume {source})")
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

def _check_tmpfs_data(destination: str, data: str) -> tuple[str, ...]:
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
    problem = _target_problem(destination)
    if problem:
        raise errdefs.InvalidArgument(problem)
    _check_tmpfs_data(destination, options)


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


# -- the resolver ----------------------------------------------------------------------------

def _duplicate(destination: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"Duplicate mount point: {destination}")


def _check_volume_name(point: MountPoint) -> None:
    if point.type != "volume" or not point.name or (point.driver or DEFAULT_DRIVER) != DEFAULT_DRIVER:
        return
    try:
        validate_name(point.name)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"create {point.name}: {exc}") from exc


def _anonymous_destinations(container_config: Mapping[str, Any], image_volumes: Mapping[str, Any] | None) -> list[str]:
    destinations: list[str] = []
    for source in ((container_config or {}).get("Volumes"), image_volumes):
        if source is None:
            continue
        if not isinstance(source, Mapping):
            raise errdefs.InvalidArgument(f"invalid Volumes {source!r}: expected an object of paths")
        for path in source:
            problem = _target_problem(path) if isinstance(path, str) else f"invalid volume path {path!r}"
            if problem:
                raise errdefs.InvalidArgument(f"invalid volume {path!r}: {problem}")
            cleaned = _clean(path)
            if cleaned not in destinations:
                destinations.append(cleaned)
    return destinations


def resolve_mounts(container_config: Mapping[str, Any] | None, host_config: Mapping[str, Any] | None,
                   image_volumes: Mapping[str, Any] | None, volumes: VolumeProvider, container_id: str, *,
                   volumes_from: VolumesFromLookup | None = None) -> list[ResolvedMount]:
    """Every mount of a new container, volumes created and referenced by ``container_id``.

    ``container_config`` is the create request's Config (its ``Volumes``), ``host_config`` its
    HostConfig (``Binds``, ``Mounts``, ``Tmpfs``, ``VolumesFrom``, ``VolumeDriver``),
    ``image_volumes`` the image config's ``Volumes``.  ``volumes_from`` maps a container name
    or id to its stored ``MountPoints`` (raising ``errdefs.NotFound`` for unknown ones).
    Everything is parsed and checked before any volume is created.  The result is sorted so
    that a mount never hides one below it (fewer path components first).
    """
    host_config = host_config or {}
    volume_driver = host_config.get("VolumeDriver") or ""
    if not isinstance(volume_driver, str):
        raise errdefs.InvalidArgument("invalid HostConfig.VolumeDriver: expected a string")

    def entries(key: str, kind: type) -> Any:
        value = host_config.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise errdefs.InvalidArgument(f"invalid HostConfig.{key}: expected a JSON {kind.__name__}")
        return value

    sources = [parse_volumes_from(text) for text in entries("VolumesFrom", list)]
    if sources and volumes_from is None:
        raise errdefs.InvalidArgument("--volumes-from is not available here (no container lookup)")
    binds = [parse_volume_spec(text, volume_driver) for text in entries("Binds", list)]
    mounts = [mount_point_from_spec(item) for item in entries("Mounts", list)]
    tmpfs: dict[str, tuple[str, ...]] = {}
    for destination, data in entries("Tmpfs", dict).items():
        if not isinstance(data, str):
            raise errdefs.InvalidArgument(f"invalid tmpfs options for {destination}: expected a string")
        problem = _target_problem(destination)
        if problem:
            raise errdefs.InvalidArgument(problem)
        tmpfs[_clean(destination)] = _check_tmpfs_data(destination, data)
    anonymous = _anonymous_destinations(container_config or {}, image_volumes)

    explicit: set[str] = set()
    for point in binds:
        if point.destination in explicit or point.destination in tmpfs:
            raise _duplicate(point.destination)
        explicit.add(point.destination)
    for point in mounts:
        if point.destination in explicit or point.destination in tmpfs:
            raise _duplicate(point.spec.get("Target") or point.destination)
        explicit.add(point.destination)
    for point in [*binds, *mounts]:
        _check_volume_name(point)

    acquired: list[str] = []          # volume names referenced (once per take)
    created_anonymous: list[str] = []
    points: dict[str, MountPoint] = {}
    inherited: set[str] = set()       # destinations from --volumes-from (never copied into)

    def take_volume(point: MountPoint, *, driver_opts: Any = None, labels: Any = None) -> MountPoint:
        volume = volumes.create(point.name, driver=point.driver, driver_opts=driver_opts, labels=labels,
                                reference=container_id)
        acquired.append(volume["Name"])
        if not point.name:
            created_anonymous.append(volume["Name"])
        mode = point.mode or ("z" if volume["Driver"] == DEFAULT_DRIVER else "")
        return replace(point, name=volume["Name"], driver=volume["Driver"], source=volume["Mountpoint"], mode=mode)

    def place(point: MountPoint) -> None:
        previous = points.get(point.destination)
        if previous is not None and previous.type == "volume" and previous.name in acquired:
            acquired.remove(previous.name)
            if previous.name not in acquired:
                volumes.release(previous.name, container_id)
        points[point.destination] = point

    try:
        for name, mode in sources:
            try:
                others = volumes_from(name) if volumes_from is not None else {}
            except errdefs.NotFound as exc:
                raise errdefs.InvalidArgument(str(exc)) from exc
            for value in others.values():
                other = MountPoint.from_json(value)
                point = replace(other, rw=other.rw and _read_write(mode), mode="")
                if point.type == "volume" and point.name:
                    volume = volumes.acquire(point.name, container_id)
                    acquired.append(point.name)
                    point = replace(point, source=volume["Mountpoint"], driver=volume["Driver"])
                place(point)
                inherited.add(point.destination)
        for point in binds:
            if point.type == "volume":
                point = take_volume(point)
            elif not os.path.exists(point.source):
                # -v creates a missing host directory (Docker's legacy behaviour; --mount does not)
                try:
                    os.makedirs(point.source, 0o755, exist_ok=True)
                except OSError as exc:
                    raise errdefs.InvalidArgument(
                        f"invalid volume specification: cannot create bind source {point.source}: "
                        f"{exc.strerror}") from exc
            place(point)
            inherited.discard(point.destination)
        for point in mounts:
            if point.type == "volume":
                options = point.spec.get("VolumeOptions") or {}
                driver_config = options.get("DriverConfig") or {}
                point = take_volume(point, driver_opts=driver_config.get("Options"), labels=options.get("Labels"))
            place(point)
            inherited.discard(point.destination)
        for destination in anonymous:
            if destination in points or destination in tmpfs:
                continue
            place(take_volume(MountPoint(type="volume", destination=destination)))
    except BaseException:
        _undo(volumes, container_id, acquired, created_anonymous)
        raise

    resolved = [ResolvedMount(point.destination, _runtime_mount(point), point,
                              copy_data=point.copy_data and point.destination not in inherited)
                for point in points.values()]
    resolved += [ResolvedMount(destination, _tmpfs_mount(destination, words), None)
                 for destination, words in tmpfs.items()]
    return sorted(resolved, key=lambda item: _depth(item.destination))


def _undo(volumes: VolumeProvider, container_id: str, acquired: list[str], created: list[str]) -> None:
    for name in dict.fromkeys(acquired):
        try:
            volumes.release(name, container_id)
        except errdefs.LaminaError as exc:
            log.warning("could not release volume %s after a failed create: %s", name, exc)
    for name in created:
        try:
            volumes.remove(name, force=True)
        except errdefs.LaminaError as exc:
            log.warning("could not remove anonymous volume %s after a failed create: %s", name, exc)


def _depth(destination: str) -> int:
    return _clean(destination).rstrip("/").count("/")


# -- from stored mount points to the runtime ------------------------------------------------

def _runtime_mount(point: MountPoint) -> MountSpec:
    if point.type == "tmpfs":
        data = tmpfs_options(point.spec.get("TmpfsOptions"), not point.rw)
        return _tmpfs_mount(point.destination, tuple(word for word in data.split(",") if word))
    if point.type not in ("bind", "volume"):
        raise errdefs.InvalidArgument(f"cannot mount {point.destination}: mount type {point.type!r} unknown")
    if not point.source:
        raise errdefs.InvalidArgument(f"cannot mount {point.destination}: the mount point has no source")
    bind_options = point.spec.get("BindOptions") or {}
    options = ["bind" if bind_options.get("NonRecursive") else "rbind"]
    if not point.rw:
        options.append("ro")
    options.append(point.propagation or DEFAULT_PROPAGATION)
    return MountSpec(point.destination, "bind", point.source, tuple(options))


def _tmpfs_mount(destination: str, words: tuple[str, ...]) -> MountSpec:
    return MountSpec(destination, "tmpfs", "tmpfs", (*_TMPFS_DEFAULTS, *words))


def load_mount_points(stored: Mapping[str, Any] | None) -> list[MountPoint]:
    """``config.v2.json``'s ``MountPoints`` (destination -> record) as values."""
    if not stored:
        return []
    if not isinstance(stored, Mapping):
        raise errdefs.DataLoss("MountPoints is not a JSON object")
    return [MountPoint.from_json(value) for value in stored.values()]


def mount_points_json(resolved: Iterable[ResolvedMount]) -> dict[str, dict[str, Any]]:
    """The ``MountPoints`` object of ``config.v2.json`` for ``resolved``."""
    return {item.destination: item.mount_point.to_json() for item in resolved if item.mount_point is not None}


def runtime_mounts(stored: Mapping[str, Any] | None, tmpfs: Mapping[str, str] | None = None) -> tuple[MountSpec, ...]:
    """The runtime's mounts for a container from its stored ``MountPoints`` and
    ``HostConfig.Tmpfs``, parents before children."""
    items = [(point.destination, _runtime_mount(point)) for point in load_mount_points(stored)]
    for destination, data in (tmpfs or {}).items():
        items.append((_clean(destination), _tmpfs_mount(_clean(destination), _check_tmpfs_data(destination, data))))
    return tuple(spec for _, spec in sorted(items, key=lambda item: _depth(item[0])))


def inspect_mounts(stored: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``inspect``'s ``Mounts``: one item per stored mount point, by destination."""
    return [point.to_inspect() for point in sorted(load_mount_points(stored), key=lambda p: p.destination)]


def volume_names(stored: Mapping[str, Any] | None) -> list[str]:
    """The volumes a container uses (to mount before it starts and unmount after)."""
    return list(dict.fromkeys(point.name for point in load_mount_points(stored)
                              if point.type == "volume" and point.name))


def release_mounts(stored: Mapping[str, Any] | None, volumes: VolumeProvider, container_id: str, *,
                   remove_anonymous: bool = False) -> list[str]:
    """Drop a removed container's references; with ``remove_anonymous`` (``rm -v``,
    ``--rm``) also remove its anonymous volumes that no other container uses.  Returns the
    error messages of what could not be done (Docker logs and reports them, and goes on)."""
    problems = []
    for point in load_mount_points(stored):
        if point.type != "volume" or not point.name:
            continue
        try:
            volumes.release(point.name, container_id)
        except errdefs.LaminaError as exc:
            problems.append(str(exc))
            continue
        if not remove_anonymous or not point.anonymous:
            continue
        try:
            volumes.remove(point.name)
        except errdefs.NotFound:
            pass
        except errdefs.Conflict:
            pass  # another container uses it (--volumes-from): not an error, Docker says
        except errdefs.LaminaError as exc:
            problems.append(str(exc))
    return problems


def populate_volumes(resolved: Iterable[ResolvedMount], rootfs: str, volumes: Any, container_id: str) -> list[str]:
    """Copy the image's files into each empty volume that asks for it (Docker's copy-up at
    create time; not for ``nocopy`` nor for volumes inherited with ``--volumes-from``);
    ``rootfs`` is the container's mounted root.  ``volumes`` needs ``mount`` and ``unmount``
    (a volume with a filesystem is mounted for the copy).  Returns the names of the volumes
    that were populated."""
    from lamina.volume.populate import populate_from_image

    populated = []
    for item in resolved:
        point = item.mount_point
        if point is None or not item.copy_data or not point.name:
            continue
        path = volumes.mount(point.name, container_id)
        try:
            if populate_from_image(path, rootfs, point.destination):
                populated.append(point.name)
        finally:
            volumes.unmount(point.name, container_id)
    return populated
