"""Copy-up: an empty volume mounted over a directory of the image starts with its files.

Docker's rule (``copyExistingContents``): when a container is created, each volume that is
*empty* and does not say ``nocopy`` receives a copy of what the image holds at the mount's
destination: regular files, directories, symlinks, device nodes and fifos with their owners,
modes (setuid/setgid/sticky included), extended attributes, timestamps and hard links within
the copy; the volume's own directory takes the owner, mode and times of the image's directory
(a ``VOLUME /var/lib/mysql`` owned by mysql gives a volume owned by mysql).  A volume that
already holds anything is left alone.  Sockets are skipped.

Safety: the image is hostile input.  The destination is resolved inside the container's root
by file descriptor (``openat2`` with ``RESOLVE_IN_ROOT``: a symlink in the image resolves as
it would inside the container, never onto the host), and the walk below it goes one
directory descriptor at a time with ``O_NOFOLLOW``: nothing it reads or writes is named by a
path that a symlink could redirect.  Hard links are recreated through ``/proc/self/fd`` of a
descriptor kept for the first copy (at most :data:`MAX_LINK_SOURCES` of them; further links
become separate copies).  Extended attributes the volume's filesystem does not support are
skipped (as Docker's ``ignoreUnsupportedXAttrs``); overlayfs' own ``trusted.overlay.*`` (``user.overlay.*`` rootless) never
are copied.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina import errdefs, fsutil
from lamina.archive.changes import copy_file_at
from lamina.records import dataclass, field

__all__ = ["populate_from_image", "copy_tree_at", "MAX_LINK_SOURCES"]

MAX_LINK_SOURCES = 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)


def populate_from_image(volume_data_dir: str, rootfs: str, destination: str) -> bool:
    """Copy the image's ``destination`` (inside ``rootfs``) into ``volume_data_dir`` if that is
    empty.  Returns whether it copied.  ``destination`` missing in the image: nothing to copy;
    a non-directory there: ``InvalidArgument`` (a volume cannot be mounted over a file)."""
    try:
        target = os.open(volume_data_dir, _DIRECTORY)
    except OSError as exc:
        raise fsutil.system_error(f"open volume directory {volume_data_dir}", exc) from exc
    try:
        if os.listdir(target):
            return False
        try:
            root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise fsutil.system_error(f"open container root {rootfs}", exc) from exc
        try:
            try:
                source = fsutil.open_beneath(root, destination, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                return False
            except NotADirectoryError as exc:
                if _is_non_directory(root, destination):
                    raise errdefs.InvalidArgument(
                        f"cannot mount volume over existing file, file exists {destination}") from exc
                return False  # a parent is a file: nothing to copy, the runtime will refuse the mount
            except OSError as exc:
                raise fsutil.system_error(f"open {destination} in the image", exc) from exc
        finally:
            os.close(root)
        try:
            copy_tree_at(source, target)
        except OSError as exc:
            raise fsutil.system_error(f"copy the image's {destination} into the volume", exc) from exc
        finally:
            os.close(source)
        os.fsync(target)
        return True
    finally:
        os.close(target)


def _is_non_directory(root: int, destination: str) -> bool:
    try:
        fd = fsutil.open_beneath(root, destination, os.O_PATH)
    except OSError:
        return False
    try:
        return not stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


@dataclass
class _Copy:
    """State of one copy: descriptors of first copies of hard-linked files."""

    links: dict[tuple[int, int], int] = field(default_factory=dict)

    def close(self) -> None:
        for fd in self.links.values():
            os.close(fd)
        self.links.clear()


@dataclass
class _Level:
    source: int
    target: int
    info: os.stat_result
    names: list[str]


def copy_tree_at(source: int, target: int) -> None:
    """Copy the directory open as ``source`` into the (empty) directory open as ``target``,
    then give ``target`` the source directory's owner, mode, xattrs and times."""
    state = _Copy()
    stack = [_Level(os.dup(source), os.dup(target), os.fstat(source), sorted(os.listdir(source)))]
    try:
        while stack:
            level = stack[-1]
            if not level.names:
                stack.pop()
                try:
                    _set_metadata(level.source, level.target, level.info)
                finally:
                    os.close(level.source)
                    os.close(level.target)
                continue
            name = level.names.pop()
            info = os.stat(name, dir_fd=level.source, follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=level.target)
                child_source = os.open(name, _DIRECTORY, dir_fd=level.source)
                try:
                    child_target = os.open(name, _DIRECTORY, dir_fd=level.target)
                except BaseException:
                    os.close(child_source)
                    raise
                stack.append(_Level(child_source, child_target, info, sorted(os.listdir(child_source))))
            elif stat.S_ISREG(mode):
                _copy_file(state, level.source, level.target, name, info)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=level.source), name, dir_fd=level.target)
                os.chown(name, info.st_uid, info.st_gid, dir_fd=level.target, follow_symlinks=False)
                os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=level.target, follow_symlinks=False)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                os.mknod(name, stat.S_IFMT(mode) | 0o600, info.st_rdev, dir_fd=level.target)
                node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=level.target)
                try:
                    # fchown/fchmod refuse O_PATH descriptors; the magic link names this very node
                    path = f"/proc/self/fd/{node}"
                    os.chown(path, info.st_uid, info.st_gid)
                    os.chmod(path, stat.S_IMODE(mode))
                    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
                finally:
                    os.close(node)
            # sockets are not copied (Docker skips them too)
    finally:
        for level in stack:
            os.close(level.source)
            os.close(level.target)
        state.close()


def _copy_file(state: _Copy, source_dir: int, target_dir: int, name: str, info: os.stat_result) -> None:
    key = (info.st_dev, info.st_ino)
    if info.st_nlink > 1 and key in state.links:
        os.link(f"/proc/self/fd/{state.links[key]}", name, dst_dir_fd=target_dir, follow_symlinks=True)
        return
    copy_file_at(source_dir, target_dir, name, info, _set_metadata)
    if info.st_nlink > 1 and len(state.links) < MAX_LINK_SOURCES:
        state.links[key] = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=target_dir)


def _set_metadata(source: int, target: int, info: os.stat_result) -> None:
    """Owner, then mode (chown clears setuid bits), xattrs, times: all by descriptor."""
    os.fchown(target, info.st_uid, info.st_gid)
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    _copy_xattrs(source, target)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_xattrs(source: int, target: int) -> None:
    try:
        names = os.listxattr(source)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return
        raise
    for name in names:
        if name.startswith(_SKIPPED_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(source, name)
            os.setxattr(target, name, value)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                continue
            raise
