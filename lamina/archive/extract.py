"""Safe extraction of a layer tar relative to a directory file descriptor.

Safety model: the tar is hostile.  Every entry is created by an ``*at`` call on the file
descriptor of its parent directory, and that parent is opened from the root fd with
``openat2(RESOLVE_IN_ROOT)`` (:func:`lamina.fsutil.open_beneath`): symbolic links met on the way
resolve as if the root were ``/``, so no name, symlink or hardlink in the archive can reach
outside the root.  Leaves are never followed: files are created with ``O_CREAT|O_EXCL|
O_NOFOLLOW``, hardlinks with ``linkat`` without ``AT_SYMLINK_FOLLOW``, metadata is set on the
new file's own fd (or with ``AT_SYMLINK_NOFOLLOW`` for symlinks, devices and fifos, which are
never opened).  Existing leaves are replaced (a directory over a directory is kept and only its
metadata updated); directory trees are removed with fd-relative calls that never follow links.

Whiteouts (``.wh.<name>``, ``.wh..wh..opq``):

- :attr:`WhiteoutMode.OVERLAY` (a fresh overlay upper dir): ``.wh.<name>`` becomes a 0/0
  character device ``<name>``; ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` (or the
  ``opaque_xattr`` given: ``user.overlay.opaque`` for a ``userxattr`` overlay) on its
  directory; other ``.wh..wh.*`` entries are ignored.
- :attr:`WhiteoutMode.APPLY` (the target holds the parent's full tree): ``.wh.<name>`` deletes
  ``<name>``; ``.wh..wh..opq`` deletes every child of its directory that this tar did not
  create.  Whiteouts naming ``.``, ``..`` or nothing are refused.

Ownership is applied before the mode (so setuid/setgid bits survive ``chown``), xattrs after
both (``chown`` clears ``security.capability``); ``trusted.overlay.*`` and ``user.overlay.*`` xattrs from the tar are
dropped.  Directory times are applied once all entries are in place.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from lamina import errdefs, fsutil
from lamina.archive.api import (
    OPAQUE_XATTR,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    EntryType,
    TarEntry,
    WhiteoutMode,
    is_overlay_xattr,
)

if TYPE_CHECKING:
    from lamina.archive.tarstream import TarReader

__all__ = ["apply_tar", "remove_tree_at"]

_DIRECTORY_FLAGS = os.O_PATH | os.O_DIRECTORY
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE_LIMIT = 64            # directory fds kept open between entries
_T = TypeVar("_T")
_HOSTILE_ERRNOS = (errno.ELOOP, errno.EXDEV, errno.ENOTDIR, errno.ENAMETOOLONG)


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a directory) below ``dir_fd`` with all its content.

    Never follows symlinks, uses no recursion and holds a single directory fd whatever the depth
    (it climbs back with ``..`` from the directory it just emptied).
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def listing(fd: int) -> list[tuple[str, bool]]:
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]

    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        stack: list[tuple[str, list[tuple[str, bool]]]] = [(name, listing(fd))]
        while stack:
            own_name, children = stack[-1]
            descended = False
            while children:
                child, is_directory = children.pop()
                if is_directory:
                    child_fd = os.open(child, flags, dir_fd=fd)
                    os.close(fd)
                    fd = child_fd
                    stack.append((child, listing(fd)))
                    descended = True
                    break
                os.unlink(child, dir_fd=fd)
            if descended:
                continue
            stack.pop()
            if not stack:
                break
            parent_fd = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent_fd
            os.rmdir(own_name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


class _Extractor:
    def __init__(self, root_fd: int, mode: WhiteoutMode, same_owner: bool,
                 opaque_xattr: str = OPAQUE_XATTR) -> None:
        self.root_fd = root_fd
        self.mode = mode
        self.opaque_xattr = opaque_xattr
        self.same_owner = same_owner
        self.is_root = os.geteuid() == 0
        self.parents: dict[str, int] = {}           # normalised directory path -> fd
        self.retired: list[int] = []                # invalidated fds, closed between entries
        self.identities: dict[str, tuple[int, int]] = {}
        self.created: set[tuple[int, int, str]] = set()   # (dev, ino of parent, name), APPLY only
        self.directories: list[tuple[str, int, int]] = []
        self.size = 0
        self.track = mode is WhiteoutMode.APPLY

    # -- parent directories -----------------------------------------------------------

    def close(self) -> None:
        self.invalidate()
        self.trim()

    def invalidate(self) -> None:
        """Forget every cached directory fd (after a removal something may have moved)."""
        self.retired.extend(self.parents.values())
        self.parents.clear()
        self.identities.clear()

    def trim(self) -> None:
        """Close retired fds and keep the cache bounded; only between entries."""
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()
        if len(self.parents) > _CACHE_LIMIT:
            for key in list(self.parents)[:len(self.parents) - _CACHE_LIMIT // 2]:
                os.close(self.parents.pop(key))
                self.identities.pop(key, None)

    def _cache(self, path: str, fd: int) -> int:
        old = self.parents.get(path)
        if old is not None:
            self.retired.append(old)
        self.parents[path] = fd
        return fd

    def identity(self, path: str, fd: int) -> tuple[int, int]:
        found = self.identities.get(path)
        if found is None:
            info = os.fstat(fd)
            found = self.identities[path] = (info.st_dev, info.st_ino)
        return found

    def _open_parent(self, path: str) -> int:
        """The fd of directory ``path`` (normalised, "" for the root), opened beneath the root
        once and cached; ``OSError`` when it does not resolve to a directory inside the root."""
        if not path:
            return self.root_fd
        fd = self.parents.get(path)
        if fd is not None:
            return fd
        return self._cache(path, fsutil.open_beneath(self.root_fd, path, _DIRECTORY_FLAGS))

    def parent(self, path: str, name: str) -> int:
        """The fd of directory ``path`` (normalised, "" for the root), created if missing."""
        try:
            return self._open_parent(path)
        except FileNotFoundError:
            return self._make_parents(path, name)

    def existing_parent(self, path: str) -> int | None:
        """The fd of directory ``path`` if it resolves to a directory inside the root."""
        try:
            return self._open_parent(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                return None
            raise

    def _make_parents(self, path: str, name: str) -> int:
        """Create the missing directories of ``path``; holds one fd at a time whatever the depth
        and caches only the final directory."""
        parent_fd = self.root_fd
        owned = False
        parent_path = ""
        current = ""
        try:
            for part in path.split("/"):
                current = f"{current}/{part}" if current else part
                cached = self.parents.get(current)
                if cached is not None:
                    fd, fd_owned = cached, False
                else:
                    try:
                        fd = fsutil.open_beneath(self.root_fd, current, _DIRECTORY_FLAGS)
                    except FileNotFoundError:
                        try:
                            os.mkdir(part, 0o755, dir_fd=parent_fd)
                        except FileExistsError:
                            raise errdefs.InvalidArgument(
                                f"cannot extract {name!r}: its parent {current!r} is a dangling "
                                f"symbolic link") from None
                        os.chmod(part, 0o755, dir_fd=parent_fd)
                        if self.track:
                            self.created.add((*self.identity(parent_path, parent_fd), part))
                        fd = os.open(part, _DIRECTORY_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
                    fd_owned = True
                if owned:
                    os.close(parent_fd)
                parent_fd, owned, parent_path = fd, fd_owned, current
        except BaseException:
            if owned:
                os.close(parent_fd)
            raise
        if owned:
            self._cache(path, parent_fd)
        return parent_fd

    # -- removal ------------------------------------------------------------------------

    def remove(self, parent_fd: int, base: str) -> bool:
        """Remove ``base`` in ``parent_fd`` whatever it is; False if there was nothing."""
        try:
            info = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(info.st_mode):
            remove_tree_at(parent_fd, base)
        else:
            os.unlink(base, dir_fd=parent_fd)
        if stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode):
            self.invalidate()
        return True

    # -- metadata ------------------------------------------------------------------------

    @staticmethod
    def _times(entry: TarEntry) -> tuple[int, int]:
        atime = entry.atime_ns if entry.atime_ns is not None else entry.mtime_ns
        return max(atime, entry.mtime_ns), entry.mtime_ns

    def _xattrs(self, entry: TarEntry) -> list[tuple[str, bytes]]:
        return [(key, value) for key, value in entry.xattrs.items() if not is_overlay_xattr(key)]

    def metadata_fd(self, fd: int, entry: TarEntry, *, times: bool = True) -> None:
        if self.same_owner:
            os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)
        for key, value in self._xattrs(entry):
            os.setxattr(fd, key, value)
        if times:
            os.utime(fd, ns=self._times(entry))

    def metadata_at(self, parent_fd: int, base: str, entry: TarEntry, *, chmod: bool) -> None:
        """Metadata of a node that is never opened (symlink, device, fifo)."""
        if self.same_owner:
            os.chown(base, entry.uid, entry.gid, dir_fd=parent_fd, follow_symlinks=False)
        if chmod:
            # the node was just created by mknod/mkfifo: not a symlink, so following is moot
            os.chmod(base, entry.mode, dir_fd=parent_fd)
        xattrs = self._xattrs(entry)
        if xattrs:
            path = f"/proc/self/fd/{parent_fd}/{base}"
            for key, value in xattrs:
                os.setxattr(path, key, value, follow_symlinks=False)
        os.utime(base, ns=self._times(entry), dir_fd=parent_fd, follow_symlinks=False)

    # -- entries ---------------------------------------------------------------------------

    def apply(self, entry: TarEntry, reader: TarReader) -> None:
        name = entry.name
        directory, _, base = name.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(entry, directory, base)
            return
        parent_fd = self.parent(directory, name)
        kind = entry.type
        if kind is EntryType.REGULAR:
            self.regular(parent_fd, base, entry, reader)
        elif kind is EntryType.DIRECTORY:
            self.directory(parent_fd, base, entry)
        elif kind is EntryType.SYMLINK:
            self.symlink(parent_fd, base, entry)
        elif kind is EntryType.HARDLINK:
            self.hardlink(parent_fd, base, entry)
        elif kind in (EntryType.CHAR, EntryType.BLOCK, EntryType.FIFO):
            self.node(parent_fd, base, entry)
        else:  # pragma: no cover - the reader yields only the types above
            raise errdefs.InvalidArgument(f"unsupported tar entry type for {name!r}")
        if self.track:
            self.created.add((*self.identity(directory, parent_fd), base))

    def _create_retrying(self, parent_fd: int, base: str, create: Callable[[], _T]) -> _T:
        """``create()``; if ``base`` exists already, remove whatever it is and create again."""
        try:
            return create()
        except FileExistsError:
            self.remove(parent_fd, base)
            return create()

    def regular(self, parent_fd: int, base: str, entry: TarEntry, reader: TarReader) -> None:
        fd = self._create_retrying(parent_fd, base, lambda: os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent_fd))
        try:
            if entry.size:
                reader.copy_content_to(fd)
            self.metadata_fd(fd, entry)
        finally:
            os.close(fd)
        self.size += entry.size

    def directory(self, parent_fd: int, base: str, entry: TarEntry) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            info = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                self.remove(parent_fd, base)
                os.mkdir(base, 0o700, dir_fd=parent_fd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            self.metadata_fd(fd, entry, times=False)
        except BaseException:
            os.close(fd)
            raise
        if entry.name in self.parents:
            os.close(fd)
        else:
            self._cache(entry.name, fd)       # likely the parent of the next entries
        self.directories.append((entry.name, *self._times(entry)))

    def symlink(self, parent_fd: int, base: str, entry: TarEntry) -> None:
        if not entry.linkname:
            raise errdefs.InvalidArgument(f"symbolic link {entry.name!r} has an empty target")
        self._create_retrying(parent_fd, base,
                              lambda: os.symlink(entry.linkname, base, dir_fd=parent_fd))
        self.metadata_at(parent_fd, base, entry, chmod=False)

    def hardlink(self, parent_fd: int, base: str, entry: TarEntry) -> None:
        target_directory, _, target_base = entry.linkname.rpartition("/")
        target_fd = self.existing_parent(target_directory)
        if target_fd is None:
            raise errdefs.InvalidArgument(
                f"hardlink {entry.name!r}: its target {entry.linkname!r} does not exist")

        def link() -> None:
            os.link(target_base, base, src_dir_fd=target_fd, dst_dir_fd=parent_fd,
                    follow_symlinks=False)

        try:
            self._create_retrying(parent_fd, base, link)
        except FileNotFoundError:
            raise errdefs.InvalidArgument(
                f"hardlink {entry.name!r}: its target {entry.linkname!r} does not exist") from None
        except PermissionError:
            raise errdefs.InvalidArgument(
                f"hardlink {entry.name!r}: its target {entry.linkname!r} is a directory or not "
                f"linkable") from None

    def node(self, parent_fd: int, base: str, entry: TarEntry) -> None:
        if entry.type is EntryType.FIFO:
            self._create_retrying(parent_fd, base, lambda: os.mkfifo(base, 0o600, dir_fd=parent_fd))
        else:
            if not self.is_root:
                raise errdefs.InvalidArgument(
                    f"cannot create device {entry.name!r}: device nodes need root")
            kind = stat.S_IFCHR if entry.type is EntryType.CHAR else stat.S_IFBLK
            device = os.makedev(entry.devmajor, entry.devminor)
            try:
                self._create_retrying(parent_fd, base,
                                      lambda: os.mknod(base, kind | 0o600, device, dir_fd=parent_fd))
            except PermissionError:
                raise errdefs.InvalidArgument(
                    f"cannot create device {entry.name!r}: not permitted here") from None
        self.metadata_at(parent_fd, base, entry, chmod=True)

    def whiteout(self, entry: TarEntry, directory: str, base: str) -> None:
        if base == WHITEOUT_OPAQUE:
            if self.mode is WhiteoutMode.OVERLAY:
                parent_fd = self.parent(directory, entry.name)
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd)
                try:
                    os.setxattr(fd, self.opaque_xattr, b"y")
                finally:
                    os.close(fd)
            else:
                self.clear_directory(directory)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return      # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to do
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise errdefs.InvalidArgument(f"invalid whiteout entry {entry.name!r}")
        if self.mode is WhiteoutMode.OVERLAY:
            parent_fd = self.parent(directory, entry.name)
            if not self.is_root:
                raise errdefs.InvalidArgument(
                    f"cannot create the whiteout for {entry.name!r}: device nodes need root")
            self._create_retrying(parent_fd, target,
                                  lambda: os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd))
            if self.same_owner:
                os.chown(target, entry.uid, entry.gid, dir_fd=parent_fd, follow_symlinks=False)
        else:
            existing = self.existing_parent(directory)
            if existing is not None:
                self.remove(existing, target)

    def clear_directory(self, directory: str) -> None:
        parent_fd = self.existing_parent(directory)
        if parent_fd is None:
            return
        identity = self.identity(directory, parent_fd)
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            with os.scandir(fd) as listing:
                names = [child.name for child in listing]
        finally:
            os.close(fd)
        for child in names:
            if (*identity, child) not in self.created:
                self.remove(parent_fd, child)

    def finish_directories(self) -> None:
        for name, atime, mtime in self.directories:
            self.trim()
            directory, _, base = name.rpartition("/")
            parent_fd = self.existing_parent(directory)
            if parent_fd is None:
                continue
            try:
                os.utime(base, ns=(atime, mtime), dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _mapped_ranges(kind: str) -> list[tuple[int, int]]:
    """(first, count) of the ids this process's user namespace maps (``uid`` or ``gid``)."""
    try:
        with open(f"/proc/self/{kind}_map", "r", encoding="ascii") as handle:
            return [(int(fields[0]), int(fields[2])) for fields in (line.split() for line in handle)
                    if len(fields) == 3]
    except (OSError, ValueError):
        return []


