"""Changes between layers and the diff tars that carry them.

Two ways to find what a layer changed, following Docker (moby ``pkg/archive/changes*.go``):

- **native** (overlay): :func:`overlay_changes` reads only the upper dir.  A 0/0 character
  device is a deletion (a whiteout), a directory with ``trusted.overlay.opaque=y`` (or
  ``user.overlay.opaque=y``: a ``userxattr`` overlay) replaced the
  lower one (MODIFY; its children are ADD), a non-directory is MODIFY if the path exists in a
  lower dir and ADD otherwise; a directory that was only copied up (same mode, owner and
  xattrs as below) is not a change of its own.  :func:`export_tree` tars the upper dir as a layer diff: whiteout
  devices become ``.wh.<name>`` entries, opaque dirs get a ``<dir>/.wh..wh..opq`` entry.
- **naive** (vfs and any driver without a native diff): :func:`tree_changes` compares two full
  trees (type and mode, owner, size and mtime for non-directories, device number, symlink
  target, xattrs); :func:`export_changes` tars what changed from the new tree.

Docker's rules kept here: the parent directory of an added or deleted path is reported as
modified; a deleted directory is reported once (not its content); a modified directory is
reported even when only its content changed; times compare equal when the seconds match and
one side has no sub-second part (tar headers carry whole seconds).

Diff tars are deterministic: entries in ``filepath.Walk`` order (names sorted bytewise, parents
first) or sorted change order, mtimes truncated to whole seconds, no atime, no user or group
names, hardlinks as tar hardlinks to the first path seen, ``security.capability`` v3 converted
to v2 like Docker does, sockets skipped.  Unlike Docker (which exports only
``security.capability``), every xattr except the overlay-internal ``trusted.overlay.*``/``user.overlay.*`` ones is
exported, so ``user.*`` attributes survive a commit.

:func:`copy_tree` copies a tree with full fidelity (the vfs driver's layer copy; with ``owner``,
the chowned copies of ``--userns-remap``: every owner shifted, modes set after the chown so
setuid and setgid bits survive it, xattrs set last so ``security.capability`` does too).  A
sparse file stays sparse (its data segments are copied, found with ``SEEK_DATA``/``SEEK_HOLE``).

``owner`` in :func:`tree_changes` and :func:`overlay_changes` translates the ids of the *new*
tree (a remapped container's read-write layer, holding host ids) into those of the old one
before they are compared.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator

from lamina import errdefs, fsutil
from lamina.archive.api import (
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    Change,
    ChangeKind,
    EntryType,
    TarEntry,
    is_opaque,
    is_overlay_xattr,
    is_whiteout_device,
)
from lamina.archive.tarstream import END_OF_ARCHIVE, entry_chunks

__all__ = ["overlay_changes", "tree_changes", "export_tree", "export_changes", "copy_tree",
           "copy_file_at", "copy_content", "is_whiteout_device", "read_xattrs", "UnmappedOwner"]

# (uid, gid) on disk -> (uid, gid) in a tar
Owner = Callable[[int, int], tuple[int, int]]
# (uid, gid) in the source tree -> (uid, gid) of the copy; None: ids the copy cannot have
CopyOwner = Callable[[int, int], "tuple[int, int] | None"]


class UnmappedOwner(errdefs.InvalidArgument):
    """A file :func:`copy_tree` was told to shift is owned by ids outside the mapping; ``path``
    is relative to the copied tree."""

    def __init__(self, path: str, uid: int, gid: int) -> None:
        super().__init__(f"/{path} is owned by uid {uid} gid {gid}, which the mapping does not cover")
        self.path, self.uid, self.gid = path, uid, gid
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM)


def read_xattrs(target: int | str) -> dict[str, bytes]:
    """Every xattr of ``target`` (an fd, or a path that is not followed); {} when unsupported."""
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return {}
        raise
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(target, name, follow_symlinks=follow)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                continue
            raise
    return values


def _xattrs_at(dir_fd: int, name: str) -> dict[str, bytes]:
    """xattrs of ``name`` below ``dir_fd`` without opening it or following it."""
    return read_xattrs(f"/proc/self/fd/{dir_fd}/{name}")


def _same_time(a: int, b: int) -> bool:
    return a == b or (a // 1_000_000_000 == b // 1_000_000_000
                      and (a % 1_000_000_000 == 0 or b % 1_000_000_000 == 0))


def _docker_path(relative: str) -> str:
    return "/" + relative


def _sorted_names(fd: int) -> list[str]:
    return sorted(os.listdir(fd), key=os.fsencode)


def _walk(root_fd: int) -> Iterator[tuple[str, str, int, os.stat_result]]:
    """(relative path, name, parent fd, lstat) for everything below ``root_fd``, in Go's
    ``filepath.Walk`` order (names sorted bytewise, a directory before its content).

    The parent fd is only valid until the next step.  One directory fd is held whatever the
    depth: the walk climbs back with ``..`` from the directory it finished.
    """
    fd = os.open(".", _DIRECTORY_FLAGS, dir_fd=root_fd)
    try:
        stack: list[tuple[str, Iterator[str]]] = [("", iter(_sorted_names(fd)))]
        while stack:
            relative, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack:
                    parent = os.open("..", _DIRECTORY_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = parent
                continue
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            child = f"{relative}/{name}" if relative else name
            yield child, name, fd, info
            if stat.S_ISDIR(info.st_mode):
                sub = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
                try:
                    listing = iter(_sorted_names(sub))
                except BaseException:
                    os.close(sub)
                    raise
                os.close(fd)
                fd = sub
                stack.append((child, listing))
    finally:
        os.close(fd)


def _open_in(root_fd: int, relative: str) -> int:
    """A directory fd of ``relative`` below ``root_fd`` (resolved inside it, never followed)."""
    if not relative:
        return os.open(".", _DIRECTORY_FLAGS, dir_fd=root_fd)
    return fsutil.open_beneath(root_fd, relative, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def _open_root(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise fsutil.system_error(f"opening {path}", exc) from exc


# -- changes --------------------------------------------------------------------------------


def _lower_stat(relative: str, lower_dirs: list[str]) -> tuple[str, os.stat_result] | None:
    """(lower dir, lstat) of ``relative`` as the stack of lower dirs (nearest first) shows it."""
    for lower in lower_dirs:
        try:
            info = os.lstat(os.path.join(lower, relative))
        except (FileNotFoundError, NotADirectoryError):
            continue
        return None if is_whiteout_device(info) else (lower, info)
    return None


def _add_parents(changes: list[Change]) -> list[Change]:
    """Docker's rule: every directory above a change is reported as modified."""
    reported = {change.path for change in changes}
    parents: set[str] = set()
    for change in changes:
        path = change.path
        while True:
            path = path.rsplit("/", 1)[0]
            if not path or path in parents:
                break
            parents.add(path)
    changes = changes + [Change(path, ChangeKind.MODIFY) for path in parents - reported]
    changes.sort(key=lambda change: change.path)
    return changes


