"""The container's root filesystem, set up by the native runtime's child
(:mod:`lamina.runtime.child`) inside its new mount namespace, before ``pivot_root``.

Every mount target is resolved inside the rootfs by file descriptor
(:mod:`lamina.runtime.paths`) and mounted onto ``/proc/self/fd/N``, so a symlink in the image
cannot send a mount to the host.  The default mounts (:func:`default_mounts`, runc's default
spec) come first: ``/proc``, ``/dev`` (a tmpfs with the nodes of :data:`DEFAULT_DEVICES`, the
``fd``/``stdin``/``stdout``/``stderr``/``ptmx`` symlinks and, with a terminal,
``/dev/console``) and the spec's device nodes (:func:`make_devices`), ``/dev/pts``,
``/dev/shm`` (``spec.shm_size``), ``/dev/mqueue`` and ``/sys`` read-only unless privileged (a
recursive bind of the host's when sysfs is refused); then the spec's own mounts,
with their propagation.  After :func:`pivot_root` (``pivot_root(".", ".")`` then a lazy
unmount of the old root), :func:`mask_paths` hides Docker's masked paths and write-protects
the read-only ones.

A step that fails raises an :mod:`lamina.errdefs` error naming it (:class:`Step`).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from lamina import errdefs
from lamina import mount as mountlib
from lamina import sys as lsys
from lamina.runtime.api import ContainerSpec, DeviceSpec, MountSpec
from lamina.runtime.paths import make_dirs_in_root, make_file_in_root, open_in_root

__all__ = ["DEFAULT_DEVICES", "Step", "default_mounts", "make_devices", "mask_paths", "mount_cgroups", "mount_in_root", "mount_sysfs",
           "pivot_root", "populate_dev", "proc_fd"]

# (name, major, minor): the device nodes of a container's /dev, all char devices, mode 0666
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
_DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                 ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))
_REMOUNT_OPTIONS = frozenset({"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime",
                              "relatime", "strictatime"})
_PROPAGATION_OPTIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})


def default_mounts(spec: ContainerSpec) -> tuple[MountSpec, ...]:
    """The mounts every container gets before ``spec.mounts``, like runc's default spec (no
    /dev/shm tmpfs when ``spec.shm_size`` is 0)."""
    mounts = [
        MountSpec("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
        MountSpec("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        MountSpec("/dev/pts", "devpts", "devpts",
                  ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
        MountSpec("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", f"size={spec.shm_size}")),
    ]
    if not spec.uid_mappings or "ipc" in spec.namespaces:
        mounts.append(MountSpec("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")))
    elif os.path.isdir("/dev/mqueue"):
        # a user namespace cannot mount the mqueue of the host's ipc namespace: the host's, bound
        mounts.append(MountSpec("/dev/mqueue", "bind", "/dev/mqueue", ("rbind", "nosuid", "noexec", "nodev")))
    # --privileged: /sys read-write, as Docker
    mounts.append(MountSpec("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev") + (() if spec.privileged else ("ro",))))
    if not spec.shm_size:
        mounts = [item for item in mounts if item.destination != "/dev/shm"]
    return tuple(mounts)


class Step:
    """Names the setup step that failed: an OSError inside becomes ``errdefs.System``."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        if isinstance(exc, OSError) and not isinstance(exc, errdefs.LaminaError):
            if exc.errno == errno.ENOENT:
                raise errdefs.NotFound(f"{self.what}: {exc.strerror}") from exc
            raise errdefs.System(f"{self.what}: {exc.strerror or exc}") from exc
        return False


def proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def mount_in_root(root_fd: int, item: MountSpec) -> None:
    """Mount ``item`` at its destination resolved inside the root (never outside)."""
    destination = item.destination
    options = item.options
    propagation = [o for o in options if o in _PROPAGATION_OPTIONS]
    is_bind = item.type == "bind" or "bind" in options or "rbind" in options
    with Step(f"mount {item.type} on {destination}"):
        if is_bind:
            try:
                source_info = os.stat(item.source)
            except FileNotFoundError as exc:
                raise errdefs.NotFound(f"bind source path does not exist: {item.source}") from exc
            recursive = "bind" not in options or "rbind" in options
            if stat.S_ISDIR(source_info.st_mode):
                target = make_dirs_in_root(root_fd, destination)
            else:
                target = make_file_in_root(root_fd, destination)
            try:
                mountlib.Mount("bind", item.source, ("rbind" if recursive else "bind",)).mount(proc_fd(target))
            finally:
                os.close(target)
            flags = [o for o in options if o in _REMOUNT_OPTIONS]
            if flags:
                # the old descriptor names the directory under the new mount: reopen
                target = open_in_root(root_fd, destination)
                try:
                    mountlib.remount(proc_fd(target), flags)
                    if recursive and "ro" in flags:
                        _read_only_below(target, destination)
                finally:
                    os.close(target)
        else:
            target = make_dirs_in_root(root_fd, destination)
            try:
                mountlib.Mount(item.type, item.source,
                               tuple(o for o in options if o not in _PROPAGATION_OPTIONS)).mount(proc_fd(target))
            finally:
                os.close(target)
        for value in propagation:
            target = open_in_root(root_fd, destination)
            try:
                mountlib.set_propagation(proc_fd(target), value)
            finally:
                os.close(target)


