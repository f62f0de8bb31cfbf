"""Chowned copies of layers for ``--userns-remap`` where idmapped mounts are missing.

Docker keeps a copy of every layer per remap root, every file's owner shifted into the
range, under ``<data-root>/<uid>.<gid>/``.  lamina makes such a copy only where a remapped
container cannot see a layer through an idmapped mount (:mod:`lamina.idmap`: an old kernel, a
data root whose filesystem refuses ``MOUNT_ATTR_IDMAP``, or ``--userns-remap-layers copy``),
only of the layers such a container stacks (its image's layers and its own init layer), and
only when it is first mounted: a container created and never started costs nothing, and a
copy removed by ``system check --repair`` is made again by the next mount.  The layers under
``<data-root>/<driver>/`` are never changed.

On-disk format, under ``<home>`` = ``<data-root>/<uid>.<gid>/<driver>/`` (``<uid>.<gid>``: the
host ids of the container's root)::

    <home>/<cache-id>/diff        the layer's diff directory, copied with every owner shifted
                                  (uid u -> the mapping's host id of u); modes, xattrs (opaque
                                  markers ``trusted.overlay.opaque``/``user.overlay.opaque``
                                  included), times, hardlinks, whiteout devices (0/0) and holes
                                  as in the layer
    <home>/<cache-id>/link        the layer's short id (overlay2's ``link`` file, copied)
    <home>/<cache-id>/size        bytes of the copy's files, decimal (``system df``; apparent
                                  sizes, hardlinks once, as :func:`lamina.fsutil.disk_usage`)
    <home>/l/<short-id>           symlink ``../<cache-id>/diff``: the layer's own short id, so a
                                  mount's ``lowerdir=l/...`` option is the same string as without
                                  copies, read from ``<home>`` instead of the driver's directory
    <home>/.lock                  ``flock``-ed while a copy is made (and by a sweep)

Commit point: a copy is built in ``<home>/<cache-id>-incomplete/``, the filesystem synced
(``syncfs``, as a layer is before its record is published), its short link made, and the
directory renamed to ``<home>/<cache-id>``.  A removal renames it to ``<cache-id>-removing``
first.  A crash leaves ``-incomplete`` or ``-removing`` directories and short links pointing
nowhere: the next copy of that layer, the start-up sweep and ``system check --repair`` remove
them (the sweep only while no copy is being made, by the lock).  A copy whose layer is gone,
or that lost its diff directory or short link, is reported by ``system check`` and removed by
``--repair`` (a copy is a cache: the next mount makes it again, and relinks a copy whose
short link alone is missing); a layer's removal removes its copies first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina import fsutil
from lamina.graphdriver import common
from lamina.graphdriver.common import remap_homes  # where overlay2 finds the copies without importing this module

if TYPE_CHECKING:
    from lamina.idmap import IdentityMapping

__all__ = ["RemapCopies", "copies_home", "remap_homes", "copies_size", "LINK_DIR"]

LINK_DIR = "l"
_LOCK = ".lock"


def copies_home(data_root: str, mapping: IdentityMapping, driver_name: str) -> str:
    """``<data-root>/<uid>.<gid>/<driver>`` for the mapping's root."""
    uid, gid = mapping.root_pair()
    return os.path.join(data_root, f"{uid}.{gid}", driver_name)


def copies_size(data_root: str, driver_name: str) -> int:
    """Bytes on disk of every copy of ``driver_name``'s layers (their ``size`` files: no walk)."""
    total = 0
    for home in remap_homes(data_root, driver_name):
        for id in common.layer_ids(home, (LINK_DIR,)):
            try:
                with open(os.path.join(home, id, "size"), encoding="ascii") as handle:
                    total += int(handle.read().strip() or 0)
            except (OSError, ValueError):
                continue
    return total



