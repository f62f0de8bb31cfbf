"""The container name index: ``<data-root>/containers/.names/``, one symbolic link per name.

On disk, beside the records (:mod:`lamina.container.store`)::

    .names/<name>                 -> <id>   a container's name without its leading "/", a
                                            symbolic link to the container's id
    .names/#<sha256 of the name>  -> <id>   a name longer than 200 characters (a file name has
                                            at most 255 bytes; no name starts with "#")
    .names/.boot          -> <boot id>      the kernel's boot id (``/proc/sys/kernel/random/
                                            boot_id``) when the index was built
    .names.lock                   serialises every change of ``.names/`` across processes
    .names.json                   the single-file index of older lamina versions ({"Version": 1,
                                  "Containers": {"<id>": "/name"}}): never written any more;
                                  found, it means an older lamina created or renamed since the
                                  directory was built, and the next writer rebuilds it

Why a directory: the filesystem keeps it indexed, so a create's conflict check is one
``readlink`` (ENOENT: the name is free) and its claim one ``symlink(2)``, and a name lookup one
``readlink`` plus one record read, whatever the number of containers.  The single file it
replaces was read whole, checked against a listing of the containers directory and rewritten
whole by every create, under the lock: the cost of a create grew with the number of
containers.  Docker keeps its names in memory (its registrar), which a daemonless create (a
``lamina create`` beside a ``lamina serve``) cannot share.

The records stay the source of truth.  A link is *live* when its target's record exists and
has the link's name; any other link is *stale* and its name free: the claim of a create that
died before its commit point, the old name of a rename cut short, the name of a container
whose removal died before dropping it.  The next claim of a stale link's name replaces it and
``system check --repair`` removes it.  The invariant, kept under ``.names.lock``, is that the
index is *complete*: every record has a live link.  Hence the order of each writer (all under
``.names.lock``):

- create: claim the name (a ``symlink(2)``, after removing a stale link found there; Conflict
  when a live one is), then the record's commit point (the rename of its directory): a process
  that dies leaves at worst a stale claim, never a record without its link (which would let a
  second container take the name).
- rename (under the container's lock, taken first): claim the new name, change the record
  (synced), drop the old link.
- removal (the container's lock held): after its commit point (the rename to
  ``<id>-removing``), drop the link if it still names this container.  A
  container's lock is always taken before ``.names.lock``, never the other way round.
- rebuild (``.names/`` missing, not a directory, built in another boot, or ``.names.json``
  found; ``system check --repair``): a link for every record and ``.boot`` are written into a
  ``.tmp-<random>`` directory, synced and put in place of ``.names`` by renames;
  ``.names.json`` is removed last.  A crash in between leaves ``.names`` missing (the next
  writer rebuilds it) and a ``.tmp-`` directory (swept).

No link is synced: what a process wrote before it died stays in the kernel's view of the
filesystem, in the order it was written, until the host goes down; and an index built in
another boot (``.boot``) is not trusted but rebuilt from the records, which are synced, by the
first writer of this boot (a host crash may have kept a record and lost its link).  A claim
thus costs no fsync; without a boot id (no ``/proc``) claims are synced instead.

Readers never lock: a hit (a link whose record has the name) is the container; a miss is final
when the index is complete (``.names.json`` absent, checked before ``.names/`` is opened:
a rebuild removes it only after the new directory is in place), and otherwise the records are
read.  An entry no writer leaves (not a link, or a link to something else than a container
id) is damage: a reader that meets it reads the records, a writer rebuilds the index.  A link
lost or pointed at another container is not told from a stale one but by ``system check``:
like Docker's in-memory registrar, the index is trusted to say that a name is free.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from lamina import errdefs, fsutil
from lamina.digest import is_hex_id
from lamina.container.names import is_container_id, is_valid_name
from lamina.log import get_logger
from lamina.protocols import Protocol

__all__ = ["BOOT_MARKER", "DIRECTORY", "LEGACY_FILE", "LOCK_FILE", "NameIndex", "NamedRecords", "link_name"]

log = get_logger("lamina.container")

DIRECTORY = ".names"
LOCK_FILE = ".names.lock"
LEGACY_FILE = ".names.json"
BOOT_MARKER = ".boot"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_LONGEST_LITERAL = 200


class NamedRecords(Protocol):
    """What the index needs of the container store: its records' ids and names."""

    def ids(self) -> list[str]: ...

    def name_of(self, container_id: str) -> str | None:
        """The record's Name ("/name"; "" when it has none; None when gone or unreadable)."""
        ...