def _read_only_below(target_fd: int, destination: str) -> None:
    """Make every mount under a recursive bind read-only too (a ``:ro`` volume's submounts):
    one mount_setattr(AT_RECURSIVE) call, or a remount of each submount on older kernels."""
    try:
        lsys.mount_setattr(target_fd, "", lsys.AT_EMPTY_PATH | lsys.AT_RECURSIVE, lsys.MOUNT_ATTR_RDONLY)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    top = os.readlink(proc_fd(target_fd))
    for point in mountlib.mounted_targets():
        if point.startswith(top.rstrip("/") + "/"):
            mountlib.remount(point, ("ro",))


def make_devices(root_fd: int, devices: tuple[DeviceSpec, ...]) -> None:
    """The nodes of ``--device`` and ``--privileged`` (a bind of the host's node where mknod is
    refused); a node the defaults already made is replaced."""
    for device in devices:
        with Step(f"create the device {device.path}"):
            parent, name = posixpath.split(posixpath.normpath(device.path))
            directory = make_dirs_in_root(root_fd, parent)
            try:
                try:
                    os.unlink(name, dir_fd=directory)
                except FileNotFoundError:
                    pass
                kind = stat.S_IFCHR if device.kind == "c" else stat.S_IFBLK
                try:
                    os.mknod(name, kind | device.mode, os.makedev(device.major, device.minor), dir_fd=directory)
                except PermissionError:
                    target = make_file_in_root(root_fd, device.path, device.mode)
                    try:
                        mountlib.Mount("bind", _host_node(device), ("bind",)).mount(proc_fd(target))
                    finally:
                        os.close(target)
                    continue
                os.chmod(name, device.mode, dir_fd=directory)
                os.chown(name, device.uid, device.gid, dir_fd=directory)
            finally:
                os.close(directory)