def overlay_changes(upper_dir: str, lower_dirs: list[str], owner: Owner | None = None) -> list[Change]:
    """Changes recorded in an overlay upper dir against its lower dirs (nearest first).

    Reads only the upper dir (and looks paths up in the lowers); the result is what
    :func:`tree_changes` would report for the merged view, except below an opaque directory,
    whose content is all ADD (the lower content it hides is not listed as deleted).
    ``owner``: see the module docstring (a copied-up directory of a remapped container is
    not a change).
    """
    changes: list[Change] = []
    opaque_prefixes: list[str] = []
    root_fd = _open_root(upper_dir)
    try:
        for relative, name, parent_fd, info in _walk(root_fd):
            path = _docker_path(relative)
            while opaque_prefixes and not path.startswith(opaque_prefixes[-1]):
                opaque_prefixes.pop()
            if is_whiteout_device(info):
                changes.append(Change(path, ChangeKind.DELETE))
                continue
            lower = None if opaque_prefixes else _lower_stat(relative, lower_dirs)
            if not stat.S_ISDIR(info.st_mode):
                changes.append(Change(path, ChangeKind.ADD if lower is None else ChangeKind.MODIFY))
                continue
            xattrs = _xattrs_at(parent_fd, name)
            if is_opaque(xattrs):
                opaque_prefixes.append(path + "/")
                changes.append(Change(path, ChangeKind.ADD if lower is None else ChangeKind.MODIFY))
            elif lower is None:
                changes.append(Change(path, ChangeKind.ADD))
            elif _directory_differs(lower[1], info, xattrs, lower[0], relative, owner):
                changes.append(Change(path, ChangeKind.MODIFY))
    except OSError as exc:
        raise fsutil.system_error(f"reading the changes of {upper_dir}", exc) from exc
    finally:
        os.close(root_fd)
    return _add_parents(changes)


