"""COPY and ADD into a mounted root filesystem, with Docker's classic-builder semantics.

The destination is the full tree of a read-write layer (its overlay ``merged`` directory):
every write lands in the layer's upper directory, whose native diff becomes the step's layer.
The tree belongs to an image, so it is hostile: every destination path is resolved relative
to a descriptor of the root with ``openat2(RESOLVE_IN_ROOT)``
(:func:`lamina.runtime.paths.open_in_root`), symlinks in it resolve as if the root were ``/``,
and leaves are created with ``O_EXCL|O_NOFOLLOW`` (an existing leaf that is not a directory is
replaced, never written through).  Sources are read through :class:`SourceTree`, which never
leaves its own root either.

Rules (moby ``builder/dockerfile/copy.go``, the classic builder):

- a file source becomes the destination path (or goes into it when the destination ends with
  ``/`` or is an existing directory: :func:`lamina.build.context.plan_copy`); missing parent
  directories are created ``0755``, owned by the ``--chown`` identity when one is given, else
  by root;
- a directory source copies its *contents* into the destination, which is created when
  missing (with the source directory's mode and time); an existing destination directory
  keeps its own metadata;
- copied entries keep their mode bits, modification time (nanoseconds), symlink targets,
  hardlinks within one copy, devices and fifos; sockets are skipped; of the extended
  attributes only ``security.capability`` is copied (Docker's archive reads only that one);
- ownership: the ``--chown`` identity; else root (0:0) for sources from the build context, and
  the source's own uid/gid for ``COPY --from`` (Docker's ``preserveOwnership``);
- ``--chown=user[:group]``: names are looked up in the destination's ``/etc/passwd`` and
  ``/etc/group``; numbers are taken as they are; without a group the user part is used as the
  group too (``--chown=10`` is 10:10, ``--chown=app`` needs a group ``app``);
- ``--chmod=<octal>`` (buildkit's flag) sets the permission bits of every copied file and
  directory;
- ``ADD`` of a local file that is a tar archive (plain, gzip, bzip2, xz or zstd) extracts it
  into the destination directory with :func:`lamina.archive.apply_tar`, owners and modes from
  the archive, whiteout entries applied.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Self

from lamina import errdefs, fsutil
from lamina.archive import TarReader, WhiteoutMode, apply_tar, decompressed, detect
from lamina.archive.compression import read_up_to
from lamina.build.context import SourceMatch, SourceTree
from lamina.records import dataclass
from lamina.runtime.paths import normalize, open_in_root
from lamina.runtime.user import parse_group, parse_passwd

__all__ = ["Identity", "RootWriter", "is_archive", "parse_chmod"]

_CAPABILITY = "security.capability"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_TAR_BLOCK = 512
_MAX_ACCOUNT_FILE = 16 << 20
_MAX_LINKS = 40
#: per kind of account: its file, the parser of that file, the id attribute of an entry
_ACCOUNT_FILES: dict[str, tuple[str, Callable[[str], Sequence[Any]], str]] = {
    "user": ("/etc/passwd", parse_passwd, "uid"),
    "group": ("/etc/group", parse_group, "gid"),
}


@dataclass(frozen=True)
class Identity:
    """The owner given to copied entries."""

    uid: int
    gid: int


ROOT = Identity(0, 0)


def parse_chmod(text: str) -> int | None:
    """``--chmod``: an octal mode between 0 and 07777 (None when not given)."""
    if not text:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise errdefs.InvalidArgument(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777")
    return mode


def _tar_header_valid(block: bytes) -> bool:
    if len(block) < _TAR_BLOCK or not any(block[:100]):
        return False
    try:
        recorded = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return recorded == sum(block[:148]) + 8 * 32 + sum(block[156:_TAR_BLOCK])


def is_archive(file: BinaryIO) -> bool:
    """Docker's ``isArchivePath``: the content (once decompressed) starts with a tar header.
    Reads from the current position; the caller rewinds."""
    prefix = file.read(8)
    file.seek(0)
    try:
        if detect(prefix) is None:
            return _tar_header_valid(file.read(_TAR_BLOCK))
        stream = decompressed(file, threaded=False)
        try:
            return _tar_header_valid(read_up_to(stream, _TAR_BLOCK))
        finally:
            stream.close()
    except (errdefs.LaminaError, OSError, EOFError, ValueError):
        return False  # a damaged compressed file is copied as it is, like Docker


class RootWriter:
    """Writes COPY/ADD sources into the tree mounted at ``root`` (see the module docstring)."""

    def __init__(self, root: str) -> None:
        try:
            self.root_fd = os.open(root, _DIRECTORY)
        except OSError as exc:
            raise fsutil.system_error(f"opening the build root filesystem {root}", exc) from exc

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- lookups in the destination -------------------------------------------------------

    def is_directory(self, path: str) -> bool:
        """Whether ``path`` (absolute in the tree, links followed inside it) is a directory."""
        try:
            fd = open_in_root(self.root_fd, path, os.O_PATH)
        except OSError:
            return False
        try:
            return stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    def _read_account_file(self, path: str) -> str:
        try:
            fd = open_in_root(self.root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"open {path}: no such file or directory") from exc
        except OSError as exc:
            raise fsutil.system_error(f"reading {path} of the image", exc) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ACCOUNT_FILE:
                raise errdefs.InvalidArgument(f"{path} of the image is not a regular file of a sensible size")
            data = b""
            while chunk := os.read(fd, _CHUNK):
                data += chunk
                if len(data) > _MAX_ACCOUNT_FILE:
                    raise errdefs.InvalidArgument(f"{path} of the image is too large")
            return data.decode("utf-8", "replace")
        finally:
            os.close(fd)

    def identity(self, chown: str) -> Identity:
        """Docker's ``parseChownFlag`` against this tree's ``/etc/passwd`` and ``/etc/group``."""
        parts = chown.split(":")
        if len(parts) > 2:
            raise errdefs.InvalidArgument(f"invalid chown string format: {chown}")
        user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return Identity(self._account_id(user, "user"), self._account_id(group, "group"))

    def _account_id(self, name: str, kind: str) -> int:
        """The uid of a user or the gid of a group (``kind``), a number or a name looked up in
        this tree's account file."""
        number = _number(name)
        if number is not None:
            return number
        path, parse, id_name = _ACCOUNT_FILES[kind]
        try:
            entries = parse(self._read_account_file(path))
        except errdefs.LaminaError as exc:
            raise errdefs.InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                          f"can't find {id_name} for {kind} {name}: {exc}") from exc
        found = [getattr(entry, id_name) for entry in entries if entry.name == name]
        if not found:
            raise errdefs.InvalidArgument("unable to convert uid/gid chown string to host mapping: "
                                          f"can't find {id_name} for {kind} {name}: no such {kind}: {name}")
        return int(found[0])

    # -- directories -----------------------------------------------------------------------

    def make_directories(self, path: str, identity: Identity, mode: int = 0o755, *, _links: int = 0) -> int:
        """Open the directory ``path``, creating it and its missing parents (``mode``, owned by
        ``identity``) like ``MkdirAllAndChownNew``; a dangling symlink on the way gets its target
        created, inside the tree (like Docker's scoped path resolution).  Returns a directory
        descriptor."""
        relative = normalize(path)
        if relative == ".":
            return os.dup(self.root_fd)
        try:
            return open_in_root(self.root_fd, relative, _DIRECTORY)
        except FileNotFoundError:
            pass
        except NotADirectoryError as exc:
            raise errdefs.InvalidArgument(f"cannot create directory /{relative}: a parent is not a directory") from exc
        current = os.dup(self.root_fd)
        done: list[str] = []
        try:
            for part in relative.split("/"):
                done.append(part)
                try:
                    following = open_in_root(self.root_fd, "/".join(done), _DIRECTORY)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, mode, dir_fd=current)
                    except FileExistsError:
                        target = os.readlink(part, dir_fd=current)  # a dangling symlink
                        if _links >= _MAX_LINKS:
                            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                        if not target.startswith("/"):
                            target = "/" + "/".join([*done[:-1], target])
                        os.close(self.make_directories(target, identity, mode, _links=_links + 1))
                    else:
                        os.chown(part, identity.uid, identity.gid, dir_fd=current, follow_symlinks=False)
                        os.chmod(part, mode, dir_fd=current, follow_symlinks=True)
                    following = open_in_root(self.root_fd, "/".join(done), _DIRECTORY)
                os.close(current)
                current = following
            return current
        except NotADirectoryError as exc:
            os.close(current)
            raise errdefs.InvalidArgument(f"cannot create directory /{relative}: "
                                          f"/{'/'.join(done)} is not a directory") from exc
        except BaseException:
            os.close(current)
            raise

    def _parent_of(self, path: str, identity: Identity) -> tuple[int, str]:
        relative = normalize(path)
        if relative == ".":
            raise errdefs.InvalidArgument("cannot replace the root directory with a file")
        parent, _, name = relative.rpartition("/")
        return self.make_directories(parent or ".", identity), name

    @staticmethod
    def _clear_leaf(parent_fd: int, name: str) -> None:
        """Remove a non-directory at ``name`` so that a new leaf can be created there."""
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "cannot overwrite a directory with a file", name)
        os.unlink(name, dir_fd=parent_fd)

    # -- copying ---------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes, identity: Identity, mode: int = 0o644) -> None:
        """Create the file ``path`` holding ``data`` (a heredoc source)."""
        parent_fd, name = self._parent_of(path, ROOT if identity == ROOT else identity)
        try:
            self._clear_leaf(parent_fd, name)
            fd = os.open(name, _CREATE, 0o600, dir_fd=parent_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, identity.uid, identity.gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except OSError as exc:
            raise fsutil.system_error(f"writing {path}", exc) from exc
        finally:
            os.close(parent_fd)

    def copy(self, tree: SourceTree, source: SourceMatch, destination: str, *,
             identity: Identity | None, mode: int | None) -> None:
        """Copy one matched source to ``destination`` (a directory's contents into it).
        ``identity`` None keeps the sources' owners."""
        try:
            if source.is_directory:
                self._copy_directory(tree, source.resolved, destination, identity, mode)
            else:
                self._copy_file(tree, source.path, destination, identity, mode)
        except OSError as exc:
            raise fsutil.system_error(f"copying {source.path or '.'} to {destination}", exc) from exc

    def _copy_file(self, tree: SourceTree, path: str, destination: str, identity: Identity | None,
                   mode: int | None) -> None:
        with tree.open(path) as source:
            info = os.fstat(source.fileno())
            parent_fd, name = self._parent_of(destination, identity or ROOT)
            try:
                self._clear_leaf(parent_fd, name)
                self._write_regular(source.fileno(), info, parent_fd, name, identity, mode)
            finally:
                os.close(parent_fd)

    @staticmethod
    def _write_regular(source_fd: int, info: os.stat_result, parent_fd: int, name: str,
                       identity: Identity | None, mode: int | None) -> None:
        fd = os.open(name, _CREATE, 0o600, dir_fd=parent_fd)
        try:
            remaining = info.st_size
            while remaining > 0:
                try:
                    copied = os.copy_file_range(source_fd, fd, min(remaining, 1 << 30))
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    copied = _copy_by_reading(source_fd, fd, remaining)
                if copied == 0:
                    break  # the source shrank meanwhile: keep what there is
                remaining -= copied
            owner = identity or Identity(info.st_uid, info.st_gid)
            os.fchown(fd, owner.uid, owner.gid)
            os.fchmod(fd, mode if mode is not None else stat.S_IMODE(info.st_mode))
            try:
                capability = os.getxattr(source_fd, _CAPABILITY)
            except OSError:
                capability = None
            if capability is not None:
                os.setxattr(fd, _CAPABILITY, capability)
            os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(fd)

    def _copy_directory(self, tree: SourceTree, directory: str, destination: str,
                        identity: Identity | None, mode: int | None) -> None:
        root_info = os.lstat(os.path.join(tree.root, directory) if directory else tree.root)
        existed = self.is_directory(destination)
        top_fd = self.make_directories(destination, identity or ROOT)
        # descriptors of the directory being filled and its ancestors only: bounded by depth
        opened: dict[str, int] = {}
        times: list[tuple[str, os.stat_result]] = []
        hardlinks: dict[tuple[int, int], str] = {}
        source_root = os.open(tree.root, _DIRECTORY)
        try:
            if not existed:
                owner = identity or Identity(root_info.st_uid, root_info.st_gid)
                os.fchown(top_fd, owner.uid, owner.gid)
                os.fchmod(top_fd, mode if mode is not None else stat.S_IMODE(root_info.st_mode))
                times.append(("", root_info))
            prefix = directory + "/" if directory else ""
            for relative, info in tree.walk(directory):
                inner = relative[len(prefix):]
                parent_key, _, name = inner.rpartition("/")
                for key in [key for key in opened if not (parent_key + "/").startswith(key + "/")]:
                    os.close(opened.pop(key))
                parent_fd = top_fd if not parent_key else opened.get(parent_key)
                if parent_fd is None:
                    try:
                        parent_fd = opened[parent_key] = fsutil.open_dir_beneath(top_fd, parent_key)
                    except OSError:
                        continue  # below a source directory that could not be copied
                self._copy_entry(source_root, top_fd, relative, info, parent_fd, name, inner, hardlinks,
                                 times, identity, mode)
            for key in list(opened):
                os.close(opened.pop(key))
            for inner, info in reversed(times):
                self._set_times(top_fd, inner, info)
        finally:
            os.close(source_root)
            for fd in opened.values():
                os.close(fd)
            os.close(top_fd)

    @staticmethod
    def _set_times(top_fd: int, inner: str, info: os.stat_result) -> None:
        if not inner:
            os.utime(top_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
            return
        parent, _, name = inner.rpartition("/")
        parent_fd = fsutil.open_dir_beneath(top_fd, parent) if parent else os.dup(top_fd)
        try:
            os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(parent_fd)

    def _copy_entry(self, source_root: int, top_fd: int, relative: str, info: os.stat_result, parent_fd: int,
                    name: str, inner: str, hardlinks: dict[tuple[int, int], str],
                    times: list[tuple[str, os.stat_result]], identity: Identity | None,
                    mode: int | None) -> None:
        kind = info.st_mode
        owner = identity or Identity(info.st_uid, info.st_gid)
        if stat.S_ISDIR(kind):
            try:
                existing = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=parent_fd)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            os.chown(name, owner.uid, owner.gid, dir_fd=parent_fd, follow_symlinks=False)
            # a directory this walk just made or checked: nothing else writes into this tree
            os.chmod(name, mode if mode is not None else stat.S_IMODE(kind), dir_fd=parent_fd)
            times.append((inner, info))
            return
        if stat.S_ISSOCK(kind):
            return
        self._clear_leaf(parent_fd, name)
        if info.st_nlink > 1:
            first = hardlinks.get((info.st_dev, info.st_ino))
            if first is not None:
                first_parent, _, first_name = first.rpartition("/")
                first_fd = fsutil.open_dir_beneath(top_fd, first_parent) if first_parent else os.dup(top_fd)
                try:
                    os.link(first_name, name, src_dir_fd=first_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
                finally:
                    os.close(first_fd)
                return
            hardlinks[(info.st_dev, info.st_ino)] = inner
        if stat.S_ISREG(kind):
            source_fd = fsutil.open_beneath(source_root, relative, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                self._write_regular(source_fd, os.fstat(source_fd), parent_fd, name, identity, mode)
            finally:
                os.close(source_fd)
            return
        if stat.S_ISLNK(kind):
            parent_path, _, leaf = relative.rpartition("/")
            source_parent = fsutil.open_dir_beneath(source_root, parent_path) if parent_path else os.dup(source_root)
            try:
                target = os.readlink(leaf, dir_fd=source_parent)
            finally:
                os.close(source_parent)
            os.symlink(target, name, dir_fd=parent_fd)
            os.chown(name, owner.uid, owner.gid, dir_fd=parent_fd, follow_symlinks=False)
            os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
            return
        if stat.S_ISFIFO(kind):
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
        else:
            os.mknod(name, (kind & ~0o7777) | 0o600, info.st_rdev, dir_fd=parent_fd)
        os.chown(name, owner.uid, owner.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.chmod(name, mode if mode is not None else stat.S_IMODE(kind), dir_fd=parent_fd)
        os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def extract(self, archive: BinaryIO, destination: str) -> None:
        """ADD's auto-extraction of a local archive into the directory ``destination``."""
        directory_fd = self.make_directories(destination, ROOT)
        try:
            stream = decompressed(archive, threaded=False)
            try:
                apply_tar(directory_fd, TarReader(stream), WhiteoutMode.APPLY, same_owner=True)
            finally:
                stream.close()
        finally:
            os.close(directory_fd)


def _copy_by_reading(source_fd: int, destination_fd: int, remaining: int) -> int:
    data = os.read(source_fd, min(remaining, _CHUNK))
    view = memoryview(data)
    while view:
        view = view[os.write(destination_fd, view):]
    return len(data)


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        return int(text)
    return None
