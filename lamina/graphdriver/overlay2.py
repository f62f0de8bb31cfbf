"""The overlay2 graph driver: Docker's on-disk layout, mounts returned as data.

On-disk format (``home`` is ``<data-root>/overlay2``), byte-compatible with Docker's::

    <home>/<id>/diff          the layer's own changes; overlay whiteouts are 0/0 character
                              devices, opaque directories carry trusted.overlay.opaque=y
    <home>/<id>/link          the layer's short id: 26 characters of uppercase base32, no newline
    <home>/<id>/lower         ``l/<short-id>`` of every ancestor joined by ``:``, nearest parent
                              first, no newline; absent for a base layer
    <home>/<id>/work          overlay work directory (mode 0700); absent for a base layer
    <home>/<id>/merged        mount point of the full tree, created by get() and removed by put()
                              (a read-write layer kept ready by :meth:`Overlay2Driver.recycle`
                              keeps it, empty)
    <home>/<id>/work/work/incompat/volatile/   made by the kernel for a ``volatile`` mount; put()
                              removes it after a clean unmount (else the kernel refuses the
                              next mount)
    <home>/<id>/committed     empty; written into a layer when a child is created on it, from
                              then on get() mounts it read-only
    <home>/l/<short-id>       symlink ``../<id>/diff``

Short links keep the ``lowerdir=`` option of a deep stack within one page: the mount is made
from ``home`` (:attr:`lamina.mount.Mount.chdir`) with relative ``l/<short-id>`` entries.  The
``link`` and ``lower`` records and the short links are read and checked by
:mod:`lamina.graphdriver.overlay2_links`.

Commit points: :meth:`Overlay2Driver.create` builds ``<id>-incomplete`` (its short link already
pointing at ``../<id>/diff``) and renames it to ``<id>``; :meth:`Overlay2Driver.remove` renames
``<id>`` to ``<id>-removing`` before deleting its short link and tree.  :meth:`sweep` removes
both kinds of leftover and the short links they strand.

Rootless (in a user namespace, :mod:`lamina.rootless`): every mount gets the ``userxattr``
option, so overlayfs keeps its own xattrs as ``user.overlay.*`` (``trusted.*`` needs
CAP_SYS_ADMIN in the host's namespace): opaque directories carry ``user.overlay.opaque=y``.
Whiteouts stay 0/0 character devices (the kernel lets a user namespace make that one device).
A data root is used either rootless or as root, not both.

Mount references are counted per process; the layer store serialises use across processes.

``--userns-remap`` (:mod:`lamina.idmap`): a remapped container's mount sees the layers below
its read-write layer either through idmapped mounts (``get(..., idmap=mapping)``) or, where
those are missing, through chowned copies of them (``copies=True``,
:mod:`lamina.graphdriver.remapcopy`: ``<data-root>/<uid>.<gid>/overlay2/``, made by the first
mount that needs them and removed with their layer by :meth:`Overlay2Driver.remove`).  The copies
keep the layers' short ids, so such a mount has the same ``lowerdir=`` option, made from the
copies' directory; its upper and work directories are the layer's own.

Volatile mounts (``get(id, volatile=True)``, kernel 5.10 and later): overlayfs' ``volatile``
option drops the syncs of the upper directory, including the ``syncfs`` of the whole backing
filesystem that every unmount of an overlay otherwise does.  Only for what need not survive a
host crash: an init layer while it is set up, the root of a ``--rm`` container.  A layer
whose volatile mount was not cleanly unmounted (its process died) is mounted again after its
marker is removed, with a warning: by then its contents are disposable.
"""

from __future__ import annotations

import errno
import os
import _thread
from collections.abc import Callable, Iterator