def link_name(name: str) -> str:
    """The entry of a (valid) container name in ``.names/``."""
    bare = name[1:] if name.startswith("/") else name
    if len(bare) <= _LONGEST_LITERAL:
        return bare
    import hashlib

    return "#" + hashlib.sha256(bare.encode()).hexdigest()


def _is_entry_name(entry: str) -> bool:
    """Whether ``entry`` is what :func:`link_name` makes of some name."""
    if entry.startswith("#"):
        return is_hex_id(entry[1:])
    return len(entry) <= _LONGEST_LITERAL and is_valid_name(entry) and not entry.startswith("/")


def conflict(name: str, owner: str) -> errdefs.Conflict:
    return errdefs.Conflict(
        f'Conflict. The container name "{name}" is already in use by container "{owner}". '
        f"You have to remove (or rename) that container to be able to reuse that name.")


class NameIndex:
    """``.names/`` of the container store at ``root``."""

    def __init__(self, root: str, records: NamedRecords) -> None:
        self.root = root
        self.records = records
        self.path = os.path.join(root, DIRECTORY)
        self.lock_path = os.path.join(root, LOCK_FILE)
        self.legacy_path = os.path.join(root, LEGACY_FILE)
        self._boot: str | None = None

    @property
    def boot(self) -> str:
        """This boot's id ("" when it cannot be read)."""
        if self._boot is None:
            try:
                with open(_BOOT_ID, encoding="ascii") as handle:
                    self._boot = handle.read().strip()
            except OSError:
                self._boot = ""
        return self._boot

    def _of_this_boot(self, directory_fd: int) -> bool:
        """Whether the index opened as ``directory_fd`` was built in this boot."""
        if not self.boot:
            return True  # its claims were synced
        try:
            return os.readlink(BOOT_MARKER, dir_fd=directory_fd) == self.boot
        except OSError:
            return False

    # -- readers ---------------------------------------------------------------------------

    def find(self, name: str) -> tuple[str | None, bool]:
        """(the id the link of ``name`` names, unverified: None when there is none; whether a
        miss is final, the index being complete)."""
        complete = not os.path.lexists(self.legacy_path)  # before the directory: see the module docstring
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None, False
        try:
            if not is_valid_name(name):
                return None, complete  # no container has it
            try:
                target = os.readlink(link_name(name), dir_fd=fd)
            except FileNotFoundError:
                return None, complete and self._of_this_boot(fd)
            except OSError:
                return None, False  # not a link: damage, which no writer leaves
        finally:
            os.close(fd)
        if not is_container_id(target):
            return None, False
        return target, complete

    def complete(self) -> bool:
        """Whether ``.names/`` is a directory built in this boot and no older lamina wrote
        ``.names.json``."""
        if os.path.lexists(self.legacy_path):
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return self._of_this_boot(fd)
        finally:
            os.close(fd)

    # -- writers (under .names.lock) ---------------------------------------------------------

    def start(self) -> None:
        """The empty index of a store just made."""
        with fsutil.file_lock(self.lock_path):
            if not self.complete():
                self.rebuild(durable=False)  # lost, it is built again

    @contextmanager
    def writing(self, *, complete: bool = True) -> Iterator[None]:
        """Hold ``.names.lock``; with ``complete``, the index is rebuilt first when it is not."""
        with fsutil.file_lock(self.lock_path):
            if complete and not self.complete():
                self.rebuild()
            yield

    def claim(self, name: str, container_id: str, *, durable: bool = True) -> None:
        """Link ``name`` to the container (in :meth:`writing`); Conflict when a live link gives
        it to another container.  ``durable``: synced when there is no boot id (see the module
        docstring)."""
        entry = os.path.join(self.path, link_name(name))
        rebuilt = False
        while True:
            try:
                os.symlink(container_id, entry)
                break
            except FileExistsError:
                try:
                    target = os.readlink(entry)
                except OSError:
                    target = ""
                if not is_container_id(target) and not rebuilt:
                    # no writer leaves this: the index is damaged, and may have lost the
                    # links of live names too
                    log.warning("the container name index %s holds a damaged entry %r; rebuilding it",
                                self.path, os.path.basename(entry))
                    self.rebuild()
                    rebuilt = True
                    continue
                if is_container_id(target) and self.records.name_of(target) == name:
                    if target != container_id:
                        raise conflict(name, target) from None
                    return  # linked already (an earlier claim of this container's)
                _remove_entry(entry)  # stale
            except OSError as exc:
                raise fsutil.system_error(f"claiming the container name {name}", exc) from exc
        if durable and not self.boot:
            try:
                fsutil.fsync_dir(self.path)
            except OSError as exc:
                raise fsutil.system_error(f"claiming the container name {name}", exc) from exc

    def release(self, name: str, container_id: str) -> None:
        """Drop the link of ``name`` if it names this container (in :meth:`writing`); not
        synced, and a failure is only logged: a link left behind is stale."""
        if not name or not is_valid_name(name):
            return
        entry = os.path.join(self.path, link_name(name))
        try:
            if os.readlink(entry) == container_id:
                os.unlink(entry)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not drop the container name link %s: %s", entry, exc)

    def _from_records(self) -> tuple[dict[str, str], list[str]]:
        """(entry -> id for every named record, problems: names that two records have)."""
        table: dict[str, str] = {}
        problems = []
        for container_id in sorted(self.records.ids()):
            name = self.records.name_of(container_id)
            if not name or not name.startswith("/") or not is_valid_name(name):
                continue
            entry = link_name(name)
            if entry in table:
                problems.append(f"containers {table[entry]} and {container_id} are both named {name!r}")
                continue
            table[entry] = container_id
        return table, problems

    def rebuild(self, *, durable: bool = True) -> int:
        """Write the index anew from the records (in :meth:`writing`, with ``complete=False``
        or from within it); returns the number of links."""
        table, _ = self._from_records()
        tmp = os.path.join(self.root, fsutil.temp_name())
        try:
            os.mkdir(tmp, 0o700)
            try:
                for entry, container_id in table.items():
                    os.symlink(container_id, os.path.join(tmp, entry))
                os.symlink(self.boot or "unknown", os.path.join(tmp, BOOT_MARKER))
                if durable:
                    fsutil.fsync_dir(tmp)
                old = os.path.join(self.root, fsutil.temp_name())
                try:
                    os.rename(self.path, old)
                except FileNotFoundError:
                    old = ""
                os.rename(tmp, self.path)
            except BaseException:
                fsutil.remove_tree(tmp)
                raise
            if durable:
                fsutil.fsync_dir(self.root)
            if old:
                fsutil.remove_tree(old)
            if os.path.lexists(self.legacy_path):
                os.unlink(self.legacy_path)
        except OSError as exc:
            raise fsutil.system_error("rebuilding the container name index", exc) from exc
        log.info("rebuilt the container name index %s (%d names)", self.path, len(table))
        return len(table)

    # -- checking ------------------------------------------------------------------------------

    def check(self, *, repair: bool = False) -> tuple[list[str], list[str]]:
        """(problems, repairs): the links against the records; ``repair`` rebuilds the index.

        A ``.names`` that is not a directory, an entry that is not a link to a container id
        under a name's entry, a named record whose link is missing or names another container
        of a complete index, and two records with one name are problems; stale links are
        not (the next claim of their name replaces them), nor is an index not built yet or
        left behind by an older lamina (the next writer rebuilds it), but ``repair`` rebuilds
        it all the same."""
        with fsutil.file_lock(self.lock_path):
            expected, problems = self._from_records()
            try:
                kind = os.lstat(self.path).st_mode
            except FileNotFoundError:
                kind = None
            actual: dict[str, str] = {}
            damaged = set()
            untidy = not self.complete()
            if kind is not None and not stat.S_ISDIR(kind):
                problems.append(f"the container name index {self.path} is not a directory")
            elif kind is not None:
                for entry in sorted(os.listdir(self.path)):
                    if entry == BOOT_MARKER:
                        continue  # another boot's: rebuilt by the next writer (not a problem)
                    try:
                        target = os.readlink(os.path.join(self.path, entry))
                    except OSError:
                        target = ""
                    if not _is_entry_name(entry) or not is_container_id(target):
                        problems.append(f"the container name index holds {entry!r}, which is not a "
                                        f"link from a name to a container id")
                        damaged.add(entry)
                        continue
                    actual[entry] = target
                if not untidy:
                    for entry, container_id in sorted(expected.items()):
                        found = actual.get(entry)
                        if found is None and entry not in damaged:
                            problems.append(f"the container name index lacks the name of {container_id}")
                        elif found is not None and found != container_id:
                            problems.append(f"the container name index gives the name of {container_id} "
                                            f"to {found}")
                untidy = untidy or actual != expected
            repairs = []
            if repair and (problems or untidy):
                repairs.append(f"rebuilt the container name index ({self.rebuild()} containers)")
            return problems, repairs


def _remove_entry(entry: str) -> None:
    """Remove a stale or damaged entry (a link, or anything else a damage left there)."""
    try:
        os.unlink(entry)
    except IsADirectoryError:
        fsutil.remove_tree(entry)
    except FileNotFoundError:
        pass
