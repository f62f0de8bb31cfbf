"""The native runtime's forked child, from ``fork`` to ``execve``, and the status pipe
between it and the parent (:mod:`lamina.runtime.native` forks it).

A :class:`Plan` is computed in the parent before fork (no parsing or I/O in the child that
could be done earlier).  :func:`container_child` becomes PID 1 of a new container: it
unshares the namespaces, builds the root filesystem (:mod:`lamina.runtime.rootfs`), sets the
hostname (and domain name), brings ``lo`` up, pivots, writes the spec's sysctls and
``oom_score_adj`` (before ``/proc/sys`` becomes read-only), joins the cgroups late (so the copy-on-write faults of the
forked Python image are not charged to a small memory limit) and unshares the cgroup
namespace.  :func:`exec_child` joins a running container's namespaces instead, drops its
privileges and only then forks the exec's process, which the parent moves into the cgroups.
Both end in the same steps: rlimits, every inherited descriptor closed but 0-2 and the status
pipe, the capability bounding set dropped, groups/gid/uid switched, the working directory
checked to be inside the container (the runc CVE-2024-21626 class), capabilities,
no_new_privs, the seccomp program, and ``execve`` (a bare command name is searched in
``PATH`` of the process environment, :func:`find_executable`).

The child is non-dumpable from before it joins the container (set by the parent around
``fork``, see :mod:`lamina.runtime.native`) until its last ``execve``, which goes through the
sealed memfd trampoline of :mod:`lamina.runtime.trampoline`: no ``/proc/<pid>/exe``, ``fd``,
``map_files``, ``mem`` or ``environ`` of a lamina process is open to the container's
processes, and the container's command never runs with the host interpreter as
``/proc/self/exe``.

Status pipe protocol (child -> parent, close-on-exec): ``R<json path>\\n`` when the child is
about to exec the command at that path; ``E<json>\\n`` with ``{"kind", "message",
"exit_code"}`` when a step failed; ``e<errno + 0x30>\\n`` from the trampoline when its
``execve`` failed.  EOF after ``R`` and no error means the exec happened; EOF without ``R``
means the child died during setup (:func:`read_status`, :func:`raise_child_error`).  A command that cannot be run is an
:class:`ExecError` with Docker's message and exit code (127 not found, 126 not executable).
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
from typing import Any

from lamina import errdefs
from lamina import mount as mountlib
from lamina import sys as lsys
from lamina.records import dataclass
from lamina.runtime import capabilities as caps
from lamina.runtime.api import ContainerSpec, ProcessSpec, Stdio
from lamina.runtime.cgroups import enter_cgroups
from lamina.runtime.init import run_init
from lamina.runtime.paths import make_dirs_in_root
from lamina.runtime.rootfs import (
    Step,
    default_mounts,
    make_devices,
    mask_paths,
    mount_cgroups,
    mount_in_root,
    mount_sysfs,
    pivot_root,
    populate_dev,
    proc_fd,
)
from lamina.runtime.seccomp import SeccompProgram
from lamina.runtime.trampoline import STATUS_FD, decode_failure
from lamina.runtime.user import home_for_uid
from lamina.runtime.userns import become_namespace_root, open_bind_sources

__all__ = ["DEFAULT_PATH", "ExecError", "Plan", "container_child", "describe_status", "exec_child", "find_executable",
           "parse_status", "pid_line", "read_until_pid", "reset_signals", "raise_child_error", "reap", "read_status", "report_error"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


@dataclass(frozen=True)
class Plan:
    """Everything the child needs, computed before fork (no parsing or I/O in the child
    that could be done earlier)."""

    spec: ContainerSpec
    process: ProcessSpec
    unshare_flags: int
    private_network: bool
    capability_mask: int
    last_capability: int
    rlimits: tuple[tuple[int, int, int], ...]
    # (name under /sys/fs/cgroup, "" for the whole of it; the container's cgroup on the host)
    cgroup_mounts: tuple[tuple[str, str], ...] = ()
    # PID 1 in a user namespace (lamina.runtime.userns): it opens the root filesystem and the
    # bind sources, then becomes the namespace's root before it makes its other namespaces
    user_namespace: bool = False


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 3 (so that setting up 0-2 cannot clobber it)."""
    if fd >= 3:
        return fd
    return _moved_above(fd, 3)


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


