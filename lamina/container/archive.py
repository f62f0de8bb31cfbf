"""``docker cp`` on a container's root filesystem, without ever leaving it (CVE-2018-15664).

Every path is resolved relative to a descriptor of the container's root with
:func:`lamina.fsutil.open_beneath` (``openat2`` with ``RESOLVE_IN_ROOT``): a symlink in the
container, even one swapped in while the copy runs, resolves as if the root were ``/``.  Below
the resolved directory, the tree is walked and read through ``*at`` calls with ``O_NOFOLLOW``.

Path rules (Docker's ``ResolvePath``): the directory part is resolved inside the container, the
last element is not followed (a symlink is copied as a symlink), unless the path ends in ``/``
(then it must resolve to a directory) or in ``/.`` (the directory's contents).  The archive's
top entry is named after the requested path's base name (``.`` for ``/.``), as Docker names it.

``PathStat`` (the ``X-Docker-Container-Path-Stat`` header, base64 JSON): ``name``, ``size``,
``mode`` (Go ``os.FileMode`` bits: type bits high, permissions low), ``mtime`` (RFC 3339),
``linkTarget`` (a symlink's target resolved inside the container, as an absolute path).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from lamina import errdefs, fsutil
from lamina.archive import (
    EntryType,
    TarEntry,
    TarReader,
    WhiteoutMode,
    apply_tar,
    decompressed,
)
from lamina.archive.tarstream import END_OF_ARCHIVE, entry_chunks
from lamina.container.logs import format_time
from lamina.records import dataclass, replace

if TYPE_CHECKING:
    from lamina.idmap import IdentityMapping

__all__ = ["archive_path", "extract_archive", "go_file_mode", "path_stat"]

# Go's os.FileMode type bits
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_DEVICE = 1 << 26
_MODE_NAMED_PIPE = 1 << 25
_MODE_SOCKET = 1 << 24
_MODE_SETUID = 1 << 23
_MODE_SETGID = 1 << 22
_MODE_CHAR_DEVICE = 1 << 21
_MODE_STICKY = 1 << 20


def go_file_mode(mode: int) -> int:
    """A ``st_mode`` as Go's ``os.FileMode``."""
    result = mode & 0o777
    if stat.S_ISDIR(mode):
        result |= _MODE_DIR
    elif stat.S_ISLNK(mode):
        result |= _MODE_SYMLINK
    elif stat.S_ISFIFO(mode):
        result |= _MODE_NAMED_PIPE
    elif stat.S_ISSOCK(mode):
        result |= _MODE_SOCKET
    elif stat.S_ISCHR(mode):
        result |= _MODE_DEVICE | _MODE_CHAR_DEVICE
    elif stat.S_ISBLK(mode):
        result |= _MODE_DEVICE
    if mode & stat.S_ISUID:
        result |= _MODE_SETUID
    if mode & stat.S_ISGID:
        result |= _MODE_SETGID
    if mode & stat.S_ISVTX:
        result |= _MODE_STICKY
    return result


@dataclass
class _Target:
    """The object a path names: ``base`` relative to the directory ``parent_fd`` ("." when the
    path named a directory that was opened itself), and the archive name of its top entry."""

    parent_fd: int
    base: str
    name: str
    absolute: str

    def close(self) -> None:
        os.close(self.parent_fd)


def _not_found(path: str, container: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"Could not find the file {path} in container {container}")


def _resolve(root_fd: int, path: str, container: str) -> _Target:
    raw = path if path.startswith("/") else "/" + path
    absolute = posixpath.normpath(raw)
    if absolute.startswith("//"):
        absolute = "/" + absolute.lstrip("/")
    try:
        if raw.endswith("/.") or raw == "/" or absolute == "/":
            fd = fsutil.open_beneath(root_fd, absolute, os.O_PATH | os.O_DIRECTORY)
            return _Target(fd, ".", ".", absolute)
        if raw.endswith("/"):
            fd = fsutil.open_beneath(root_fd, absolute, os.O_PATH | os.O_DIRECTORY)
            return _Target(fd, ".", posixpath.basename(absolute), absolute)
        directory, base = posixpath.split(absolute)
        fd = fsutil.open_beneath(root_fd, directory, os.O_PATH | os.O_DIRECTORY)
        try:
            os.stat(base, dir_fd=fd, follow_symlinks=False)
        except BaseException:
            os.close(fd)
            raise
        return _Target(fd, base, base, absolute)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _not_found(path, container) from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise _not_found(path, container) from exc
        raise fsutil.system_error(f"resolving {path} in container {container}", exc) from exc


