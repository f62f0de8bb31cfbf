"""The ``local`` volume driver: volumes as directories under ``<data-root>/volumes``.

On-disk format (Docker's layout, plus two small lamina files)::

    <data-root>/volumes/<name>/            mode 0701
        _data/                             the volume's data (mode 0755); the mountpoint
        metadata.json                      {"Name","Driver","Labels","Options","CreatedAt"}
        opts.json                          Docker's optsConfig, only when options were given:
                                           {"MountType","MountOpts","MountDevice","Quota":{"Size":0}}
        mounts.json                        ["<container id>", ...] holding the volume's mount
                                           (only for volumes that need a mount)
    <data-root>/volumes/.tmp-<random>/     a creation in progress
    <data-root>/volumes/.removing-<name>-<random>/   a removal in progress

Commit points: a volume is created in a ``.tmp-`` directory (``_data``, ``metadata.json``,
``opts.json`` all written and fsynced) and published with one rename to ``<name>``; before it
nothing is visible, after it the volume exists.  Removal renames ``<name>`` to
``.removing-...`` (the commit point: the volume is gone) and then deletes the tree.
:meth:`LocalDriver.sweep` deletes both kinds of leftovers (at WARNING level).  Volume names
cannot start with ``.`` so these never collide with a volume.

A directory made by Docker (``_data`` and maybe ``opts.json``, no ``metadata.json``) is read
as a volume too: its options come from ``opts.json`` and its creation time from the
directory's ctime, as Docker does.

Options (``-o``), as Docker's local driver: ``type`` and ``device`` (each needs the other),
``o`` (needs both), ``size`` (refused: no quota support).  A volume with options is mounted
``mount -t <type> -o <o> <device> <_data>`` while containers use it (``o=bind`` makes it a bind
mount of ``device``, which must then be an absolute path); the holders are the container ids
in ``mounts.json``, so several processes share one mount.  Callers serialise mutations (the
volume store holds its lock).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from typing import Any

from lamina import errdefs, fsutil
from lamina import mount as mountlib
from lamina.log import get_logger
from lamina.volume.api import (
    DEFAULT_DRIVER,
    LOCAL_SCOPE,
    NAME_CHARACTERS,
    NAME_PATTERN,
    Volume,
)

__all__ = ["LocalDriver", "DATA_DIRECTORY", "VALID_OPTIONS", "validate_name", "parse_ram_size", "rfc3339",
           "go_quote"]

log = get_logger("lamina.volume")

DATA_DIRECTORY = "_data"
_METADATA = "metadata.json"
_OPTS = "opts.json"
_MOUNTS = "mounts.json"
_TMP_PREFIX = ".tmp-"
_REMOVING_PREFIX = ".removing-"

VALID_OPTIONS = ("type", "o", "device", "size")
# option -> the options it needs (Docker's mandatoryOpts), checked in this order
_REQUIRED = (("device", ("type",)), ("type", ("device",)), ("o", ("device", "type")))

_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_RAM_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)*) ?([kKmMgGtTpP])?[iI]?[bB]?")


def go_quote(text: str) -> str:
    """Go's ``%q`` for the texts error messages quote (close enough: JSON string escapes)."""
    return json.dumps(text, ensure_ascii=False)


def rfc3339(timestamp: float) -> str:
    """Go's ``time.RFC3339`` in local time: ``2024-05-19T20:19:23Z`` or ``...+02:00``."""
    from datetime import datetime  # ~1.5 ms: only when a volume's time is shown

    text = datetime.fromtimestamp(int(timestamp)).astimezone().isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_ram_size(text: str) -> int:
    """go-units' ``RAMInBytes``: ``64m``, ``1.5g``, ``1024``, ``10kb``, ``2 GiB`` (binary
    multiples); anything else is ``InvalidArgument`` (``invalid size: 'x'``)."""
    match = _RAM_SIZE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        return int(float(match.group(1)) * _RAM_UNITS[(match.group(2) or "").lower()])
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid size: '{text}'") from exc


# A name is a directory name, also inside ``.removing-<name>-<32 hex>``: longer, the kernel
# refuses it (ENAMETOOLONG) after the request was accepted.
MAX_NAME_LENGTH = 255 - len(_REMOVING_PREFIX) - 33


def validate_name(name: str) -> None:
    """Docker's local driver name rule (``InvalidArgument`` with Docker's messages), and a
    bound on the length that Docker leaves to the filesystem (a 500 there)."""
    if len(name) > MAX_NAME_LENGTH:
        raise errdefs.InvalidArgument(
            f"volume name is too long: {len(name)} characters, at most {MAX_NAME_LENGTH}")
    if len(name) == 1:
        raise errdefs.InvalidArgument(
            "volume name is too short, names should be at least two alphanumeric characters")
    if not NAME_PATTERN.fullmatch(name):
        raise errdefs.InvalidArgument(
            f"{go_quote(name)} includes invalid characters for a local volume name, only "
            f"{go_quote(NAME_CHARACTERS)} are allowed. If you intended to pass a host directory, "
            "use absolute path")