def _close_fds_except(*keep: int | None) -> None:
    """Close every descriptor but 0-2 and those in ``keep``."""
    first = 3
    for fd in sorted(fd for fd in keep if fd is not None and fd >= 3):
        _close_range(first, fd - 1)
        first = fd + 1
    _close_range(first, 0xFFFFFFFF)


def _pin_status_fd(status_fd: int, trampoline_fd: int) -> int:
    """The status pipe also at :data:`STATUS_FD`, inheritable (the trampoline marks it
    close-on-exec itself; ``status_fd`` stays open, close-on-exec, for errors before the exec);
    returns where the trampoline's descriptor now is."""
    if trampoline_fd == STATUS_FD:
        trampoline_fd = _moved_above(trampoline_fd, STATUS_FD + 1)
    if status_fd != STATUS_FD:
        os.dup2(status_fd, STATUS_FD, inheritable=True)
    else:
        os.set_inheritable(STATUS_FD, True)
    return trampoline_fd


def _moved_above(fd: int, lowest: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return new


def _loopback_up() -> None:
    with Step("bring up the loopback interface"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _reopen_terminal_inside() -> None:
    """When the terminal is a pty of the container's own /dev/pts (the monitor mounts its
    instance there), make 0-2 the same terminal opened by its path inside the container, so
    that ``/proc/1/fd/0`` reads ``/dev/pts/0`` as in Docker; any other terminal stays."""
    try:
        name = os.path.basename(os.readlink("/proc/self/fd/0"))
        if not name.isdigit():
            return
        fd = os.open(f"/dev/pts/{name}", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(fd).st_rdev == os.fstat(0).st_rdev:
            for target in (0, 1, 2):
                os.dup2(fd, target, inheritable=True)
    finally:
        os.close(fd)


def _write_sysctls(sysctls: tuple[tuple[str, str], ...]) -> None:
    """After pivot_root, before /proc/sys is made read-only: the fresh /proc shows the
    container's own namespaces."""
    for key, value in sysctls:
        with Step(f"write sysctl {key}={value}"):
            fd = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)


def _write_oom_score_adj(value: int | None) -> None:
    if value is not None:
        with Step(f"set oom_score_adj to {value}"), open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(value))


def _apply_rlimits(rlimits: tuple[tuple[int, int, int], ...]) -> None:
    for number, soft, hard in rlimits:
        with Step(f"set rlimit {number}"):
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


def reset_signals(ignore: tuple[signal.Signals, ...] = ()) -> None:
    """Every signal back to its default disposition (those in ``ignore`` ignored) and none
    blocked: what a fresh process forked from one of lamina's (a server's thread) starts from.
    The mask is cleared last, so no signal arrives while a disposition is still inherited.
    A disposition the interpreter knows to be the wanted one already is left (no ``sigaction``
    for each of the ~60 signals: they are mostly default; ``getsignal`` answers None for one
    set outside Python, which is set)."""
    for number in range(1, signal.NSIG):  # plain numbers: valid_signals() makes ~60 enum members (~0.13 ms)
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        wanted = signal.SIG_IGN if number in ignore else signal.SIG_DFL
        try:
            if signal.getsignal(number) != wanted:
                signal.signal(number, wanted)
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


def report_error(fd: int, exc: BaseException) -> int:
    """Send ``exc`` on the status pipe ``fd`` (for the user namespace's intermediate process,
    :mod:`lamina.runtime.userns`); returns the exit code to end with."""
    return _report(fd, exc)


def _finish_and_exec(plan: Plan, process: ProcessSpec, status_fd: int, seccomp: SeccompProgram | None,
                     trampoline_fd: int | None, in_init_worker: bool = False) -> None:
    """The last steps, common to a container's first process and to its init's worker:
    rlimits, fds, user, cwd, capabilities, no_new_privs, seccomp, execve (through the
    trampoline when there is one).  Never returns."""
    executable, environment, trampoline_fd = _drop_privileges(plan, process, status_fd, seccomp, trampoline_fd,
                                                              in_init_worker=in_init_worker)
    _write_status(status_fd, b"R" + json.dumps(executable).encode() + b"\n")
    if seccomp is not None and process.no_new_privileges:
        with Step("load the seccomp filter"):
            seccomp.load(no_new_privileges=True)
    _execve(process, executable, environment, trampoline_fd)


def _drop_privileges(plan: Plan, process: ProcessSpec, status_fd: int, seccomp: SeccompProgram | None,
                     trampoline_fd: int | None, *, in_init_worker: bool = False,
                     keep: tuple[int, ...] = ()) -> tuple[str, dict[str, str], int | None]:
    """Every step before the command's ``execve`` but the seccomp filter that comes with
    no_new_privs; returns (the executable, the environment, the trampoline's descriptor)."""
    _apply_rlimits(plan.rlimits)
    env = list(process.env)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={home_for_uid('/', process.uid)}")
    _close_fds_except(status_fd, trampoline_fd, *keep)
    if trampoline_fd is not None:
        trampoline_fd = _pin_status_fd(status_fd, trampoline_fd)
    if seccomp is not None and not process.no_new_privileges:
        # without no_new_privs only a CAP_SYS_ADMIN process may load a filter: load it now
        with Step("load the seccomp filter"):
            seccomp.load(no_new_privileges=False)
    with Step("drop the capability bounding set"):
        caps.drop_bounding_set(plan.capability_mask, plan.last_capability)
    with Step("switch user"):
        caps.set_keep_capabilities(True)
        os.setgroups(list(process.additional_gids))
        os.setresgid(process.gid, process.gid, process.gid)
        os.setresuid(process.uid, process.uid, process.uid)
        caps.set_keep_capabilities(False)
    _verify_cwd(process.cwd)
    caps.set_capabilities(plan.capability_mask, plan.capability_mask, 0)
    if process.no_new_privileges:
        with Step("set no_new_privs"):
            caps.set_no_new_privileges()
    if in_init_worker and process.terminal:
        # the init holds the session; the command becomes the terminal's foreground group
        with Step("take the terminal's foreground"):
            os.setpgid(0, 0)
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, previous)
    executable = find_executable(process.args[0], env)
    reset_signals()
    os.umask(0o022)
    environment: dict[str, str] = {}
    for item in env:
        key, separator, value = item.partition("=")
        if separator and key:
            environment[key] = value
    return executable, environment, trampoline_fd


