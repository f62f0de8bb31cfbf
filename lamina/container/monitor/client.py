"""The client of container monitors: the only code above the monitor that opens a monitor's
sockets or reads its run directory (the wire format is :mod:`lamina.container.monitor.protocol`).

:func:`spawn` has the monitor template (:mod:`~lamina.container.monitor.template`, started
here when there is none) fork a monitor and waits for the monitor's answer;
:func:`warm_template` starts a template without waiting for it (a create: the start that
follows finds it ready); :class:`TemplateLease` keeps one from leaving (``lamina serve``); :class:`MonitorClient` reaches the
monitor of a container by its id: whether it lives, the runtime state of the current run,
attach, resize, exec start, waiting for exits (:class:`~lamina.container.rundir.RunLock`), and
recording the end of a run whose monitor died.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from lamina import errdefs
import lamina.container.monitor.protocol as protocol
from lamina.container.rundir import ExitInfo, RunDirectory, RunLock, connect_unix

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:  # whether a monitor lives (``ps``) needs none of these
    import socket
    from typing import Any

    from lamina.container.monitor.api import MonitorRecipe, PendingAttach
    from lamina.runtime.api import Runtime, RuntimeState

__all__ = ["MonitorClient", "TemplateLease", "spawn", "warm_template"]

_ANSWER_TIMEOUT = 120.0
_TEMPLATE_START_TIMEOUT = 60.0
# the template's first process: the starter's import path, then the template (no site, no
# environment variables: it imports only lamina's monitor)
_TEMPLATE_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
                  "from lamina.container.monitor.template import main; main(*sys.argv[2:7])")


def spawn(recipe: MonitorRecipe, container_id: str, pending: list[PendingAttach] | None = None, *,
          runtime: str = "native") -> None:
    """Have the monitor template fork the monitor of ``container_id`` and wait until it
    started the container (or failed to: its error is raised here).  ``pending`` attaches are
    handed to it; ``runtime`` is the run's runtime (opened in the template)."""
    pending = list(pending or [])
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            request = protocol.spawn_request(container_id, builder=recipe.builder, arguments=recipe.arguments,
                                             runtime=runtime, pending=[item.options for item in pending])
            answer = _ask_template(recipe, request, [write_fd, *(item.sock.fileno() for item in pending)])
        finally:
            os.close(write_fd)
            for item in pending:
                item.sock.close()
        if answer is not None:
            protocol.raise_error(answer, "the monitor template could not start the monitor")
        # the template's answer lost (it died meanwhile): the pipe still tells whether a monitor runs
        answer = protocol.read_pipe_answer(read_fd, _ANSWER_TIMEOUT)
    finally:
        os.close(read_fd)
    if answer is None:
        raise errdefs.System(f"the monitor of container {container_id} exited without starting it "
                             f"(see {RunDirectory(recipe.exec_root, container_id).monitor_log})")
    protocol.raise_error(answer, "the container failed to start")


