"""How the native runtime forks a container's first process and an exec's, keeping the
caller's own pid namespace and never leaving a dumpable process inside the container's.

- :func:`fork_child`: PID 1 of a new pid namespace (or a process of a joined one), forked
  non-dumpable by the caller itself (``unshare``/``setns`` around the fork, then ``setns``
  back), by an intermediate in a user namespace (:mod:`lamina.runtime.userns`), or, for a
  caller that cannot ``setns`` back (rootless), through a helper whose child is reparented to
  the caller (:func:`fork_through_helper`); :func:`await_child` then reads the status pipe.
- :func:`fork_exec`: an exec in two processes (:func:`lamina.runtime.child.exec_child`); the
  first, outside the container's pid namespace, writes the second's pid (``P<pid>`` on the
  status pipe, :func:`lamina.runtime.child.read_until_pid`) and exits; the caller moves it into the container's
  cgroups and lets it ``execve``.

The status pipe protocol itself is :mod:`lamina.runtime.child`'s.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from lamina import errdefs
from lamina import sys as lsys
from lamina.runtime import capabilities as caps
from lamina.runtime.child import (
    Plan,
    describe_status,
    exec_child,
    parse_status,
    pid_line,
    raise_child_error,
    read_status,
    read_until_pid,
    reap,
    report_error,
)
from lamina.runtime.api import Stdio
from lamina.runtime.seccomp import SeccompProgram
from lamina.runtime.trampoline import open_trampoline
from lamina.runtime.userns import fork_in_user_namespace

__all__ = ["fork_child", "fork_through_helper", "await_child", "fork_exec", "fork_undumpable"]


def fork_undumpable(what: str) -> int:
    """``os.fork`` whose child starts non-dumpable (the flag belongs to the memory image and
    is copied by fork; the caller gets its own value back at once)."""
    dumpable = caps.prctl(caps.PR_GET_DUMPABLE)
    pid = -1
    try:
        caps.prctl(caps.PR_SET_DUMPABLE, 0)
        pid = os.fork()
    except OSError as exc:
        raise errdefs.System(f"cannot start {what}: {exc.strerror}") from exc
    finally:
        if pid != 0:
            caps.prctl(caps.PR_SET_DUMPABLE, dumpable)
    return pid


def fork_child(*, through_helper: bool, new_pid_namespace: bool, seccomp: SeccompProgram | None, procs_fds: list[int],
          child: Callable[[int, list[int], SeccompProgram | None, int | None], None],
          join_pid_namespace: int | None = None,
          user_namespace: tuple[int, str, tuple[tuple[str, str], ...]] | None = None) -> int:
    """Fork ``child`` as PID 1 of a new pid namespace, or into ``join_pid_namespace``,
    keeping the caller's own pid namespace for its later children; wait for the child to
    exec.  Returns the child's host pid.

    The child is forked non-dumpable (the flag belongs to the memory image and is copied
    by fork; the caller gets its own value back at once): from its first instant in the
    container's pid namespace until its ``execve``, a process inside the container that
    lacks CAP_SYS_PTRACE cannot open its ``/proc/<pid>/exe``, ``fd``, ``map_files``,
    ``mem`` or ``environ``; its ``execve`` goes through the sealed trampoline
    (:mod:`lamina.runtime.trampoline`).

    ``user_namespace`` (a user namespace descriptor, the network namespace to join, its
    sysctls; the descriptor is closed here): the child is PID 1 of a new pid namespace in
    that user namespace, forked by an intermediate (:mod:`lamina.runtime.userns`)."""
    if user_namespace is None and through_helper and (new_pid_namespace or join_pid_namespace is not None):
        return fork_through_helper(new_pid_namespace=new_pid_namespace, seccomp=seccomp,
                                         procs_fds=procs_fds, child=child,
                                         join_pid_namespace=join_pid_namespace)
    trampoline_fd = open_trampoline()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    own_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    dumpable = caps.prctl(caps.PR_GET_DUMPABLE)
    try:
        switched = False
        try:
            caps.prctl(caps.PR_SET_DUMPABLE, 0)
            if user_namespace is not None:
                namespace_fd, network_namespace, network_sysctls = user_namespace
                pid = fork_in_user_namespace(
                    namespace_fd=namespace_fd, network_namespace=network_namespace,
                    network_sysctls=network_sysctls,
                    child=lambda: child(write_fd, procs_fds, seccomp, trampoline_fd),
                    report=lambda exc: report_error(write_fd, exc))
            elif new_pid_namespace:
                lsys.unshare(lsys.CLONE_NEWPID)
                switched = True
            elif join_pid_namespace is not None:
                lsys.setns(join_pid_namespace, lsys.CLONE_NEWPID)
                switched = True
            if user_namespace is None:
                pid = os.fork()
        except OSError as exc:
            if exc.errno == errno.ENOMEM and join_pid_namespace is not None:
                raise errdefs.Conflict("the container is not running (its pid namespace has no init)") from exc
            raise errdefs.System(f"cannot start the container process: {exc.strerror}") from exc
        finally:
            # only in the parent (pid > 0, or -1 when fork failed): the child keeps the
            # namespace for its own children and stays non-dumpable
            if pid != 0:
                if switched:
                    lsys.setns(own_namespace, lsys.CLONE_NEWPID)
                caps.prctl(caps.PR_SET_DUMPABLE, dumpable)
        if pid == 0:
            os.close(read_fd)
            child(write_fd, procs_fds, seccomp, trampoline_fd)
            os._exit(125)  # pragma: no cover - child() never returns
    finally:
        os.close(own_namespace)
        os.close(write_fd)
        if user_namespace is not None:
            os.close(user_namespace[0])
        if trampoline_fd is not None:
            os.close(trampoline_fd)
        for fd in procs_fds:
            os.close(fd)
    return await_child(pid, read_fd)


def await_child(pid: int, read_fd: int) -> int:
    """Wait for the child's status on ``read_fd`` (closed here): ``pid`` once it execs."""
    try:
        ready, error = read_status(read_fd)
    finally:
        os.close(read_fd)
    if error is not None:
        if pid > 0:
            reap(pid)
        raise_child_error(error)
    if not ready:
        status = reap(pid) if pid > 0 else 0
        raise errdefs.System(f"the container process died during setup ({describe_status(status)})")
    return pid