def _execve(process: ProcessSpec, executable: str, environment: dict[str, str], trampoline_fd: int | None) -> None:
    try:
        if trampoline_fd is not None:
            os.execve(trampoline_fd, ["lamina-exec", executable, *process.args], environment)
        os.execve(executable, list(process.args), environment)
    except OSError as exc:
        code = 127 if exc.errno == errno.ENOENT else 126
        raise ExecError(f"exec {executable}: {exc.strerror}", code) from exc


def _drop_init_privileges(plan: Plan, seccomp: SeccompProgram | None) -> None:
    """The init keeps only the container's capabilities, gets no_new_privs and the seccomp
    filter (an exec into the container checks PID 1 to know whether to use one)."""
    caps.drop_bounding_set(plan.capability_mask, plan.last_capability)
    caps.set_capabilities(plan.capability_mask, plan.capability_mask, 0)
    caps.set_no_new_privileges()
    if seccomp is not None:
        seccomp.load(no_new_privileges=True)


def _raise_fds(status_fd: int, procs_fds: list[int], trampoline_fd: int | None) -> tuple[int, list[int], int | None]:
    """The descriptors a child keeps, moved above the stdio numbers it is about to dup over."""
    return (_high_fd(status_fd), [_high_fd(fd) for fd in procs_fds],
            None if trampoline_fd is None else _high_fd(trampoline_fd))