def warm_template(recipe: MonitorRecipe, runtime: str = "native") -> None:
    """Start the monitor template in the background when none listens, without waiting for it
    (nothing when one listens, or another starter holds the lock: it is starting one).  The
    template holds the lock until its socket listens, so a :func:`spawn` meanwhile waits for
    it instead of starting a second one; it then makes ``recipe``'s context and opens
    ``runtime`` before it serves a request."""
    import fcntl

    paths = _import_path()
    key = _template_key(paths)
    path = protocol.template_socket(recipe.exec_root, key)
    try:
        connect_unix(path).close()  # a probe: the template answers nothing
        return
    except (errdefs.NotFound, errdefs.Conflict):
        pass
    lock = _open_lock(path)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # being started (or leaving, and a spawn will start the next one)
        try:
            connect_unix(path).close()  # started meanwhile
            return
        except (errdefs.NotFound, errdefs.Conflict):
            pass
        pid = _launch_template(recipe, key, paths, lock_fd=lock, runtime=runtime)
    finally:
        os.close(lock)  # the template's copy holds the lock until it listens
    import threading

    # its first process exits once the socket listens: reaped here, never left a zombie
    threading.Thread(target=_reap, args=(pid,), name="lamina-template-start", daemon=True).start()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class TemplateLease:
    """A hold on the monitor template of ``recipe`` (started, waiting for it, when none
    listens; with ``start`` false, :class:`~lamina.errdefs.NotFound` then): while the lease
    is open the template does not leave; it makes ``recipe``'s
context and opens ``runtime`` at once, ahead of the first spawn.  :meth:`wait` returns when
    the template went away (it died or was killed: the lease is over) or the lease was
    closed; :meth:`close` may be called from another thread."""

    def __init__(self, recipe: MonitorRecipe, runtime: str = "native", *, start: bool = True) -> None:
        self.sock = _connect_template(recipe, start=start)
        try:
            self.sock.sendall(protocol.encode(protocol.lease_request(recipe.builder, recipe.arguments, runtime)))
            answer = protocol.read_answer(self.sock, _ANSWER_TIMEOUT)
            protocol.raise_error(answer, "the monitor template refused the lease")
        except BaseException:
            self.sock.close()
            raise
        self.pid = int(answer.get("pid") or 0)

    def wait(self) -> None:
        try:
            while self.sock.recv(64):
                pass
        except OSError:
            pass

    def close(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a wait() in another thread
        except OSError:
            pass

    def __enter__(self) -> TemplateLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        self.sock.close()


def _connect_template(recipe: MonitorRecipe, *, start: bool = True) -> socket.socket:
    """A connection to the template (started, and waited for, when there is none; with
    ``start`` false, :class:`~lamina.errdefs.NotFound` then)."""
    paths = _import_path()
    key = _template_key(paths)
    path = protocol.template_socket(recipe.exec_root, key)
    try:
        return connect_unix(path)
    except (errdefs.NotFound, errdefs.Conflict):
        if not start:
            raise errdefs.NotFound(f"no monitor template listens at {path}") from None
        return _start_template(recipe, key, paths)


def _ask_template(recipe: MonitorRecipe, request: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
    """Send the spawn request to the template (started when there is none); its answer, None
    when the template closed the connection without one."""
    import socket

    sock = _connect_template(recipe)
    with sock:
        try:
            socket.send_fds(sock, [protocol.encode(request)], fds)
        except OSError as exc:
            raise errdefs.Unavailable(f"the monitor template did not take the request: {exc}") from exc
        try:
            return protocol.read_answer(sock, _ANSWER_TIMEOUT)
        except errdefs.Unavailable:
            return None


def _template_key(paths: list[str]) -> str:
    """The key of the template serving this process (its interpreter, import path and, when
    rootless and delegated, its cgroup leaf)."""
    from lamina.runtime.delegation import engine_leaf

    return protocol.template_key(sys.executable, paths, engine_leaf())


def _import_path() -> list[str]:
    """The template's import path: the directory lamina is imported from, then this process's
    path without its first entry (the main script's directory or the working directory, which
    differ between ``lamina`` and ``lamina serve`` but hold none of what the template imports)."""
    import lamina

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(lamina.__file__)))]
    for path in sys.path[1:]:
        path = os.path.abspath(path)
        if path not in paths:
            paths.append(path)
    return paths