from lamina import errdefs
from lamina import fsutil
from lamina import mount as lmount
from lamina.config import in_user_namespace
from lamina.graphdriver import common
from lamina.graphdriver import overlay2_links as links
from lamina.graphdriver.common import remap_homes
from lamina.graphdriver.overlay2_links import LINK_DIR, MAX_DEPTH, SHORT_ID, SHORT_ID_LENGTH
from lamina.mount import Mount

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import TypeVar

    from lamina.archive import Change
    from lamina.graphdriver.api import TarReaderLike
    from lamina.graphdriver.naivediff import NaiveDiff
    from lamina.graphdriver.remapcopy import RemapCopies
    from lamina.idmap import IdentityMapping

    _Read = TypeVar("_Read")

__all__ = ["Overlay2Driver", "probe", "native_diff_problem", "SHORT_ID_LENGTH", "MAX_DEPTH",
           "LINK_DIR"]

_VOLATILE_MARKER = ("work", "work", "incompat", "volatile")  # under a layer directory


def probe(home: str) -> str | None:
    """Why overlay2 cannot be used with ``home``, or None when it can (a test mount, see
    :func:`lamina.graphdriver.overlay2_kernel.probe`; imported when a probe runs: the
    registry trusts a recorded probe)."""
    from lamina.graphdriver.overlay2_kernel import probe as kernel_probe

    return kernel_probe(home)


def native_diff_problem(home: str) -> str | None:
    """Why native diffs are wrong on ``home``'s kernel, or None
    (:func:`lamina.graphdriver.overlay2_kernel.native_diff_problem`)."""
    from lamina.graphdriver.overlay2_kernel import native_diff_problem as kernel_problem

    return kernel_problem(home)


