"""Mounts as data, and the only code in lamina that calls mount(2) and umount2(2).

Graph drivers and the runtime describe what to mount as :class:`Mount` values (like
containerd's ``mount.Mount``); :func:`mount_all` executes them.  Keeping the side effect here
lets option strings be tested without root and kernel quirks be handled once.

FUSE filesystems served by a program (:data:`FUSE_PROGRAMS`: ``fuse-overlayfs``) are mounted by
running that program with the data options (``<program> -o <data> <target>``, from ``chdir``);
it returns once the mount is in place and serves it until it is unmounted.
"""

from __future__ import annotations

import errno
import os

from lamina import errdefs
from lamina import sys as lsys
from lamina.records import dataclass, field

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.idmap import IdentityMapping

__all__ = ["Mount", "bind_over", "mount_all", "unmount", "unmount_all_under", "is_mountpoint", "mounted_targets",
           "set_propagation", "remount", "PAGE_SIZE", "FUSE_PROGRAMS"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# mount types that a FUSE program mounts and serves: type -> program
FUSE_PROGRAMS = {"fuse-overlayfs": "fuse-overlayfs"}

_FLAG_OPTIONS = {
    "ro": (lsys.MS_RDONLY, False), "rw": (lsys.MS_RDONLY, True),
    "nosuid": (lsys.MS_NOSUID, False), "suid": (lsys.MS_NOSUID, True),
    "nodev": (lsys.MS_NODEV, False), "dev": (lsys.MS_NODEV, True),
    "noexec": (lsys.MS_NOEXEC, False), "exec": (lsys.MS_NOEXEC, True),
    "bind": (lsys.MS_BIND, False), "rbind": (lsys.MS_BIND | lsys.MS_REC, False),
    "noatime": (lsys.MS_NOATIME, False), "relatime": (lsys.MS_RELATIME, False),
    "strictatime": (lsys.MS_STRICTATIME, False),
}
_PROPAGATION = {
    "private": lsys.MS_PRIVATE, "rprivate": lsys.MS_PRIVATE | lsys.MS_REC,
    "slave": lsys.MS_SLAVE, "rslave": lsys.MS_SLAVE | lsys.MS_REC,
    "shared": lsys.MS_SHARED, "rshared": lsys.MS_SHARED | lsys.MS_REC,
}


@dataclass(frozen=True)
class Mount:
    """One mount: ``type`` (e.g. ``overlay``, ``bind``, ``tmpfs``), ``source`` and ``options``.

    ``options`` mixes flag words (``ro``, ``nosuid``, ``bind``, ``rprivate``...) and filesystem
    data (``lowerdir=...``); :meth:`flags_and_data` splits them.  ``chdir`` names a directory
    to work from while mounting, so relative ``lowerdir`` entries (overlay2's short links) keep
    the data string under a page.

    ``idmap`` (overlay only): each ``lowerdir`` entry is mounted through a detached idmapped
    clone of its mount (:func:`lamina.idmap.idmapped_tree`) with that mapping, so files owned
    by 0 on disk show as the mapping's host root; the upper and work directories are not
    (what the container writes keeps its host ids).
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    chdir: str | None = field(default=None, compare=False)
    idmap: IdentityMapping | None = None

    def flags_and_data(self) -> tuple[int, int, str]:
        """(mount flags, propagation flags, data string)."""
        flags = 0
        propagation = 0
        data: list[str] = []
        for option in self.options:
            if option in _FLAG_OPTIONS:
                bit, clear = _FLAG_OPTIONS[option]
                flags = flags & ~bit if clear else flags | bit
            elif option in _PROPAGATION:
                propagation |= _PROPAGATION[option]
            else:
                data.append(option)
        if self.type == "bind":
            flags |= lsys.MS_BIND
        return flags, propagation, ",".join(data)

    def mount(self, target: str) -> None:
        flags, propagation, data = self.flags_and_data()
        if self.type in FUSE_PROGRAMS:
            if self.idmap is not None:
                raise errdefs.InvalidArgument(f"an idmapped mount needs overlay, not {self.type}")
            if len(data) >= PAGE_SIZE:
                raise errdefs.InvalidArgument(f"mount data for {target} is {len(data)} bytes, over the page size")
            self._mount_fuse(FUSE_PROGRAMS[self.type], data, target)
            return
        fstype = None if flags & lsys.MS_BIND else self.type
        previous = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if self.chdir else None
        idmapped: list[int] = []
        try:
            if self.chdir:
                os.chdir(self.chdir)
            if self.idmap is not None:
                data = _idmap_lowers(self, data, idmapped)
            if len(data) >= PAGE_SIZE:
                raise errdefs.InvalidArgument(f"mount data for {target} is {len(data)} bytes, over the page size")
            lsys.mount(self.source, target, fstype, flags & ~lsys.MS_RDONLY if flags & lsys.MS_BIND else flags,
                       data or None)
            if flags & lsys.MS_BIND and flags & (lsys.MS_RDONLY | lsys.MS_NOSUID | lsys.MS_NODEV | lsys.MS_NOEXEC):
                # a bind mount ignores most flags until it is remounted
                lsys.mount(None, target, None, flags | lsys.MS_REMOUNT, None)
            if propagation:
                lsys.mount(None, target, None, propagation, None)
        except OSError as exc:
            raise errdefs.System(f"mount {self.type} on {target} failed: {exc.strerror}") from exc
        finally:
            # overlayfs holds private clones of its layers: the detached trees can go
            for fd in idmapped:
                os.close(fd)
            if previous is not None:
                os.fchdir(previous)
                os.close(previous)


    def _mount_fuse(self, program: str, data: str, target: str) -> None:
        import subprocess

        arguments = [program, *(["-o", data] if data else []), os.path.abspath(target)]
        try:
            done = subprocess.run(arguments, cwd=self.chdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errdefs.System(f"mount {self.type} on {target} failed: {exc}") from exc
        if done.returncode != 0:
            message = " ".join(line for line in done.stderr.decode(errors="replace").splitlines()
                               if not line.startswith("unknown argument ignored"))
            raise errdefs.System(f"mount {self.type} on {target} failed: {message or 'exit status ' + str(done.returncode)}")


def _idmap_lowers(item: Mount, data: str, opened: list[int]) -> str:
    """``data`` with every ``lowerdir`` entry replaced by ``/proc/self/fd/N`` of an idmapped
    clone of it (the descriptors are appended to ``opened``; the caller closes them)."""
    from lamina import idmap

    if item.type != "overlay" or item.idmap is None:
        raise errdefs.InvalidArgument(f"an idmapped mount needs overlay, not {item.type}")
    namespace = idmap.userns_fd(item.idmap)
    try:
        parts = []
        for option in data.split(","):
            if option.startswith("lowerdir="):
                entries = []
                for entry in option[len("lowerdir="):].split(":"):
                    fd = idmap.idmapped_tree(entry, namespace)
                    opened.append(fd)
                    entries.append(f"/proc/self/fd/{fd}")
                option = "lowerdir=" + ":".join(entries)
            parts.append(option)
        return ",".join(parts)
    finally:
        os.close(namespace)


def bind_over(fd: int) -> int:
    """Bind the mount whose root ``fd`` names over itself, by descriptors only (no path is
    resolved); returns an O_PATH descriptor of the new mount's root.  In a user namespace the
    copies of the parent namespace's mounts are locked, and pivot_root refuses a locked new
    root: a bind made inside the namespace is not locked."""
    try:
        clone = lsys.open_tree(fd, "", lsys.OPEN_TREE_CLONE | lsys.OPEN_TREE_CLOEXEC | lsys.AT_EMPTY_PATH)
    except OSError as exc:
        raise errdefs.System(f"clone the root filesystem's mount: {exc.strerror}") from exc
    try:
        lsys.move_mount(clone, "", fd, "", lsys.MOVE_MOUNT_F_EMPTY_PATH | lsys.MOVE_MOUNT_T_EMPTY_PATH)
    except OSError as exc:
        os.close(clone)
        raise errdefs.System(f"bind the root filesystem over itself: {exc.strerror}") from exc
    return clone


def mount_all(mounts: list[Mount] | tuple[Mount, ...], target: str) -> None:
    """Mount each of ``mounts`` on ``target`` in order; undo all of them if one fails."""
    done = 0
    try:
        for item in mounts:
            item.mount(target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target)
        raise


def unmount(target: str, detach: bool = False) -> None:
    """Unmount ``target``; a target that is not mounted is fine."""
    flags = lsys.UMOUNT_NOFOLLOW | (lsys.MNT_DETACH if detach else 0)
    try:
        lsys.umount2(target, flags)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return
        if exc.errno == errno.EBUSY and not detach:
            lsys.umount2(target, flags | lsys.MNT_DETACH)
            return
        raise errdefs.System(f"unmount {target} failed: {exc.strerror}") from exc


def _unescape(field_value: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    out = []
    i = 0
    while i < len(field_value):
        if field_value[i] == "\\" and i + 3 < len(field_value) + 0 and field_value[i + 1:i + 4].isdigit():
            out.append(chr(int(field_value[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_value[i])
            i += 1
    return "".join(out)


def mounted_targets() -> list[str]:
    """Mount points of this mount namespace, in mount order."""
    targets = []
    with open("/proc/self/mountinfo", "r", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            parts = line.split(" ", 5)
            if len(parts) > 4:
                targets.append(_unescape(parts[4]))
    return targets


def is_mountpoint(path: str) -> bool:
    """Whether a mount of this mount namespace is at ``path`` (symbolic links followed): one
    statx(2), or before Linux 5.8 a read of the mount table."""
    try:
        root = lsys.is_mount_root(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # unreachable for this user: the table still names what is mounted there
        root = None
    if root is not None:
        return root
    return os.path.realpath(path) in mounted_targets()


def unmount_all_under(prefix: str) -> int:
    """Unmount every mount at or below ``prefix`` (deepest first); returns how many."""
    prefix = os.path.realpath(prefix)
    targets = [t for t in mounted_targets() if t == prefix or t.startswith(prefix.rstrip("/") + "/")]
    for target in reversed(targets):
        unmount(target, detach=True)
    return len(targets)


def set_propagation(target: str, propagation: str) -> None:
    """Change the propagation type of the mount at ``target`` (``rprivate``, ``slave``...)."""
    if propagation not in _PROPAGATION:
        raise errdefs.InvalidArgument(f"unknown mount propagation {propagation!r}")
    try:
        lsys.mount(None, target, None, _PROPAGATION[propagation], None)
    except OSError as exc:
        raise errdefs.System(f"set propagation {propagation} on {target} failed: {exc.strerror}") from exc


def remount(target: str, options: tuple[str, ...] | list[str]) -> None:
    """Change the per-mount flags (``ro``, ``nosuid``, ``nodev``, ``noexec``...) of the mount at
    ``target`` with MS_REMOUNT|MS_BIND, keeping the flags it has already: a remount that
    dropped a locked flag (nosuid, nodev...) would be refused, and one that dropped them
    silently would weaken the mount."""
    try:
        current = os.statvfs(target).f_flag
    except OSError as exc:
        raise errdefs.System(f"remount {target} failed: {exc.strerror}") from exc
    flags = 0
    for bit in (lsys.MS_RDONLY, lsys.MS_NOSUID, lsys.MS_NODEV, lsys.MS_NOEXEC, lsys.MS_NOATIME):
        # ST_* statvfs flags use the same bit values as the MS_* mount flags
        if current & bit:
            flags |= bit
    if current & 2048:  # ST_NODIRATIME == MS_NODIRATIME
        flags |= 2048
    if current & 4096:  # ST_RELATIME
        flags |= lsys.MS_RELATIME
    for option in options:
        if option not in _FLAG_OPTIONS or option in ("bind", "rbind"):
            raise errdefs.InvalidArgument(f"cannot remount {target} with option {option!r}")
        bit, clear = _FLAG_OPTIONS[option]
        flags = flags & ~bit if clear else flags | bit
    try:
        lsys.mount(None, target, None, flags | lsys.MS_REMOUNT | lsys.MS_BIND, None)
    except OSError as exc:
        raise errdefs.System(f"remount {target} ({','.join(options)}) failed: {exc.strerror}") from exc
