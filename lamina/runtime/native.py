"""The native runtime: containers from namespaces, mounts, cgroups, capabilities and seccomp,
set up by lamina itself in a forked child, with no external binary.

Process model (:meth:`NativeRuntime.start`).  The caller must end up as the *parent* of the
container's PID 1, so that it reaps it with ``waitpid``.  ``unshare(CLONE_NEWPID)`` never
moves the calling thread; it only makes the *next* child of that thread the first process
(PID 1) of a new pid namespace.  So the caller:

1. creates the container's cgroups and gets the compiled seccomp program (parent side, before
   fork; see :class:`lamina.runtime.seccomp.ProgramCache`);
2. ``unshare(CLONE_NEWPID)``, ``fork()``, then ``setns()`` back to its own pid namespace (an
   open ``/proc/self/ns/pid``), so its later children are ordinary again; the child is PID 1
   of the new namespace and the caller is its parent: no double fork, no subreaper needed;
3. reads the child's status pipe until EOF.

The child (PID 1) unshares the mount, uts, ipc, net (unless ``network="host"``) namespaces,
makes ``/`` rprivate, bind-mounts the rootfs onto itself, mounts ``/proc``, ``/dev`` (tmpfs
with null, zero, full, random, urandom, tty; pts, shm, mqueue; console when a terminal),
``/sys`` read-only and the spec's mounts — every target resolved inside the rootfs by file
descriptor (:mod:`lamina.runtime.paths`) and mounted onto ``/proc/self/fd/N`` so a symlink in
the image cannot send a mount to the host — sets the hostname, brings ``lo`` up, pivots into
the rootfs (``pivot_root(".", ".")`` then a lazy unmount of the old root), masks and
write-protects Docker's paths, remounts the root read-only when asked.  Then, just before
exec: joins the cgroups (late, so the copy-on-write faults of the forked Python image are not
charged to a small memory limit) and unshares the cgroup namespace; applies rlimits; closes
every inherited descriptor but 0-2 and the status pipe; drops the capability bounding set;
switches groups/gid/uid; changes to the working directory and checks it is inside the
container (the runc CVE-2024-21626 class); sets the capabilities; sets no_new_privs; loads
the seccomp program; and ``execve``\\ s the command (searching ``PATH`` of the process
environment for a bare name).

Status pipe protocol (child -> parent, close-on-exec): ``R\\n`` when the child is about to
exec; ``E<json>\\n`` with ``{"kind", "message", "exit_code"}`` when a step failed.  EOF after
``R`` and no error means the exec happened; EOF without ``R`` means the child died during
setup.  Errors come back from :meth:`start`/:meth:`exec` as :mod:`lamina.errdefs` errors;
a command that cannot be run is an :class:`ExecError` with Docker's message and exit code
(127 not found, 126 not executable).

With ``spec.init`` PID 1 is :func:`lamina.runtime.init.run_init`: it forks the command,
forwards signals and reaps zombies.  Without it PID 1 is the command itself, which the kernel
protects from every signal it has no handler for (SIGKILL from the host excepted).

:meth:`NativeRuntime.exec` joins a running container: the caller ``setns``\\ es its own
*pid-for-children* into the container's pid namespace around a ``fork()`` (again restoring it
at once), and the child joins the ipc, uts, net, cgroup and mount namespaces of the
container's PID 1, then its cgroups, and continues as above from the rlimits on.
:meth:`~NativeRuntime.exec` and :meth:`~NativeRuntime.kill` first check that ``state.pid``
is still a member of the container's cgroup, so a pid reused after the container exited is
never entered or signalled.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import stat
import struct
import termios
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina import mount as mountlib
from lamina import sys as lsys
from lamina.records import dataclass
from lamina.runtime import capabilities as caps
from lamina.runtime.api import (
    ContainerSpec,
    MountSpec,
    ProcessSpec,
    Resources,
    RuntimeState,
    Stdio,
    cgroup_path,
)
from lamina.runtime.cgroups import (
    CgroupLayout,
    CgroupManager,
    detect_layout,
    enter_cgroups,
)
from lamina.runtime.init import run_init
from lamina.runtime.paths import make_dirs_in_root, make_file_in_root, open_in_root
from lamina.runtime.seccomp import ProgramCache, SeccompProgram, default_profile_bytes
from lamina.runtime.user import home_for_uid

__all__ = [
    "DEFAULT_DEVICES",
    "DEFAULT_PATH",
    "ExecError",
    "NativeRuntime",
    "default_mounts",
    "find_executable",
    "open_runtime",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# (name, major, minor): the device nodes of a container's /dev, all char devices, mode 0666
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
_DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                 ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))

_REMOUNT_OPTIONS = frozenset({"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime",
                              "relatime", "strictatime"})
_PROPAGATION_OPTIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_NAMESPACE_FILES = (("ipc", lsys.CLONE_NEWIPC), ("uts", lsys.CLONE_NEWUTS), ("net", lsys.CLONE_NEWNET),
                    ("cgroup", lsys.CLONE_NEWCGROUP), ("mnt", lsys.CLONE_NEWNS))
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_SYS_close_range = 436
_libc = ctypes.CDLL(None, use_errno=True)


class ExecError(errdefs.InvalidArgument):
    """The container's command cannot be run: ``exit_code`` 127 (not found) or 126 (found
    but not executable), with Docker's message, e.g.
    ``exec: "nosuch": executable file not found in $PATH``."""

    kind = "invalid_argument"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_ERROR_KINDS: dict[str, type[errdefs.LaminaError]] = {
    cls.kind: cls for cls in (errdefs.NotFound, errdefs.AlreadyExists, errdefs.InvalidArgument, errdefs.Conflict,
                              errdefs.FailedPrecondition, errdefs.Unavailable, errdefs.DataLoss,
                              errdefs.NotImplemented, errdefs.System, errdefs.Cancelled)
}


# --------------------------------------------------------------------------------------------
# the mount plan (pure data, computed in the parent)
# --------------------------------------------------------------------------------------------

def default_mounts(spec: ContainerSpec) -> tuple[MountSpec, ...]:
    """The mounts every container gets before ``spec.mounts``, like runc's default spec."""
    mounts = [
        MountSpec("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
        MountSpec("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        MountSpec("/dev/pts", "devpts", "devpts",
                  ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
        MountSpec("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
        MountSpec("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
        MountSpec("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ]
    return tuple(mounts)


@dataclass(frozen=True)
class _Plan:
    """Everything the child needs, computed before fork (no parsing or I/O in the child
    that could be done earlier)."""

    spec: ContainerSpec
    process: ProcessSpec
    unshare_flags: int
    private_network: bool
    capability_mask: int
    last_capability: int
    rlimits: tuple[tuple[int, int, int], ...]


# --------------------------------------------------------------------------------------------
# helpers used in the child
# --------------------------------------------------------------------------------------------

class _Step:
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


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 3 (so that setting up 0-2 cannot clobber it)."""
    if fd >= 3:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def _setup_stdio(stdio: Stdio) -> None:
    # dup every source above 2 first: a source may itself be 0, 1 or 2, in any order
    temporary = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in (stdio.stdin, stdio.stdout, stdio.stderr)]
    for target, source in enumerate(temporary):
        os.dup2(source, target, inheritable=True)
    for source in temporary:
        os.close(source)


def _close_range(first: int, last: int) -> None:
    """Close descriptors ``first`` to ``last`` inclusive."""
    if first > last:
        return
    if _libc.syscall(ctypes.c_long(_SYS_close_range), ctypes.c_uint(first), ctypes.c_uint(last),
                     ctypes.c_uint(0)) == 0:
        return
    for name in os.listdir("/proc/self/fd"):  # kernels before 5.9
        fd = int(name)
        if first <= fd <= last:
            try:
                os.close(fd)
            except OSError:
                pass


def _close_fds_except(keep: int | None) -> None:
    """Close every descriptor but 0-2 and ``keep``."""
    if keep is None or keep < 3:
        _close_range(3, 0xFFFFFFFF)
        return
    _close_range(3, keep - 1)
    _close_range(keep + 1, 0xFFFFFFFF)


def _mount_in_root(root_fd: int, item: MountSpec) -> None:
    """Mount ``item`` at its destination resolved inside the root (never outside)."""
    destination = item.destination
    options = item.options
    propagation = [o for o in options if o in _PROPAGATION_OPTIONS]
    is_bind = item.type == "bind" or "bind" in options or "rbind" in options
    with _Step(f"mount {item.type} on {destination}"):
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
                mountlib.Mount("bind", item.source, ("rbind" if recursive else "bind",)).mount(_proc_fd(target))
            finally:
                os.close(target)
            flags = [o for o in options if o in _REMOUNT_OPTIONS]
            if flags:
                # the old descriptor names the directory under the new mount: reopen
                target = open_in_root(root_fd, destination)
                try:
                    mountlib.remount(_proc_fd(target), flags)
                    if recursive and "ro" in flags:
                        _read_only_below(target, destination)
                finally:
                    os.close(target)
        else:
            target = make_dirs_in_root(root_fd, destination)
            try:
                mountlib.Mount(item.type, item.source,
                               tuple(o for o in options if o not in _PROPAGATION_OPTIONS)).mount(_proc_fd(target))
            finally:
                os.close(target)
        for value in propagation:
            target = open_in_root(root_fd, destination)
            try:
                mountlib.set_propagation(_proc_fd(target), value)
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
    top = os.readlink(_proc_fd(target_fd))
    for point in mountlib.mounted_targets():
        if point.startswith(top.rstrip("/") + "/"):
            mountlib.remount(point, ("ro",))


def _populate_dev(root_fd: int, terminal: bool) -> None:
    with _Step("populate /dev"):
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
                        mountlib.Mount("bind", f"/dev/{name}", ("bind",)).mount(_proc_fd(target))
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
                mountlib.Mount("bind", os.ttyname(0), ("bind",)).mount(_proc_fd(console))
            finally:
                os.close(console)


def _mount_sysfs(root_fd: int, item: MountSpec) -> None:
    try:
        _mount_in_root(root_fd, item)
        return
    except errdefs.LaminaError:
        pass
    # sysfs refused (e.g. a net namespace we do not own): a recursive read-only bind instead
    _mount_in_root(root_fd, MountSpec(item.destination, "bind", "/sys", ("rbind",)))
    target = open_in_root(root_fd, item.destination)
    try:
        top = os.readlink(_proc_fd(target))
    finally:
        os.close(target)
    for point in mountlib.mounted_targets():
        if point == top or point.startswith(top.rstrip("/") + "/"):
            with _Step(f"remount {point} read-only"):
                mountlib.remount(point, ("ro",))


def _loopback_up() -> None:
    with _Step("bring up the loopback interface"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _pivot_root(root_fd: int) -> None:
    with _Step("pivot_root into the container's root filesystem"):
        os.fchdir(root_fd)
        # the old root ends up stacked on "." and is detached at once: no directory needed
        lsys.pivot_root(".", ".")
        mountlib.unmount(".", detach=True)
        os.chdir("/")


def _mask_paths(masked: tuple[str, ...], readonly: tuple[str, ...]) -> None:
    for path in readonly:
        with _Step(f"make {path} read-only"):
            try:
                os.lstat(path)
            except FileNotFoundError:
                continue
            mountlib.Mount("bind", path, ("rbind",)).mount(path)
            mountlib.remount(path, ("ro",))
    for path in masked:
        with _Step(f"mask {path}"):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                mountlib.Mount("tmpfs", "tmpfs", ("ro", "nosuid", "nodev", "noexec", "size=0")).mount(path)
            else:
                mountlib.Mount("bind", "/dev/null", ("bind",)).mount(path)


def _apply_rlimits(rlimits: tuple[tuple[int, int, int], ...]) -> None:
    for number, soft, hard in rlimits:
        with _Step(f"set rlimit {number}"):
            _current_soft, current_hard = resource.getrlimit(number)
            # raising a hard limit needs CAP_SYS_RESOURCE, which the runtime may not have
            if current_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > current_hard):
                hard = current_hard
            if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
                soft = hard
            resource.setrlimit(number, (soft, hard))


def _is_executable(path: str) -> tuple[bool, int]:
    """(is a non-directory with an execute bit, errno of the stat or 0) — Go's LookPath test."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return False, exc.errno or errno.ENOENT
    if stat.S_ISDIR(info.st_mode) or not info.st_mode & 0o111:
        return False, errno.EACCES
    return True, 0


def find_executable(name: str, env: tuple[str, ...] | list[str]) -> str:
    """Resolve the command ``name`` the way Docker (Go's exec.LookPath in runc) does: a name
    with a slash is used as it is, a bare name is searched in ``PATH`` of ``env``."""
    if "/" in name:
        ok, error = _is_executable(name)
        if ok:
            return name
        if error == errno.ENOENT:
            raise ExecError(f'exec: "{name}": stat {name}: no such file or directory', 127)
        if error == errno.ENOTDIR:
            raise ExecError(f'exec: "{name}": stat {name}: not a directory', 127)
        raise ExecError(f'exec: "{name}": permission denied', 126)
    path = DEFAULT_PATH
    for item in env:
        if item.startswith("PATH="):
            path = item[5:]
    if name:
        for directory in path.split(":"):
            candidate = os.path.join(directory or ".", name)
            if _is_executable(candidate)[0]:
                return candidate
    raise ExecError(f'exec: "{name}": executable file not found in $PATH', 127)


def _verify_cwd(cwd: str) -> None:
    """Change to ``cwd`` and make sure it is inside the container: a working directory
    reached through a leaked host descriptor (``/proc/self/fd/N``) would not be."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise errdefs.System(f'chdir to cwd ("{cwd}") set in config.json failed: {exc.strerror}') from exc
    try:
        here = os.stat(".")
        path = os.getcwd()  # ENOENT when the directory is unreachable from our root
        there = os.stat(path)
    except OSError as exc:
        raise errdefs.System(f"current working directory {cwd} is outside of the container's root "
                             f"({exc.strerror})") from exc
    if not path.startswith("/") or (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        raise errdefs.System(f"current working directory {cwd} is outside of the container's root")


def _reset_signals() -> None:
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _write_status(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _report(fd: int, exc: BaseException) -> int:
    """Send ``exc`` to the parent; returns the exit code the child should end with."""
    if isinstance(exc, ExecError):
        kind, code = "exec", exc.exit_code
    elif isinstance(exc, errdefs.LaminaError):
        kind, code = exc.kind, 125
    elif isinstance(exc, OSError):
        kind, code = "system", 125
    else:
        kind, code = "system", 125
    message = str(exc) if isinstance(exc, errdefs.LaminaError) else f"{type(exc).__name__}: {exc}"
    try:
        _write_status(fd, b"E" + json.dumps({"kind": kind, "message": message, "exit_code": code}).encode() + b"\n")
    except OSError:
        pass
    return code


def _finish_and_exec(plan: _Plan, process: ProcessSpec, status_fd: int, seccomp: SeccompProgram | None,
                     in_init_worker: bool = False) -> None:
    """The last steps, common to a container's first process and to exec: rlimits, fds,
    user, cwd, capabilities, no_new_privs, seccomp, execve.  Never returns."""
    _apply_rlimits(plan.rlimits)
    env = list(process.env)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={home_for_uid('/', process.uid)}")
    _close_fds_except(status_fd)
    if seccomp is not None and not process.no_new_privileges:
        # without no_new_privs only a CAP_SYS_ADMIN process may load a filter: load it now
        with _Step("load the seccomp filter"):
            seccomp.load(no_new_privileges=False)
    with _Step("drop the capability bounding set"):
        caps.drop_bounding_set(plan.capability_mask, plan.last_capability)
    with _Step("switch user"):
        caps.set_keep_capabilities(True)
        os.setgroups(list(process.additional_gids))
        os.setresgid(process.gid, process.gid, process.gid)
        os.setresuid(process.uid, process.uid, process.uid)
        caps.set_keep_capabilities(False)
    _verify_cwd(process.cwd)
    caps.set_capabilities(plan.capability_mask, plan.capability_mask, 0)
    if process.no_new_privileges:
        with _Step("set no_new_privs"):
            caps.set_no_new_privileges()
    if in_init_worker and process.terminal:
        # the init holds the session; the command becomes the terminal's foreground group
        with _Step("take the terminal's foreground"):
            os.setpgid(0, 0)
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, previous)
    executable = find_executable(process.args[0], env)
    _reset_signals()
    os.umask(0o022)
    _write_status(status_fd, b"R\n")
    if seccomp is not None and process.no_new_privileges:
        with _Step("load the seccomp filter"):
            seccomp.load(no_new_privileges=True)
    environment: dict[str, str] = {}
    for item in env:
        key, separator, value = item.partition("=")
        if separator and key:
            environment[key] = value
    try:
        os.execve(executable, list(process.args), environment)
    except OSError as exc:
        code = 127 if exc.errno == errno.ENOENT else 126
        raise ExecError(f"exec {executable}: {exc.strerror}", code) from exc


def _drop_init_privileges(plan: _Plan, seccomp: SeccompProgram | None) -> None:
    """The init keeps only the container's capabilities, gets no_new_privs and the seccomp
    filter (an exec into the container checks PID 1 to know whether to use one)."""
    caps.drop_bounding_set(plan.capability_mask, plan.last_capability)
    caps.set_capabilities(plan.capability_mask, plan.capability_mask, 0)
    caps.set_no_new_privileges()
    if seccomp is not None:
        seccomp.load(no_new_privileges=True)


def _container_child(plan: _Plan, stdio: Stdio, status_fd: int, procs_fds: list[int],
                     seccomp: SeccompProgram | None) -> None:
    """PID 1 of a new container; never returns."""
    code = 125
    try:
        status_fd = _high_fd(status_fd)
        procs_fds = [_high_fd(fd) for fd in procs_fds]
        spec = plan.spec
        process = plan.process
        os.setsid()
        _setup_stdio(stdio)
        if process.terminal:
            with _Step("set the controlling terminal"):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.umask(0)
        with _Step("create namespaces"):
            lsys.unshare(plan.unshare_flags)
        mountlib.set_propagation("/", "rprivate")
        mountlib.Mount("bind", spec.rootfs, ("rbind",)).mount(spec.rootfs)
        with _Step(f"open the root filesystem {spec.rootfs}"):
            root_fd = os.open(spec.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for item in default_mounts(spec):
            if item.type == "sysfs":
                _mount_sysfs(root_fd, item)
            else:
                _mount_in_root(root_fd, item)
            if item.destination == "/dev":
                _populate_dev(root_fd, process.terminal)
        for item in spec.mounts:
            _mount_in_root(root_fd, item)
        with _Step(f"create the working directory {process.cwd}"):
            os.close(make_dirs_in_root(root_fd, process.cwd))
        if plan.unshare_flags & lsys.CLONE_NEWUTS:
            with _Step("set the hostname"):
                socket.sethostname(spec.hostname or spec.id[:12])
        if plan.private_network:
            _loopback_up()
        _pivot_root(root_fd)
        os.close(root_fd)
        _mask_paths(spec.masked_paths, spec.readonly_paths)
        if spec.readonly_rootfs:
            mountlib.remount("/", ("ro",))
        with _Step("join the container's cgroups"):
            enter_cgroups(procs_fds)
            if os.path.exists("/proc/self/ns/cgroup") and "cgroup" in spec.namespaces:
                lsys.unshare(lsys.CLONE_NEWCGROUP)
        if spec.init:
            def worker() -> None:
                worker_code = 125
                try:
                    _finish_and_exec(plan, process, status_fd, seccomp, in_init_worker=True)
                except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
                    worker_code = _report(status_fd, exc)
                finally:
                    os._exit(worker_code)

            def after_fork() -> None:
                _close_fds_except(None)
                _drop_init_privileges(plan, seccomp)

            code = run_init(worker, after_fork)
        else:
            _finish_and_exec(plan, process, status_fd, seccomp)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        code = _report(status_fd, exc)
    finally:
        os._exit(code)


def _exec_child(plan: _Plan, stdio: Stdio, status_fd: int, procs_fds: list[int], namespace_fds: list[tuple[int, int]],
                seccomp: SeccompProgram | None) -> None:
    """A process joining a running container; never returns."""
    code = 125
    try:
        status_fd = _high_fd(status_fd)
        procs_fds = [_high_fd(fd) for fd in procs_fds]
        namespace_fds = [(_high_fd(fd), kind) for fd, kind in namespace_fds]
        process = plan.process
        if process.terminal:
            os.setsid()
        _setup_stdio(stdio)
        if process.terminal:
            with _Step("set the controlling terminal"):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.umask(0o022)
        with _Step("join the container's namespaces"):
            for fd, kind in namespace_fds:
                lsys.setns(fd, kind)
                os.close(fd)
        with _Step("join the container's cgroups"):
            enter_cgroups(procs_fds)
        _finish_and_exec(plan, process, status_fd, seccomp)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        code = _report(status_fd, exc)
    finally:
        os._exit(code)


def _read_status(fd: int) -> tuple[bool, dict[str, Any] | None]:
    """(the child reached exec, its error) from the status pipe, read to EOF."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if not chunk:
            break
        chunks.append(chunk)
    ready = False
    error = None
    for line in b"".join(chunks).splitlines():
        if line == b"R":
            ready = True
        elif line.startswith(b"E") and error is None:
            try:
                error = json.loads(line[1:])
            except ValueError:
                error = {"kind": "system", "message": line[1:].decode(errors="replace"), "exit_code": 125}
    return ready, error


def _raise_child_error(error: dict[str, Any]) -> None:
    message = str(error.get("message", "container process failed"))
    if error.get("kind") == "exec":
        raise ExecError(message, int(error.get("exit_code", 127)))
    raise _ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)


def _reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover
            continue


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# --------------------------------------------------------------------------------------------
# the runtime
# --------------------------------------------------------------------------------------------

class NativeRuntime:
    """lamina's own runtime (see the module docstring for the process model)."""

    name = "native"

    def __init__(self, *, cgroup_layout: CgroupLayout | None = None, seccomp_profile: bytes | None = None,
                 seccomp_cache: str | None = None) -> None:
        """``seccomp_profile``: the JSON of the profile (Docker's default when ``None``);
        ``seccomp_cache``: a directory where compiled filters are kept between processes."""
        self._layout = cgroup_layout
        self._profile = seccomp_profile
        self._programs = ProgramCache(seccomp_cache)

    # -- parent-side preparation ----------------------------------------------------------

    def _cgroups(self, path: str) -> CgroupManager:
        if self._layout is None:
            self._layout = detect_layout()
        return CgroupManager(path, self._layout)

    def _seccomp(self, capability_names: tuple[str, ...]) -> SeccompProgram:
        if self._profile is None:
            self._profile = default_profile_bytes()
        return self._programs.get(self._profile, capability_names)

    @staticmethod
    def _capabilities(process: ProcessSpec) -> tuple[int, int, tuple[str, ...]]:
        last = caps.last_capability()
        wanted = caps.capability_mask(process.capabilities)
        # a capability the runtime itself lacks (e.g. CAP_SYS_RESOURCE in a restricted host)
        # cannot be given: keep those of the requested set that the bounding set still has
        bounding = wanted
        try:
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("CapBnd:"):
                        bounding = int(line.split()[1], 16)
        except OSError:
            pass
        mask = wanted & bounding & ((1 << (last + 1)) - 1)
        names = tuple(name for number, name in enumerate(caps.CAPABILITIES) if mask & (1 << number))
        return mask, last, names

    @staticmethod
    def _rlimits(process: ProcessSpec) -> tuple[tuple[int, int, int], ...]:
        result = []
        for name, soft, hard in process.rlimits:
            number = getattr(resource, name.upper(), None)
            if not name.upper().startswith("RLIMIT_") or not isinstance(number, int):
                raise errdefs.InvalidArgument(f"unknown rlimit {name!r}")
            if soft < 0:
                soft = resource.RLIM_INFINITY
            if hard < 0:
                hard = resource.RLIM_INFINITY
            result.append((number, soft, hard))
        return tuple(result)

    @staticmethod
    def _validate_process(process: ProcessSpec) -> None:
        if not process.args or not process.args[0]:
            raise errdefs.InvalidArgument("no command specified")
        if not process.cwd.startswith("/"):
            raise errdefs.InvalidArgument(
                f"the working directory '{process.cwd}' is invalid, it needs to be an absolute path")

    def _plan(self, spec: ContainerSpec, process: ProcessSpec) -> tuple[_Plan, tuple[str, ...]]:
        self._validate_process(process)
        mask, last, names = self._capabilities(process)
        flags = 0
        namespaces = spec.namespaces
        if "mount" not in namespaces:
            raise errdefs.InvalidArgument("the native runtime needs a mount namespace (pivot_root)")
        flags |= lsys.CLONE_NEWNS
        if "uts" in namespaces:
            flags |= lsys.CLONE_NEWUTS
        if "ipc" in namespaces:
            flags |= lsys.CLONE_NEWIPC
        if spec.network not in ("private", "none", "host"):
            raise errdefs.InvalidArgument(f"unknown network mode {spec.network!r} for the native runtime")
        private_network = spec.network != "host" and "network" in namespaces
        if private_network:
            flags |= lsys.CLONE_NEWNET
        return _Plan(spec=spec, process=process, unshare_flags=flags, private_network=private_network,
                     capability_mask=mask, last_capability=last, rlimits=self._rlimits(process)), names

    # -- Runtime protocol -----------------------------------------------------------------

    def start(self, spec: ContainerSpec, stdio: Stdio) -> RuntimeState:
        if not os.path.isdir(spec.rootfs):
            raise errdefs.NotFound(f"root filesystem {spec.rootfs} does not exist")
        plan, capability_names = self._plan(spec, spec.process)
        manager = self._cgroups(f"{spec.cgroup_parent.strip('/')}/{spec.id}")
        if manager.exists() and manager.pids():
            raise errdefs.Conflict(f"container {spec.id} is already running (its cgroup has processes)")
        manager.create()
        started = False
        try:
            manager.apply(spec.resources)
            seccomp = self._seccomp(capability_names) if spec.seccomp else None
            procs_fds = manager.open_procs_files()
            pid = self._fork(
                new_pid_namespace="pid" in spec.namespaces, seccomp=seccomp, procs_fds=procs_fds,
                child=lambda status_fd, procs, filter_: _container_child(plan, stdio, status_fd, procs, filter_))
            started = True
        finally:
            if not started:
                self._remove_quietly(manager)
        return RuntimeState(id=spec.id, pid=pid, runtime=self.name, cgroup=manager.path)

    def exec(self, state: RuntimeState, process: ProcessSpec, stdio: Stdio) -> int:
        spec = ContainerSpec(id=state.id, rootfs="/", process=process)
        plan, capability_names = self._plan(spec, process)
        namespace_fds: list[tuple[int, int]] = []
        pid_namespace = None
        manager = self._cgroups(cgroup_path(state))
        try:
            for name, kind in _NAMESPACE_FILES:
                path = f"/proc/{state.pid}/ns/{name}"
                try:
                    if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                        continue  # shared with the host (e.g. network=host): nothing to join
                    namespace_fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind))
                except FileNotFoundError as exc:
                    if name == "cgroup":
                        continue
                    raise errdefs.Conflict(f"container {state.id} is not running") from exc
            try:
                pid_namespace = os.open(f"/proc/{state.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise errdefs.Conflict(f"container {state.id} is not running") from exc
            # checked after opening: the descriptors name the container's namespaces, not
            # those of a process that reused the pid
            self._check_running(state, manager)
            seccomp = self._seccomp(capability_names) if self._exec_seccomp(state) else None
            procs_fds = manager.open_procs_files() if manager.exists() else []
            fds = list(namespace_fds)
            return self._fork(
                new_pid_namespace=False, join_pid_namespace=pid_namespace, seccomp=seccomp, procs_fds=procs_fds,
                child=lambda status_fd, procs, filter_: _exec_child(plan, stdio, status_fd, procs, fds, filter_))
        finally:
            for fd, _ in namespace_fds:
                os.close(fd)
            if pid_namespace is not None:
                os.close(pid_namespace)

    @staticmethod
    def _exec_seccomp(state: RuntimeState) -> bool:
        # an exec gets the container's filter when the container has one
        try:
            with open(f"/proc/{state.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("Seccomp:"):
                        return line.split()[1] != "0"
        except OSError:
            pass
        return True

    def _fork(self, *, new_pid_namespace: bool, seccomp: SeccompProgram | None, procs_fds: list[int],
              child: Callable[[int, list[int], SeccompProgram | None], None],
              join_pid_namespace: int | None = None) -> int:
        """Fork ``child`` as PID 1 of a new pid namespace, or into ``join_pid_namespace``,
        keeping the caller's own pid namespace for its later children; wait for the child to
        exec.  Returns the child's host pid."""
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        own_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        pid = -1
        try:
            switched = False
            try:
                if new_pid_namespace:
                    lsys.unshare(lsys.CLONE_NEWPID)
                    switched = True
                elif join_pid_namespace is not None:
                    lsys.setns(join_pid_namespace, lsys.CLONE_NEWPID)
                    switched = True
                pid = os.fork()
            except OSError as exc:
                if exc.errno == errno.ENOMEM and join_pid_namespace is not None:
                    raise errdefs.Conflict("the container is not running (its pid namespace has no init)") from exc
                raise errdefs.System(f"cannot start the container process: {exc.strerror}") from exc
            finally:
                # only in the parent (pid > 0, or -1 when fork failed): the child keeps the
                # namespace for its own children
                if switched and pid != 0:
                    lsys.setns(own_namespace, lsys.CLONE_NEWPID)
            if pid == 0:
                os.close(read_fd)
                child(write_fd, procs_fds, seccomp)
                os._exit(125)  # pragma: no cover - child() never returns
        finally:
            os.close(own_namespace)
            os.close(write_fd)
            for fd in procs_fds:
                os.close(fd)
        try:
            ready, error = _read_status(read_fd)
        finally:
            os.close(read_fd)
        if error is not None:
            _reap(pid)
            _raise_child_error(error)
        if not ready:
            status = _reap(pid)
            raise errdefs.System(f"the container process died during setup ({_describe_status(status)})")
        return pid

    @staticmethod
    def _remove_quietly(manager: CgroupManager) -> None:
        try:
            manager.kill_all()
            manager.remove()
        except errdefs.LaminaError:
            pass

    @staticmethod
    def _check_running(state: RuntimeState, manager: CgroupManager) -> None:
        """The container's PID 1 is still ``state.pid``: it is a member of the container's
        cgroup (a pid reused by another process after the container exited is not)."""
        try:
            members = manager.pids()
        except errdefs.LaminaError:
            members = []
        if state.pid not in members:
            raise errdefs.Conflict(f"container {state.id} is not running")

    def kill(self, state: RuntimeState, signal: int, *, all: bool = False) -> None:
        manager = self._cgroups(cgroup_path(state))
        if all:
            manager.kill_all(signal)
            return
        self._check_running(state, manager)
        try:
            os.kill(state.pid, signal)
        except ProcessLookupError as exc:
            raise errdefs.Conflict(f"container {state.id} is not running") from exc

    def pause(self, state: RuntimeState) -> None:
        self._cgroups(cgroup_path(state)).freeze()

    def resume(self, state: RuntimeState) -> None:
        self._cgroups(cgroup_path(state)).thaw()

    def update(self, state: RuntimeState, resources: Resources) -> None:
        self._cgroups(cgroup_path(state)).apply(resources)

    def stats(self, state: RuntimeState) -> dict[str, object]:
        return self._cgroups(cgroup_path(state)).stats()

    def cgroup_path(self, state: RuntimeState) -> str:
        return cgroup_path(state)

    def oom_killed(self, state: RuntimeState) -> bool:
        """Whether the kernel's OOM killer killed a process of the container."""
        return self._cgroups(cgroup_path(state)).oom_killed()

    def processes(self, state: RuntimeState) -> list[int]:
        return self._cgroups(cgroup_path(state)).pids()

    def delete(self, state: RuntimeState, *, force: bool = False) -> None:
        manager = self._cgroups(cgroup_path(state))
        remaining = manager.kill_remaining() if force else manager.pids() if manager.exists() else []
        if remaining:
            raise errdefs.Conflict(f"container {state.id} still has processes {remaining}; kill them first")
        manager.remove()


def open_runtime(name: str, exec_root: str) -> NativeRuntime:
    """The registry's factory (:mod:`lamina.runtime.registry`): compiled seccomp filters are
    kept in ``<exec_root>/seccomp`` (compiling Docker's profile costs ~20 ms)."""
    return NativeRuntime(seccomp_cache=os.path.join(exec_root, "seccomp"))
