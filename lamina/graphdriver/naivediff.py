"""Naive diff: changes and layer tars computed by comparing two mounted trees.

Any :class:`~lamina.graphdriver.api.ProtoDriver` can produce diffs this way: mount the layer
and its parent with ``get``, walk both (:func:`lamina.archive.tree_changes`) and tar what
changed (:func:`lamina.archive.export_changes`).  It costs a walk of the whole tree; vfs
always uses it, overlay2 only when asked for a diff against a layer that is not the real parent
or when the kernel's overlayfs cannot support native diff (redirect_dir, metacopy).

Applying a layer tar the naive way extracts it into the mounted full tree with
:attr:`~lamina.archive.WhiteoutMode.APPLY`: whiteouts delete what they name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from lamina import fsutil
from lamina.graphdriver.api import ProtoDriver, TarReaderLike

if TYPE_CHECKING:
    from lamina.archive import Change

__all__ = ["NaiveDiff", "changes_size"]


def changes_size(root: str, changes: list[Change]) -> int:
    """Bytes of the regular files added or modified by ``changes`` under ``root``.

    Hardlinked files count once, like Docker's ``archive.ChangesSize``.
    """
    from lamina.archive import ChangeKind

    seen: set[tuple[int, int]] = set()
    total = 0
    for change in changes:
        if change.kind is ChangeKind.DELETE:
            continue
        try:
            st = os.lstat(os.path.join(root, change.path.lstrip("/")))
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and fsutil.first_link(st, seen):
            total += st.st_size
    return total


class _HeldStream:
    """A tar stream that keeps layers mounted until it is exhausted or closed."""

    def __init__(self, chunks: Iterator[bytes], release: list[str], driver: ProtoDriver) -> None:
        self._chunks = chunks
        self._release = release
        self._driver = driver

    def __iter__(self) -> "_HeldStream":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, []
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        for id in release:
            self._driver.put(id)

    def __del__(self) -> None:
        self.close()


class NaiveDiff:
    """The :class:`~lamina.graphdriver.api.DiffDriver` half for a driver, by comparing mounts."""

    def __init__(self, driver: ProtoDriver) -> None:
        self.driver = driver

    def _mount_pair(self, id: str, parent: str | None) -> tuple[str, str | None, list[str]]:
        held: list[str] = []
        try:
            layer_root = self.driver.get(id)
            held.append(id)
            parent_root = None
            if parent is not None:
                parent_root = self.driver.get(parent)
                held.append(parent)
        except BaseException:
            self._release(held)
            raise
        return layer_root, parent_root, held

    def _release(self, held: list[str]) -> None:
        for id in reversed(held):
            self.driver.put(id)

    def changes(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                ) -> list[Change]:
        """``owner`` translates the ids of ``id``'s tree into those of ``parent``'s before they
        are compared (a remapped container's read-write layer holds host ids)."""
        from lamina.archive import tree_changes

        layer_root, parent_root, held = self._mount_pair(id, parent)
        try:
            return tree_changes(layer_root, parent_root, owner)
        finally:
            self._release(held)

    def diff(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
             ) -> Iterator[bytes]:
        """The changes of ``id`` against ``parent`` as a tar; mounts are held until the stream
        is exhausted or closed.  ``owner`` translates the ids on disk (compared and tarred)."""
        from lamina.archive import export_changes, tree_changes

        layer_root, parent_root, held = self._mount_pair(id, parent)
        try:
            changes = tree_changes(layer_root, parent_root, owner)
            chunks = export_changes(layer_root, changes, owner)
        except BaseException:
            self._release(held)
            raise
        return _HeldStream(iter(chunks), held, self.driver)

    def diff_size(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                  ) -> int:
        from lamina.archive import tree_changes

        layer_root, parent_root, held = self._mount_pair(id, parent)
        try:
            return changes_size(layer_root, tree_changes(layer_root, parent_root, owner))
        finally:
            self._release(held)

    def apply_diff(self, id: str, parent: str | None, entries: TarReaderLike) -> int:
        """Extract a layer tar into the mounted full tree of ``id``; returns the content size."""
        from lamina.archive import WhiteoutMode, apply_tar

        root = self.driver.get(id)
        try:
            try:
                fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise fsutil.system_error(f"open layer {id}", exc) from exc
            try:
                return apply_tar(fd, entries, WhiteoutMode.APPLY)
            finally:
                os.close(fd)
        finally:
            self.driver.put(id)