class RemapCopies:
    """The copies of one driver's layers for one remap root: ``<data-root>/<uid>.<gid>/<driver>``."""

    def __init__(self, home: str) -> None:
        self.home = home

    @classmethod
    def of(cls, data_root: str, mapping: IdentityMapping, driver_name: str) -> RemapCopies:
        return cls(copies_home(data_root, mapping, driver_name))

    def path(self, id: str) -> str:
        common.validate_id(id)
        if id == LINK_DIR:
            raise errdefs.InvalidArgument(f"invalid layer id {id!r}")
        return os.path.join(self.home, id)

    def diff_path(self, id: str) -> str:
        return os.path.join(self.path(id), "diff")

    def ensure(self, id: str, source: str, short_id: str, mapping: IdentityMapping) -> str:
        """The copy of layer ``id`` (its diff directory ``source``), made now if missing;
        returns the copy's diff directory.  An owner outside ``mapping`` is InvalidArgument
        naming the file and the range."""
        final = self.path(id)
        if os.path.isdir(final) and self._linked(id, short_id):
            return os.path.join(final, "diff")
        try:
            fsutil.make_dirs(os.path.dirname(self.home), 0o711)
            fsutil.make_dirs(self.home, 0o710)
            fsutil.make_dirs(os.path.join(self.home, LINK_DIR), 0o710)
            lock = fsutil.FileLock(os.path.join(self.home, _LOCK))
            lock.acquire()
        except OSError as exc:
            raise fsutil.system_error(f"open the layer copies in {self.home}", exc) from exc
        try:
            if not os.path.isdir(final):  # not made by another process meanwhile
                self._copy(id, final, source, short_id, mapping)
            elif not self._linked(id, short_id):  # a link lost (a crash between two removals)
                self._link(id, short_id)
        finally:
            lock.release()
        return os.path.join(final, "diff")

    def _linked(self, id: str, short_id: str) -> bool:
        try:
            return os.readlink(os.path.join(self.home, LINK_DIR, short_id)) == f"../{id}/diff"
        except OSError:
            return False

    def _link(self, id: str, short_id: str) -> None:
        """``l/<short_id>`` -> ``../<id>/diff``, replacing what was there."""
        link = os.path.join(self.home, LINK_DIR, short_id)
        try:
            try:
                os.unlink(link)  # a crash's link, or one to a copy removed meanwhile
            except FileNotFoundError:
                pass
            os.symlink(f"../{id}/diff", link)
            fsutil.fsync_dir(os.path.dirname(link))
        except OSError as exc:
            raise fsutil.system_error(f"link the --userns-remap copy of layer {id}", exc) from exc

    def _copy(self, id: str, final: str, source: str, short_id: str, mapping: IdentityMapping) -> None:
        from lamina.archive.changes import UnmappedOwner, copy_tree

        work_in_progress = final + common.INCOMPLETE_SUFFIX
        try:
            fsutil.remove_tree(work_in_progress)  # a crash's, under the lock: no copier runs
            os.mkdir(work_in_progress, 0o710)
            diff = os.path.join(work_in_progress, "diff")
            copy_tree(source, diff, owner=mapping.to_host)
            _write(os.path.join(work_in_progress, "link"), short_id)
            _write(os.path.join(work_in_progress, "size"), str(fsutil.disk_usage(diff)))
            fsutil.syncfs(work_in_progress)
            self._link(id, short_id)
            fsutil.publish_dir(work_in_progress, final)  # the commit point
        except UnmappedOwner as exc:
            fsutil.remove_tree(work_in_progress)
            uids, gids = mapping.size()
            raise errdefs.InvalidArgument(
                f"cannot copy layer {id} for --userns-remap: its file /{exc.path} is owned by uid {exc.uid} gid "
                f"{exc.gid}, outside the range of {uids} uids and {gids} gids") from exc
        except BaseException as exc:
            fsutil.remove_tree(work_in_progress)
            if not os.path.isdir(final) and self._linked(id, short_id):
                os.unlink(os.path.join(self.home, LINK_DIR, short_id))  # made just before the rename failed
            if isinstance(exc, OSError):
                raise fsutil.system_error(f"copy layer {id} for --userns-remap into {self.home}", exc) from exc
            raise
        common.logger.info("made the --userns-remap copy of layer %s in %s", id, self.home)

    def remove(self, id: str) -> None:
        """Remove the copy of layer ``id`` and its short link; missing is fine.  Commit point:
        the rename to ``-removing``."""
        final = self.path(id)
        if not os.path.lexists(final):
            return
        common.remove_by_rename(final, self.home, f"the --userns-remap copy of layer {id}",
                                lambda removing: self._remove_link(removing, id))

    def _remove_link(self, copy_dir: str, id: str) -> None:
        try:
            with open(os.path.join(copy_dir, "link"), encoding="ascii") as handle:
                link = os.path.join(self.home, LINK_DIR, handle.read().strip())
            if os.readlink(link) == f"../{id}/diff":
                os.unlink(link)
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # no link file, or the link is another's: the sweep finds stranded links

    def ids(self) -> list[str]:
        try:
            return common.layer_ids(self.home, (LINK_DIR,))
        except FileNotFoundError:
            return []

    def leftovers(self) -> list[str]:
        return [os.path.join(self.home, name) for name in common.list_leftovers(self.home)]

    def _damage(self, id: str, short_id: Callable[[str], str | None]) -> str | None:
        """Why the copy of ``id`` cannot be used (None: it can); ``short_id`` gives a layer's
        short id, None when the layer is gone."""
        layer_short_id = short_id(id)
        if layer_short_id is None:
            return "its layer is gone"
        if not os.path.isdir(os.path.join(self.home, id, "diff")):
            return "its diff directory is missing"
        if not self._linked(id, layer_short_id):
            return f"its short link l/{layer_short_id} is missing"
        return None

    def check(self, short_id: Callable[[str], str | None]) -> list[str]:
        """Problems: copies whose layer is gone, copies without their diff directory or short
        link, broken short links, work in progress left by a crash; ``short_id`` gives a
        layer's short id, None when the layer is gone."""
        problems = []
        where = os.path.relpath(self.home, os.path.dirname(os.path.dirname(self.home)))
        for id in self.ids():
            damage = self._damage(id, short_id)
            if damage is not None:
                problems.append(f"--userns-remap copy {where}/{id}: {damage} (--repair removes it)")
        for name, target in self._links():
            if not os.path.isdir(os.path.join(self.home, LINK_DIR, name)):
                problems.append(f"--userns-remap copies {where}: short link l/{name} is broken (points to {target!r})")
        for path in self.leftovers():
            problems.append(f"--userns-remap copies {where}: leftover work in progress {os.path.basename(path)}")
        return problems

    def _links(self) -> list[tuple[str, str]]:
        directory = os.path.join(self.home, LINK_DIR)
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append((name, os.readlink(os.path.join(directory, name))))
            except OSError:
                continue
        return out

    def sweep(self, short_id: Callable[[str], str | None]) -> list[str]:
        """Remove work in progress, copies that :meth:`check` finds damaged or whose layer is
        gone (a later mount makes them again) and stranded short links; nothing while a copy
        is being made (its lock is held).  Returns what it removed."""
        if not os.path.isdir(self.home):
            return []
        lock = fsutil.FileLock(os.path.join(self.home, _LOCK))
        if not lock.try_acquire():
            return []
        try:
            removed = [os.path.join(self.home, name) for name in common.sweep_leftovers(self.home)]
            # links of copies a crash left unpublished, or whose removal it interrupted
            removed.extend(os.path.join(self.home, name) for name in common.sweep_stranded_links(self.home, LINK_DIR))
            for id in self.ids():
                damage = self._damage(id, short_id)
                if damage is not None:
                    common.logger.warning("removing the --userns-remap copy %s: %s", os.path.join(self.home, id), damage)
                    self.remove(id)
                    removed.append(os.path.join(self.home, id))
        finally:
            lock.release()
        return removed


def _write(path: str, text: str) -> None:
    """A file of a directory not yet published: synced by the ``syncfs`` before the rename."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)
