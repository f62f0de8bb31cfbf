"""Read-write layers of containers (Docker's ``layerdb/mounts``).

On-disk format, under ``<data-root>/image/<driver>/layerdb/mounts/<container-id>/``::

    mount-id   the driver directory of the container's read-write layer (random 64 hex)
    init-id    the driver directory of its init layer ("<mount-id>-init")
    parent     chainID of the image's top layer (absent for an image without layers)
    idmap      lamina's own, only for a container of a ``--userns-remap`` engine: the identity
               mapping as JSON ``{"UIDMaps": [{"ContainerID", "HostID", "Size"}], "GIDMaps": [...]}``,
               with ``"Layers": "copy"`` when the container sees the layers below through chowned
               copies (:mod:`lamina.graphdriver.remapcopy`; vfs: its read-write layer was copied
               with shifted owners) rather than idmapped mounts (:mod:`lamina.idmap`), as the
               engine chose when the container was created.  The read-write layer's root
               belongs to the mapping's root and what the container writes keeps its host ids,
               translated back to container ids in :meth:`MountStore.diff` (commit),
               :meth:`MountStore.changes` and :meth:`MountStore.size`.

The init layer sits between the image and the read-write layer and holds the placeholders
the runtime mounts over (``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``,
``/dev/console``, ...) so that they never show up in ``diff`` or ``commit``.

The records of a disposable container (``--rm``) are written without fsync, as are its
driver directories (``durable=False``): after a host crash its record may be missing or hold
empty files.  :meth:`MountStore.get` calls such a record damaged (DataLoss) and
:meth:`MountStore.remove` removes it; the driver directories it named are then orphans, which
``system check --repair`` removes.

Commit point: the record directory is built under ``mounts/.tmp-<random>`` and renamed to
``mounts/<container-id>``.  The ids are written into the temporary directory *before* the
driver directories are created, so a crash at any point leaves either nothing or a
``.tmp-<random>`` naming every driver directory it may have made.  A removal renames the
record to ``mounts/.removing-<container-id>`` (its commit point), removes the driver
directories, then the record (a caller that waits for the removal only up to its commit point
is told at it: ``committed``).  Creations and removals hold the layer store's lock shared for
their whole run; :meth:`MountStore.sweep` runs under it exclusive, so every ``.tmp-`` or
``.removing-`` entry it sees belongs to a process that died.  Removing what is gone already
is not an error (NotFound from :meth:`MountStore.remove` only when no record exists).

Ready layers (lamina's own; a disposable container's only)::

    mounts/.ready/<cache id of the image's top layer>-<32 random hex>/
               the record of a removed ``--rm`` container (mount-id, init-id, parent), whose
               init layer is kept as it was and whose read-write layer the driver emptied
               (:meth:`~lamina.graphdriver.overlay2.Overlay2Driver.recycle`: new ``diff`` and
               ``work`` directories)

A ``--rm`` container's removal, past its commit point, keeps its layer pair this way when the
driver can empty it and fewer than :data:`READY_PER_PARENT` wait on the same image layer (the
rename into ``.ready`` is the last step; a crash before it leaves the ``.removing-`` record
the sweep deletes).  The next disposable create on that image takes one with a single rename
to ``mounts/<container-id>`` (its commit point, as the ``.tmp-`` rename), after which the
record is checked whole (a host crash may lose an unsynced part: then it is removed and
the create makes its own).  About 20 new inodes (the init layer's directories and
placeholders, the read-write layer's, their short links and records) become one rename.  A
ready layer whose image layer is gone is removed by the removal of that image, by the next
recycling and by :meth:`MountStore.sweep`; its driver directories are known to ``system
check`` (:meth:`~lamina.layer.store.LayerStore.known_cache_ids`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

from lamina import errdefs, fsutil
from lamina.digest import Digest
from lamina.graphdriver.common import make_placeholder
from lamina.layer.store import READY_DIR, LayerStore
from lamina.log import get_logger
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.archive.api import Change
    from lamina.idmap import IdentityMapping

__all__ = ["RWLayer", "MountStore", "INIT_PATHS"]

log = get_logger("lamina.layer")

#: at most this many ready read-write layers (``mounts/.ready/``, see the module docstring)
#: per image top layer
READY_PER_PARENT = 2

# (path, kind, mode): the init layer's content, as Docker's initlayer.Setup makes it
INIT_PATHS: tuple[tuple[str, str, int], ...] = (
    ("dev", "dir", 0o755), ("dev/pts", "dir", 0o755), ("dev/shm", "dir", 0o755),
    ("proc", "dir", 0o555), ("sys", "dir", 0o555),
    ("etc", "dir", 0o755), ("etc/resolv.conf", "file", 0o644), ("etc/hosts", "file", 0o644),
    ("etc/hostname", "file", 0o644), ("dev/console", "file", 0o755),
    ("etc/mtab", "link:/proc/mounts", 0o777),
)


@dataclass(frozen=True)
class RWLayer:
    """A container's read-write layer record (``layerdb/mounts/<container-id>``)."""

    container_id: str
    mount_id: str
    init_id: str
    parent: Digest | None
    idmap: IdentityMapping | None = None
    layer_copies: bool = False  # the layers below are seen through chowned copies