def container_child(plan: Plan, stdio: Stdio, status_fd: int, procs_fds: list[int],
                     seccomp: SeccompProgram | None, trampoline_fd: int | None,
                     namespace_fds: list[tuple[int, int]] | None = None) -> None:
    """PID 1 of a new container (``namespace_fds``: (descriptor, CLONE_* kind) of namespaces
    joined rather than created); never returns."""
    code = 125
    try:
        status_fd, procs_fds, trampoline_fd = _raise_fds(status_fd, procs_fds, trampoline_fd)
        namespace_fds = [(_high_fd(fd), kind) for fd, kind in namespace_fds or []]
        spec = plan.spec
        process = plan.process
        os.setsid()
        _setup_stdio(stdio)
        if process.terminal:
            with Step("set the controlling terminal"):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.umask(0)
        if spec.network_namespace:
            with Step(f"join the network namespace {spec.network_namespace}"):
                network_fd = os.open(spec.network_namespace, os.O_RDONLY | os.O_CLOEXEC)
                lsys.setns(network_fd, lsys.CLONE_NEWNET)
                os.close(network_fd)
        if namespace_fds:
            with Step("join the shared namespaces"):
                for fd, kind in namespace_fds:
                    lsys.setns(fd, kind)
                    os.close(fd)
        with Step("create namespaces"):
            # in a user namespace the mount namespace first (the others after the switch below)
            lsys.unshare(lsys.CLONE_NEWNS if plan.user_namespace else plan.unshare_flags)
        mountlib.set_propagation("/", "rprivate")
        mounts = spec.mounts
        console: str | None = None
        if plan.user_namespace:
            # lamina's directories are reachable by the host's uid 0 only: the root and every
            # bind source are opened before the switch
            with Step(f"open the root filesystem {spec.rootfs}"):
                merged_fd = os.open(spec.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            root_fd = mountlib.bind_over(merged_fd)
            os.close(merged_fd)
            mounts = open_bind_sources(mounts)
            if process.terminal:
                with Step("open the terminal"):
                    console = proc_fd(os.open(os.readlink("/proc/self/fd/0"), os.O_PATH | os.O_CLOEXEC))
            # the process's own file, which the host's uid 0 owns (it is not dumpable)
            _write_oom_score_adj(spec.oom_score_adj)
            with Step("become root of the user namespace"):
                become_namespace_root()
            with Step("create namespaces"):
                # after the switch: the ipc namespace's mqueue belongs to the namespace's root
                lsys.unshare(plan.unshare_flags & ~lsys.CLONE_NEWNS)
        else:
            mountlib.Mount("bind", spec.rootfs, ("rbind",)).mount(spec.rootfs)
            with Step(f"open the root filesystem {spec.rootfs}"):
                root_fd = os.open(spec.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for item in default_mounts(spec):
            if item.type == "sysfs":
                mount_sysfs(root_fd, item)
            else:
                mount_in_root(root_fd, item)
            if item.destination == "/dev":
                populate_dev(root_fd, process.terminal, console)
                make_devices(root_fd, spec.devices)
        mount_cgroups(root_fd, plan.cgroup_mounts)
        for item in mounts:
            mount_in_root(root_fd, item)
        with Step(f"create the working directory {process.cwd}"):
            os.close(make_dirs_in_root(root_fd, process.cwd))
        if plan.unshare_flags & lsys.CLONE_NEWUTS:
            with Step("set the hostname"):
                socket.sethostname(spec.hostname or spec.id[:12])
                if spec.domainname:
                    name = spec.domainname.encode()
                    if _libc.setdomainname(name, len(name)) != 0:
                        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        if plan.private_network:
            _loopback_up()
        pivot_root(root_fd)
        os.close(root_fd)
        if process.terminal:
            _reopen_terminal_inside()
        _write_sysctls(spec.sysctls)
        if not plan.user_namespace:
            _write_oom_score_adj(spec.oom_score_adj)
        mask_paths(spec.masked_paths, spec.readonly_paths)
        if spec.readonly_rootfs:
            mountlib.remount("/", ("ro",))
        with Step("join the container's cgroups"):
            enter_cgroups(procs_fds)
            if os.path.exists("/proc/self/ns/cgroup") and "cgroup" in spec.namespaces:
                lsys.unshare(lsys.CLONE_NEWCGROUP)
        if spec.init:
            def worker() -> None:
                worker_code = 125
                try:
                    _finish_and_exec(plan, process, status_fd, seccomp, trampoline_fd, in_init_worker=True)
                except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
                    worker_code = _report(status_fd, exc)
                finally:
                    os._exit(worker_code)

            def after_fork() -> None:
                _close_fds_except(None)
                _drop_init_privileges(plan, seccomp)

            code = run_init(worker, after_fork)
        else:
            _finish_and_exec(plan, process, status_fd, seccomp, trampoline_fd)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        code = _report(status_fd, exc)
    finally:
        os._exit(code)


def exec_child(plan: Plan, stdio: Stdio, status_fd: int, go_fd: int, namespace_fds: list[tuple[int, int]],
               pid_namespace: int, seccomp: SeccompProgram | None, trampoline_fd: int | None) -> None:
    """The first of the two processes of an exec; never returns.

    It is outside the container's pid namespace, so no process of the container can see it,
    whatever its capabilities (``CAP_SYS_PTRACE`` passes the non-dumpable flag).  It joins
    every other namespace of the container, makes the pid namespace its children's, drops
    to the exec's privileges (user, capabilities, no_new_privs, seccomp, descriptors) and
    only then forks the exec's process, the first to appear in the container: it holds
    nothing the container does not have.  This process writes ``P<host pid>`` on the status
    pipe and exits; the parent, a child subreaper, inherits the exec's process, moves it into
    the container's cgroups and writes a byte on ``go_fd``, and the exec's process calls
    ``execve`` (:func:`_exec_when_moved`)."""
    code = 125
    try:
        status_fd, _, trampoline_fd = _raise_fds(status_fd, [], trampoline_fd)
        go_fd = _moved_above(go_fd, STATUS_FD + 1)  # never where the status pipe gets pinned
        namespace_fds = [(_high_fd(fd), kind) for fd, kind in namespace_fds]
        pid_namespace = _high_fd(pid_namespace)
        process = plan.process
        _setup_stdio(stdio)
        os.umask(0o022)
        with Step("join the container's namespaces"):
            for fd, kind in namespace_fds:
                lsys.setns(fd, kind)
                os.close(fd)
            lsys.setns(pid_namespace, lsys.CLONE_NEWPID)  # for the children: this process stays out
            os.close(pid_namespace)
        executable, environment, trampoline_fd = _drop_privileges(plan, process, status_fd, seccomp,
                                                                  trampoline_fd, keep=(go_fd,))
        if seccomp is not None and process.no_new_privileges:
            with Step("load the seccomp filter"):
                seccomp.load(no_new_privileges=True)
        with Step("start the exec's process"):
            pid = os.fork()
        if pid == 0:
            _exec_when_moved(process, status_fd, go_fd, executable, environment, trampoline_fd)
        _write_status(status_fd, b"P%d\n" % pid)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        code = _report(status_fd, exc)
    finally:
        os._exit(code)


def _exec_when_moved(process: ProcessSpec, status_fd: int, go_fd: int, executable: str,
                     environment: dict[str, str], trampoline_fd: int | None) -> None:
    """The exec's process: wait until the parent moved it into the container's cgroups (EOF:
    the parent gave up), take the terminal, ``execve``; never returns."""
    code = 125
    try:
        while True:
            try:
                go = os.read(go_fd, 1)
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
        if go != b"x":
            os._exit(125)
        os.close(go_fd)
        if process.terminal:
            os.setsid()
            with Step("set the controlling terminal"):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        _write_status(status_fd, b"R" + json.dumps(executable).encode() + b"\n")
        _execve(process, executable, environment, trampoline_fd)
    except BaseException as exc:  # noqa: BLE001 - everything goes to the parent
        code = _report(status_fd, exc)
    finally:
        os._exit(code)


def read_status(fd: int) -> tuple[bool, dict[str, Any] | None]:
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
    return parse_status(b"".join(chunks))


def read_until_pid(fd: int) -> bytes:
    """What the status pipe carries up to the first process's ``P<pid>`` line, or to EOF."""
    data = b""
    while pid_line(data) is None:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if not chunk:
            break
        data += chunk
    return data


def pid_line(data: bytes) -> int | None:
    """The pid of an exec's first process's ``P<pid>`` line, None until a complete one came."""
    for line in data.split(b"\n")[:-1]:  # complete lines only
        if line.startswith(b"P") and line[1:].isdigit():
            return int(line[1:])
    return None


def parse_status(data: bytes) -> tuple[bool, dict[str, Any] | None]:
    """(the child reached exec, its error) from what the status pipe carried."""
    ready = False
    error = None
    executable = ""
    for line in data.splitlines():
        failure = decode_failure(line)
        if line.startswith(b"R"):
            ready = True
            try:
                executable = str(json.loads(line[1:]))
            except ValueError:
                pass
        elif failure is not None and error is None:
            # the trampoline's execve of the command failed
            error = {"kind": "exec", "message": f"exec {executable}: {os.strerror(failure)}",
                     "exit_code": 127 if failure == errno.ENOENT else 126}
        elif line.startswith(b"E") and error is None:
            try:
                error = json.loads(line[1:])
            except ValueError:
                error = {"kind": "system", "message": line[1:].decode(errors="replace"), "exit_code": 125}
    return ready, error


def raise_child_error(error: dict[str, Any]) -> None:
    message = str(error.get("message", "container process failed"))
    if error.get("kind") == "exec":
        raise ExecError(message, int(error.get("exit_code", 127)))
    raise _ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)


def reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover
            continue


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
