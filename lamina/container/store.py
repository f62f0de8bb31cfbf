"""The container store: one directory per container, with Docker's files and field names.

On-disk format, under ``<data-root>/containers/``::

    <id>/config.v2.json     the container: ID, Created, Path, Args, Config, Image, State,
                            NetworkSettings, LogPath, Name ("/name"), RestartCount, Driver,
                            Platform, MountLabel, ProcessLabel, AppArmorProfile, ExecIDs,
                            HostnamePath, HostsPath, ResolvConfPath, MountPoints,
                            HasBeenStartedBefore, HasBeenManuallyStopped, ... (Docker's names)
    <id>/hostconfig.json    the HostConfig (Docker's names)
    <id>/hostname, hosts, resolv.conf   written by the monitor at each start, bind-mounted
    <id>/<id>-json.log[.N]  the json-file log (see :mod:`lamina.container.logs`)
    <id>/lock               per-container ``flock`` for read-modify-write of the record
    <id>/sizes.json         cached SizeRw/SizeRootFs of a stopped container (``ps -s``),
                            keyed by its StartedAt/FinishedAt
    <id>-removing/          a removal in progress (finished by :meth:`ContainerStore.sweep`)
    .tmp-<random>/          a creation in progress (removed by the sweep)
    .names.lock             serialises name reservation (create, rename) across processes

Every file is written tmp -> fsync -> rename -> fsync(dir), but for states a crash may lose
without harm (written atomically, not synced): ``RemovalInProgress`` just before a removal's
commit point, and the start and the exit of a ``--rm`` container (its whole run is disposable:
after a host crash it is either removed at start-up or still "created").

Commit points: a container exists from the rename of its fully written ``.tmp-<random>``
directory to ``<id>`` (done under ``.names.lock`` after checking that its name is free); it
stops existing at the rename of ``<id>`` to ``<id>-removing``.  Readers never lock: every file is replaced whole.

Ids are 64 random hex digits whose 12-digit short form is never all decimal digits (so a short
id cannot be mistaken for a number).  Lookups accept the full id, the name (with or without the
leading "/") and a unique id prefix, in that order, as Docker's ``GetContainer`` does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lamina import errdefs, fsutil
from lamina.container.names import validate_name
from lamina.log import get_logger
from lamina.records import dataclass

__all__ = ["CONFIG_FILE", "HOST_CONFIG_FILE", "Container", "ContainerStore", "new_container_id"]

log = get_logger("lamina.container")

CONFIG_FILE = "config.v2.json"
HOST_CONFIG_FILE = "hostconfig.json"
_LOCK_FILE = "lock"
_REMOVING = "-removing"


def new_container_id() -> str:
    while True:
        candidate = os.urandom(32).hex()  # what secrets.token_hex(32) does, without its imports
        if not candidate[:12].isdigit():
            return candidate


def _write_synced(path: str, value: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        data = json.dumps(value, separators=(",", ":")).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: str, value: Any) -> None:
    fsutil.atomic_write_json(path, value, mode=0o600)


def _replace_json(path: str, value: Any) -> None:
    fsutil.atomic_replace(path, json.dumps(value, separators=(",", ":")), 0o600)


def _is_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


@dataclass
class Container:
    """One container record: ``data`` is config.v2.json, ``host_config`` hostconfig.json."""

    data: dict[str, Any]
    host_config: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["ID"])

    @property
    def name(self) -> str:
        return str(self.data.get("Name") or "")

    @property
    def state(self) -> dict[str, Any]:
        return self.data.setdefault("State", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.data.setdefault("Config", {})


class ContainerStore:
    def __init__(self, root: str) -> None:
        """``root`` is ``<data-root>/containers``."""
        self.root = root
        os.makedirs(root, mode=0o711, exist_ok=True)
        self._names_lock = os.path.join(root, ".names.lock")

    # -- paths ---------------------------------------------------------------------------------

    def directory(self, container_id: str) -> str:
        if not _is_id(container_id):
            raise errdefs.InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self.root, container_id)

    def log_path(self, container_id: str) -> str:
        return os.path.join(self.directory(container_id), f"{container_id}-json.log")

    # -- reading -------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [name for name in names if _is_id(name)]

    def exists(self, container_id: str) -> bool:
        return _is_id(container_id) and os.path.isfile(os.path.join(self.root, container_id, CONFIG_FILE))

    def get(self, container_id: str) -> Container:
        """The record of the container with this full id."""
        directory = self.directory(container_id)
        try:
            data = fsutil.read_json(os.path.join(directory, CONFIG_FILE))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise errdefs.NotFound(f"No such container: {container_id}") from exc
        except ValueError as exc:
            raise errdefs.DataLoss(f"container {container_id}: {CONFIG_FILE} is damaged: {exc}") from exc
        try:
            host_config = fsutil.read_json(os.path.join(directory, HOST_CONFIG_FILE))
        except FileNotFoundError:
            host_config = {}
        except ValueError as exc:
            raise errdefs.DataLoss(f"container {container_id}: {HOST_CONFIG_FILE} is damaged: {exc}") from exc
        if not isinstance(data, dict) or data.get("ID") != container_id:
            raise errdefs.DataLoss(f"container {container_id}: {CONFIG_FILE} does not describe it")
        return Container(data, host_config if isinstance(host_config, dict) else {})

    def list(self) -> list[Container]:
        """Every readable container (damaged or vanishing records are skipped with a warning)."""
        out = []
        for container_id in self.ids():
            try:
                out.append(self.get(container_id))
            except errdefs.NotFound:
                continue  # removed meanwhile
            except errdefs.DataLoss as exc:
                log.warning("skipping container %s: %s", container_id, exc)
        return out

    def _names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for container_id in self.ids():
            try:
                with open(os.path.join(self.root, container_id, CONFIG_FILE), "rb") as handle:
                    name = json.load(handle).get("Name")
            except (OSError, ValueError, AttributeError):
                continue
            if name:
                names[str(name)] = container_id
        return names

    def lookup(self, reference: str) -> Container:
        """The container named by full id, name ("x" or "/x") or unique id prefix."""
        if not reference:
            raise errdefs.InvalidArgument("Prefix can't be empty")
        if _is_id(reference):
            try:
                return self.get(reference)
            except errdefs.NotFound:
                pass
        wanted = reference if reference.startswith("/") else "/" + reference
        found = self._names().get(wanted)
        if found is not None:
            try:
                return self.get(found)
            except errdefs.NotFound:
                pass
        if all(c in "0123456789abcdef" for c in reference):
            matches = [i for i in self.ids() if i.startswith(reference)]
            if len(matches) > 1:
                raise errdefs.InvalidArgument(f"Multiple IDs found with provided prefix: {reference}")
            if matches:
                return self.get(matches[0])
        raise errdefs.NotFound(f"No such container: {reference}")

    # -- writing -------------------------------------------------------------------------------

    def _name_conflict(self, name: str, names: dict[str, str]) -> errdefs.Conflict:
        owner = names[name]
        return errdefs.Conflict(
            f'Conflict. The container name "{name}" is already in use by container "{owner}". '
            f"You have to remove (or rename) that container to be able to reuse that name.")

    def create(self, container: Container) -> None:
        """Publish a new record (its name must be free); the commit point is one rename."""
        container_id = container.id
        final = self.directory(container_id)
        name = validate_name(container.name)
        tmp = os.path.join(self.root, fsutil.temp_name())
        os.mkdir(tmp, 0o700)
        try:
            # a fresh directory published by one rename: each file needs its data synced, not
            # a rename of its own
            _write_synced(os.path.join(tmp, HOST_CONFIG_FILE), container.host_config)
            _write_synced(os.path.join(tmp, CONFIG_FILE), container.data)
            with fsutil.file_lock(self._names_lock):
                names = self._names()
                if name in names:
                    raise self._name_conflict(name, names)
                fsutil.publish_dir(tmp, final)
        except BaseException:
            fsutil.remove_tree(tmp)
            raise

    def save(self, container: Container, *, host_config: bool = False, durable: bool = True) -> None:
        """Write config.v2.json (and hostconfig.json when ``host_config``) of an existing
        record; the caller holds its lock.  ``durable=False`` skips the fsyncs (the write is
        still atomic): only for a state that a crash may lose (see the module docstring)."""
        directory = self.directory(container.id)
        if not os.path.isdir(directory):
            raise errdefs.NotFound(f"No such container: {container.id}")
        write = _write_json if durable else _replace_json
        if host_config:
            write(os.path.join(directory, HOST_CONFIG_FILE), container.host_config)
        write(os.path.join(directory, CONFIG_FILE), container.data)

    def lock(self, container_id: str) -> fsutil.FileLock:
        """The container's lock, acquired (exclusive); NotFound once the container is gone."""
        lock = fsutil.FileLock(os.path.join(self.directory(container_id), _LOCK_FILE))
        try:
            lock.acquire()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise errdefs.NotFound(f"No such container: {container_id}") from exc
        return lock

    @contextmanager
    def modify(self, container_id: str, *, host_config: bool = False, durable: bool = True) -> Iterator[Container]:
        """Read-modify-write under the container's lock; the record is saved (when it changed)
        when the block ends without an exception (see :meth:`save` for ``durable``)."""
        lock = self.lock(container_id)
        try:
            container = self.get(container_id)
            before = json.dumps(container.data, sort_keys=True)
            before_host = json.dumps(container.host_config, sort_keys=True) if host_config else ""
            yield container
            host_changed = host_config and json.dumps(container.host_config, sort_keys=True) != before_host
            if host_changed or json.dumps(container.data, sort_keys=True) != before:
                self.save(container, host_config=host_changed, durable=durable)
        finally:
            lock.release()

    def rename(self, container_id: str, new_name: str) -> str:
        """Give the container ``new_name``; returns the old name."""
        name = validate_name(new_name)
        with fsutil.file_lock(self._names_lock):
            names = self._names()
            if names.get(name) not in (None, container_id):
                raise self._name_conflict(name, names)
            with self.modify(container_id) as container:
                old = container.name
                if old == name:
                    raise errdefs.InvalidArgument("Renaming a container with the same name as its current name")
                container.data["Name"] = name
        return old

    # -- removing ------------------------------------------------------------------------------

    def begin_removal(self, container_id: str) -> str:
        """Rename the record to ``<id>-removing`` (the commit point); returns that path."""
        directory = self.directory(container_id)
        removing = directory + _REMOVING
        try:
            os.rename(directory, removing)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"No such container: {container_id}") from exc
        fsutil.fsync_dir(self.root)
        return removing

    def removing(self) -> list[tuple[str, str]]:
        """(container id, path) of removals that did not finish."""
        out = []
        for name in os.listdir(self.root):
            if name.endswith(_REMOVING) and _is_id(name[:-len(_REMOVING)]):
                out.append((name[:-len(_REMOVING)], os.path.join(self.root, name)))
        return out

    def removal_in_progress(self, path: str) -> bool:
        """Whether another process is still removing (it holds the record's lock)."""
        return fsutil.lock_is_held(os.path.join(path, _LOCK_FILE))

    def sweep_temporary(self, min_age_seconds: float = 60.0) -> list[str]:
        """Remove creations that never reached their commit point (old enough not to be
        another process's creation in progress)."""
        done = []
        current = time.time()
        for name in os.listdir(self.root):
            if name.startswith(".tmp-"):
                path = os.path.join(self.root, name)
                try:
                    if current - os.lstat(path).st_mtime < min_age_seconds:
                        continue
                except FileNotFoundError:
                    continue
                fsutil.remove_tree(path)
                log.warning("removed interrupted container creation %s", name)
                done.append(f"removed interrupted container creation {name}")
        return done
