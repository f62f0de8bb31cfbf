"""The vfs graph driver: every layer is a full copy of its tree; works on any filesystem.

On-disk format (``home`` is ``<data-root>/vfs``), Docker's::

    <home>/dir/<id>/      the complete tree of layer ``id`` (its parent's tree copied, then the
                          layer's tar applied with whiteouts deleting what they name)

Nothing records the parent: diffs are always naive (:mod:`lamina.graphdriver.naivediff`),
comparing a layer's tree with the tree of the parent named by the caller.

``--userns-remap``: vfs layers cannot be idmapped, so a remapped container's read-write layer
is created as a copy of its parent with every owner shifted into the mapping
(``create(..., idmap=mapping)``): the container's tree is a copy anyway, and no layer is copied
for the remap root (nothing under ``<data-root>/<uid>.<gid>/``).  Its diffs translate the host
ids back before comparing them with the parent's.

Commit points: :meth:`VfsDriver.create` copies the parent into ``dir/<id>-incomplete`` and
renames it to ``dir/<id>``; :meth:`VfsDriver.remove` renames ``dir/<id>`` to
``dir/<id>-removing`` before deleting it.  :meth:`VfsDriver.sweep` removes leftovers of both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina import fsutil
from lamina import mount as lmount
from lamina.graphdriver import common
from lamina.mount import Mount

if TYPE_CHECKING:
    from lamina.archive import Change
    from lamina.graphdriver.api import TarReaderLike
    from lamina.graphdriver.naivediff import NaiveDiff
    from lamina.idmap import IdentityMapping

__all__ = ["VfsDriver", "probe"]


def probe(home: str) -> str | None:
    """Why vfs cannot be used with ``home`` (it cannot be created or written), or None."""
    try:
        common.remove_probe(common.probe_directory(home))
    except OSError as exc:
        return f"cannot create or write {home}: {exc.strerror}"
    return None


class VfsDriver(common.LayerDirectories):
    """vfs on ``home``; see the module docstring for the layout."""

    name = "vfs"

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(home)
        self._layers = os.path.join(self.home, "dir")
        try:
            fsutil.make_dirs(self.home, 0o710)
            fsutil.make_dirs(self._layers, 0o710)
        except OSError as exc:
            raise fsutil.system_error(f"create vfs directory {self.home}", exc) from exc
        self._naive_diff: NaiveDiff | None = None  # made on the first diff

    probe = staticmethod(probe)  # the registry asks the class

    @property
    def _naive(self) -> NaiveDiff:
        """Diffs by tree comparison, vfs's only kind (imported on first use: listing and
        inspecting diff nothing)."""
        if self._naive_diff is None:
            from lamina.graphdriver.naivediff import NaiveDiff

            self._naive_diff = NaiveDiff(self)
        return self._naive_diff

    @classmethod
    def holds_layers(cls, home: str) -> bool:
        return common.holds_layers(os.path.join(home, "dir"))

    def _dir(self, id: str) -> str:
        return os.path.join(self._layers, common.validate_id(id))

    def _existing_dir(self, id: str) -> str:
        path = self._dir(id)
        if not os.path.isdir(path):
            raise errdefs.NotFound(f"vfs layer {id} does not exist")
        return path

    # -- ProtoDriver ----------------------------------------------------------------------

    def create(self, id: str, parent: str | None, *, read_write: bool = False,
               idmap: IdentityMapping | None = None, durable: bool = True) -> None:
        """Copy the parent's tree (or make an empty one); commit point: rename of ``-incomplete``.
        ``idmap``: every owner is shifted into the mapping while copying (an owner outside it is
        InvalidArgument naming the file and the range)."""
        final = self._dir(id)
        if os.path.lexists(final):
            raise errdefs.AlreadyExists(f"vfs layer {id} exists already")
        parent_dir = self._existing_dir(parent) if parent is not None else None
        work_in_progress = final + common.INCOMPLETE_SUFFIX
        try:
            fsutil.remove_tree(work_in_progress)
            if parent_dir is None:
                os.mkdir(work_in_progress, 0o755)
            else:
                # the tar and copy code: only when used
                from lamina.archive.changes import UnmappedOwner, copy_tree

                try:
                    copy_tree(parent_dir, work_in_progress, owner=idmap.to_host if idmap is not None else None)
                except UnmappedOwner as exc:
                    assert idmap is not None
                    uids, gids = idmap.size()
                    raise errdefs.InvalidArgument(
                        f"cannot copy vfs layer {parent} for --userns-remap: its file /{exc.path} is owned by uid "
                        f"{exc.uid} gid {exc.gid}, outside the range of {uids} uids and {gids} gids") from exc
            fsutil.publish_dir(work_in_progress, final, durable=durable)
        except BaseException as exc:
            fsutil.remove_tree(work_in_progress)
            if isinstance(exc, OSError):
                raise fsutil.system_error(f"create vfs layer {id}", exc) from exc
            raise

    def remove(self, id: str) -> None:
        layer_dir = self._dir(id)
        if not os.path.lexists(layer_dir):
            return
        lmount.unmount_all_under(layer_dir)
        common.remove_by_rename(layer_dir, self._layers, f"vfs layer {id}")

    def list_ids(self) -> list[str]:
        return common.layer_ids(self._layers)

    def mounts(self, id: str) -> list[Mount]:
        return [Mount(type="bind", source=self._existing_dir(id), options=("bind",))]

    def get(self, id: str, *, volatile: bool = False, idmap: IdentityMapping | None = None,
            copies: bool = False) -> str:
        """The layer directory itself: vfs needs no mount (so ``volatile`` changes nothing).
        ``idmap`` needs ``copies``: a remapped layer's tree was shifted when it was created."""
        if idmap is not None and not copies:
            raise errdefs.FailedPrecondition("vfs layers are plain directories that cannot be idmapped "
                                             "(--userns-remap uses chowned copies with vfs)")
        return self._existing_dir(id)

    def put(self, id: str) -> None:
        self._existing_dir(id)

    def status(self) -> list[tuple[str, str]]:
        return [("Backing Filesystem", common.backing_filesystem(self.home))]

    def metadata(self, id: str) -> dict[str, str]:
        self._existing_dir(id)
        return {}  # Docker's vfs reports no GraphDriver.Data

    def check(self) -> list[str]:
        problems = []
        for name in sorted(os.listdir(self._layers)):
            path = os.path.join(self._layers, name)
            if common.is_work_in_progress(name):
                problems.append(f"vfs leftover work in progress {name} (removed at start-up)")
            elif os.path.islink(path) or not os.path.isdir(path):
                problems.append(f"vfs dir/{name} is not a layer directory")
        return problems

    def sweep(self) -> list[str]:
        """Remove ``-incomplete``/``-removing`` leftovers under ``dir/`` and probe leftovers."""
        return common.sweep_leftovers(self.home) + common.sweep_leftovers(self._layers)

    def leftovers(self) -> list[str]:
        return common.list_leftovers(self.home) + common.list_leftovers(self._layers)

    # -- DiffDriver: always naive ---------------------------------------------------------

    def apply_diff(self, id: str, parent: str | None, entries: TarReaderLike) -> int:
        return self._naive.apply_diff(id, parent, entries)

    def diff(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
             ) -> Iterator[bytes]:
        return self._naive.diff(id, parent, owner)

    def changes(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                ) -> list[Change]:
        return self._naive.changes(id, parent, owner)

    def diff_size(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                  ) -> int:
        return self._naive.diff_size(id, parent, owner)

    def diff_path(self, id: str) -> str:
        return self._existing_dir(id)