def _directory_differs(lower: os.stat_result, upper: os.stat_result, upper_xattrs: dict[str, bytes],
                       lower_dir: str, relative: str, owner: Owner | None) -> bool:
    upper_ids = (upper.st_uid, upper.st_gid) if owner is None else owner(upper.st_uid, upper.st_gid)
    if (lower.st_mode, lower.st_uid, lower.st_gid) != (upper.st_mode, *upper_ids):
        return True
    ours = {key: value for key, value in upper_xattrs.items() if not is_overlay_xattr(key)}
    theirs = {key: value for key, value in read_xattrs(os.path.join(lower_dir, relative)).items()
              if not is_overlay_xattr(key)}
    return ours != theirs


def _different(old: os.stat_result, new: os.stat_result, old_dir: int, new_dir: int, name: str,
               owner: Owner | None = None) -> bool:
    new_ids = (new.st_uid, new.st_gid) if owner is None else owner(new.st_uid, new.st_gid)
    if old.st_mode != new.st_mode or (old.st_uid, old.st_gid) != new_ids or old.st_rdev != new.st_rdev:
        return True
    if not stat.S_ISDIR(old.st_mode):
        if not _same_time(old.st_mtime_ns, new.st_mtime_ns) or old.st_size != new.st_size:
            return True
    if stat.S_ISLNK(old.st_mode):
        if os.readlink(name, dir_fd=old_dir) != os.readlink(name, dir_fd=new_dir):
            return True
    return _comparable_xattrs(old_dir, name) != _comparable_xattrs(new_dir, name)


def _comparable_xattrs(dir_fd: int, name: str) -> dict[str, bytes]:
    return {key: value for key, value in _xattrs_at(dir_fd, name).items()
            if not is_overlay_xattr(key)}


def _listing(fd: int) -> dict[str, os.stat_result]:
    result = {}
    with os.scandir(fd) as entries:
        for entry in entries:
            result[entry.name] = entry.stat(follow_symlinks=False)
    return result


def tree_changes(new_root: str, old_root: str | None, owner: Owner | None = None) -> list[Change]:
    """Docker's naive changes of the tree ``new_root`` against ``old_root`` (None: empty);
    ``owner``: see the module docstring."""
    changes: list[Change] = []
    new_root_fd = _open_root(new_root)
    old_root_fd = _open_root(old_root) if old_root is not None else None
    # directories still to compare: (relative path, whether the old tree has it as a directory)
    pending: list[tuple[str, bool]] = [("", old_root_fd is not None)]
    try:
        while pending:
            relative, in_old = pending.pop()
            new_dir = _open_in(new_root_fd, relative)
            old_dir = _open_in(old_root_fd, relative) if in_old and old_root_fd is not None else None
            try:
                new_children = _listing(new_dir)
                old_children = _listing(old_dir) if old_dir is not None else {}
                for name in sorted(new_children, key=os.fsencode):
                    new_info = new_children[name]
                    old_info = old_children.pop(name, None)
                    child = f"{relative}/{name}" if relative else name
                    path = _docker_path(child)
                    if old_info is None:
                        changes.append(Change(path, ChangeKind.ADD))
                    elif (old_info.st_dev, old_info.st_ino) == (new_info.st_dev, new_info.st_ino):
                        continue            # the very same inode: nothing below can differ
                    elif _different(old_info, new_info, old_dir, new_dir, name, owner):  # type: ignore[arg-type]
                        changes.append(Change(path, ChangeKind.MODIFY))
                    if stat.S_ISDIR(new_info.st_mode):
                        pending.append((child, old_info is not None and stat.S_ISDIR(old_info.st_mode)))
                for name in old_children:
                    child = f"{relative}/{name}" if relative else name
                    changes.append(Change(_docker_path(child), ChangeKind.DELETE))
            finally:
                os.close(new_dir)
                if old_dir is not None:
                    os.close(old_dir)
    except OSError as exc:
        raise fsutil.system_error(f"comparing {new_root} with {old_root}", exc) from exc
    finally:
        os.close(new_root_fd)
        if old_root_fd is not None:
            os.close(old_root_fd)
    return _add_parents(changes)


