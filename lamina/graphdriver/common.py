"""What every graph driver shares: layer id rules, work-in-progress names, filesystem facts.

Work in progress (DESIGN.md §5): a driver builds a layer directory under ``<id>-incomplete``
and publishes it with one rename to ``<id>`` (the commit point of :meth:`create`); removal
renames ``<id>`` to ``<id>-removing`` first (the commit point of :meth:`remove`), so a crash
leaves either name behind and never a half-built or half-deleted ``<id>``.  Probes work in
``.probe-<random>`` directories, each ``flock``-ed by its prober for as long as it exists (the
kernel drops the lock when the prober dies).  :func:`sweep_leftovers` removes all three kinds
at start-up: a probe directory only when no process holds its lock.

Backing filesystem names are Docker's (``docker info`` "Backing Filesystem"), keyed by the
``f_type`` magic number of statfs(2).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Collection

from lamina import errdefs
from lamina import fsutil
from lamina import mount as lmount
from lamina import sys as lsys
from lamina.log import get_logger

__all__ = [
    "INCOMPLETE_SUFFIX", "REMOVING_SUFFIX", "remove_by_rename", "PROBE_PREFIX", "FILESYSTEM_NAMES", "logger",
    "LayerDirectories", "validate_id", "is_work_in_progress", "backing_filesystem", "supports_d_type",
    "sweep_leftovers", "list_leftovers", "probe_directory", "remove_probe", "probe_in_scratch", "holds_entries", "is_layer_name", "layer_ids",
    "holds_layers", "sweep_stranded_links", "remap_homes",
]

logger = get_logger("lamina.graphdriver")

INCOMPLETE_SUFFIX = "-incomplete"
REMOVING_SUFFIX = "-removing"
PROBE_PREFIX = ".probe-"
# the probe directories this process made, with the descriptor holding each one's lock
_probe_locks: dict[str, int] = {}

FILESYSTEM_NAMES: dict[int, str] = {
    0x61756673: "aufs",
    0x9123683E: "btrfs",
    0x28CD3D45: "cramfs",
    0x0000F15F: "ecryptfs",
    0x0000EF53: "extfs",
    0xF2F52010: "f2fs",
    0x65735546: "fuse",
    0x47504653: "gpfs",
    0x000072B6: "jffs2",
    0x3153464A: "jfs",
    0x00006969: "nfs",
    0x794C7630: "overlayfs",
    0x858458F6: "ramfs",
    0x52654973: "reiserfs",
    0xFE534D42: "smb2",
    0x73717368: "squashfs",
    0x01021994: "tmpfs",
    0xA501FCF5: "vxfs",
    0x58465342: "xfs",
    0x2FC12FC1: "zfs",
}


class LayerDirectories:
    """What the drivers that keep each layer in a directory named by its id share; a driver
    says where that directory is (``_dir``, which refuses an id that is not a layer name)."""

    def _dir(self, id: str) -> str:
        raise NotImplementedError

    def exists(self, id: str) -> bool:
        try:
            return os.path.isdir(self._dir(id))
        except errdefs.InvalidArgument:
            return False


def validate_id(id: str) -> str:
    """Reject ids that could escape the driver directory or collide with its own names."""
    if (not id or "/" in id or "\0" in id or id in (".", "..") or id.startswith(".")
            or id.endswith((INCOMPLETE_SUFFIX, REMOVING_SUFFIX)) or len(id) > 200):
        raise errdefs.InvalidArgument(f"invalid layer id {id!r}")
    return id


def is_work_in_progress(name: str) -> bool:
    return name.endswith((INCOMPLETE_SUFFIX, REMOVING_SUFFIX)) or name.startswith(PROBE_PREFIX)


def is_layer_name(name: str, reserved: Collection[str] = ()) -> bool:
    """Whether an entry of a driver's layer directory names a layer: not hidden (probes,
    locks), not work in progress, not one of the driver's own entries (``reserved``)."""
    return not (name in reserved or name.startswith(".") or is_work_in_progress(name))


def layer_ids(directory: str, reserved: Collection[str] = ()) -> list[str]:
    """The ids of the layers in ``directory`` (subdirectories with layer names), sorted."""
    with os.scandir(directory) as entries:
        return sorted(entry.name for entry in entries
                      if is_layer_name(entry.name, reserved) and entry.is_dir(follow_symlinks=False))