def _link_target(root_fd: int, absolute: str) -> str:
    """A symlink's final target inside the container (its own text when it dangles)."""
    try:
        fd = fsutil.open_beneath(root_fd, absolute, os.O_PATH)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            resolved = os.readlink(f"/proc/self/fd/{fd}")
            root = os.readlink(f"/proc/self/fd/{root_fd}")
        finally:
            os.close(fd)
        if resolved == root:
            return "/"
        if resolved.startswith(root.rstrip("/") + "/"):
            return resolved[len(root.rstrip("/")):]
    directory, base = posixpath.split(absolute)
    parent = fsutil.open_beneath(root_fd, directory, os.O_PATH | os.O_DIRECTORY)
    try:
        text = os.readlink(base, dir_fd=parent)
    finally:
        os.close(parent)
    return posixpath.normpath(posixpath.join(directory, text))


def _stat_of(target: _Target, root_fd: int, path: str, container: str) -> dict[str, Any]:
    try:
        info = os.stat(target.base, dir_fd=target.parent_fd, follow_symlinks=False)
        link = ""
        if stat.S_ISLNK(info.st_mode):
            link = _link_target(root_fd, target.absolute)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _not_found(path, container) from exc  # removed since it was resolved
    except OSError as exc:
        raise fsutil.system_error(f"stat {path} in container {container}", exc) from exc
    name = target.name if target.name != "." else posixpath.basename(target.absolute) or "/"
    return {"name": name, "size": info.st_size, "mode": go_file_mode(info.st_mode),
            "mtime": format_time(info.st_mtime_ns), "linkTarget": link}


def path_stat(root_fd: int, path: str, container: str) -> dict[str, Any]:
    target = _resolve(root_fd, path, container)
    try:
        return _stat_of(target, root_fd, path, container)
    finally:
        target.close()


def _entries(parent_fd: int, base: str, name: str, hardlinks: dict[tuple[int, int], str],
             owner: IdentityMapping | None = None) -> Iterator[bytes]:
    info = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
    mode = info.st_mode
    uid, gid = (info.st_uid, info.st_gid) if owner is None else owner.to_container(info.st_uid, info.st_gid)
    entry = TarEntry(name=name, type=EntryType.REGULAR, mode=stat.S_IMODE(mode), uid=uid, gid=gid,
                     mtime_ns=(info.st_mtime_ns // 1_000_000_000) * 1_000_000_000)
    if stat.S_ISSOCK(mode):
        return
    if not stat.S_ISDIR(mode) and info.st_nlink > 1:
        key = (info.st_dev, info.st_ino)
        if key in hardlinks:
            entry.type = EntryType.HARDLINK
            entry.linkname = hardlinks[key]
            yield from entry_chunks(entry)
            return
        hardlinks[key] = name
    if stat.S_ISDIR(mode):
        entry.type = EntryType.DIRECTORY
        yield from entry_chunks(entry)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if base == "." else os.O_NOFOLLOW)
        fd = os.open(base, flags, dir_fd=parent_fd)
        try:
            for child in sorted(os.listdir(fd), key=os.fsencode):
                yield from _entries(fd, child, f"{name}/{child}" if name != "." else f"./{child}", hardlinks, owner)
        finally:
            os.close(fd)
        return
    if stat.S_ISREG(mode):
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent_fd)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                return  # replaced by something else meanwhile: skip it
            entry.size = opened.st_size
            with os.fdopen(os.dup(fd), "rb", buffering=0) as handle:
                yield from entry_chunks(entry, handle)
        finally:
            os.close(fd)
        return
    if stat.S_ISLNK(mode):
        entry.type = EntryType.SYMLINK
        entry.linkname = os.readlink(base, dir_fd=parent_fd)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        entry.type = EntryType.CHAR if stat.S_ISCHR(mode) else EntryType.BLOCK
        entry.devmajor, entry.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
    elif stat.S_ISFIFO(mode):
        entry.type = EntryType.FIFO
    yield from entry_chunks(entry)


def archive_path(root_fd: int, path: str, container: str, owner: IdentityMapping | None = None, *,
                 name: str | None = None) -> tuple[dict[str, Any], Iterator[bytes]]:
    """(PathStat, tar stream) of ``path`` in the container whose root is ``root_fd``; ``name``
    replaces the archive name of the top entry (a file mounted under another name).  The
    stream owns a duplicate of ``root_fd``.  ``owner``: a remapped container's mapping (the
    tar gets container ids)."""
    target = _resolve(root_fd, path, container)
    if name is not None:
        target = replace(target, name=name)
    try:
        stat_result = _stat_of(target, root_fd, path, container)
    except BaseException:
        target.close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            yield from _entries(target.parent_fd, target.base, target.name, {}, owner)
            yield END_OF_ARCHIVE
        except OSError as exc:
            raise fsutil.system_error(f"archiving {path} of container {container}", exc) from exc
        finally:
            target.close()

    return stat_result, generate()