def _open_lock(path: str) -> int:
    """The descriptor of ``monitor-template/lock`` beside the template socket ``path``."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _start_template(recipe: MonitorRecipe, key: str, paths: list[str]) -> socket.socket:
    """Start the template (under its lock: one starter starts it) and connect to it."""
    path = protocol.template_socket(recipe.exec_root, key)
    lock = _open_lock(path)
    try:
        _lock_within(lock, _TEMPLATE_START_TIMEOUT)  # also waits for a template started without waiting
        try:
            return connect_unix(path)  # started by another starter meanwhile
        except (errdefs.NotFound, errdefs.Conflict):
            pass
        pid = _launch_template(recipe, key, paths)
        status = _wait_child(pid, _TEMPLATE_START_TIMEOUT)
        if status != 0:
            raise errdefs.System(f"the monitor template did not start (exit status {status}, see "
                                 f"{_template_log(path)})")
        return connect_unix(path)
    finally:
        os.close(lock)


def _lock_within(fd: int, timeout: float) -> None:
    """Take the template lock, waiting at most ``timeout`` seconds (its holder is a starter,
    a template being started that releases it once it listens, or one leaving)."""
    import fcntl

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise errdefs.Unavailable(f"the monitor template lock was held for {timeout:.0f} s (a template "
                                          "that does not start?)") from None
            time.sleep(0.002)


def _template_log(path: str) -> str:
    return os.path.join(os.path.dirname(path), "template.log")


def _launch_template(recipe: MonitorRecipe, key: str, paths: list[str], *, lock_fd: int | None = None,
                     runtime: str | None = None) -> int:
    """Start the template's first process (it exits once the socket listens); its pid.
    ``lock_fd``: the held lock, handed over (the template releases it when it listens);
    ``runtime``: the context of ``recipe`` and that runtime are made before the first request."""
    import json

    log_path = _template_log(protocol.template_socket(recipe.exec_root, key))
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    target = ""
    if lock_fd is not None:
        # onto another number: a dup2 onto itself would keep the descriptor's close-on-exec
        target = "3" if lock_fd != 3 else "4"
        actions.append((os.POSIX_SPAWN_DUP2, lock_fd, int(target)))
    argv = [sys.executable, "-I", "-S", "-c", _TEMPLATE_BOOT, json.dumps(paths), recipe.exec_root, key,
            recipe.builder, target,
            json.dumps({"arguments": recipe.arguments, "runtime": runtime}) if runtime else ""]
    try:
        return os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions, setsid=True)
    except OSError as exc:
        raise errdefs.System(f"cannot start the monitor template: {exc.strerror}") from exc


def _wait_child(pid: int, timeout: float) -> int:
    """The exit status of a child (killed after ``timeout`` seconds)."""
    import signal

    deadline = time.monotonic() + timeout
    while True:
        waited, status = os.waitpid(pid, os.WNOHANG)
        if waited:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -signal.SIGKILL
        time.sleep(0.002)


class MonitorClient:
    """The monitors of the containers under one exec root."""

    def __init__(self, exec_root: str) -> None:
        self.exec_root = exec_root

    def run_directory(self, container_id: str) -> RunDirectory:
        return RunDirectory(self.exec_root, container_id)

    def alive(self, container_id: str) -> bool:
        """Whether a monitor holds the container's ``monitor.lock``."""
        return self.run_directory(container_id).monitor_alive()

    def runtime_state(self, container_id: str) -> RuntimeState | None:
        """The runtime state of the current run (None: no run, or it is ending)."""
        return self.run_directory(container_id).read_runtime_state()

    # -- streams and requests --------------------------------------------------------------------

    def attach(self, container_id: str, hello: dict[str, Any]) -> socket.socket | None:
        """A connection to the running container's stdio; None when its monitor does not listen."""
        try:
            sock = connect_unix(self.run_directory(container_id).attach_socket)
        except errdefs.Conflict:
            return None
        try:
            sock.sendall(protocol.encode(hello))
        except OSError as exc:
            sock.close()
            raise errdefs.Unavailable(f"the container's monitor did not take the attach: {exc}") from exc
        return sock

    @staticmethod
    def pending_attach(hello: dict[str, Any]) -> tuple[socket.socket, PendingAttach]:
        """An attach to a container not started yet: the client's end, and what the next
        :func:`spawn` hands to the monitor."""
        import socket

        from lamina.container.monitor.api import PendingAttach

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return ours, PendingAttach(theirs, hello)

    def _request(self, container_id: str, request: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
        sock = connect_unix(self.run_directory(container_id).control_socket)
        try:
            sock.sendall(protocol.encode(request))
            return sock, protocol.read_answer(sock)
        except BaseException:
            sock.close()
            raise

    def control(self, container_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """One control request; its answer (an error answer is raised)."""
        sock, answer = self._request(container_id, request)
        sock.close()
        protocol.raise_error(answer)
        return answer

    def resize(self, container_id: str, height: int, width: int, exec_id: str | None = None) -> None:
        self.control(container_id, protocol.resize_request(height, width, exec_id))

    def start_exec(self, container_id: str, exec_id: str, *, detach: bool,
                   tty: bool | None = None, detach_keys: bytes | None = None
                   ) -> tuple[socket.socket | None, errdefs.LaminaError | None]:
        """Start an exec: (its stdio connection, None when detached; the monitor's refusal,
        not raised: Docker reports it on the hijacked stream)."""
        request = protocol.exec_start_request(exec_id, detach=detach, tty=tty, detach_keys=detach_keys)
        sock, answer = self._request(container_id, request)
        try:
            protocol.raise_error(answer)
        except errdefs.LaminaError as exc:
            sock.close()
            return None, exc
        if detach:
            sock.close()
            return None, None
        return sock, None

    # -- exits -----------------------------------------------------------------------------------

    def exits(self, container_id: str) -> tuple[RunLock, int]:
        """The container's exit record, opened, and the Sequence of its last exit: wait for
        the next ones with :meth:`RunLock.wait_exit`, then close it."""
        run_lock = self.run_directory(container_id).run_lock()
        return run_lock, run_lock.read().sequence

    def publish_exit(self, container_id: str, *, exit_code: int, error: str = "") -> ExitInfo | None:
        """Publish an exit the monitor could not (it died): waiters wake up."""
        try:
            run_lock = self.run_directory(container_id).run_lock()
        except errdefs.LaminaError:
            return None
        try:
            return run_lock.publish(exit_code=exit_code, error=error)
        finally:
            run_lock.close()

    def release_dead_run(self, container_id: str, runtime: Callable[[str], Runtime]) -> str:
        """Release what the run of a dead monitor left (processes in its cgroup, the runtime's
        state) and forget its ``runtime.json``; what could not be done ("" when all was)."""
        return self.run_directory(container_id).release_run(runtime)