# -- diff tars -------------------------------------------------------------------------------


def _docker_xattrs(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    result = {}
    for key in sorted(xattrs):
        if is_overlay_xattr(key):
            continue
        value = xattrs[key]
        if key == "security.capability" and len(value) > 3 and value[3] == 3:
            # VFS_CAP_REVISION_3 names a namespace root uid; Docker writes revision 2.
            value = value[:3] + b"\x02" + value[4:20]
        result[key] = value
    return result


class _EntryMaker:
    """Turns lstat results into tar entries, remembering hardlinks (first path wins);
    ``owner`` translates (uid, gid) on disk into those the tar records (a remapped
    container's host ids into container ids)."""

    def __init__(self, owner: Owner | None = None) -> None:
        self.hardlinks: dict[tuple[int, int], str] = {}
        self.owner = owner

    def ids(self, info: os.stat_result) -> tuple[int, int]:
        return (info.st_uid, info.st_gid) if self.owner is None else self.owner(info.st_uid, info.st_gid)

    def entry(self, name: str, info: os.stat_result, parent_fd: int, base: str) -> TarEntry | None:
        mode = info.st_mode
        uid, gid = self.ids(info)
        entry = TarEntry(name=name, type=EntryType.REGULAR, mode=stat.S_IMODE(mode),
                         uid=uid, gid=gid,
                         mtime_ns=(info.st_mtime_ns // 1_000_000_000) * 1_000_000_000)
        if stat.S_ISSOCK(mode):
            return None
        if not stat.S_ISDIR(mode) and info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            first = self.hardlinks.get(key)
            if first is not None:
                entry.type = EntryType.HARDLINK
                entry.linkname = first
                return entry
            self.hardlinks[key] = name
        if stat.S_ISDIR(mode):
            entry.type = EntryType.DIRECTORY
        elif stat.S_ISREG(mode):
            entry.size = info.st_size
        elif stat.S_ISLNK(mode):
            entry.type = EntryType.SYMLINK
            entry.linkname = os.readlink(base, dir_fd=parent_fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            entry.type = EntryType.CHAR if stat.S_ISCHR(mode) else EntryType.BLOCK
            entry.devmajor = os.major(info.st_rdev)
            entry.devminor = os.minor(info.st_rdev)
        elif stat.S_ISFIFO(mode):
            entry.type = EntryType.FIFO
        entry.xattrs = _docker_xattrs(_xattrs_at(parent_fd, base))
        return entry


def _entry_bytes(entry: TarEntry, parent_fd: int, base: str) -> Iterator[bytes]:
    if entry.type is EntryType.REGULAR and entry.size:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        with os.fdopen(fd, "rb", buffering=0) as handle:
            yield from entry_chunks(entry, handle)
    else:
        yield from entry_chunks(entry)


def export_tree(upper_dir: str, *, overlay_whiteouts: bool = True, owner: Owner | None = None) -> Iterator[bytes]:
    """The diff tar of an overlay upper dir (Docker's native overlay2 diff); ``owner``
    translates the ids on disk (see :class:`_EntryMaker`)."""
    root_fd = _open_root(upper_dir)
    maker = _EntryMaker(owner)
    try:
        for relative, name, parent_fd, info in _walk(root_fd):
            if overlay_whiteouts and is_whiteout_device(info):
                directory, _, base = relative.rpartition("/")
                whiteout = f"{directory}/{WHITEOUT_PREFIX}{base}" if directory else WHITEOUT_PREFIX + base
                uid, gid = maker.ids(info)
                yield from entry_chunks(TarEntry(
                    name=whiteout, type=EntryType.REGULAR, mode=0o600, uid=uid,
                    gid=gid, mtime_ns=(info.st_mtime_ns // 1_000_000_000) * 1_000_000_000))
                continue
            entry = maker.entry(relative, info, parent_fd, name)
            if entry is None:
                continue
            yield from _entry_bytes(entry, parent_fd, name)
            if (overlay_whiteouts and entry.type is EntryType.DIRECTORY
                    and is_opaque(_xattrs_at(parent_fd, name))):
                yield from entry_chunks(TarEntry(
                    name=f"{relative}/{WHITEOUT_OPAQUE}", type=EntryType.REGULAR,
                    mode=entry.mode & 0o777, uid=entry.uid, gid=entry.gid))
    except OSError as exc:
        raise fsutil.system_error(f"exporting {upper_dir}", exc) from exc
    finally:
        os.close(root_fd)
    yield END_OF_ARCHIVE


def export_changes(root: str, changes: list[Change], owner: Owner | None = None) -> Iterator[bytes]:
    """The diff tar of ``changes`` taken from the tree ``root`` (Docker's naive diff)."""
    root_fd = _open_root(root)
    maker = _EntryMaker(owner)
    try:
        for change in sorted(changes, key=lambda change: change.path):
            relative = _relative_path(change.path)
            if not relative:
                continue
            directory, _, base = relative.rpartition("/")
            if change.kind is ChangeKind.DELETE:
                whiteout = f"{directory}/{WHITEOUT_PREFIX}{base}" if directory else WHITEOUT_PREFIX + base
                yield from entry_chunks(TarEntry(name=whiteout, type=EntryType.REGULAR, mode=0o600))
                continue
            try:
                parent_fd = fsutil.open_beneath(root_fd, directory or ".", os.O_PATH | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue            # changed again since the changes were computed
            try:
                try:
                    info = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entry = maker.entry(relative, info, parent_fd, base)
                if entry is not None:
                    yield from _entry_bytes(entry, parent_fd, base)
            finally:
                os.close(parent_fd)
    except OSError as exc:
        raise fsutil.system_error(f"exporting changes of {root}", exc) from exc
    finally:
        os.close(root_fd)
    yield END_OF_ARCHIVE


def _relative_path(path: str) -> str:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise errdefs.InvalidArgument(f"change path {path!r} leaves the tree")
    return "/".join(parts)


# -- copy -------------------------------------------------------------------------------------


def copy_content(source_fd: int, destination_fd: int, size: int) -> None:
    """``size`` bytes from ``source_fd`` to ``destination_fd`` (copy_file_range, or read and
    write where the filesystems refuse it); a source that shrank meanwhile gives what it has."""
    remaining = size
    use_range = True
    while remaining > 0:
        if use_range:
            try:
                copied = os.copy_file_range(source_fd, destination_fd, min(remaining, 1 << 30))
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_range = False
                continue
        else:
            data = os.read(source_fd, min(remaining, 1 << 20))
            view = memoryview(data)
            while view:
                view = view[os.write(destination_fd, view):]
            copied = len(data)
        if not copied:
            break           # the source shrank while being copied: keep what there is
        remaining -= copied


def _copy_sparse(source_fd: int, destination_fd: int, size: int) -> None:
    """Copy the data segments of a sparse file, leaving its holes holes."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(source_fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break       # only a hole is left
            raise
        end = min(os.lseek(source_fd, start, os.SEEK_HOLE), size)
        os.lseek(source_fd, start, os.SEEK_SET)
        os.lseek(destination_fd, start, os.SEEK_SET)
        copy_content(source_fd, destination_fd, end - start)
        offset = end
    os.ftruncate(destination_fd, size)


def copy_file_at(source_dir: int, target_dir: int, name: str, info: os.stat_result,
                 set_metadata: Callable[[int, int, os.stat_result], None]) -> None:
    """Copy the regular file ``name`` of ``source_dir`` (``info`` its lstat) to a new file
    ``name`` in ``target_dir``, neither followed if a symlink, then ``set_metadata(source fd,
    target fd, info)`` while both are open.  A sparse source gives a sparse copy."""
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_dir)
    try:
        target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=target_dir)
        try:
            if info.st_blocks * 512 < info.st_size:
                _copy_sparse(source, target, info.st_size)
            else:
                copy_content(source, target, info.st_size)
            set_metadata(source, target, info)
        finally:
            os.close(target)
    finally:
        os.close(source)


class _Copier:
    """The state of one :func:`copy_tree`: hardlinks seen, directories whose times are set
    last, and the owners of the copy."""

    def __init__(self, destination_fd: int, owner: CopyOwner | None) -> None:
        self.destination_fd = destination_fd
        self.owner = owner
        self.hardlinks: dict[tuple[int, int], str] = {}
        self.directories: list[tuple[str, os.stat_result]] = []

    def ids(self, info: os.stat_result, path: str) -> tuple[int, int]:
        if self.owner is None:
            return info.st_uid, info.st_gid
        ids = self.owner(info.st_uid, info.st_gid)
        if ids is None:
            raise UnmappedOwner(path, info.st_uid, info.st_gid)
        return ids

    def metadata_fd(self, fd: int, info: os.stat_result, xattrs: dict[str, bytes], path: str) -> None:
        os.fchown(fd, *self.ids(info, path))
        os.fchmod(fd, stat.S_IMODE(info.st_mode))  # after the chown, which clears setuid and setgid
        for key, value in xattrs.items():
            os.setxattr(fd, key, value)

    def metadata_at(self, dir_fd: int, name: str, info: os.stat_result, xattrs: dict[str, bytes], path: str) -> None:
        os.chown(name, *self.ids(info, path), dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISLNK(info.st_mode):
            os.chmod(name, stat.S_IMODE(info.st_mode), dir_fd=dir_fd)
        link = f"/proc/self/fd/{dir_fd}/{name}"
        for key, value in xattrs.items():
            os.setxattr(link, key, value, follow_symlinks=False)
        os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)

    def entry(self, src_dir: int, dst_dir: int, name: str, child: str, pending: list[str]) -> None:
        info = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            try:
                os.mkdir(name, 0o700, dir_fd=dst_dir)
            except FileExistsError:
                pass
            sub_src = os.open(name, _DIRECTORY_FLAGS, dir_fd=src_dir)
            try:
                sub_dst = os.open(name, _DIRECTORY_FLAGS, dir_fd=dst_dir)
                try:
                    self.metadata_fd(sub_dst, info, read_xattrs(sub_src), child)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
            self.directories.append((child, info))
            pending.append(child)
            return
        if stat.S_ISSOCK(mode):
            return
        if info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            first = self.hardlinks.get(key)
            if first is not None:
                os.link(first, name, src_dir_fd=self.destination_fd, dst_dir_fd=dst_dir, follow_symlinks=False)
                return
            self.hardlinks[key] = child
        if stat.S_ISREG(mode):
            def set_metadata(source: int, target: int, info: os.stat_result) -> None:
                self.metadata_fd(target, info, read_xattrs(source), child)
                os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))

            copy_file_at(src_dir, dst_dir, name, info, set_metadata)
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_dir), name, dir_fd=dst_dir)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=dst_dir)
        else:
            os.mknod(name, (mode & ~0o7777) | 0o600, info.st_rdev, dir_fd=dst_dir)
        self.metadata_at(dst_dir, name, info, _xattrs_at(src_dir, name), child)


def copy_tree(source: str, destination: str, *, owner: CopyOwner | None = None) -> None:
    """Copy ``source`` into ``destination`` (created if missing) with owners, modes, xattrs,
    times (ns), hardlinks, symlinks, devices and fifos; sockets are skipped.  Nothing is
    followed: every entry is reached through its parent's descriptor.  ``owner`` gives each
    entry's owner in the copy; an entry it cannot map raises :class:`UnmappedOwner`."""
    source_fd = _open_root(source)
    try:
        os.makedirs(destination, exist_ok=True)
        destination_fd = _open_root(destination)
    except OSError as exc:
        os.close(source_fd)
        raise fsutil.system_error(f"creating {destination}", exc) from exc
    copier = _Copier(destination_fd, owner)
    try:
        root_info = os.fstat(source_fd)
        copier.metadata_fd(destination_fd, root_info, read_xattrs(source_fd), "")
        copier.directories.append(("", root_info))
        pending = [""]
        while pending:
            relative = pending.pop()
            src_dir = _open_in(source_fd, relative)
            try:
                dst_dir = _open_in(destination_fd, relative)
            except BaseException:
                os.close(src_dir)
                raise
            try:
                for name in _sorted_names(src_dir):
                    copier.entry(src_dir, dst_dir, name, f"{relative}/{name}" if relative else name, pending)
            finally:
                os.close(src_dir)
                os.close(dst_dir)
        for relative, info in reversed(copier.directories):
            os.utime(relative or ".", ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=destination_fd,
                     follow_symlinks=False)
    except OSError as exc:
        raise fsutil.system_error(f"copying {source} to {destination}", exc) from exc
    finally:
        os.close(source_fd)
        os.close(destination_fd)
