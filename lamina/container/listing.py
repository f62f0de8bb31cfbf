"""The container listing index: ``<data-root>/containers/.list.json``, what ``ps`` reads.

On disk (format in :mod:`lamina.container.store`'s docstring)::

    {"Version": 1, "Containers": {"<id>": {"Key": [st_ino, st_size, st_mtime_ns, st_ctime_ns of
     config.v2.json], "Container": {the fields of LISTED}, "HostConfig": {LISTED_HOST_CONFIG}}}}

The records stay the source of truth: :meth:`ContainerStore.listing
<lamina.container.store.ContainerStore.listing>` trusts an entry only while its key matches
its record's ``stat``, so the index has no commit point of its own.  It is replaced atomically,
without fsync (a cache), by whoever gets ``.list.lock`` without waiting.  This module is the
file's format: its entries, reading and writing it.
"""

from __future__ import annotations

import json
import os

from lamina import fsutil
from lamina.container.names import is_container_id
from lamina.log import get_logger

__all__ = ["LISTED", "LISTED_HOST_CONFIG", "FileKey", "ListingIndex", "file_key", "listed_fields"]

log = get_logger("lamina.container")

INDEX_FILE = ".list.json"
LOCK_FILE = ".list.lock"
VERSION = 1
#: the fields of config.v2.json a listing (``ps``) shows or filters on; a tuple names the
#: members kept of an object
LISTED: dict[str, tuple[str, ...] | None] = {
    "ID": None, "Name": None, "Created": None, "Path": None, "Args": None, "Image": None, "State": None,
    "MountPoints": None, "Config": ("Image", "Labels"), "NetworkSettings": ("Networks",)}
#: hostconfig.json's listed fields: the mode shown as HostConfig; links name their targets
LISTED_HOST_CONFIG = ("NetworkMode", "Links")

FileKey = tuple[int, int, int, int]

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    Listed = tuple[FileKey, dict[str, Any], dict[str, Any]]


def file_key(status: os.stat_result) -> FileKey:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def listed_fields(record: dict[str, Any], host_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A record (config.v2.json, hostconfig.json) cut to what a listing needs."""
    data: dict[str, Any] = {}
    for field, members in LISTED.items():
        if field not in record:
            continue
        value = record[field]
        if members is not None and isinstance(value, dict):
            value = {member: value[member] for member in members if member in value}
        data[field] = value
    host = {name: host_config[name] for name in LISTED_HOST_CONFIG if name in host_config}
    return data, host


def _entry(container_id: str, entry: Any) -> Listed | None:
    """An entry of the file as :meth:`ListingIndex.write` writes it (None: malformed)."""
    if not isinstance(entry, dict):
        return None
    key, data, host = entry.get("Key"), entry.get("Container"), entry.get("HostConfig")
    if (not isinstance(key, list) or len(key) != 4 or not all(type(number) is int for number in key)
            or not isinstance(data, dict) or data.get("ID") != container_id or not isinstance(host, dict)):
        return None
    return (key[0], key[1], key[2], key[3]), data, host


class ListingIndex:
    """``.list.json`` of the store at ``root``; keeps the last file it parsed while unchanged."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, INDEX_FILE)
        self._loaded: tuple[FileKey, dict[str, Listed]] | None = None

    def forget(self) -> None:
        """Parse the file again at the next :meth:`load`."""
        self._loaded = None

    def load(self) -> tuple[dict[str, Listed], str]:
        """(id -> entry, what is wrong with the file: "" when sound or missing)."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return {}, ""
        except OSError as exc:
            return {}, f"cannot be read ({exc})"
        with handle:
            try:
                key = file_key(os.fstat(handle.fileno()))
                if self._loaded is not None and self._loaded[0] == key:
                    return self._loaded[1], ""
                document = json.load(handle)
            except (OSError, ValueError) as exc:
                return {}, f"is damaged ({exc})"
        containers = document.get("Containers") if isinstance(document, dict) else None
        if not isinstance(containers, dict) or document.get("Version") != VERSION:
            return {}, "is not in a known format"
        entries = {}
        for container_id, value in containers.items():
            entry = _entry(container_id, value) if is_container_id(container_id) else None
            if entry is not None:
                entries[container_id] = entry
        if len(entries) != len(containers):
            return entries, "holds malformed entries"
        self._loaded = (key, entries)
        return entries, ""

    def write(self, entries: dict[str, Listed], *, wait: bool = False) -> bool:
        """Replace the file (atomic, not synced: a cache) when ``.list.lock`` is free or, with
        ``wait``, once it is; False when another process was writing it."""
        lock = fsutil.FileLock(os.path.join(self.root, LOCK_FILE))
        try:
            if wait:
                lock.acquire()
            elif not lock.try_acquire():
                return False
        except OSError as exc:
            log.warning("could not lock the container listing index: %s", exc)
            return False
        try:
            document = {"Version": VERSION, "Containers": {
                container_id: {"Key": list(key), "Container": data, "HostConfig": host}
                for container_id, (key, data, host) in entries.items()}}
            fsutil.atomic_replace(self.path, json.dumps(document, separators=(",", ":")), 0o600)
            return True
        except OSError as exc:
            log.warning("could not write the container listing index: %s", exc)
            return False
        finally:
            lock.release()