def _unmapped_owner(entry: TarEntry) -> str | None:
    """Why ``entry``'s owner cannot be set here: an id outside the user namespace's mapping
    (rootless lamina maps the user's subordinate ranges only), or None."""
    for kind, value in (("uid", entry.uid), ("gid", entry.gid)):
        ranges = _mapped_ranges(kind)
        if ranges and not any(first <= value < first + count for first, count in ranges):
            shown = ", ".join(f"{first}-{first + count - 1}" for first, count in ranges)
            return (f"its {kind} {value} is outside the ids this user namespace maps ({shown}); "
                    f"give the user a larger range in /etc/sub{kind}")
    return None


def apply_tar(root_fd: int, reader: TarReader, mode: WhiteoutMode, *, same_owner: bool = True,
              opaque_xattr: str = OPAQUE_XATTR) -> int:
    """Extract every entry of ``reader`` below the directory ``root_fd``.

    ``opaque_xattr`` is the xattr that marks an opaque directory in
    :attr:`WhiteoutMode.OVERLAY` (:data:`~lamina.archive.api.USER_OPAQUE_XATTR` for an overlay
    mounted with ``userxattr``).

    Returns the sum of the regular files' content sizes (Docker's layer size).  Hostile entries
    (names or links escaping the root, hardlinks to missing targets, devices without root)
    raise :class:`errdefs.InvalidArgument` naming the entry; other OS failures are translated
    with :func:`lamina.fsutil.system_error`.  The reader is finished (trailing data consumed).
    """
    extractor = _Extractor(root_fd, mode, same_owner, opaque_xattr)
    try:
        for entry in reader:
            extractor.trim()
            try:
                extractor.apply(entry, reader)
            except errdefs.LaminaError:
                raise
            except OSError as exc:
                if exc.errno in _HOSTILE_ERRNOS:
                    raise errdefs.InvalidArgument(
                        f"cannot extract {entry.name!r}: {exc.strerror or exc}") from exc
                unmapped = _unmapped_owner(entry) if exc.errno == errno.EINVAL and same_owner else None
                if unmapped is not None:
                    raise errdefs.InvalidArgument(f"cannot extract {entry.name!r}: {unmapped}") from exc
                raise fsutil.system_error(f"extracting {entry.name!r}", exc) from exc
        try:
            extractor.finish_directories()
        except OSError as exc:
            raise fsutil.system_error("setting directory times", exc) from exc
        finish = getattr(reader, "finish", None)
        if finish is not None:
            finish()
    finally:
        extractor.close()
    return extractor.size
