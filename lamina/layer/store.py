"""The layer store (Docker's layerdb): read-only layers keyed by chainID.

On-disk format, under ``<data-root>/image/<driver>/layerdb/`` (byte-compatible with Docker)::

    sha256/<chainID-hex>/diff               "sha256:<diff_id>"
    sha256/<chainID-hex>/parent             "sha256:<parent chainID>" (absent for a base layer)
    sha256/<chainID-hex>/size               decimal bytes of regular-file content in the layer
    sha256/<chainID-hex>/cache-id           the graph driver's directory id for this layer
    sha256/<chainID-hex>/tar-split.json.gz  what reassembles the layer tar byte for byte
    sha256/<chainID-hex>/tar-split.index    lamina's cache of the decoded record (below)
    sha256/<chainID-hex>/max-ids            lamina's cache for --userns-remap: JSON
                                            {"uid": [highest uid, a path owned by it], "gid": [...]}
                                            of the layer's own files, written on first need
    tmp/write-set-<random>/                 a registration in progress (holds cache-id early)
    sha256/<chainID-hex>-<random>-removing  a removal in progress
    leases/<random>                         an operation in progress (locked by its process)

Commit points: a layer exists from the moment its ``write-set`` directory is renamed to
``sha256/<chainID-hex>`` (one rename, after every file in it and the driver's data were
synced); it stops existing at the rename to ``-removing``.  Anything left before those renames
by a crash is swept at start-up (:meth:`LayerStore.sweep`), logged at WARNING.

A layer may also be extracted before its parent is known (:meth:`LayerStore.prepare`, for an
upload whose manifest comes last): it is a write-set like a registration in progress, on a
driver directory created with no parent; :meth:`LayerStore.commit_prepared` has the driver put
it on its parent (``LateParent.set_parent``) and then commits it as ``register`` does.

``tar-split.index`` is a cache of the decoded record that spares each ``save`` its decoding; its
format and use are :mod:`lamina.layer.reassembly`'s.

Leases: every operation that registers or releases layers (load, import, rmi, prune) holds a
lease, a file under ``leases/`` locked with ``flock`` for as long as the operation runs.  A
lease whose lock is free at start-up belongs to a process that died: the store then collects
garbage (every layer no image, container or live lease references, every stray driver
directory).  Mutations take the store lock shared (register) or exclusive (remove, collect).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator

from lamina import errdefs, fsutil
from lamina.digest import Digest
from lamina.digest import chain_id as compute_chain_id
from lamina.log import get_logger
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO
    from lamina.graphdriver.api import GraphDriver

__all__ = ["Layer", "LayerStore", "Lease", "PreparedLayer", "READY_DIR"]

log = get_logger("lamina.layer")

#: ``mounts/.ready/``: the read-write layers kept for the next disposable container
#: (:mod:`lamina.layer.mounts`), whose driver directories are known here too
READY_DIR = ".ready"



@dataclass(frozen=True)
class Layer:
    """A read-only layer: its identity (chain_id, diff_id), place in the stack and storage."""

    chain_id: Digest
    diff_id: Digest
    parent: Digest | None
    size: int
    cache_id: str


@dataclass(frozen=True)
class PreparedLayer:
    """A layer extracted by :meth:`LayerStore.prepare` (on no parent) and not registered yet:
    its write-set under ``tmp/`` (swept after a crash like any registration in progress) and
    its driver directory hold it; ``compact`` is the tar-split reassembly index when recorded."""

    write_set: str
    cache_id: str
    diff_id: Digest
    size: int
    compact: list | None


class Lease:
    """Marks an operation in progress; see the module docstring."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, os.urandom(16).hex())
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        fsutil.fsync_dir(directory)

    def close(self, *, completed: bool = True) -> None:
        """End the lease.  A lease of an operation that did not complete is left on disk
        (unlocked, so dead): the next start-up then collects what the operation left."""
        if self._fd is not None:
            if completed:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(completed=exc_type is None)


