"""Path resolution inside a container's root filesystem, by file descriptor.

Every path an image controls (mount targets, ``/etc/passwd``, the working directory) is
resolved relative to a descriptor of the root with ``openat2(RESOLVE_IN_ROOT)``: symlinks,
absolute or ``..``-laden, are interpreted as if the root were ``/``, so an image cannot
redirect a mount or a read onto the host.  Unlike :func:`lamina.fsutil.open_beneath`,
resolution may cross mount points: the runtime mounts ``/proc``, ``/dev``... inside the root
before it resolves paths below them.  Kernels without openat2 (before 5.6) get the same
semantics from a userspace walk, one component at a time with ``O_NOFOLLOW``, symlinks
expanded by hand and ``..`` clamped at the root.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from lamina import sys as lsys

__all__ = ["MAX_SYMLINKS", "make_dirs_in_root", "make_file_in_root", "normalize", "open_in_root", "open_pty",
           "open_pty_in_root"]

MAX_SYMLINKS = 40  # the kernel's limit (ELOOP past it)
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441
_PTMX = (5, 2)


def normalize(path: str) -> str:
    """``path`` as a clean path relative to the root ('.' for the root itself); '..' cannot
    climb above the root."""
    clean = posixpath.normpath("/" + path)
    # normpath keeps a leading '//' (POSIX allows it a special meaning); a root does not
    return clean.lstrip("/") or "."


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH, mode: int = 0o644, *,
                 use_openat2: bool = True) -> int:
    """Open ``path`` as seen from ``root_fd`` taken as ``/``; never resolves outside it.

    ``flags`` are ``open(2)`` flags (``O_CLOEXEC`` is always added); with ``O_NOFOLLOW`` a
    final symlink is not followed.  Raises ``OSError`` like ``os.open``.
    """
    relative = normalize(path)
    flags |= os.O_CLOEXEC
    if use_openat2:
        try:
            return lsys.openat2(root_fd, relative, flags, mode,
                                lsys.RESOLVE_IN_ROOT | lsys.RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
            # ENOSYS: kernel before 5.6; EPERM: a seccomp filter that refuses openat2
    return _walk(root_fd, relative, flags, mode)


def _walk(root_fd: int, relative: str, flags: int, mode: int) -> int:
    """Userspace RESOLVE_IN_ROOT: a stack of directory fds from the root to the current one."""
    pending = [part for part in relative.split("/") if part not in ("", ".")]
    pending.reverse()  # a stack: the next component is pending[-1]
    stack = [os.dup(root_fd)]
    links = 0
    try:
        while pending:
            part = pending.pop()
            last = not pending
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            current = stack[-1]
            try:
                info = os.stat(part, dir_fd=current, follow_symlinks=False)
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    return os.open(part, flags | os.O_NOFOLLOW, mode, dir_fd=current)
                raise
            if stat.S_ISLNK(info.st_mode) and not (last and flags & os.O_NOFOLLOW):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), relative)
                target = os.readlink(part, dir_fd=current)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if last:
                # O_NOFOLLOW: a component swapped for a symlink since the stat fails with ELOOP
                return os.open(part, flags | os.O_NOFOLLOW, mode, dir_fd=current)
            stack.append(os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=current))
        # the path named the root itself (or '..' above it)
        return os.open(".", flags, mode, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def make_dirs_in_root(root_fd: int, path: str, mode: int = 0o755, *, _links: int = 0) -> int:
    """Create the directory ``path`` and its missing parents inside the root; returns an
    ``O_PATH`` descriptor of it.  A dangling symlink on the way gets its target created
    (inside the root, like Docker's securejoin).  An existing non-directory gives
    ``NotADirectoryError``."""
    relative = normalize(path)
    try:
        return open_in_root(root_fd, relative, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        pass
    parts = relative.split("/")
    # the deepest ancestor that exists (usually the parent: one lookup), then down from it
    index = len(parts) - 1
    while True:
        try:
            fd = open_in_root(root_fd, "/".join(parts[:index]) or ".", os.O_PATH | os.O_DIRECTORY)
            break
        except FileNotFoundError:
            if index == 0:
                raise
            index -= 1
    try:
        for index in range(index, len(parts)):
            name = parts[index]
            try:
                os.mkdir(name, mode, dir_fd=fd)
                link = None
            except FileExistsError:
                # made by someone else meanwhile, or a dangling symlink: create its target
                try:
                    link = os.readlink(name, dir_fd=fd)
                except OSError:
                    link = None
            if link is not None:
                if _links >= MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = link if link.startswith("/") else posixpath.join("/", *parts[:index], link)
                os.close(make_dirs_in_root(root_fd, target, mode, _links=_links + 1))
            os.close(fd)
            fd = -1
            fd = open_in_root(root_fd, "/".join(parts[:index + 1]), os.O_PATH | os.O_DIRECTORY)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def make_file_in_root(root_fd: int, path: str, mode: int = 0o644) -> int:
    """Create an empty regular file ``path`` (and its parents) inside the root unless something
    exists there already; returns an ``O_PATH`` descriptor of what is there (a file bind mount
    needs a non-directory target)."""
    relative = normalize(path)
    try:
        return open_in_root(root_fd, relative, os.O_PATH)
    except FileNotFoundError:
        pass
    parent_path = posixpath.dirname(relative) or "."
    parent = make_dirs_in_root(root_fd, parent_path)
    os.close(parent)
    fd = open_in_root(root_fd, relative, os.O_WRONLY | os.O_CREAT, mode)
    os.close(fd)
    return open_in_root(root_fd, relative, os.O_PATH)


def open_pty_in_root(root_fd: int) -> tuple[int, int]:
    """(master, slave) of a new pty of the devpts instance mounted at ``/dev/pts`` under
    ``root_fd`` (a container's root), so that the process sees its terminal as
    ``/dev/pts/N`` of its own ``/dev/pts``.  The master is ``/dev/pts/ptmx`` resolved inside
    the root and checked to be the ptmx device; the slave comes from ``TIOCGPTPEER``, never
    from a path the container could swap."""
    return open_pty(open_in_root(root_fd, "/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW))


def open_pty(master: int) -> tuple[int, int]:
    """(master, slave) from an open ``ptmx`` (closed on failure), checked to be the ptmx
    device; the slave from ``TIOCGPTPEER``."""
    try:
        info = os.fstat(master)
        if not stat.S_ISCHR(info.st_mode) or (os.major(info.st_rdev), os.minor(info.st_rdev)) != _PTMX:
            raise OSError(errno.ENOTTY, "/dev/pts/ptmx of the container is not the ptmx device")
        import fcntl

        fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        return master, slave
    except BaseException:
        os.close(master)
        raise