class LocalDriver:
    """Volumes as directories; see the module docstring for the layout."""

    name = DEFAULT_DRIVER
    scope = LOCAL_SCOPE

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            os.makedirs(root, mode=0o701, exist_ok=True)
        except OSError as exc:
            raise fsutil.system_error(f"create the volume directory {root}", exc) from exc

    # -- paths --------------------------------------------------------------------------------

    def _directory(self, name: str) -> str:
        return os.path.join(self.root, name)

    def data_path(self, name: str) -> str:
        return os.path.join(self.root, name, DATA_DIRECTORY)

    # -- validation ---------------------------------------------------------------------------

    def validate(self, name: str, options: dict[str, str]) -> None:
        validate_name(name)
        for key in options:
            if key not in VALID_OPTIONS:
                raise errdefs.InvalidArgument(f"invalid option: {go_quote(key)}")
        if "size" in options and parse_ram_size(options["size"]) > 0:
            raise errdefs.InvalidArgument("quota size requested but no quota support")
        for option, required in _REQUIRED:
            if option in options:
                for needed in required:
                    if needed not in options:
                        raise errdefs.InvalidArgument(f"missing required option: {go_quote(needed)}")
        mount_options = options.get("o", "").split(",")
        if ("bind" in mount_options or "rbind" in mount_options) and not options.get("device", "").startswith("/"):
            raise errdefs.InvalidArgument(
                f"invalid option: device {go_quote(options.get('device', ''))} of a bind volume must be "
                "an absolute host path")

    # -- records ------------------------------------------------------------------------------

    def create(self, name: str, options: dict[str, str] | None, labels: dict[str, str] | None) -> Volume:
        self.validate(name, options or {})
        final = self._directory(name)
        if os.path.lexists(final):
            raise errdefs.AlreadyExists(f"volume {name} exists already")
        created_at = rfc3339(time.time())
        volume = Volume(name=name, driver=self.name, mountpoint=self.data_path(name), created_at=created_at,
                        labels=dict(labels) if labels is not None else None,
                        options=dict(options) if options is not None else None)
        tmp = os.path.join(self.root, fsutil.temp_name(_TMP_PREFIX))
        try:
            os.mkdir(tmp, 0o701)
            os.mkdir(os.path.join(tmp, DATA_DIRECTORY), 0o755)
            os.chmod(os.path.join(tmp, DATA_DIRECTORY), 0o755)  # whatever the umask
            fsutil.atomic_write_json(os.path.join(tmp, _METADATA), {
                "Name": name, "Driver": self.name, "Labels": volume.labels, "Options": volume.options,
                "CreatedAt": created_at}, mode=0o600)
            if options:
                fsutil.atomic_write_json(os.path.join(tmp, _OPTS), _docker_opts(options), mode=0o600)
            fsutil.publish_dir(tmp, final)
        except OSError as exc:
            fsutil.remove_tree(tmp)
            raise fsutil.system_error(f"create volume {name}", exc) from exc
        except BaseException:
            fsutil.remove_tree(tmp)
            raise
        return volume

    def get(self, name: str) -> Volume:
        if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
            raise errdefs.NotFound(f"volume {name} not found")
        directory = self._directory(name)
        try:
            record = fsutil.read_json(os.path.join(directory, _METADATA))
        except FileNotFoundError:
            return self._docker_volume(name)
        except (OSError, ValueError) as exc:
            raise errdefs.DataLoss(f"volume {name}: unreadable {_METADATA}: {exc}") from exc
        if not isinstance(record, dict):
            raise errdefs.DataLoss(f"volume {name}: {_METADATA} is not a JSON object")
        return Volume(name=name, driver=self.name, mountpoint=self.data_path(name),
                      created_at=str(record.get("CreatedAt") or ""),
                      labels=_string_map(record.get("Labels")), options=_string_map(record.get("Options")))

    def _docker_volume(self, name: str) -> Volume:
        """A volume directory without our metadata (made by Docker): options from opts.json."""
        directory = self._directory(name)
        try:
            info = os.stat(directory)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"volume {name} not found") from exc
        has_data = os.path.isdir(os.path.join(directory, DATA_DIRECTORY))
        options = self._read_opts(name)
        if not stat.S_ISDIR(info.st_mode) or (not has_data and options is None):
            raise errdefs.NotFound(f"volume {name} not found")
        return Volume(name=name, driver=self.name, mountpoint=self.data_path(name),
                      created_at=rfc3339(info.st_ctime), labels=None, options=options)

    def _read_opts(self, name: str) -> dict[str, str] | None:
        try:
            raw = fsutil.read_json(os.path.join(self._directory(name), _OPTS))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise errdefs.DataLoss(f"volume {name}: unreadable {_OPTS}: {exc}") from exc
        if not isinstance(raw, dict):
            return None
        options = {}
        for key, field in (("type", "MountType"), ("o", "MountOpts"), ("device", "MountDevice")):
            if raw.get(field):
                options[key] = str(raw[field])
        return options or None

    def list(self) -> list[Volume]:
        volumes = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(".") or not NAME_PATTERN.fullmatch(name):
                continue
            try:
                volumes.append(self.get(name))
            except errdefs.NotFound:
                continue  # removed meanwhile, or not a volume directory
        return volumes

    def remove(self, name: str) -> None:
        self.get(name)
        directory = self._directory(name)
        data = self.data_path(name)
        if self._needs_mount(name):
            if mountlib.is_mountpoint(data):
                mountlib.unmount(data)
            _write_holders(os.path.join(directory, _MOUNTS), [])
        removing = os.path.join(self.root, fsutil.temp_name(f"{_REMOVING_PREFIX}{name}-"))
        try:
            os.rename(directory, removing)
            fsutil.fsync_dir(self.root)
        except OSError as exc:
            raise fsutil.system_error(f"remove volume {name}", exc) from exc
        self._delete(removing)

    def _delete(self, path: str) -> None:
        # a filesystem still mounted below would make rmtree delete *its* files (or fail)
        mountlib.unmount_all_under(path)
        try:
            fsutil.remove_tree(path)
        except OSError as exc:
            raise fsutil.system_error(f"remove {path}", exc) from exc

    # -- mounts -------------------------------------------------------------------------------

    def _needs_mount(self, name: str) -> bool:
        options = self.get(name).options or {}
        return bool(options.get("type") or options.get("device"))

    def mount_for(self, name: str) -> mountlib.Mount | None:
        """The filesystem mounted on ``_data`` while the volume is in use (``None``: none)."""
        options = self.get(name).options or {}
        if not (options.get("type") or options.get("device")):
            return None
        words = tuple(word for word in options.get("o", "").split(",") if word)
        fstype = options.get("type") or "none"
        if "bind" in words or "rbind" in words:
            fstype = "bind"
        return mountlib.Mount(fstype, options.get("device", ""), words)

    def mount(self, name: str, reference: str) -> str:
        data = self.data_path(name)
        filesystem = self.mount_for(name)
        if filesystem is None:
            return data
        holders_path = os.path.join(self._directory(name), _MOUNTS)
        holders = _read_holders(holders_path)
        if not mountlib.is_mountpoint(data):
            if holders:
                log.warning("volume %s: its filesystem is not mounted although %s hold it (a reboot or "
                            "a crash?): mounting it again", name, ", ".join(holders))
            holders = []
            try:
                filesystem.mount(data)
            except errdefs.LaminaError as exc:
                raise errdefs.System(f"failed to mount local volume {name}: {exc}") from exc
        if reference not in holders:
            holders.append(reference)
        _write_holders(holders_path, holders)
        return data

    def unmount(self, name: str, reference: str) -> None:
        try:
            filesystem = self.mount_for(name)
        except errdefs.NotFound:
            return
        if filesystem is None:
            return
        holders_path = os.path.join(self._directory(name), _MOUNTS)
        holders = [holder for holder in _read_holders(holders_path) if holder != reference]
        if not holders and mountlib.is_mountpoint(self.data_path(name)):
            mountlib.unmount(self.data_path(name))
        _write_holders(holders_path, holders)

    def holders(self, name: str) -> list[str]:
        """Container ids holding the volume's mount (empty for volumes without one)."""
        return _read_holders(os.path.join(self._directory(name), _MOUNTS))

    # -- sizes and maintenance ----------------------------------------------------------------

    def size(self, name: str) -> int:
        if self._needs_mount(name):
            return -1
        return fsutil.disk_usage(self.data_path(name))

    def sweep(self) -> list[str]:
        removed = []
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        for entry in names:
            if entry.startswith((_TMP_PREFIX, _REMOVING_PREFIX)):
                path = os.path.join(self.root, entry)
                if not os.path.isdir(path) or os.path.islink(path):
                    continue
                log.warning("removing %s, left by an interrupted volume %s", path,
                            "creation" if entry.startswith(_TMP_PREFIX) else "removal")
                self._delete(path)
                removed.append(path)
        return removed


def _docker_opts(options: dict[str, str]) -> dict[str, Any]:
    return {"MountType": options.get("type", ""), "MountOpts": options.get("o", ""),
            "MountDevice": options.get("device", ""), "Quota": {"Size": 0}}


def _string_map(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(key): str(item) for key, item in value.items()}


def _read_holders(path: str) -> list[str]:
    try:
        value = fsutil.read_json(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def _write_holders(path: str, holders: list[str]) -> None:
    if not holders:
        try:
            os.unlink(path)
            fsutil.fsync_dir(os.path.dirname(path))
        except FileNotFoundError:
            pass
        return
    fsutil.atomic_write_json(path, holders, mode=0o600)