class _CountingReader:
    """Counts bytes read from ``source`` and reports them to ``progress``."""

    def __init__(self, source: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self._source = source
        self._progress = progress
        self.count = 0

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = self._source.readinto(buffer)
        if n:
            self.count += n
            if self._progress is not None:
                self._progress(self.count)
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self.count += len(data)
            if self._progress is not None:
                self._progress(self.count)
        return data

    def readable(self) -> bool:
        return True


class LayerStore:
    def __init__(self, root: str, driver: GraphDriver,
                 referenced: Callable[[], set[str]] | None = None) -> None:
        """``root`` is ``<data-root>/image/<driver>/layerdb``; ``referenced`` returns the chainIDs
        that images and containers use (every prefix of every image's chain)."""
        self.root = root
        self.driver = driver
        self._referenced = referenced or (lambda: set())
        self._layers_dir = os.path.join(root, "sha256")
        self._tmp_dir = os.path.join(root, "tmp")
        self._leases_dir = os.path.join(root, "leases")
        self._mounts_dir = os.path.join(root, "mounts")
        for directory in (self._layers_dir, self._tmp_dir, self._leases_dir, self._mounts_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock_path = os.path.join(root, ".lock")

    # -- locking -------------------------------------------------------------------------

    def lock(self, shared: bool = False) -> fsutil.FileLock:
        lock = fsutil.FileLock(self._lock_path)
        lock.acquire(shared=shared)
        return lock

    def lock_nowait(self, shared: bool = False) -> fsutil.FileLock | None:
        """The store lock if it can be had at once, else None (start-up sweeps use it)."""
        lock = fsutil.FileLock(self._lock_path)
        return lock if lock.try_acquire(shared=shared) else None

    def lease(self) -> Lease:
        return Lease(self._leases_dir)

    # -- reading -------------------------------------------------------------------------

    def _dir(self, chain_id: str) -> str:
        return os.path.join(self._layers_dir, Digest(chain_id).hex)

    def exists(self, chain_id: str) -> bool:
        return os.path.isfile(os.path.join(self._dir(chain_id), "cache-id"))

    def get(self, chain_id: str) -> Layer:
        directory = self._dir(chain_id)
        try:
            diff_id = Digest(_read_text(os.path.join(directory, "diff")))
            cache_id = _read_text(os.path.join(directory, "cache-id"))
            size = int(_read_text(os.path.join(directory, "size")) or "0")
            try:
                parent: Digest | None = Digest(_read_text(os.path.join(directory, "parent")))
            except FileNotFoundError:
                parent = None
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"layer {chain_id} does not exist") from exc
        except (ValueError, errdefs.InvalidArgument) as exc:
            raise errdefs.DataLoss(f"layer record {chain_id} is damaged: {exc}") from exc
        return Layer(Digest(chain_id), diff_id, parent, size, cache_id)

    def _max_ids(self, layer: Layer) -> tuple[tuple[int, str], tuple[int, str]]:
        """((highest uid, a path owned by it), (highest gid, path)) of the layer's own files."""
        import json

        cache = os.path.join(self._dir(str(layer.chain_id)), "max-ids")
        try:
            with open(cache, encoding="utf-8") as handle:
                value = json.load(handle)
            return (int(value["uid"][0]), str(value["uid"][1])), (int(value["gid"][0]), str(value["gid"][1]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            log.warning("layer %s: rebuilding its damaged max-ids cache", layer.chain_id)
        root = self.driver.diff_path(layer.cache_id)
        uid, gid = (-1, ""), (-1, "")
        pending = [root]  # a stack, not recursion: a layer's tree may be deeper than Python's stack
        while pending:
            directory = pending.pop()
            with os.scandir(directory) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    if info.st_uid > uid[0]:
                        uid = (info.st_uid, os.path.relpath(entry.path, root))
                    if info.st_gid > gid[0]:
                        gid = (info.st_gid, os.path.relpath(entry.path, root))
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        try:
            fsutil.atomic_write(cache, json.dumps({"uid": list(uid), "gid": list(gid)}))
        except OSError as exc:
            log.warning("layer %s: cannot write its max-ids cache: %s", layer.chain_id, exc)
        return uid, gid

    def ids_outside(self, chain_id: str, size: tuple[int, int]) -> tuple[str, int, int] | None:
        """A file of the stack topped by ``chain_id`` owned by a uid >= ``size[0]`` or a gid >=
        ``size[1]`` (path in its layer, uid or -1, gid or -1), or None: what a user namespace
        mapping that many ids cannot show (``--userns-remap``)."""
        for layer in self.chain(chain_id):
            (uid, uid_path), (gid, gid_path) = self._max_ids(layer)
            if uid >= size[0]:
                return uid_path, uid, -1
            if gid >= size[1]:
                return gid_path, -1, gid
        return None

    def chain(self, chain_id: str) -> list[Layer]:
        """The layers of the stack topped by ``chain_id``, bottom first."""
        layers: list[Layer] = []
        current: str | None = chain_id
        while current is not None:
            layer = self.get(current)
            layers.append(layer)
            current = layer.parent
        layers.reverse()
        return layers

    def chain_ids(self) -> list[Digest]:
        out = []
        for name in os.listdir(self._layers_dir):
            if len(name) == 64 and os.path.isfile(os.path.join(self._layers_dir, name, "cache-id")):
                out.append(Digest("sha256:" + name))
        return out

    def layers(self) -> list[Layer]:
        return [self.get(c) for c in self.chain_ids()]

    def tar(self, chain_id: str, *, verify_digest: bool = False) -> tuple[int, Iterator[bytes | memoryview]]:
        """(size, stream) of the layer's original tar, reassembled from its tar-split record
        (:func:`lamina.layer.reassembly.layer_tar`: the checks, ``verify_digest``, when a
        failure is raised)."""
        from lamina.layer.reassembly import layer_tar

        layer = self.get(chain_id)
        return layer_tar(str(layer.chain_id), str(layer.diff_id), self._dir(chain_id),
                         self.driver.diff_path(layer.cache_id), verify_digest=verify_digest)

    def tar_stream(self, chain_id: str, *, verify_digest: bool = False) -> Iterator[bytes | memoryview]:
        return self.tar(chain_id, verify_digest=verify_digest)[1]

    # -- registering ---------------------------------------------------------------------

    def register(self, stream: BinaryIO, parent: str | None, *, expected_diff_id: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 before_commit: Callable[[], None] | None = None) -> tuple[Layer, bool]:
        """Register a layer from a (possibly compressed) tar stream on top of ``parent``.

        One pass: decompress, hash (diff_id), record tar-split and extract through the driver.
        Returns the layer and whether it was new (False: an identical layer existed already
        and the extracted copy was discarded).  Callers hold the store lock shared.
        ``before_commit`` runs once the tar was read, before anything is published: a pull
        verifies the blob's digest there (raising discards the layer).
        """
        parent_layer = self.get(parent) if parent else None
        extracted = self._extract(stream, parent_layer.cache_id if parent_layer else None, progress)
        return self._commit(extracted, parent, expected_diff_id, before_commit)

    def can_prepare(self) -> bool:
        """Whether :meth:`prepare` works here (the driver can put a layer on its parent late)."""
        from lamina.graphdriver.api import LateParent

        return isinstance(self.driver, LateParent) and self.driver.late_parent_supported()

    def prepare(self, stream: BinaryIO) -> PreparedLayer:
        """Extract a layer whose parent is not known yet (an uploaded archive's layer, before
        the manifest at the archive's end says how its layers stack), as :meth:`register`
        does but publishing nothing: :meth:`commit_prepared` then registers it on its parent,
        or :meth:`discard_prepared` drops it.  Callers hold the store lock shared and a lease
        (a crash leaves a write-set that the sweep removes)."""
        if not self.can_prepare():
            raise errdefs.FailedPrecondition(f"the {self.driver.name} driver cannot extract a layer before its parent is known")
        return self._extract(stream, None, None)

    def commit_prepared(self, prepared: PreparedLayer, parent: str | None, *,
                        expected_diff_id: str | None = None) -> tuple[Layer, bool]:
        """Register ``prepared`` on ``parent``, as :meth:`register` would have; the prepared
        layer is used up (committed, or discarded on any failure)."""
        from lamina.graphdriver.api import LateParent

        try:
            if parent and (expected_diff_id is None or prepared.diff_id == expected_diff_id):
                assert isinstance(self.driver, LateParent)
                self.driver.set_parent(prepared.cache_id, self.get(parent).cache_id)
        except BaseException:
            self.discard_prepared(prepared)
            raise
        return self._commit(prepared, parent, expected_diff_id, None)

    def discard_prepared(self, prepared: PreparedLayer) -> None:
        self._discard(prepared.write_set, prepared.cache_id)

    def _extract(self, stream: BinaryIO, parent_cache_id: str | None,
                 progress: Callable[[int], None] | None) -> PreparedLayer:
        """The layer tar extracted into a new driver directory on ``parent_cache_id``, its
        tar-split recorded and synced in a new write-set; nothing published."""
        from lamina.archive import TarReader, TarSplitWriter, decompressed
        from lamina.digest import Hasher
        from lamina.layer.reassembly import TAR_SPLIT

        write_set = os.path.join(self._tmp_dir, "write-set-" + os.urandom(16).hex())
        os.mkdir(write_set, 0o700)
        cache_id = os.urandom(32).hex()
        created = False
        try:
            fsutil.atomic_write(os.path.join(write_set, "cache-id"), cache_id)
            self.driver.create(cache_id, parent_cache_id)
            created = True
            counting = _CountingReader(stream, progress)
            hasher = Hasher()
            source = decompressed(counting)
            try:
                with open(os.path.join(write_set, TAR_SPLIT), "wb") as split_file:
                    recorder = TarSplitWriter(split_file)
                    reader = TarReader(source, recorder=recorder, hasher=hasher)
                    size = self.driver.apply_diff(cache_id, parent_cache_id, reader)
                    reader.finish()
                    recorder.close()
                    split_file.flush()
                    os.fsync(split_file.fileno())
            finally:
                close = getattr(source, "close", None)
                if close is not None and source is not counting:
                    close()
            return PreparedLayer(write_set, cache_id, hasher.digest(), size, recorder.compact)
        except BaseException:
            if created:
                self._discard(write_set, cache_id)
            else:
                fsutil.remove_tree(write_set)
            raise

    def _commit(self, extracted: PreparedLayer, parent: str | None, expected_diff_id: str | None,
                before_commit: Callable[[], None] | None) -> tuple[Layer, bool]:
        """Publish an extracted layer on ``parent`` (the driver directory already stacks on it)."""
        from lamina.layer.reassembly import write_index

        write_set, cache_id, diff_id = extracted.write_set, extracted.cache_id, extracted.diff_id
        try:
            if expected_diff_id is not None and diff_id != expected_diff_id:
                raise errdefs.InvalidArgument(
                    f"layer digest mismatch: the archive declares {expected_diff_id} but its content "
                    f"hashes to {diff_id}")
            if before_commit is not None:
                before_commit()
            chain = compute_chain_id([parent, diff_id]) if parent else diff_id
            if self.exists(chain):
                self._discard(write_set, cache_id)
                return self.get(chain), False
            if extracted.compact is not None:  # so that even the first save need not decode
                write_index(write_set, extracted.compact)
            fsutil.atomic_write(os.path.join(write_set, "diff"), diff_id)
            fsutil.atomic_write(os.path.join(write_set, "size"), str(extracted.size))
            if parent:
                fsutil.atomic_write(os.path.join(write_set, "parent"), parent)
            fsutil.syncfs(self.driver.diff_path(cache_id))
            try:
                fsutil.publish_dir(write_set, self._dir(chain))  # the commit point
            except (errdefs.AlreadyExists, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                self._discard(write_set, cache_id)  # another process registered it meanwhile
                return self.get(chain), False
            log.debug("registered layer %s (diff_id %s, cache-id %s)", chain, diff_id, cache_id)
            return Layer(Digest(chain), diff_id, Digest(parent) if parent else None, extracted.size, cache_id), True
        except BaseException:
            self._discard(write_set, cache_id)
            raise

    def _discard(self, write_set: str, cache_id: str) -> None:
        self.driver.remove(cache_id)
        fsutil.remove_tree(write_set)

    # -- removing ------------------------------------------------------------------------

    def remove(self, chain_id: str) -> Layer:
        """Remove one layer.  The caller holds the store lock exclusively and has checked that
        nothing references the layer (no image, container or child layer)."""
        layer = self.get(chain_id)
        directory = self._dir(chain_id)
        removing = f"{directory}-{os.urandom(6).hex()}-removing"
        os.rename(directory, removing)  # the commit point
        fsutil.fsync_dir(self._layers_dir)
        self.driver.remove(layer.cache_id)
        fsutil.remove_tree(removing)
        log.debug("removed layer %s (cache-id %s)", chain_id, layer.cache_id)
        return layer

    def release_unreferenced(self, candidates: Iterable[str], referenced: set[str]) -> list[Layer]:
        """Remove the layers among ``candidates`` (and their ancestors) that ``referenced`` does
        not hold; children are removed before parents.  Caller holds the lock exclusively."""
        removed: list[Layer] = []
        for top in candidates:
            current: str | None = top
            while current is not None and current not in referenced and self.exists(current):
                parent = self.get(current).parent
                if self._has_children(current):
                    break
                removed.append(self.remove(current))
                current = parent
        return removed

    def _has_children(self, chain_id: str) -> bool:
        # a layer whose child is still referenced is itself referenced (prefix rule), so only
        # unreferenced children could remain: those are garbage collected by collect()
        for other in self.chain_ids():
            if other == chain_id:
                continue
            try:
                if _read_text(os.path.join(self._dir(other), "parent")) == chain_id:
                    return True
            except FileNotFoundError:
                continue
        return False

    def collect(self, referenced: set[str]) -> list[Layer]:
        """Remove every layer not in ``referenced`` (children first).  Exclusive lock held."""
        removed: list[Layer] = []
        while True:
            layers = {layer.chain_id: layer for layer in self.layers()}
            parents = {layer.parent for layer in layers.values() if layer.parent}
            leaves = [c for c in layers if c not in referenced and c not in parents]
            if not leaves:
                return removed
            for chain in leaves:
                removed.append(self.remove(chain))

    # -- crash recovery ------------------------------------------------------------------

    def needs_sweep(self) -> bool:
        if os.listdir(self._tmp_dir):
            return True
        if any(name.endswith("-removing") for name in os.listdir(self._layers_dir)):
            return True
        if self.driver.leftovers():
            return True
        return any(_lock_is_free(os.path.join(self._leases_dir, n)) for n in os.listdir(self._leases_dir))

    def sweep(self, referenced: Callable[[], set[str]] | None = None, *,
              also: tuple[Callable[[], list[str]], ...] = ()) -> list[str]:
        """Undo what crashed operations left (see the module docstring); returns what it did.

        Takes the store lock exclusively without waiting: when another process holds it, the
        sweep is left for later.  ``also``: the sweeps of stores written under this lock and a
        lease (the image store), run under the same exclusive lock when there is anything to
        sweep (a dead lease is an operation that died).
        """
        if not self.needs_sweep():
            return []
        lock = self.lock_nowait()
        if lock is None:
            return []
        try:
            done = self.sweep_locked(referenced)
            for sweep in also:
                done.extend(sweep())
        finally:
            lock.release()
        return done

    def sweep_locked(self, referenced: Callable[[], set[str]] | None = None) -> list[str]:
        """:meth:`sweep` for a caller that holds the store lock exclusively."""
        done: list[str] = []
        done.extend(self.driver.sweep())
        dead_leases = [os.path.join(self._leases_dir, n) for n in os.listdir(self._leases_dir)
                       if _lock_is_free(os.path.join(self._leases_dir, n))]
        for name in os.listdir(self._tmp_dir):
            path = os.path.join(self._tmp_dir, name)
            try:
                cache_id = _read_text(os.path.join(path, "cache-id"))
            except (FileNotFoundError, NotADirectoryError):
                cache_id = ""
            if cache_id:
                self.driver.remove(cache_id)
            fsutil.remove_tree(path)
            log.warning("swept interrupted layer registration %s (cache-id %s)", name, cache_id or "-")
            done.append(f"removed interrupted registration {name}")
        for name in os.listdir(self._layers_dir):
            if name.endswith("-removing"):
                path = os.path.join(self._layers_dir, name)
                try:
                    self.driver.remove(_read_text(os.path.join(path, "cache-id")))
                except FileNotFoundError:
                    pass
                fsutil.remove_tree(path)
                log.warning("finished interrupted removal of layer %s", name.split("-")[0])
                done.append(f"finished removal {name}")
        if dead_leases:
            referenced_now = (referenced or self._referenced)()
            for layer in self.collect(referenced_now):
                log.warning("removed layer %s left unreferenced by an interrupted operation", layer.chain_id)
                done.append(f"removed unreferenced layer {layer.chain_id}")
            for path in dead_leases:
                os.unlink(path)
        return done

    # -- checking ------------------------------------------------------------------------

    def known_cache_ids(self) -> set[str]:
        """The driver directories some record names: a layer's, a container's read-write and
        init layers, and those of the ready read-write layers (``mounts/.ready/*``)."""
        ids = {layer.cache_id for layer in self.layers()}
        ready = os.path.join(self._mounts_dir, READY_DIR)
        records = [os.path.join(self._mounts_dir, name) for name in os.listdir(self._mounts_dir)]
        if os.path.isdir(ready):
            records += [os.path.join(ready, name) for name in os.listdir(ready)]
        for record in records:
            for key in ("mount-id", "init-id"):
                try:
                    ids.add(_read_text(os.path.join(record, key)))
                except (FileNotFoundError, NotADirectoryError):
                    pass
        return ids

    def check(self, referenced: set[str], *, repair: bool = False) -> tuple[list[dict[str, str]], list[str]]:
        """Verify every layer record, chain and driver directory; report (and with ``repair``
        remove) unreferenced layers and driver directories no layer owns."""
        from lamina.layer.reassembly import TAR_SPLIT

        problems: list[dict[str, str]] = []
        repaired: list[str] = []
        chain_set = set(self.chain_ids())
        for name in os.listdir(self._layers_dir):
            if len(name) != 64:
                problems.append(_problem("layer", name, "stray entry in layerdb (interrupted work)"))
        for chain in sorted(chain_set):
            try:
                layer = self.get(chain)
            except errdefs.LaminaError as exc:
                problems.append(_problem("layer", chain, str(exc)))
                continue
            if layer.parent and layer.parent not in chain_set:
                problems.append(_problem("layer", chain, f"parent layer {layer.parent} is missing"))
            expected = compute_chain_id([layer.parent, layer.diff_id]) if layer.parent else layer.diff_id
            if expected != chain:
                problems.append(_problem("layer", chain, f"chainID does not match parent and diff_id ({expected})"))
            if not self.driver.exists(layer.cache_id):
                problems.append(_problem("layer", chain, f"driver directory {layer.cache_id} is missing"))
            if not os.path.isfile(os.path.join(self._dir(chain), TAR_SPLIT)):
                problems.append(_problem("layer", chain, f"{TAR_SPLIT} is missing"))
        unreferenced = chain_set - set(referenced)
        for chain in sorted(unreferenced):
            problems.append(_problem("layer", chain, "layer is not used by any image or container"))
        known = self.known_cache_ids()
        orphans = [i for i in self.driver.list_ids() if i not in known]
        for cache_id in orphans:
            problems.append(_problem("driver", cache_id, f"{self.driver.name} directory is not owned by any layer"))
        for message in self.driver.check():
            problems.append(_problem("driver", self.driver.name, message))
        if repair:
            repaired.extend(self.sweep_locked(lambda: set(referenced)))
            for chain in [c for c in (chain_set & set(referenced)) if not self.driver.exists(self.get(c).cache_id)]:
                repaired.append(f"cannot repair layer {chain}: its data is gone; remove the images using it")
            for layer in self.collect(set(referenced)):
                repaired.append(f"removed unreferenced layer {layer.chain_id}")
            for cache_id in orphans:
                self.driver.remove(cache_id)
                repaired.append(f"removed orphan {self.driver.name} directory {cache_id}")
            for name in os.listdir(self._layers_dir):
                if len(name) != 64:
                    fsutil.remove_tree(os.path.join(self._layers_dir, name))
                    repaired.append(f"removed stray layerdb entry {name}")
        return problems, repaired


def _problem(kind: str, obj: str, message: str) -> dict[str, str]:
    return {"Kind": kind, "Object": str(obj), "Message": message}


def _read_text(path: str) -> str:
    with open(path, "r", encoding="utf-8") as handle:
        return handle.read().strip()


def _lock_is_free(path: str) -> bool:
    """A lease file whose process is gone (it exists and nobody holds its lock)."""
    return os.path.exists(path) and not fsutil.lock_is_held(path)