def extract_archive(root_fd: int, path: str, stream: BinaryIO, container: str, *,
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False,
                    owner: IdentityMapping | None = None,
                    file_mounts: Mapping[str, tuple[str, bool]] | None = None) -> None:
    """Extract a (possibly compressed) tar into the directory ``path`` of the container.
    ``owner``: a remapped container's mapping: the tar's ids (``copy_uid_gid``), or else the
    container's root, become host ids.

    ``file_mounts`` maps entry names (relative to ``path``) to the host files mounted there on
    their own and whether they are writable (``hosts`` -> the container's hosts file, for an
    extraction into ``/etc``): such an entry's content is written into that file in place
    (see :class:`_FileMounts`)."""
    raw = path if path.startswith("/") else "/" + path
    try:
        directory_fd = fsutil.open_beneath(root_fd, posixpath.normpath(raw), os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError as exc:
        raise _not_found(path, container) from exc
    except NotADirectoryError as exc:
        raise errdefs.InvalidArgument("extraction point is not a directory") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise _not_found(path, container) from exc
        raise fsutil.system_error(f"opening {path} in container {container}", exc) from exc
    try:
        source = decompressed(stream)
        reader = TarReader(source)
        if file_mounts:
            reader = _FileMounts(reader, file_mounts)  # type: ignore[assignment]
        if no_overwrite_dir_non_dir:
            reader = _NoTypeChange(reader, directory_fd)  # type: ignore[assignment]
        if owner is not None:
            reader = _HostOwners(reader, owner, copy_uid_gid)  # type: ignore[assignment]
        apply_tar(directory_fd, reader, WhiteoutMode.APPLY, same_owner=copy_uid_gid or owner is not None)
    finally:
        os.close(directory_fd)


class _HostOwners:
    """The entries of a tar copied into a remapped container, owned by the host ids of their
    own ids (``copy_uid_gid``) or of the container's root; an id outside the mapping is refused."""

    def __init__(self, reader: TarReader, mapping: IdentityMapping, copy_uid_gid: bool) -> None:
        self._reader = reader
        self._mapping = mapping
        self._copy = copy_uid_gid

    def __iter__(self) -> Iterator[TarEntry]:
        for entry in self._reader:
            uid, gid = (entry.uid, entry.gid) if self._copy else (0, 0)
            host = self._mapping.to_host(uid, gid)
            if host is None:
                raise errdefs.InvalidArgument(f"{entry.name} is owned by {uid}:{gid}, outside the container's "
                                              "user namespace mapping")
            entry.uid, entry.gid = host
            yield entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _FileMounts:
    """Writes the entries that land on a file mounted on its own into that file, truncated and
    rewritten in place: the mount keeps its inode, so a running container sees the new content
    (replacing the file under a mount would fail with EBUSY, or be hidden by the mount).
    Anything but a regular file there, or a read-only mount, is refused; other entries pass
    through."""

    def __init__(self, reader: TarReader, files: Mapping[str, tuple[str, bool]]) -> None:
        self._reader = reader
        self._files = files

    def __iter__(self) -> Iterator[TarEntry]:
        for entry in self._reader:
            name = posixpath.normpath(entry.name).lstrip("/")
            if name not in self._files:
                yield entry
                continue
            source, writable = self._files[name]
            if not writable:
                raise errdefs.Conflict(f"the file mounted at {name} is read-only")
            if entry.type is not EntryType.REGULAR:
                raise errdefs.InvalidArgument(f"cannot replace the file mounted at {name} with a non-regular file")
            try:
                fd = os.open(source, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise fsutil.system_error(f"opening the file mounted at {name}", exc) from exc
            try:
                self._reader.copy_content_to(fd)
            finally:
                os.close(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _NoTypeChange:
    """Refuses entries that would replace a directory with a non-directory or the reverse
    (``noOverwriteDirNonDir``); otherwise a pass-through of the reader."""

    def __init__(self, reader: TarReader, directory_fd: int) -> None:
        self._reader = reader
        self._directory_fd = directory_fd

    def __iter__(self) -> Iterator[TarEntry]:
        for entry in self._reader:
            directory, base = posixpath.split(entry.name)
            info = None
            try:
                parent = fsutil.open_beneath(self._directory_fd, directory or ".", os.O_PATH | os.O_DIRECTORY)
            except OSError:
                parent = -1
            if parent >= 0:
                try:
                    info = os.stat(base, dir_fd=parent, follow_symlinks=False)
                except OSError:
                    info = None
                finally:
                    os.close(parent)
            if info is not None:
                existing_dir = stat.S_ISDIR(info.st_mode)
                new_dir = entry.type is EntryType.DIRECTORY
                if existing_dir and not new_dir:
                    raise errdefs.InvalidArgument(
                        f"cannot overwrite directory \"{entry.name}\" with non-directory")
                if new_dir and not existing_dir:
                    raise errdefs.InvalidArgument(
                        f"cannot overwrite non-directory \"{entry.name}\" with directory")
            yield entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)