def fork_through_helper(*, new_pid_namespace: bool, seccomp: SeccompProgram | None,
                         procs_fds: list[int],
                         child: Callable[[int, list[int], SeccompProgram | None, int | None], None],
                         join_pid_namespace: int | None) -> int:
    """:func:`fork_child` for a caller that cannot ``setns`` back to its own pid namespace (it
    belongs to a user namespace above ours: rootless lamina).  A helper process enters the
    container's pid namespace (new or joined), forks the child and exits; the child is
    then reparented to the caller, which is made a child subreaper for it."""
    caps.prctl(caps.PR_SET_CHILD_SUBREAPER, 1)
    trampoline_fd = open_trampoline()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC)
    helper = -1
    try:
        helper = fork_undumpable("the container process")
        if helper == 0:
            code = 125
            try:
                os.close(read_fd)
                os.close(pid_read)
                if new_pid_namespace:
                    lsys.unshare(lsys.CLONE_NEWPID)
                elif join_pid_namespace is not None:
                    lsys.setns(join_pid_namespace, lsys.CLONE_NEWPID)
                pid = os.fork()
                if pid == 0:
                    os.close(pid_write)
                    child(write_fd, procs_fds, seccomp, trampoline_fd)
                    os._exit(125)  # pragma: no cover - child() never returns
                os.write(pid_write, str(pid).encode("ascii"))
                code = 0
            finally:
                os._exit(code)
    finally:
        os.close(pid_write)
        os.close(write_fd)
        if trampoline_fd is not None:
            os.close(trampoline_fd)
        for fd in procs_fds:
            os.close(fd)
    status = reap(helper)
    try:
        text = os.read(pid_read, 32)
    finally:
        os.close(pid_read)
    if not text:
        os.close(read_fd)
        if join_pid_namespace is not None:
            raise errdefs.Conflict("the container is not running (its pid namespace could not be joined)")
        raise errdefs.System(f"cannot start the container process ({describe_status(status)})")
    return await_child(int(text), read_fd)


def fork_exec(plan: Plan, stdio: Stdio, namespace_fds: list[tuple[int, int]], pid_namespace: int,
               procs_fds: list[int], seccomp: SeccompProgram | None) -> int:
    """Start an exec in two processes (:func:`lamina.runtime.child.exec_child`): the first,
    forked non-dumpable and never in the container's pid namespace, joins and drops to
    the exec's privileges, then forks the exec's process and exits; the caller, a child
    subreaper, inherits that process (the kernel reparents an orphan to the nearest
    subreaper above its parent in the parent's pid namespace), moves it into the
    container's cgroups (a move, not a fork inside them: the pids limit does not refuse
    an exec, as with runc) and lets it ``execve``.  Returns its host pid."""
    caps.prctl(caps.PR_SET_CHILD_SUBREAPER, 1)
    trampoline_fd = open_trampoline()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    go_read, go_write = os.pipe2(os.O_CLOEXEC)
    first = -1
    try:
        first = fork_undumpable("the exec process")
        if first == 0:
            os.close(read_fd)
            os.close(go_write)
            for fd in procs_fds:
                os.close(fd)
            exec_child(plan, stdio, write_fd, go_read, namespace_fds, pid_namespace, seccomp, trampoline_fd)
            os._exit(125)  # pragma: no cover - exec_child() never returns
    finally:
        os.close(write_fd)
        os.close(go_read)
        if trampoline_fd is not None:
            os.close(trampoline_fd)
    try:
        head = read_until_pid(read_fd)
        reap(first)  # it exits once it wrote the pid: its child is ours from now on
        pid = pid_line(head)
        if pid is None:
            _, error = parse_status(head)
            if error is not None:
                raise_child_error(error)
            raise errdefs.System("the exec process died during setup")
        try:
            for fd in procs_fds:
                os.write(fd, str(pid).encode())
            os.write(go_write, b"x")
        except OSError as exc:
            os.close(go_write)
            go_write = -1
            reap(pid)  # it reads EOF instead of the byte and exits
            raise errdefs.System(f"cannot move the exec's process into the container's cgroups: "
                                 f"{exc.strerror}") from exc
        os.close(go_write)
        go_write = -1
        ready, error = read_status(read_fd)
    finally:
        os.close(read_fd)
        if go_write >= 0:
            os.close(go_write)
        for fd in procs_fds:
            os.close(fd)
    if error is not None:
        reap(pid)
        raise_child_error(error)
    if not ready:
        status = reap(pid)
        raise errdefs.System(f"the exec process died during setup ({describe_status(status)})")
    return pid