def _host_node(device: DeviceSpec) -> str:
    """The host's path of a device node (sysfs names char and block devices by number)."""
    kind = "char" if device.kind == "c" else "block"
    try:
        with open(f"/sys/dev/{kind}/{device.major}:{device.minor}/uevent", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.strip().split("=", 1)[1]
    except OSError:
        pass
    return device.path


def populate_dev(root_fd: int, terminal: bool, console_source: str | None = None) -> None:
    """The default nodes and links of ``/dev``; with a terminal, ``/dev/console`` bound to
    it (``console_source``: where to bind it from, when the terminal's path is out of reach)."""
    with Step("populate /dev"):
        dev = open_in_root(root_fd, "/dev", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, major, minor in DEFAULT_DEVICES:
                try:
                    os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
                    os.chmod(name, 0o666, dir_fd=dev)
                except PermissionError:
                    # no CAP_MKNOD (or a devices cgroup that forbids it): bind the host's node
                    target = make_file_in_root(root_fd, f"/dev/{name}", 0o666)
                    try:
                        mountlib.Mount("bind", f"/dev/{name}", ("bind",)).mount(proc_fd(target))
                    finally:
                        os.close(target)
            for name, target_path in _DEV_SYMLINKS:
                os.symlink(target_path, name, dir_fd=dev)
            if os.path.exists("/proc/kcore"):
                os.symlink("/proc/kcore", "core", dir_fd=dev)
        finally:
            os.close(dev)
        if terminal:
            console = make_file_in_root(root_fd, "/dev/console", 0o620)
            try:
                # the terminal's path in this mount namespace: glibc's ttyname() refuses (ENODEV)
                # a pty of a devpts instance that is not mounted at /dev/pts
                source = console_source or os.readlink(proc_fd(0))
                mountlib.Mount("bind", source, ("bind",)).mount(proc_fd(console))
            finally:
                os.close(console)


def mount_sysfs(root_fd: int, item: MountSpec) -> None:
    read_only = "ro" in item.options
    try:
        mount_in_root(root_fd, item)
        return
    except errdefs.LaminaError:
        pass
    # sysfs refused (e.g. a net namespace we do not own): a recursive read-only bind instead
    mount_in_root(root_fd, MountSpec(item.destination, "bind", "/sys", ("rbind",)))
    target = open_in_root(root_fd, item.destination)
    try:
        if read_only:
            # one call for the whole tree, by descriptor (in a user namespace the path of the
            # root filesystem may be out of this process's reach)
            try:
                lsys.mount_setattr(target, "", lsys.AT_EMPTY_PATH | lsys.AT_RECURSIVE, lsys.MOUNT_ATTR_RDONLY)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EINVAL):
                    raise errdefs.System(f"make {item.destination} read-only: {exc.strerror}") from exc
        top = os.readlink(proc_fd(target))
    finally:
        os.close(target)
    for point in mountlib.mounted_targets() if read_only else ():
        if point == top or point.startswith(top.rstrip("/") + "/"):
            with Step(f"remount {point} read-only"):
                mountlib.remount(point, ("ro",))


def mount_cgroups(root_fd: int, hierarchies: tuple[tuple[str, str], ...]) -> None:
    """The container's own cgroups, read-only, at ``/sys/fs/cgroup`` (Docker's view): a
    tmpfs holding one read-only bind of the container's cgroup directory per hierarchy
    (``name`` ``""``: a cgroup v2 host, the directory is bound at ``/sys/fs/cgroup`` itself).
    Hierarchy roots, and their ``release_agent``, stay out of reach."""
    if not hierarchies:
        return
    flags = ("nosuid", "noexec", "nodev")
    if any(name == "" for name, _ in hierarchies):
        source = next(directory for name, directory in hierarchies if name == "")
        mount_in_root(root_fd, MountSpec("/sys/fs/cgroup", "bind", source, ("bind", "ro", *flags)))
        return
    mount_in_root(root_fd, MountSpec("/sys/fs/cgroup", "tmpfs", "tmpfs", (*flags, "mode=755")))
    # the tmpfs just mounted is the runtime's own (empty, nothing of the image in it): each
    # hierarchy's directory is made and bound by name under one descriptor of it
    target = open_in_root(root_fd, "/sys/fs/cgroup", os.O_PATH | os.O_DIRECTORY)
    try:
        legacy = False
        for name, directory in hierarchies:
            destination = f"/sys/fs/cgroup/{name}"
            if not legacy:
                with Step(f"mount {directory} on {destination}"):
                    legacy = not _bind_read_only(target, name, directory)
            if legacy:
                mount_in_root(root_fd, MountSpec(destination, "bind", directory, ("bind", "ro", *flags)))
        with Step("remount /sys/fs/cgroup read-only"):
            mountlib.remount(proc_fd(target), ("ro", *flags))
    finally:
        os.close(target)


_READ_ONLY_BIND = lsys.MOUNT_ATTR_RDONLY | lsys.MOUNT_ATTR_NOSUID | lsys.MOUNT_ATTR_NODEV | lsys.MOUNT_ATTR_NOEXEC


def _bind_read_only(parent_fd: int, name: str, source: str) -> bool:
    """Bind the directory ``source`` (not its submounts) read-only, nosuid, nodev and noexec at
    ``name`` in ``parent_fd``, made here: a detached clone of it (``open_tree``) gets the flags
    (``mount_setattr``) before it is attached (``move_mount``), three calls by descriptor where
    a bind and a remount take two lookups each.  False when the kernel lacks these calls
    (before 5.12): nothing is mounted, and the caller binds the old way."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass
    try:
        tree = lsys.open_tree(-100, source, lsys.OPEN_TREE_CLONE | lsys.OPEN_TREE_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return False
        raise
    try:
        try:
            lsys.mount_setattr(tree, "", lsys.AT_EMPTY_PATH, _READ_ONLY_BIND)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EINVAL):
                return False
            raise
        lsys.move_mount(tree, "", parent_fd, name, lsys.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)
    return True


def pivot_root(root_fd: int) -> None:
    with Step("pivot_root into the container's root filesystem"):
        os.fchdir(root_fd)
        # the old root ends up stacked on "." and is detached at once: no directory needed
        lsys.pivot_root(".", ".")
        mountlib.unmount(".", detach=True)
        os.chdir("/")


def mask_paths(masked: tuple[str, ...], readonly: tuple[str, ...]) -> None:
    for path in readonly:
        with Step(f"make {path} read-only"):
            try:
                os.lstat(path)
            except FileNotFoundError:
                continue
            mountlib.Mount("bind", path, ("rbind",)).mount(path)
            mountlib.remount(path, ("ro",))
    for path in masked:
        with Step(f"mask {path}"):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                mountlib.Mount("tmpfs", "tmpfs", ("ro", "nosuid", "nodev", "noexec", "size=0")).mount(path)
            else:
                mountlib.Mount("bind", "/dev/null", ("bind",)).mount(path)
