"""The graph driver contract: where layer directories live and how they are stacked.

Vocabulary:

- **id**: the *cache-id* of a layer: a random 64-hex name for its driver directory.  Content
  identity (diff_id, chainID) never names a directory.
- **parent**: the id of the layer below, or ``None`` for a base layer.
- **diff directory**: the directory holding exactly what one layer changed (overlay2:
  ``<root>/overlay2/<id>/diff``), or for vfs the full tree of that layer; the tar-split
  reassembly reads file contents from it (:meth:`DiffDriver.diff_path`).
- **mounts**: how to see the full tree of a layer stack, as :class:`lamina.mount.Mount` data.

On-disk layout of overlay2 (Docker's): ``<root>/overlay2/<id>/{diff,link,lower,work,merged}``
with ``<root>/overlay2/l/<short-id> -> ../<id>/diff`` short links used in ``lowerdir`` so
that long chains fit in a page of mount options.  vfs: ``<root>/vfs/dir/<id>``.
``--userns-remap`` without idmapped mounts: chowned copies of overlay2 layers under
``<root>/<uid>.<gid>/overlay2/`` (:mod:`lamina.graphdriver.remapcopy`), removed with their layer.
Work in progress: a layer directory is created under a temporary name
(``<id>-incomplete``) and renamed into place when complete; leftovers are swept at start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lamina.mount import Mount

if TYPE_CHECKING:
    from lamina.archive.api import Change
    from lamina.idmap import IdentityMapping

__all__ = ["ProtoDriver", "DiffDriver", "Sweeper", "GraphDriver", "LateParent", "InitLayerWriter", "TarReaderLike"]


class ProtoDriver(Protocol):
    name: str
    home: str  # the driver's directory, e.g. <data-root>/overlay2

    def create(self, id: str, parent: str | None, *, read_write: bool = False,
               idmap: IdentityMapping | None = None, durable: bool = True) -> None:
        """Create an empty layer on top of ``parent`` (vfs copies the parent's tree).
        ``durable=False``: nothing of the new layer is synced (the init and read-write layers of
        a disposable ``--rm`` container, see :mod:`lamina.layer.mounts`), nor, for a read-write
        layer, the mark it leaves on its parent (the container's init layer); the mark on an
        image layer is always synced.
        ``idmap``: the read-write layer of a remapped container: what it starts with is owned
        by the mapped host ids (vfs shifts the parent's tree while copying it; overlay2 starts
        empty)."""

    def remove(self, id: str) -> None:
        """Remove the layer directory (unmounting it first); missing is fine."""

    def exists(self, id: str) -> bool: ...

    def list_ids(self) -> list[str]:
        """Every layer id present on disk (for ``system check``)."""

    def mounts(self, id: str) -> list[Mount]:
        """The mounts that show the full tree of ``id`` (overlay: one overlay mount)."""

    def get(self, id: str, *, volatile: bool = False, idmap: IdentityMapping | None = None,
            copies: bool = False) -> str:
        """Mount the layer's full tree (refcounted within this process) and return its path.

        ``idmap`` (``--userns-remap``): the layers below ``id`` are seen through idmapped
        mounts with that mapping; a driver that cannot is FailedPrecondition.  With
        ``copies`` they are seen through chowned copies instead
        (:mod:`lamina.graphdriver.remapcopy`; made here where missing).

        ``volatile``: what is written through this mount need not survive a crash of the host
        (an init layer being set up, the root of a ``--rm`` container).  overlay2 then mounts
        with overlayfs' ``volatile`` option: no fsync reaches the backing filesystem and the
        unmount does not sync all of it (a ``syncfs`` of whatever anyone wrote, often 5-25 ms)."""

    def put(self, id: str) -> None:
        """Release a :meth:`get`; the last release unmounts."""

    def status(self) -> list[tuple[str, str]]:
        """``docker info`` lines: Backing Filesystem, Supports d_type, Native Overlay Diff..."""

    def metadata(self, id: str) -> dict[str, str]:
        """GraphDriver.Data for inspect: LowerDir, UpperDir, MergedDir, WorkDir (overlay2)."""

    def check(self) -> list[str]:
        """Problems found in the driver's own directories (broken links, bad lower files)."""


class DiffDriver(Protocol):
    def apply_diff(self, id: str, parent: str | None, entries: "TarReaderLike") -> int:
        """Extract a layer tar into the layer ``id`` (created empty on ``parent``).

        Returns the layer's size: the sum of regular file content bytes extracted.
        """

    def diff(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
             ) -> Iterator[bytes]:
        """A tar stream of the changes of ``id`` against ``parent`` (whiteouts as .wh.);
        ``owner`` translates the (uid, gid) on disk into those of the tar (a remapped
        container's read-write layer holds host ids)."""

    def changes(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                ) -> list[Change]:
        """The changes of ``id`` against ``parent``; ``owner`` as for :meth:`diff`."""

    def diff_size(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                  ) -> int: ...

    def diff_path(self, id: str) -> str:
        """Directory from which tar-split reassembly reads file contents of layer ``id``."""


class Sweeper(Protocol):
    def leftovers(self) -> list[str]:
        """Names of work-in-progress entries (``<id>-incomplete``, ``<id>-removing``, probes):
        a crash's leftovers when no operation runs (cheap: one directory listing each)."""

    def sweep(self) -> list[str]:
        """Remove work-in-progress leftovers (``<id>-incomplete``, ``<id>-removing``) of a crash.

        Called once at start-up by the layer store while it holds its exclusive lock; each
        removal is logged at WARNING.  Returns the names removed.
        """


class GraphDriver(ProtoDriver, DiffDriver, Sweeper, Protocol):
    """All three parts; what the layer store is given."""


@runtime_checkable
class LateParent(Protocol):
    """A driver that can extract a layer before its parent is known (overlay2): the layer is
    created on no parent, filled by :meth:`DiffDriver.apply_diff`, then put on its parent.
    The layer store uses it to extract an uploaded archive's layers as they arrive, before
    the archive's manifest (at its end) says how they stack."""

    def late_parent_supported(self) -> bool:
        """Whether :meth:`set_parent` may be used on this driver's data root now."""

    def set_parent(self, id: str, parent: str) -> None:
        """Put ``id`` (created with no parent, filled by apply_diff, not mounted or used as a
        parent yet) on ``parent``, as if it had been created there."""


class InitLayerWriter(Protocol):
    """A driver that can fill a container's init layer without mounting it (overlay2: the
    placeholders are written into its diff directory as the mount would leave them).  The
    layer store finds it by the method's name (no isinstance: this module loads typing's
    runtime checks, kept off a create's path)."""

    def write_init_layer(self, id: str, entries: tuple[tuple[str, str, int], ...]) -> bool:
        """Create ``entries`` ((path, kind, mode), see :data:`lamina.layer.mounts.INIT_PATHS`)
        in the empty layer ``id`` where its full tree lacks them; False (the layer left
        empty) when the caller must mount the layer and do it there."""


class TarReaderLike(Protocol):
    def __iter__(self) -> Iterator[object]: ...