def holds_layers(directory: str, reserved: Collection[str] = ()) -> bool:
    """Whether ``directory`` exists and has an entry with a layer name (a driver's data is there)."""
    return holds_entries(directory, lambda name: not is_layer_name(name, reserved))


def backing_filesystem(path: str) -> str:
    """Docker's name of the filesystem holding ``path`` (``extfs``, ``xfs``...), or ``<unknown>``."""
    try:
        magic = lsys.statfs_type(path)
    except OSError as exc:
        raise fsutil.system_error(f"statfs {path}", exc) from exc
    return FILESYSTEM_NAMES.get(magic, "<unknown>")


def supports_d_type(directory: str) -> bool:
    """Whether the filesystem of ``directory`` reports real d_type values in getdents64.

    Creates a scratch directory with a file and a subdirectory and reads their types back;
    overlayfs relies on d_type to find whiteouts, so a filesystem answering ``DT_UNKNOWN``
    (xfs made with ``ftype=0``) cannot back overlay2.
    """
    scratch = os.path.join(directory, f"{PROBE_PREFIX}dtype-{os.urandom(16).hex()}")
    os.mkdir(scratch, 0o700)
    try:
        os.close(os.open(os.path.join(scratch, "file"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.mkdir(os.path.join(scratch, "dir"), 0o700)
        fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            entries = {name: d_type for _inode, d_type, name in lsys.getdents64(fd)}
        finally:
            os.close(fd)
        return entries.get(b"file") == lsys.DT_REG and entries.get(b"dir") == lsys.DT_DIR
    finally:
        fsutil.remove_tree(scratch)


def holds_entries(path: str, ignore: Callable[[str], bool] = lambda name: False) -> bool:
    """Whether directory ``path`` exists and has an entry that ``ignore`` does not excuse."""
    try:
        with os.scandir(path) as entries:
            return any(not ignore(entry.name) for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


def probe_directory(home: str) -> str:
    """Create a fresh ``.probe-<random>`` directory under ``home`` (created if missing), locked
    by this process until :func:`remove_probe` (or its death).  Probes are not made under any
    store lock (the first commands on a fresh data root probe at once): a sweep may take a
    directory between its ``mkdir`` and its lock, and then another name is tried."""
    fsutil.make_dirs(home, 0o710)
    for _attempt in range(16):
        path = os.path.join(home, f"{PROBE_PREFIX}{os.urandom(6).hex()}")
        os.mkdir(path, 0o700)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # swept before it was locked
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a sweep holds it, to remove it
        _probe_locks[path] = fd
        return path
    raise OSError(errno.EAGAIN, "probe directories keep being swept away", home)


def remove_probe(path: str) -> None:
    """Unmount what a probe mounted under ``path``, remove it and release its lock."""
    try:
        lmount.unmount_all_under(path)
        fsutil.remove_tree(path)
    finally:
        fd = _probe_locks.pop(path, None)
        if fd is not None:
            os.close(fd)


def _probe_in_use(path: str) -> tuple[bool, int | None]:
    """Whether a live process holds the probe directory ``path``; when not, the descriptor
    that now holds its lock (closed by the caller once the directory is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True, None  # removed by its prober meanwhile: nothing to sweep
    except OSError:
        return False, None  # not a directory: a leftover like any other
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True, None
    return False, fd


def _is_remap_root(name: str) -> bool:
    """``<uid>.<gid>``: ASCII digits, one dot, ASCII digits."""
    uid, dot, gid = name.partition(".")
    return bool(dot) and uid.isascii() and uid.isdigit() and gid.isascii() and gid.isdigit()


def remap_homes(data_root: str, driver_name: str) -> list[str]:
    """Every ``<data-root>/<uid>.<gid>/<driver>`` directory there is: where the ``--userns-remap``
    copies of that driver's layers are (:mod:`lamina.graphdriver.remapcopy`)."""
    try:
        names = sorted(os.listdir(data_root))
    except FileNotFoundError:
        return []
    return [path for path in (os.path.join(data_root, name, driver_name) for name in names if _is_remap_root(name))
            if os.path.isdir(path)]


def list_leftovers(directory: str) -> list[str]:
    """Names of the work-in-progress entries directly under ``directory``."""
    try:
        return sorted(name for name in os.listdir(directory) if is_work_in_progress(name))
    except FileNotFoundError:
        return []


def make_placeholder(name: str, kind: str, mode: int, *, dir_fd: int | None = None) -> None:
    """Create a container init layer's placeholder ``name`` (in ``dir_fd``): ``kind`` is
    ``dir``, ``file`` (empty) or ``link:<target>`` (see :data:`lamina.layer.mounts.INIT_PATHS`);
    ``mode`` set whatever the umask."""
    if kind == "dir":
        os.mkdir(name, mode, dir_fd=dir_fd)
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    elif kind == "file":
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    else:
        os.symlink(kind.split(":", 1)[1], name, dir_fd=dir_fd)


def sweep_stranded_links(home: str, link_dir: str = "l") -> list[str]:
    """Remove the short links ``<home>/<link_dir>/<name> -> ../<id>/diff`` whose ``<home>/<id>``
    is gone (overlay2's layout: a crash between a removal's rename and its link's unlink, or
    a creation that never reached its rename); returns ``<link_dir>/<name>`` of each."""
    removed: list[str] = []
    directory = os.path.join(home, link_dir)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        try:
            target = os.readlink(path)
        except OSError:
            continue
        parts = target.split("/")
        if len(parts) == 3 and parts[0] == ".." and parts[2] == "diff" and not os.path.lexists(
                os.path.join(home, parts[1])):
            logger.warning("removing stranded short link %s -> %s", path, target)
            os.unlink(path)
            removed.append(f"{link_dir}/{name}")
    return removed


def sweep_leftovers(directory: str, on_remove: Callable[[str], None] | None = None) -> list[str]:
    """Remove work-in-progress entries directly under ``directory``; returns their names.

    Mounts below a leftover are detached first, so removal never reaches through a mount into
    another layer.  Only safe while no other process creates layers in ``directory`` (the layer
    store calls it at start-up under its exclusive lock); probe directories are not made under
    that lock, so one is removed only when no process holds its lock, and an entry that
    vanishes meanwhile (its owner removed it) is passed over.
    """
    removed: list[str] = []
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in entries:
        if not is_work_in_progress(name):
            continue
        path = os.path.join(directory, name)
        lock_fd = None
        if name.startswith(PROBE_PREFIX):
            in_use, lock_fd = _probe_in_use(path)
            if in_use:
                continue
        try:
            logger.warning("removing leftover work in progress %s", path)
            if on_remove is not None:
                on_remove(path)
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    lmount.unmount_all_under(path)
                fsutil.remove_tree(path)
            except FileNotFoundError:
                continue  # removed by its owner meanwhile
            except OSError as exc:
                raise fsutil.system_error(f"remove leftover {path}", exc) from exc
            removed.append(name)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)
    return removed


def remove_by_rename(directory: str, parent: str, what: str,
                     before_delete: Callable[[str], None] | None = None) -> None:
    """Remove ``directory`` (in ``parent``) with its commit point first: renamed to
    ``<directory>-removing`` (a leftover of an earlier attempt is deleted before), the rename
    made durable, then ``before_delete(<renamed path>)`` and the tree deleted.  A crash after
    the rename leaves a ``-removing`` directory that the sweeps delete.  Missing is fine;
    another process removing it at once is fine.  ``what`` names it in the error."""
    removing = directory + REMOVING_SUFFIX
    try:
        if os.path.lexists(removing):
            lmount.unmount_all_under(removing)
            fsutil.remove_tree(removing)
        try:
            os.rename(directory, removing)
        except FileNotFoundError:
            return  # another process removes it
        fsutil.fsync_dir(parent)
        if before_delete is not None:
            before_delete(removing)
        fsutil.remove_tree(removing)
    except OSError as exc:
        raise fsutil.system_error(f"remove {what}", exc) from exc


def probe_in_scratch(home: str, check: Callable[[str], str | None], failed: str) -> str | None:
    """Why a driver cannot be used with ``home``, or None: ``check`` runs on a fresh probe
    directory under ``home`` (:func:`probe_directory`, removed after) and answers the reason;
    an error it raises is ``failed: <error>``.  A ``home`` made here for a driver that turns
    out unusable is removed again (no empty directory of a driver not chosen)."""
    created = not os.path.exists(home)
    try:
        scratch = probe_directory(home)
    except OSError as exc:
        return f"cannot create {home}: {exc.strerror}"
    reason: str | None = None
    try:
        reason = check(scratch)
    except (OSError, errdefs.LaminaError) as exc:
        reason = f"{failed}: {exc}"
    finally:
        remove_probe(scratch)
        if created and reason is not None:
            try:
                os.rmdir(home)
            except OSError:
                pass
    return reason
