"""The client of container monitors: the only code above the monitor that opens a monitor's
sockets or reads its run directory (the wire format is :mod:`lamina.container.monitor.protocol`).

:func:`spawn` starts a monitor and waits for its answer; :class:`MonitorClient` reaches the
monitor of a container by its id: whether it lives, the runtime state of the current run,
attach, resize, exec start, waiting for exits (:class:`~lamina.container.rundir.RunLock`), and
recording the end of a run whose monitor died.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from lamina import errdefs
import lamina.container.monitor.protocol as protocol
from lamina.container.monitor.api import MonitorContext, PendingAttach
from lamina.container.rundir import ExitInfo, RunDirectory, RunLock, connect_unix
from lamina.runtime.api import Runtime, RuntimeState

__all__ = ["MonitorClient", "spawn"]

_ANSWER_TIMEOUT = 120.0


def spawn(context: MonitorContext, container_id: str, pending: list[PendingAttach] | None = None) -> None:
    """Start the monitor of ``container_id`` and wait until it started the container (or
    failed to: its error is raised here).  ``pending`` attaches are handed to it."""
    # the monitor's own modules (server, runs, execs, io) load here, not with the client:
    # commands that only talk to running monitors never need them
    from lamina.container.monitor.bootstrap import fork_monitor

    pending = list(pending or [])
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = fork_monitor(context, container_id, read_fd, write_fd, pending)
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise errdefs.System(f"cannot start the container's monitor: {exc.strerror}") from exc
    os.close(write_fd)
    for item in pending:
        item.sock.close()
    try:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
        answer = protocol.read_pipe_answer(read_fd, _ANSWER_TIMEOUT)
    finally:
        os.close(read_fd)
    if answer is None:
        raise errdefs.System(f"the monitor of container {container_id} exited without starting it "
                             f"(see {RunDirectory(context.exec_root, container_id).monitor_log})")
    protocol.raise_error(answer, "the container failed to start")


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

    def attach(self, container_id: str, hello: dict[str, bool]) -> socket.socket | None:
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
    def pending_attach(hello: dict[str, bool]) -> tuple[socket.socket, PendingAttach]:
        """An attach to a container not started yet: the client's end, and what the next
        :func:`spawn` hands to the monitor."""
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

    def start_exec(self, container_id: str, exec_id: str, *,
                   detach: bool) -> tuple[socket.socket | None, errdefs.LaminaError | None]:
        """Start an exec: (its stdio connection, None when detached; the monitor's refusal,
        not raised: Docker reports it on the hijacked stream)."""
        sock, answer = self._request(container_id, protocol.exec_start_request(exec_id, detach=detach))
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
        run_dir = self.run_directory(container_id)
        state = run_dir.read_runtime_state()
        error = ""
        if state is not None:
            error = _release_run(state, runtime)
        run_dir.clear_runtime_state()
        return error


def _release_run(state: RuntimeState, runtime: Callable[[str], Runtime]) -> str:
    try:
        for _attempt in range(100):
            try:
                runtime(state.runtime).delete(state, force=True)
                return ""
            except errdefs.Conflict:
                time.sleep(0.02)
        return "processes of the container remain in its cgroup"
    except errdefs.LaminaError as exc:
        return f"cannot release the container's runtime state: {exc}"