class MountStore:
    def __init__(self, layers: LayerStore) -> None:
        self.layers = layers
        self.driver = layers.driver
        self._dir = os.path.join(layers.root, "mounts")
        os.makedirs(self._dir, mode=0o700, exist_ok=True)

    def _path(self, container_id: str) -> str:
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise errdefs.InvalidArgument(f"invalid container id {container_id!r}")
        return os.path.join(self._dir, container_id)

    def create(self, container_id: str, parent: str | None, idmap: IdentityMapping | None = None,
               layer_copies: bool = False, *, durable: bool = True) -> RWLayer:
        """Create the init and read-write layers of a container on top of ``parent``
        (``idmap``, ``layer_copies``: a remapped container's, see the module docstring).  The
        copies are made by the first mount (:meth:`mount`), not here.  ``durable=False``: a
        disposable container's (``--rm``): nothing is synced (see the module docstring)."""
        final = self._path(container_id)
        if os.path.exists(final):
            raise errdefs.AlreadyExists(f"read-write layer for container {container_id} exists already")
        parent_layer = self.layers.get(parent) if parent else None
        mount_id = os.urandom(32).hex()
        init_id = mount_id + "-init"
        lock = self.layers.lock(shared=True)
        try:
            if not durable and idmap is None and parent_layer is not None:
                ready = self._claim_ready(container_id, final, parent_layer.cache_id, parent)
                if ready is not None:
                    return ready
            tmp = os.path.join(self._dir, fsutil.temp_name())
            os.mkdir(tmp, 0o700)
            try:
                # recorded before created: a sweep after a crash finds every directory by name.
                # Files of a fresh directory published by one rename: each needs its data
                # synced, not a rename (and a directory fsync) of its own
                _write_synced(os.path.join(tmp, "mount-id"), mount_id, durable)
                _write_synced(os.path.join(tmp, "init-id"), init_id, durable)
                if parent:
                    _write_synced(os.path.join(tmp, "parent"), parent, durable)
                if idmap is not None:
                    record = {**idmap.to_json(), **({"Layers": "copy"} if layer_copies else {})}
                    _write_synced(os.path.join(tmp, "idmap"), json.dumps(record, sort_keys=True), durable)
                self.driver.create(init_id, parent_layer.cache_id if parent_layer else None, durable=durable)
                self._setup_init_layer(init_id)
                self.driver.create(mount_id, init_id, read_write=True, idmap=idmap, durable=durable)
                if idmap is not None:
                    # the overlay's root directory is the upper directory's: the container's root owns it
                    os.chown(self.driver.diff_path(mount_id), *idmap.root_pair())
                fsutil.publish_dir(tmp, final, durable=durable)
            except BaseException:
                self.driver.remove(mount_id)
                self.driver.remove(init_id)
                fsutil.remove_tree(tmp)
                raise
        finally:
            lock.release()
        return RWLayer(container_id, mount_id, init_id, Digest(parent) if parent else None, idmap,
                       idmap is not None and layer_copies)

    def _setup_init_layer(self, init_id: str) -> None:
        # a driver that is an InitLayerWriter (lamina.graphdriver.api; looked up by name: the
        # protocol's module, which loads typing's runtime checks, stays off the create's path)
        write_init_layer = getattr(self.driver, "write_init_layer", None)
        try:
            if write_init_layer is not None and write_init_layer(init_id, INIT_PATHS):
                return  # written without a mount (overlay2)
        except OSError as exc:
            raise fsutil.system_error(f"set up the init layer {init_id}", exc) from exc
        # volatile: the placeholders need no sync, and the unmount then does not sync the whole
        # backing filesystem (the record published after them is synced all the same)
        root = self.driver.get(init_id, volatile=True)
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for path, kind, mode in INIT_PATHS:
                    parent, _, name = path.rpartition("/")
                    parent_fd = fsutil.open_dir_beneath(root_fd, parent) if parent else os.dup(root_fd)
                    try:
                        try:
                            os.lstat(name, dir_fd=parent_fd)
                            continue  # the image has it: keep the image's
                        except FileNotFoundError:
                            pass
                        make_placeholder(name, kind, mode, dir_fd=parent_fd)
                    finally:
                        os.close(parent_fd)
            finally:
                os.close(root_fd)
        except OSError as exc:
            raise fsutil.system_error(f"set up the init layer {init_id}", exc) from exc
        finally:
            self.driver.put(init_id)

    def get(self, container_id: str) -> RWLayer:
        path = self._path(container_id)
        try:
            mount_id = _read(os.path.join(path, "mount-id"))
            init_id = _read(os.path.join(path, "init-id"))
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"no read-write layer for container {container_id}") from exc
        if not mount_id or init_id != mount_id + "-init":
            # never passed to the driver: an empty id would name its whole directory
            raise errdefs.DataLoss(f"read-write layer record of container {container_id} is damaged "
                                   f"(mount-id {mount_id!r}, init-id {init_id!r})")
        try:
            parent: Digest | None = Digest(_read(os.path.join(path, "parent")))
        except FileNotFoundError:
            parent = None
        layer_copies = False
        try:
            record = json.loads(_read(os.path.join(path, "idmap")))
            from lamina.idmap import IdentityMapping  # a remapped engine's container only

            idmap: IdentityMapping | None = IdentityMapping.from_json(record)
            layer_copies = record.get("Layers") == "copy"
        except FileNotFoundError:
            idmap = None
        except ValueError as exc:
            raise errdefs.DataLoss(f"read-write layer of container {container_id}: malformed idmap file") from exc
        return RWLayer(container_id, mount_id, init_id, parent, idmap, layer_copies)

    def container_ids(self) -> list[str]:
        return [name for name in os.listdir(self._dir) if not name.startswith(".")]

    def parents(self) -> set[str]:
        """chainIDs that read-write layers stand on (layer GC must keep them and their chains)."""
        out: set[str] = set()
        for container_id in self.container_ids():
            try:
                layer = self.get(container_id)
            except (errdefs.NotFound, errdefs.DataLoss):
                continue
            current = layer.parent
            while current is not None and current not in out:
                out.add(current)
                try:
                    current = self.layers.get(current).parent
                except errdefs.NotFound:
                    break
        return out

    def mount(self, container_id: str, *, volatile: bool = False) -> str:
        """Mount the container's full tree; returns its path (the overlay merged dir).
        ``volatile``: its writes need not survive a host crash (see ``GraphDriver.get``)."""
        layer = self.get(container_id)
        return self.driver.get(layer.mount_id, volatile=volatile, idmap=layer.idmap, copies=layer.layer_copies)

    def unmount(self, container_id: str) -> None:
        self.driver.put(self.get(container_id).mount_id)

    def remove(self, container_id: str, committed: Callable[[], None] | None = None, *,
               durable: bool = True) -> None:
        """Remove the container's read-write layer; NotFound when it has none (any more).
        ``committed`` is called at the commit point (the layer is no longer the container's:
        it holds no image layer), before the directories are deleted.  ``durable=False``: the
        commit point is not synced (a disposable container's, see the module docstring)."""
        lock = self.layers.lock(shared=True)
        try:
            try:
                layer: RWLayer | None = self.get(container_id)
            except errdefs.DataLoss as exc:
                # a disposable container's record that a host crash left empty: the record
                # goes; the driver directories it named are orphans for `system check --repair`
                log.warning("%s: removing the record only", exc)
                layer = None
            path = self._path(container_id)
            removing = os.path.join(self._dir, f".removing-{container_id}")
            try:
                os.rename(path, removing)  # the commit point
            except FileNotFoundError as exc:  # another process removed it meanwhile
                raise errdefs.NotFound(f"no read-write layer for container {container_id}") from exc
            if durable:
                fsutil.fsync_dir(self._dir)
            if committed is not None:
                committed()
            if layer is not None:
                if not durable and self._recycle(layer, removing):
                    return
                self.driver.remove(layer.mount_id)
                self.driver.remove(layer.init_id)
            fsutil.remove_tree(removing)
        finally:
            lock.release()

    # -- ready layers ----------------------------------------------------------------------------

    def _ready_names(self) -> list[str]:
        try:
            return os.listdir(os.path.join(self._dir, READY_DIR))
        except FileNotFoundError:
            return []

    def _ready_on(self, parent_cache_id: str) -> list[str]:
        """The ready layers on the image layer whose driver directory is ``parent_cache_id``
        (their names: ``<parent cache id>-<random>``)."""
        return [name for name in self._ready_names() if _ready_parent(name) == parent_cache_id]

    def _remove_record_and_layers(self, path: str) -> None:
        """Remove the driver directories a record at ``path`` names, then the record."""
        for key in ("mount-id", "init-id"):
            try:
                self.driver.remove(_read(os.path.join(path, key)))
            except (FileNotFoundError, errdefs.InvalidArgument):
                pass  # an empty file (a crash): the directory it named is an orphan for `system check`
        fsutil.remove_tree(path)

    def _claim_ready(self, container_id: str, final: str, parent_cache_id: str, parent: str) -> RWLayer | None:
        """A ready layer pair on ``parent`` made the container's (one rename: the create's
        commit point), or None when there is none.  One a host crash damaged is removed."""
        directory = os.path.join(self._dir, READY_DIR)
        for name in self._ready_on(parent_cache_id):
            try:
                os.rename(os.path.join(directory, name), final)
            except FileNotFoundError:
                continue  # another create took it
            try:
                layer: RWLayer | None = self.get(container_id)
            except (errdefs.NotFound, errdefs.DataLoss):
                layer = None
            if layer is not None and layer.parent == parent and layer.idmap is None and self._whole(layer):
                return layer
            log.warning("ready read-write layer %s is damaged: removed", name)
            self.remove(container_id)
        return None

    def _whole(self, layer: RWLayer) -> bool:
        """Whether the driver directories of a ready layer are all there (a host crash may
        lose what its recycling made: it was not synced)."""
        try:
            work = self.driver.metadata(layer.mount_id).get("WorkDir")
            return self.driver.exists(layer.init_id) and os.path.isdir(self.driver.diff_path(layer.mount_id)) \
                and (work is None or os.path.isdir(work))
        except errdefs.LaminaError:
            return False

    def _recycle(self, layer: RWLayer, removing: str) -> bool:
        """Keep the layer pair of a removed disposable container, emptied, for the next one
        on the same image (``removing``: its record, past the removal's commit point); False
        when it is not kept (the caller removes it)."""
        recycle = getattr(self.driver, "recycle", None)  # an overlay2 driver's
        if recycle is None or layer.idmap is not None or layer.parent is None:
            return False
        try:
            parent_cache_id = self.layers.get(layer.parent).cache_id
        except errdefs.LaminaError:
            return False
        self.drop_stale_ready()
        if len(self._ready_on(parent_cache_id)) >= READY_PER_PARENT:
            return False
        name = f"{parent_cache_id}-{os.urandom(16).hex()}"
        try:
            if not recycle(layer.mount_id):
                return False
            directory = os.path.join(self._dir, READY_DIR)
            os.makedirs(directory, 0o700, exist_ok=True)
            os.rename(removing, os.path.join(directory, name))
        except (OSError, errdefs.LaminaError) as exc:
            log.warning("read-write layer %s not kept for reuse: %s", layer.mount_id, exc)
            return False
        if len(self._ready_on(parent_cache_id)) > READY_PER_PARENT:
            self._drop_ready(name)  # kept by another removal at the same time: one too many
        return True

    def drop_stale_ready(self) -> None:
        """Remove the ready layers whose image layer is gone (no create can claim them)."""
        for name in self._ready_names():
            if not self.driver.exists(_ready_parent(name)):
                self._drop_ready(name)

    def _drop_ready(self, name: str) -> None:
        """Remove the ready layer ``name`` unless a create took it first."""
        taken = os.path.join(self._dir, f".removing-{name}")
        try:
            os.rename(os.path.join(self._dir, READY_DIR, name), taken)  # a removal's commit point
        except FileNotFoundError:
            return  # claimed or dropped meanwhile
        self._remove_record_and_layers(taken)

    def interrupted(self) -> list[str]:
        """Names of ``.tmp-`` and ``.removing-`` entries (work in progress or crash leftovers)."""
        try:
            return [name for name in os.listdir(self._dir) if name.startswith((".removing-", ".tmp-"))]
        except FileNotFoundError:
            return []

    def sweep(self) -> list[str]:
        """Remove what interrupted creations and removals left.  The caller holds the layer
        store lock exclusively (no creation or removal runs)."""
        done = []
        for name in self.interrupted():
            self._remove_record_and_layers(os.path.join(self._dir, name))
            done.append(f"removed interrupted read-write layer record {name}")
        self.drop_stale_ready()
        return done

    def changes(self, container_id: str) -> list[Change]:
        layer = self.get(container_id)
        return self.driver.changes(layer.mount_id, layer.init_id, None if layer.idmap is None else layer.idmap.to_container)

    def diff(self, container_id: str) -> Iterator[bytes]:
        """The container's changes as a layer tar, with container ids (a remapped container's
        files are stored with host ids)."""
        layer = self.get(container_id)
        mapping = layer.idmap
        if mapping is None:
            return self.driver.diff(layer.mount_id, layer.init_id)
        return self.driver.diff(layer.mount_id, layer.init_id, mapping.to_container)

    def size(self, container_id: str) -> int:
        layer = self.get(container_id)
        return self.driver.diff_size(layer.mount_id, layer.init_id,
                                     None if layer.idmap is None else layer.idmap.to_container)


def _write_synced(path: str, text: str, durable: bool = True) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(text.encode())
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _ready_parent(name: str) -> str:
    """The image layer's cache id in a ready layer's name."""
    return name.rpartition("-")[0]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()
