"""Filesystem helpers every store uses: atomic writes, locks, safe resolution, disk usage.

Durability rule (STYLE.md habit 1): every state write goes tmp -> fsync(file) -> rename ->
fsync(dir), through :func:`atomic_write`.  Multi-file records are built in a temporary directory
and published with one :func:`publish_dir` rename.  The one exception, :func:`atomic_replace`
(atomic, not durable), is for run-time state that a reboot discards and for caches.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lamina import errdefs
from lamina import sys as lsys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["syncfs", 
    "atomic_write", "atomic_write_json", "atomic_replace", "read_json", "fsync_dir", "publish_dir",
    "FileLock",
    "file_lock", "lock_is_held", "modified_before", "open_beneath", "open_dir_beneath", "remove_tree", "disk_usage", "first_link",
    "make_dirs",
    "temp_name", "system_error",
]


def system_error(what: str, exc: OSError) -> errdefs.LaminaError:
    """Translate an OSError into the errdefs kind that describes it."""
    if exc.errno == errno.ENOENT:
        return errdefs.NotFound(f"{what}: {exc.strerror or exc}")
    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
        return errdefs.AlreadyExists(f"{what}: {exc.strerror or exc}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return errdefs.System(f"{what}: permission denied ({exc.strerror})")
    if exc.errno == errno.ENOSPC:
        return errdefs.System(f"{what}: no space left on device")
    return errdefs.System(f"{what}: {exc.strerror or exc}")


def temp_name(prefix: str = ".tmp-") -> str:
    return f"{prefix}{os.urandom(16).hex()}"  # 32 random hex digits (the uuid module costs ~4 ms to import)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: str | os.PathLike[str]) -> None:
    """Flush the whole filesystem holding the directory ``path`` (``syncfs(2)``): one call
    for a tree of files written without an fsync each (a layer's data before its record)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        lsys.syncfs(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    _replace(path, data, mode, durable=True)


def atomic_write_json(path: str | os.PathLike[str], value: Any, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(value, separators=(",", ":")), mode)


def atomic_replace(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Like :func:`atomic_write` (readers and a crashed writer leave the old or the new
    content, never a mix) but without the fsyncs, so not durable across a power loss: only for
    what a reboot makes meaningless anyway (run-time state under the exec root) or what is
    rebuilt when missing or damaged (caches)."""
    _replace(path, data, mode, durable=False)


def _replace(path: str | os.PathLike[str], data: bytes | str, mode: int, *, durable: bool) -> None:
    if isinstance(data, str):
        data = data.encode()
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, temp_name(".tmp-" + os.path.basename(path) + "-"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if durable:
        fsync_dir(directory)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, "rb") as handle:
        return json.load(handle)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def publish_dir(tmp_dir: str, final_dir: str, *, durable: bool = True) -> None:
    """Publish a fully written temporary directory under its final name with one rename.

    Everything inside ``tmp_dir`` must already be fsynced; this fsyncs the directory itself,
    renames it (failing if ``final_dir`` exists) and fsyncs the parent: the commit point.
    ``durable=False``: the rename alone (what a crash may lose or leave with empty files:
    only for what is disposable, see :mod:`lamina.container.store`).
    """
    if durable:
        fsync_dir(tmp_dir)
    os.rename(tmp_dir, final_dir) if not os.path.exists(final_dir) else _raise_exists(final_dir)
    if durable:
        fsync_dir(os.path.dirname(final_dir) or ".")


def _raise_exists(path: str) -> None:
    raise errdefs.AlreadyExists(f"{path} exists already")


def make_dirs(path: str | os.PathLike[str], mode: int = 0o700) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


class FileLock:
    """An advisory ``flock`` on a lock file; exclusive or shared; usable across processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def acquire(self, shared: bool = False) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def try_acquire(self, shared: bool = False) -> bool:
        """Take the lock without waiting; False (and nothing held) when another holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def stat(self) -> os.stat_result:
        """The held lock file's status (FileNotFoundError when nothing is held)."""
        if self._fd is None:
            raise FileNotFoundError(self.path)
        return os.fstat(self._fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def modified_before(path: str | os.PathLike[str], moment: float) -> bool:
    """Whether ``path`` (a link itself, not followed) was last modified at or before ``moment``
    (seconds since the epoch); a missing path is not.  The age test of a leftover sweep."""
    try:
        return os.lstat(path).st_mtime <= moment
    except FileNotFoundError:
        return False


#: how old a file's last change must be before a cache keyed by its ``stat`` trusts the key: a
#: rewrite within one timestamp tick may keep inode, size and times (git's "racily clean" entry)
SETTLED_NANOSECONDS = 1_000_000_000


def settled(status: os.stat_result) -> bool:
    """Whether the file ``status`` describes last changed (content or inode) over a second ago."""
    return time.time_ns() - max(status.st_mtime_ns, status.st_ctime_ns) > SETTLED_NANOSECONDS


def lock_is_held(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds a ``flock`` on ``path`` (a missing file is not held).

    The probe for "is the operation that owns this marker still running": a lease, a removal
    in progress, a running build."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: str | os.PathLike[str], shared: bool = False) -> Iterator[None]:
    lock = FileLock(path)
    lock.acquire(shared=shared)
    try:
        yield
    finally:
        lock.release()


_OPENAT2_WORKS: list[bool] = []


def open_beneath(root_fd: int, path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``path`` relative to ``root_fd`` without ever leaving it.

    Symlinks in the path are resolved as if ``root_fd`` were ``/`` (RESOLVE_IN_ROOT), so an
    absolute or ``..``-laden link cannot reach the host.  Falls back to a component-by-component
    walk with O_NOFOLLOW (symlinks anywhere then fail with ELOOP) where openat2 is missing.
    """
    path = path.lstrip("/") or "."
    flags |= os.O_CLOEXEC
    if not _OPENAT2_WORKS or _OPENAT2_WORKS[0]:
        try:
            fd = lsys.openat2(root_fd, path, flags, mode,
                              lsys.RESOLVE_IN_ROOT | lsys.RESOLVE_NO_MAGICLINKS | lsys.RESOLVE_NO_XDEV)
            if not _OPENAT2_WORKS:
                _OPENAT2_WORKS.append(True)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _OPENAT2_WORKS:
                raise
            _OPENAT2_WORKS.append(False)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise OSError(errno.EXDEV, "path leaves the root", path)
    current = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            os.close(current)
            current = nxt
        last = parts[-1] if parts else "."
        return os.open(last, flags | os.O_NOFOLLOW, mode, dir_fd=current)
    finally:
        os.close(current)


def open_dir_beneath(root_fd: int, path: str) -> int:
    return open_beneath(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree; missing is fine.  Never follows symlinks.

    Iterative and fd-relative with O(1) open descriptors, so a hostile layer nested deeper than
    PATH_MAX or Python's recursion limit is removed like any other.  Mounts below ``path``
    must be unmounted first (rmdir of a mount point fails with EBUSY).  An entry that vanishes
    meanwhile (another process removing the same tree) is removed already, not an error.
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            return
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    names: list[str] = []
    try:
        while True:
            subdirectory = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        subdirectory = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except FileNotFoundError:
                        pass
            if subdirectory is not None:
                try:
                    try:
                        child = os.open(subdirectory, flags, dir_fd=fd)
                    except PermissionError:
                        os.chmod(subdirectory, 0o700, dir_fd=fd, follow_symlinks=False)
                        child = os.open(subdirectory, flags, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = child
                names.append(subdirectory)
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def first_link(info: os.stat_result, seen: set[tuple[int, int]]) -> bool:
    """Whether ``info`` is the first of its inode's hard links met (recorded in ``seen``):
    sizes summed over a tree count a hard-linked file once."""
    if info.st_nlink > 1:
        key = (info.st_dev, info.st_ino)
        if key in seen:
            return False
        seen.add(key)
    return True


def disk_usage(path: str | os.PathLike[str]) -> int:
    """Bytes used by a tree (apparent size of regular files and symlinks, hardlinks once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [os.fspath(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                    continue
                if not first_link(st, seen):
                    continue
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    total += st.st_size
    return total
