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
    .names/<name> -> <id>   the name index: one symbolic link per name (:mod:`.nameindex`)
    .names.lock             serialises the name index's changes (create, rename, removal)
    .list.json              the listing index: {"Version": 1, "Containers": {"<id>": {"Key": [st_ino,
                            st_size, st_mtime_ns, st_ctime_ns of config.v2.json], "Container": {the
                            record's listed fields}, "HostConfig": {"NetworkMode": ..., "Links": [...]}}}}
    .list.lock              taken (without waiting) by the process that rewrites .list.json

Every file is written tmp -> fsync -> rename -> fsync(dir), but for states a crash may lose
without harm (written atomically, not synced): ``RemovalInProgress`` just before a removal's
commit point, and the whole life of a ``--rm`` container, which is disposable: its create (the
record, its init and read-write layers: :mod:`lamina.layer.mounts`), its start, its exit and
its removal.  After a host crash such a container is gone, still "created", "running" or
"exited", or left with empty files (the rename reached the disk, the data did not); ``system
boot`` (run from the host's boot sequence) removes every one of them, as dockerd removes the
``--rm`` containers it finds at its start (:func:`lamina.container.removal.left_by_a_reboot`).
:meth:`ContainerStore.get` calls a record with empty files damaged (DataLoss, skipped by
listings with a warning), ``rm`` removes it, and ``system check`` reports it
(:meth:`ContainerStore.cut_short`) and ``--repair`` removes it.

Commit points: a container exists from the rename of its fully written ``.tmp-<random>``
directory to ``<id>`` (done under ``.names.lock``, once its name's link is claimed); it
stops existing at the rename of ``<id>`` to ``<id>-removing`` (its link is dropped
after).  Readers never lock: every file is replaced whole.

The name index (``.names/``, :mod:`lamina.container.nameindex`) makes a create's conflict check,
its claim of the name and a name lookup each cost a few system calls whatever the number of
containers.  The records stay the source of truth: a link is trusted only when the record it
names has the name, and a link whose record does not is stale (its name free).  Links are not
synced: an index built in another boot is not trusted.  Missing, not a directory, of another
boot, or left beside a ``.names.json`` (the single-file index of older lamina versions, which
an older lamina writing here would rewrite), it is rebuilt from the records by the next
writer, and readers read the records meanwhile; ``system check`` compares it with the records
and ``--repair`` rebuilds it.

The listing index (``.list.json``) lets ``ps`` read one file instead of two per container:
:meth:`ContainerStore.listing` stats each record's ``config.v2.json`` and takes the entry whose
``Key`` matches, reading (and re-indexing) the record otherwise.  It is a cache checked entry by
entry, so it needs no commit point of its own: a record is rewritten only by replacing its
files (``hostconfig.json`` only by :meth:`ContainerStore.save`, always followed by
``config.v2.json``), every replacement changes the key, and an entry is made from the same open
file its key was taken from (``fstat``), ``hostconfig.json`` read after it.  Only settled records
are indexed (see below: a rewrite within one timestamp tick could reuse an inode with the same
size and times).  A listing that found 16 entries (or a 16th of them) outdated or missing
writes the index back, atomically and not synced, when ``.list.lock`` is free (a reader never
waits); missing, damaged or of another version it is rebuilt that way.  ``system check`` compares every entry
whose key is current with its record, and ``--repair`` rewrites it.

:meth:`ContainerStore.list` keeps the records it parsed in memory (a long-lived ``lamina
serve`` lists without re-reading them), keyed by the inode, size and times of both files; a
record whose files changed within the last second is re-read every time (a rewrite within one
timestamp tick would keep the key), as git treats a "racily clean" index entry.

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

from lamina import errdefs, fsutil
from lamina.container.listing import FileKey, ListingIndex, file_key, listed_fields
from lamina.container.nameindex import NameIndex
from lamina.container.names import is_container_id, validate_name
from lamina.log import get_logger
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.container.listing import Listed

__all__ = ["CONFIG_FILE", "HOST_CONFIG_FILE", "Container", "ContainerStore", "new_container_id"]

log = get_logger("lamina.container")

CONFIG_FILE = "config.v2.json"
HOST_CONFIG_FILE = "hostconfig.json"
_LOCK_FILE = "lock"
_REMOVING = "-removing"
# a listing rewrites the listing index once this many of its entries (or a 16th) were outdated
_OUTDATED_WORTH_WRITING = 16
# a record whose files changed more recently than this is not cached (see the module docstring)

_StatKey = tuple[int, int, int, int, int, int, int, int]


def new_container_id() -> str:
    while True:
        candidate = os.urandom(32).hex()  # what secrets.token_hex(32) does, without its imports
        if not candidate[:12].isdigit():
            return candidate


def _write_synced(path: str, value: Any, durable: bool = True) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        data = json.dumps(value, separators=(",", ":")).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _name_in(directory: str) -> str | None:
    """The Name in the record in ``directory`` (None: gone or unreadable)."""
    try:
        with open(os.path.join(directory, CONFIG_FILE), "rb") as handle:
            name = json.load(handle).get("Name")
    except (OSError, ValueError, AttributeError):
        return None
    return str(name or "")


def _write_json(path: str, value: Any) -> None:
    fsutil.atomic_write_json(path, value, mode=0o600)


def _replace_json(path: str, value: Any) -> None:
    fsutil.atomic_replace(path, json.dumps(value, separators=(",", ":")), 0o600)


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
        self._names = NameIndex(root, self)
        try:
            os.makedirs(root, mode=0o711)
        except FileExistsError:
            pass
        else:
            self._names.start()  # a new store: its index is complete while empty
        self._records: dict[str, tuple[_StatKey, Container]] = {}
        self._listing = ListingIndex(root)

    # -- paths ---------------------------------------------------------------------------------

    def directory(self, container_id: str) -> str:
        if not is_container_id(container_id):
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
        return [name for name in names if is_container_id(name)]

    def exists(self, container_id: str) -> bool:
        return is_container_id(container_id) and os.path.isfile(os.path.join(self.root, container_id, CONFIG_FILE))

    def get(self, container_id: str) -> Container:
        """The record of the container with this full id."""
        return self._read(container_id)[1]

    def _read(self, container_id: str) -> tuple[FileKey, Container]:
        """The record, and the key of the config.v2.json it was read from."""
        directory = self.directory(container_id)
        try:
            with open(os.path.join(directory, CONFIG_FILE), "rb") as handle:
                key = file_key(os.fstat(handle.fileno()))
                data = json.load(handle)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise errdefs.NotFound(f"No such container: {container_id}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise errdefs.DataLoss(f"container {container_id}: {CONFIG_FILE} is damaged: {exc}") from exc
        try:
            host_config = fsutil.read_json(os.path.join(directory, HOST_CONFIG_FILE))
        except FileNotFoundError:
            host_config = {}
        except ValueError as exc:
            raise errdefs.DataLoss(f"container {container_id}: {HOST_CONFIG_FILE} is damaged: {exc}") from exc
        if not isinstance(data, dict) or data.get("ID") != container_id:
            raise errdefs.DataLoss(f"container {container_id}: {CONFIG_FILE} does not describe it")
        return key, Container(data, host_config if isinstance(host_config, dict) else {})

    def _stat_key(self, container_id: str) -> tuple[_StatKey, bool] | None:
        """The key of the record's two files and whether it is settled (None: gone)."""
        directory = os.path.join(self.root, container_id)
        try:
            config = os.stat(os.path.join(directory, CONFIG_FILE))
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            host = os.stat(os.path.join(directory, HOST_CONFIG_FILE))
            host_key = (host.st_ino, host.st_size, host.st_mtime_ns, host.st_ctime_ns)
        except FileNotFoundError:
            host_key = (0, 0, 0, 0)
        newest = max(config.st_mtime_ns, host_key[2])  # when their content was written
        settled = time.time_ns() - newest > fsutil.SETTLED_NANOSECONDS
        return (config.st_ino, config.st_size, config.st_mtime_ns, config.st_ctime_ns, *host_key), settled

    def list(self) -> list[Container]:
        """Every readable container (damaged or vanishing records are skipped with a warning).

        The records may be shared with other callers of ``list`` (see the module docstring):
        read them, and change a container through :meth:`modify` only."""
        out = []
        present = self.ids()
        for container_id in present:
            key = self._stat_key(container_id)
            if key is None:
                continue  # removed meanwhile
            cached = self._records.get(container_id)
            if cached is not None and cached[0] == key[0]:
                out.append(cached[1])
                continue
            try:
                container = self.get(container_id)
            except errdefs.NotFound:
                continue  # removed meanwhile
            except errdefs.DataLoss as exc:
                log.warning("skipping container %s: %s", container_id, exc)
                continue
            if key[1]:
                self._records[container_id] = (key[0], container)
            else:
                self._records.pop(container_id, None)
            out.append(container)
        if len(self._records) > len(present):
            for gone in set(self._records) - set(present):
                self._records.pop(gone, None)
        return out

    # -- the listing index ----------------------------------------------------------------------

    def listing(self) -> list[Container]:
        """Every readable container cut to the fields a listing shows and filters on
        (:data:`lamina.container.listing.LISTED`),
        from the listing index where its entries are current (see the module docstring).

        The records are shared with other callers: read them only; :meth:`get` reads a whole one."""
        indexed, damage = self._listing.load()
        if damage:
            log.warning("the container listing index %s %s; rebuilding it", self._listing.path, damage)
        kept: dict[str, Listed] = {}
        out = []
        outdated = 0  # entries re-read (settled) or dropped: what a rewrite would save the next listing
        covered = 0  # present containers the index has an entry for, current or not
        settled_before = time.time_ns() - fsutil.SETTLED_NANOSECONDS
        for container_id in self.ids():
            try:
                key = file_key(os.stat(os.path.join(self.root, container_id, CONFIG_FILE)))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile (or a directory left by an interrupted removal)
            entry = indexed.get(container_id)
            covered += entry is not None
            if entry is None or entry[0] != key:
                try:
                    read_key, container = self._read(container_id)
                except errdefs.NotFound:
                    continue
                except errdefs.DataLoss as exc:
                    log.warning("skipping container %s: %s", container_id, exc)
                    continue
                entry = (read_key, *listed_fields(container.data, container.host_config))
                if read_key[2] >= settled_before:
                    out.append(Container(entry[1], entry[2]))
                    continue
                outdated += 1
            kept[container_id] = entry
            out.append(Container(entry[1], entry[2]))
        outdated += len(indexed) - covered  # entries of removed containers
        if damage or outdated >= min(_OUTDATED_WORTH_WRITING, len(kept) // 16 + 1):
            self._listing.write(kept)
        return out

    def _check_listing(self, *, repair: bool) -> tuple[list[str], list[str]]:
        """(problems, repairs) of the listing index: see :meth:`check_index`."""
        self._listing.forget()
        indexed, damage = self._listing.load()
        problems = [f"the container listing index {damage}"] if damage else []
        for container_id, (key, data, host) in sorted(indexed.items()):
            try:
                read_key, container = self._read(container_id)
            except (errdefs.NotFound, errdefs.DataLoss):
                continue  # a removed container's entry is dropped by the next listing
            if read_key == key and (data, host) != listed_fields(container.data, container.host_config):
                problems.append(f"the container listing index describes {container_id} otherwise than its record")
        repairs = []
        if repair and problems:
            entries: dict[str, Listed] = {}
            for container_id in self.ids():
                try:
                    read_key, container = self._read(container_id)
                except (errdefs.NotFound, errdefs.DataLoss):
                    continue
                entries[container_id] = (read_key, *listed_fields(container.data, container.host_config))
            if self._listing.write(entries, wait=True):
                repairs.append(f"rebuilt the container listing index ({len(entries)} containers)")
        return problems, repairs

    # -- the name index (lamina.container.nameindex) --------------------------------------------

    def name_of(self, container_id: str) -> str | None:
        """The Name in the record (None: gone or unreadable)."""
        return _name_in(os.path.join(self.root, container_id))

    def check_index(self, *, repair: bool = False) -> tuple[list[str], list[str]]:
        """(problems, repairs): the name and listing indexes against the records; ``repair``
        rewrites them (see :meth:`NameIndex.check` and :meth:`_check_listing` for what is a
        problem)."""
        listing_problems, listing_repairs = self._check_listing(repair=repair)
        problems, repairs = self._names.check(repair=repair)
        return problems + listing_problems, repairs + listing_repairs

    def lookup(self, reference: str) -> Container:
        """The container named by full id, name ("x" or "/x") or unique id prefix."""
        if not reference:
            raise errdefs.InvalidArgument("Prefix can't be empty")
        if is_container_id(reference):
            try:
                return self.get(reference)
            except errdefs.NotFound:
                pass
        wanted = reference if reference.startswith("/") else "/" + reference
        owner, complete = self._names.find(wanted)
        if owner is not None:
            # names are unique: a record that has the name is the container (a link is
            # checked against the record it names, never trusted)
            try:
                container = self.get(owner)
                if container.name == wanted:
                    return container
            except (errdefs.NotFound, errdefs.DataLoss):
                pass
        if not complete:
            # not built yet, or an older lamina wrote since: the records answer, and the
            # index is rebuilt when nobody holds its lock (a reader never waits)
            found = next((container_id for container_id in self.ids() if self.name_of(container_id) == wanted),
                         None)
            self._rebuild_names_if_free()
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

    def _rebuild_names_if_free(self) -> None:
        lock = fsutil.FileLock(self._names.lock_path)
        try:
            if not lock.try_acquire():
                return
        except OSError as exc:
            log.warning("could not lock the container name index: %s", exc)
            return
        try:
            if not self._names.complete():
                self._names.rebuild()
        except errdefs.LaminaError as exc:
            log.warning("%s", exc)
        finally:
            lock.release()

    # -- writing -------------------------------------------------------------------------------

    def create(self, container: Container, *, durable: bool = True) -> None:
        """Publish a new record (its name must be free); the commit point is one rename.
        ``durable=False``: a disposable (``--rm``) container's, nothing synced (see the module
        docstring)."""
        container_id = container.id
        final = self.directory(container_id)
        name = validate_name(container.name)
        tmp = os.path.join(self.root, fsutil.temp_name())
        os.mkdir(tmp, 0o700)
        try:
            # a fresh directory published by one rename: each file needs its data synced, not
            # a rename of its own
            _write_synced(os.path.join(tmp, HOST_CONFIG_FILE), container.host_config, durable)
            _write_synced(os.path.join(tmp, CONFIG_FILE), container.data, durable)
            with self._names.writing():
                # the name's link first (synced): no crash leaves the record without it
                self._names.claim(name, container_id, durable=durable)
                try:
                    fsutil.publish_dir(tmp, final, durable=durable)
                except BaseException:
                    if not os.path.isdir(final):  # failed before its commit point
                        self._names.release(name, container_id)
                    raise
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
        """Give the container ``new_name``; returns the old name.  The container's lock is
        taken before ``.names.lock`` (the order of every writer: see :mod:`.nameindex`)."""
        name = validate_name(new_name)
        lock = self.lock(container_id)
        try:
            container = self.get(container_id)
            old = container.name
            with self._names.writing():
                # the new name's link (synced) before the record changes, the old one dropped
                # after: a crash leaves a stale link, never a record without its name's link
                self._names.claim(name, container_id)
                if old == name:
                    raise errdefs.InvalidArgument("Renaming a container with the same name as its current name")
                container.data["Name"] = name
                self.save(container)  # failing, it leaves a stale link or the record renamed
                self._names.release(old, container_id)
        finally:
            lock.release()
        return old

    # -- removing ------------------------------------------------------------------------------

    def begin_removal(self, container_id: str, *, durable: bool = True) -> str:
        """Rename the record to ``<id>-removing`` (the commit point); returns that path.
        ``durable=False``: a ``--rm`` container's, not synced (after a host crash it may be
        back, in whatever state last reached the disk: see the module docstring)."""
        directory = self.directory(container_id)
        removing = directory + _REMOVING
        try:
            os.rename(directory, removing)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"No such container: {container_id}") from exc
        if durable:
            fsutil.fsync_dir(self.root)
        name = _name_in(removing)
        if name:
            # the caller holds the container's lock: taken before .names.lock, as rename does
            with self._names.writing(complete=False):
                self._names.release(name, container_id)
        return removing

    def removing(self) -> list[tuple[str, str]]:
        """(container id, path) of removals that did not finish."""
        out = []
        for name in os.listdir(self.root):
            if name.endswith(_REMOVING) and is_container_id(name[:-len(_REMOVING)]):
                out.append((name[:-len(_REMOVING)], os.path.join(self.root, name)))
        return out

    def removal_in_progress(self, path: str) -> bool:
        """Whether another process is still removing (it holds the record's lock)."""
        return fsutil.lock_is_held(os.path.join(path, _LOCK_FILE))

    def cut_short(self) -> list[str]:
        """Ids of records with an empty ``config.v2.json`` or ``hostconfig.json``: a ``--rm``
        create (not synced) that a host crash cut short.  No writer publishes an empty file (each
        is written whole before its rename), so nothing else looks like this."""
        out = []
        for container_id in self.ids():
            directory = self.directory(container_id)
            for name in (CONFIG_FILE, HOST_CONFIG_FILE):
                try:
                    empty = os.lstat(os.path.join(directory, name)).st_size == 0
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if empty:
                    out.append(container_id)
                    break
        return out

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