def _write_file(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write a file inside a directory that is not yet published (no rename needed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


class Overlay2Driver(common.LayerDirectories):
    """overlay2 on ``home``; see the module docstring for the layout."""

    name = "overlay2"

    def __init__(self, home: str) -> None:
        self.home = os.path.abspath(home)
        try:
            fsutil.make_dirs(self.home, 0o710)
            fsutil.make_dirs(os.path.join(self.home, LINK_DIR), 0o710)
        except OSError as exc:
            raise fsutil.system_error(f"create overlay2 directory {self.home}", exc) from exc
        self._lock = _thread.RLock()
        self._references: dict[str, int] = {}
        self._adopted: set[str] = set()  # mounted before this process's first get()
        self._volatile: set[str] = set()  # mounted here with the volatile option
        self._volatile_refused = False    # a kernel before 5.10: volatile is an unknown option
        self._native_problem: list[str | None] = []  # cached native_diff_problem result
        self._naive_diff: NaiveDiff | None = None  # made on the first naive diff

    # -- probing and selection ------------------------------------------------------------

    probe = staticmethod(probe)  # the registry asks the class

    @classmethod
    def holds_layers(cls, home: str) -> bool:
        return common.holds_layers(home, (LINK_DIR,))

    @property
    def _naive(self) -> NaiveDiff:
        """Diffs by tree comparison, where native diffs cannot be trusted or the parent is not
        the lower layer (imported on first use: listing and inspecting diff nothing)."""
        if self._naive_diff is None:
            from lamina.graphdriver.naivediff import NaiveDiff

            self._naive_diff = NaiveDiff(self)
        return self._naive_diff

    # -- paths and records ----------------------------------------------------------------

    def _dir(self, id: str) -> str:
        common.validate_id(id)
        if id == LINK_DIR:
            raise errdefs.InvalidArgument(f"invalid layer id {id!r}: reserved by overlay2")
        return os.path.join(self.home, id)

    def _existing_dir(self, id: str) -> str:
        path = self._dir(id)
        if not os.path.isdir(path):
            raise errdefs.NotFound(f"overlay2 layer {id} does not exist")
        return path

    def _is_parent(self, id: str, parent: str | None) -> bool:
        lowers = links.lowers(self._existing_dir(id))
        if not lowers:
            return parent is None
        return parent is not None and links.link_target_id(self.home, lowers[0]) == parent

    # -- ProtoDriver ----------------------------------------------------------------------

    def create(self, id: str, parent: str | None, *, read_write: bool = False,
               idmap: IdentityMapping | None = None, durable: bool = True) -> None:
        """Create an empty layer on ``parent``; commit point: rename of ``<id>-incomplete``.
        ``idmap``: nothing to shift (the layer starts empty).  ``durable=False``: no fsync."""
        final = self._dir(id)
        if os.path.lexists(final):
            raise errdefs.AlreadyExists(f"overlay2 layer {id} exists already")
        parent_dir = self._existing_dir(parent) if parent is not None else None
        lower = links.lower_on(parent_dir, id) if parent_dir is not None else ""
        work_in_progress = final + common.INCOMPLETE_SUFFIX
        link_path = None
        try:
            if os.path.lexists(work_in_progress):
                lmount.unmount_all_under(work_in_progress)
                fsutil.remove_tree(work_in_progress)
            os.mkdir(work_in_progress, 0o710)
            os.mkdir(os.path.join(work_in_progress, "diff"), 0o755)
            while True:
                short_id = links.new_short_id()
                candidate = os.path.join(self.home, LINK_DIR, short_id)
                try:
                    os.symlink(f"../{id}/diff", candidate)
                except FileExistsError:
                    continue
                link_path = candidate
                break
            _write_file(os.path.join(work_in_progress, "link"), short_id.encode("ascii"), durable=durable)
            if parent is not None:
                os.mkdir(os.path.join(work_in_progress, "work"), 0o700)
                _write_file(os.path.join(work_in_progress, "lower"), lower.encode("ascii"), durable=durable)
            if durable:
                fsutil.fsync_dir(os.path.join(self.home, LINK_DIR))
            fsutil.publish_dir(work_in_progress, final, durable=durable)
        except BaseException as exc:
            if link_path is not None:
                try:
                    os.unlink(link_path)
                except OSError:
                    pass
            fsutil.remove_tree(work_in_progress)
            if isinstance(exc, OSError):
                raise fsutil.system_error(f"create overlay2 layer {id}", exc) from exc
            raise
        if parent_dir is not None:
            # an image layer's mark is always synced; a read-write layer's parent is its
            # container's init layer, which is as disposable as the layer itself
            self._mark_committed(parent_dir, parent, synced=durable or not read_write)

    def _mark_committed(self, parent_dir: str, parent: str | None, *, synced: bool = True) -> None:
        """The parent's ``committed`` mark: a later mount of the parent is read-only."""
        if not os.path.exists(os.path.join(parent_dir, "committed")):
            # written once, by the first child (an image's top layer gets one child per container)
            try:
                write = fsutil.atomic_write if synced else fsutil.atomic_replace
                write(os.path.join(parent_dir, "committed"), b"", 0o600)
            except OSError as exc:
                raise fsutil.system_error(f"mark overlay2 layer {parent} committed", exc) from exc

    def write_init_layer(self, id: str, entries: tuple[tuple[str, str, int], ...]) -> bool:
        """Make a container's init layer placeholders without mounting it
        (:mod:`lamina.graphdriver.overlay2_init`); False when it must be mounted."""
        from lamina.graphdriver.overlay2_init import write_init_layer

        layer_dir = self._existing_dir(id)
        return write_init_layer(os.path.join(layer_dir, "diff"), links.lower_diff_dirs(self.home, layer_dir),
                                entries, rootless=in_user_namespace())

    def late_parent_supported(self) -> bool:
        """Whether a base layer may get its parent after :meth:`apply_diff` (see
        :class:`~lamina.graphdriver.api.LateParent`): with the native diff, which extracts into
        the diff directory alone; the naive diff applies the tar onto the parent's tree."""
        return self._native_diff_problem() is None

    def set_parent(self, id: str, parent: str) -> None:
        """Put the layer ``id`` (created on no parent, filled, not used yet) on ``parent``: its
        ``work`` directory, then its ``lower`` file (the commit point, one atomic write)."""
        layer_dir = self._existing_dir(id)
        if links.lowers(layer_dir):
            raise errdefs.FailedPrecondition(f"overlay2 layer {id} has a parent already")
        parent_dir = self._existing_dir(parent)
        lower = links.lower_on(parent_dir, id)
        try:
            os.makedirs(os.path.join(layer_dir, "work"), 0o700, exist_ok=True)
            fsutil.atomic_write(os.path.join(layer_dir, "lower"), lower.encode("ascii"))
        except OSError as exc:
            raise fsutil.system_error(f"put overlay2 layer {id} on {parent}", exc) from exc
        self._mark_committed(parent_dir, parent)

    def remove(self, id: str) -> None:
        """Unmount and delete the layer, its short link and its ``--userns-remap`` copies (first:
        a crash then leaves no copy of a layer that is gone); commit point: rename to
        ``-removing``."""
        layer_dir = self._dir(id)
        for home in remap_homes(os.path.dirname(self.home), self.name):
            _copies(home).remove(id)
        with self._lock:
            self._references.pop(id, None)
            self._adopted.discard(id)
            if not os.path.lexists(layer_dir):
                return
            lmount.unmount_all_under(layer_dir)
            common.remove_by_rename(layer_dir, self.home, f"overlay2 layer {id}",
                                    lambda removing: links.remove_link_of(self.home, removing, id))

    def list_ids(self) -> list[str]:
        return common.layer_ids(self.home, (LINK_DIR,))

    def recycle(self, id: str) -> bool:
        """Make the read-write layer ``id`` empty again for another container on the same
        parent (:mod:`lamina.layer.mounts`' ready layers): unmounted, its ``diff`` and ``work``
        directories replaced by new empty ones (nothing of the container, nor of the kernel's
        work, is kept), its short link, ``link``, ``lower`` and empty ``merged`` mount point
        kept.  False, and nothing changed, when it is not one this can reuse: a base layer, or
        one with children."""
        with self._lock:
            layer_dir = self._existing_dir(id)
            if not links.lowers(layer_dir) or os.path.exists(os.path.join(layer_dir, "committed")):
                return False
            self._references.pop(id, None)
            self._adopted.discard(id)
            self._volatile.discard(id)
            lmount.unmount_all_under(layer_dir)  # the root filesystem of the container it was
        try:
            for name, mode in (("diff", 0o755), ("work", 0o700)):
                path = os.path.join(layer_dir, name)
                fsutil.remove_tree(path)
                os.mkdir(path, mode)
        except OSError as exc:
            raise fsutil.system_error(f"empty overlay2 layer {id}", exc) from exc
        return True

    def mounts(self, id: str, idmap: IdentityMapping | None = None, copies: bool = False) -> list[Mount]:
        """One overlay mount (lowerdir from short links, relative to ``home``), or a bind of the
        diff directory for a base layer.  A layer with children (``committed``) mounts read-only.
        ``idmap``: the lower layers are seen through idmapped mounts (``--userns-remap``), or
        with ``copies`` through their chowned copies (relative to the copies' directory; made
        by :meth:`get`).
        """
        layer_dir = self._existing_dir(id)
        diff_dir = os.path.join(layer_dir, "diff")
        lowers = links.lowers(layer_dir)
        if not lowers:
            if idmap is not None:
                raise errdefs.FailedPrecondition(f"overlay2 layer {id} has no lower layers to idmap")
            return [Mount(type="bind", source=diff_dir, options=("bind",))]
        if copies and idmap is None:
            raise errdefs.InvalidArgument("chowned layer copies need an identity mapping")
        chdir = _copies_of(os.path.dirname(self.home), idmap, self.name).home if copies and idmap else self.home
        from lamina.graphdriver.overlay2_kernel import base_options

        prefix = base_options()
        if os.path.exists(os.path.join(layer_dir, "committed")):
            own = f"{LINK_DIR}/{links.short_id(layer_dir)}"
            options = prefix + ("lowerdir=" + ":".join([own] + lowers),)
        else:
            options = prefix + ("lowerdir=" + ":".join(lowers), f"upperdir={diff_dir}",
                                f"workdir={os.path.join(layer_dir, 'work')}")
            if len(",".join(options)) >= lmount.PAGE_SIZE:
                relative = os.path.relpath(layer_dir, chdir)
                options = prefix + ("lowerdir=" + ":".join(lowers), f"upperdir={relative}/diff",
                                    f"workdir={relative}/work")
        size = len(",".join(options))
        if size >= lmount.PAGE_SIZE:
            raise errdefs.FailedPrecondition(
                f"cannot mount overlay2 layer {id}: mount options are {size} bytes, over a page")
        return [Mount(type="overlay", source="overlay", options=options, chdir=chdir,
                      idmap=None if copies else idmap)]

    def get(self, id: str, *, volatile: bool = False, idmap: IdentityMapping | None = None,
            copies: bool = False) -> str:
        """Mount the full tree at ``<id>/merged`` (a base layer: its diff directory); see the
        module docstring for ``volatile``; ``idmap`` and ``copies``: see :meth:`mounts` (every
        get of a layer must pass the same); the copies are made first where missing."""
        with self._lock:
            layer_dir = self._existing_dir(id)
            if not links.lowers(layer_dir):
                return os.path.join(layer_dir, "diff")
            merged = os.path.join(layer_dir, "merged")
            count = self._references.get(id, 0)
            if count:
                self._references[id] = count + 1
                return merged
            try:
                fsutil.make_dirs(merged, 0o700)
            except OSError as exc:
                raise fsutil.system_error(f"create mount point of overlay2 layer {id}", exc) from exc
            if lmount.is_mountpoint(merged):
                # mounted by an earlier or another process: use it, never unmount it here
                self._adopted.add(id)
            else:
                if copies and idmap is not None:  # the chowned copies of what mounts() stacks, where missing
                    store = _copies_of(os.path.dirname(self.home), idmap, self.name)
                    own = [f"{LINK_DIR}/{links.short_id(layer_dir)}"] \
                        if os.path.exists(os.path.join(layer_dir, "committed")) else []
                    for entry in own + links.lowers(layer_dir):
                        target = links.link_target_id(self.home, entry)
                        store.ensure(target, os.path.join(self.home, target, "diff"), entry[len(LINK_DIR) + 1:], idmap)
                self._mount(id, layer_dir, merged, volatile, idmap, copies)
            self._references[id] = 1
            return merged

    def _mount(self, id: str, layer_dir: str, merged: str, volatile: bool, idmap: IdentityMapping | None,
               copies: bool) -> None:
        mounts = self.mounts(id, idmap, copies)
        writable = any(option.startswith("upperdir=") for option in mounts[0].options)
        marker = os.path.join(layer_dir, *_VOLATILE_MARKER)
        if writable and os.path.lexists(marker):
            common.logger.warning("overlay2 layer %s: its last volatile mount was not unmounted cleanly; "
                                  "mounting it again as it is", id)
            fsutil.remove_tree(marker)
        if volatile and writable and not self._volatile_refused:
            overlay = mounts[0]
            try:
                lmount.mount_all([Mount(type=overlay.type, source=overlay.source,
                                        options=overlay.options + ("volatile",), chdir=overlay.chdir,
                                        idmap=overlay.idmap)], merged)
                self._volatile.add(id)
                return
            except errdefs.System as exc:
                cause = exc.__cause__
                if not (isinstance(cause, OSError) and cause.errno == errno.EINVAL):
                    raise
                self._volatile_refused = True  # before Linux 5.10: mount it the usual way
        lmount.mount_all(mounts, merged)

    def put(self, id: str) -> None:
        with self._lock:
            layer_dir = self._existing_dir(id)
            if not links.lowers(layer_dir):
                return
            count = self._references.get(id, 0)
            if count == 0:
                raise errdefs.FailedPrecondition(f"overlay2 layer {id} is not mounted by this process")
            if count > 1:
                self._references[id] = count - 1
                return
            del self._references[id]
            if id in self._adopted:
                self._adopted.discard(id)
                return
            merged = os.path.join(layer_dir, "merged")
            lmount.unmount(merged, detach=True)
            if id in self._volatile:
                self._volatile.discard(id)
                fsutil.remove_tree(os.path.join(layer_dir, *_VOLATILE_MARKER))  # unmounted cleanly
            try:
                os.rmdir(merged)
            except OSError:
                pass  # busy in another mount namespace, or not empty: harmless

    def status(self) -> list[tuple[str, str]]:
        from lamina.graphdriver.overlay2_kernel import kernel_parameter

        metacopy = kernel_parameter("metacopy") == "Y"
        return [
            ("Backing Filesystem", common.backing_filesystem(self.home)),
            ("Supports d_type", _bool(common.supports_d_type(self.home))),
            ("Using metacopy", _bool(metacopy)),
            ("Native Overlay Diff", _bool(self._native_diff_problem() is None)),
            ("userxattr", _bool(in_user_namespace())),  # rootless: user.overlay.* xattrs
        ]

    def metadata(self, id: str) -> dict[str, str]:
        layer_dir = self._existing_dir(id)
        data = {
            "WorkDir": os.path.join(layer_dir, "work"),
            "MergedDir": os.path.join(layer_dir, "merged"),
            "UpperDir": os.path.join(layer_dir, "diff"),
        }
        lower_dirs = links.lower_diff_dirs(self.home, layer_dir)
        if lower_dirs:
            data["LowerDir"] = ":".join(lower_dirs)
        return data

    def check(self) -> list[str]:
        problems: list[str] = []
        link_dir = os.path.join(self.home, LINK_DIR)
        owners: dict[str, str] = {}
        for id in self.list_ids():
            layer_dir = os.path.join(self.home, id)
            if not os.path.isdir(os.path.join(layer_dir, "diff")):
                problems.append(f"overlay2 layer {id}: diff directory is missing")
            short_id = _read_noting(problems, links.short_id, layer_dir)
            if short_id is None:
                continue
            owners[short_id] = id
            link_path = os.path.join(link_dir, short_id)
            try:
                target = os.readlink(link_path)
            except OSError:
                problems.append(f"overlay2 layer {id}: short link l/{short_id} is missing")
            else:
                if target != f"../{id}/diff":
                    problems.append(f"overlay2 layer {id}: short link l/{short_id} points to {target!r}")
            lowers = _read_noting(problems, links.lowers, layer_dir)
            if lowers is None:
                continue
            if lowers and not os.path.isdir(os.path.join(layer_dir, "work")):
                problems.append(f"overlay2 layer {id}: work directory is missing")
            for entry in lowers:
                name = entry[len(LINK_DIR) + 1:] if entry.startswith(LINK_DIR + "/") else ""
                if not SHORT_ID.match(name):
                    problems.append(f"overlay2 layer {id}: lower file has a malformed entry {entry!r}")
                elif not os.path.isdir(os.path.join(link_dir, name)):
                    problems.append(f"overlay2 layer {id}: lower file names {entry}, which is missing or broken")
        try:
            link_entries = sorted(os.listdir(link_dir))
        except FileNotFoundError:
            link_entries = []
            problems.append(f"overlay2 link directory {link_dir} is missing")
        for name in link_entries:
            path = os.path.join(link_dir, name)
            if not os.path.islink(path):
                problems.append(f"overlay2 l/{name} is not a symbolic link")
            elif not os.path.isdir(path):
                problems.append(f"overlay2 short link l/{name} is broken (points to {os.readlink(path)!r})")
            elif name not in owners:
                problems.append(f"overlay2 short link l/{name} belongs to no layer")
        for name in sorted(os.listdir(self.home)):
            if common.is_work_in_progress(name):
                problems.append(f"overlay2 leftover work in progress {name} (removed at start-up)")
        for home in remap_homes(os.path.dirname(self.home), self.name):
            problems.extend(_copies(home).check(self._short_id_or_none))
        return problems

    def _short_id_or_none(self, id: str) -> str | None:
        """The short id of layer ``id``; None when it is gone or has none (its copies are then
        of no use)."""
        try:
            return links.short_id(self._existing_dir(id))
        except (errdefs.NotFound, errdefs.DataLoss, errdefs.InvalidArgument):
            return None

    def leftovers(self) -> list[str]:
        return common.list_leftovers(self.home) + [
            path for home in remap_homes(os.path.dirname(self.home), self.name) for path in _copies(home).leftovers()]

    def sweep(self) -> list[str]:
        """Remove ``-incomplete``/``-removing``/probe leftovers and the short links they strand,
        and of the ``--userns-remap`` copies also those whose layer is gone."""
        removed = common.sweep_leftovers(self.home)
        for home in remap_homes(os.path.dirname(self.home), self.name):
            removed.extend(_copies(home).sweep(self._short_id_or_none))
        return removed + common.sweep_stranded_links(self.home, LINK_DIR)

    # -- DiffDriver -----------------------------------------------------------------------

    def _native_diff_problem(self) -> str | None:
        with self._lock:
            if not self._native_problem:
                problem = native_diff_problem(self.home)
                if problem is not None:
                    common.logger.warning("overlay2 uses naive diff in %s: %s", self.home, problem)
                self._native_problem.append(problem)
            return self._native_problem[0]

    def _native(self, id: str, parent: str | None) -> bool:
        return self._is_parent(id, parent) and self._native_diff_problem() is None

    def apply_diff(self, id: str, parent: str | None, entries: TarReaderLike) -> int:
        if not self._native(id, parent):
            return self._naive.apply_diff(id, parent, entries)
        # the tar code: only when used
        from lamina.archive import OPAQUE_XATTR, USER_OPAQUE_XATTR, WhiteoutMode, apply_tar

        diff_dir = os.path.join(self._existing_dir(id), "diff")
        try:
            fd = os.open(diff_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise fsutil.system_error(f"open diff directory of overlay2 layer {id}", exc) from exc
        try:
            opaque = USER_OPAQUE_XATTR if in_user_namespace() else OPAQUE_XATTR
            return apply_tar(fd, entries, WhiteoutMode.OVERLAY, opaque_xattr=opaque)  # type: ignore[arg-type]
        finally:
            os.close(fd)

    def diff(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
             ) -> Iterator[bytes]:
        if not self._native(id, parent):
            return self._naive.diff(id, parent, owner)
        from lamina.archive import export_tree

        return export_tree(os.path.join(self._existing_dir(id), "diff"), owner=owner)

    def changes(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                ) -> list[Change]:
        if not self._native(id, parent):
            return self._naive.changes(id, parent, owner)
        from lamina.archive import overlay_changes

        layer_dir = self._existing_dir(id)
        return overlay_changes(os.path.join(layer_dir, "diff"), links.lower_diff_dirs(self.home, layer_dir), owner)

    def diff_size(self, id: str, parent: str | None, owner: Callable[[int, int], tuple[int, int]] | None = None
                  ) -> int:
        if not self._native(id, parent):
            return self._naive.diff_size(id, parent, owner)
        return fsutil.disk_usage(os.path.join(self._existing_dir(id), "diff"))

    def diff_path(self, id: str) -> str:
        return os.path.join(self._existing_dir(id), "diff")


def _copies(home: str) -> RemapCopies:
    """The ``--userns-remap`` copies in ``home`` (:mod:`.remapcopy`, imported when a data root has some)."""
    from lamina.graphdriver.remapcopy import RemapCopies

    return RemapCopies(home)


def _copies_of(data_root: str, mapping: IdentityMapping, driver_name: str) -> RemapCopies:
    from lamina.graphdriver.remapcopy import RemapCopies

    return RemapCopies.of(data_root, mapping, driver_name)


def _read_noting(problems: list[str], read: Callable[[str], _Read], layer_dir: str) -> _Read | None:
    """``read(layer_dir)``, or None with the damage it found noted in ``problems``."""
    try:
        return read(layer_dir)
    except errdefs.DataLoss as exc:
        problems.append(str(exc))
        return None


def _bool(value: bool) -> str:
    return "true" if value else "false"
