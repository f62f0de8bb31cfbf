"""Exec sessions: the processes ``docker exec`` starts in a running container.

The monitor is the parent of every exec (``runtime.exec``, called in a helper process whose
child is handed to the monitor: :mod:`~lamina.container.monitor.launch`): :class:`ExecSessions` starts them
on a control request (:func:`~lamina.container.monitor.protocol.exec_start_request`), copies
their output to the client's stream, and at their exit records ``ExitCode`` in the exec record
(:class:`~lamina.container.execstore.ExecStore`) before the client's stream is closed.  The
``exec_die`` event goes out through ``on_exit``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container import spec as specs
from lamina.container.execstore import ExecStore
from lamina.container.logs import STDERR, STDOUT
from lamina.container.monitor.io import Loop, Sink, Stream, reply, set_window
from lamina.container.monitor.launch import in_helper
import lamina.container.monitor.protocol as protocol
from lamina.container.monitor.protocol import exit_code_of_start_error
from lamina.container.monitor.runs import DRAIN_SECONDS, Run, exit_code
from lamina.container.store import Container
from lamina.records import dataclass, field
from lamina.runtime.api import Stdio
from lamina.runtime.paths import open_pty_in_root

__all__ = ["ExecSession", "ExecSessions"]


@dataclass
class ExecSession:
    """One exec the monitor started (its process, terminal, stdin and client stream)."""

    exec_id: str
    pid: int
    master: int | None
    sink: Sink | None
    stream: Stream | None
    sources: dict[int, int] = field(default_factory=dict)
    status: int | None = None
    exited_at: float = 0.0


class ExecSessions:
    """The execs of one container's monitor, by pid.

    ``streams`` is the monitor's set of client streams (an exec's joins it while open, and is
    closed with the run's clients); ``on_exit(exec_id, exit_code)`` is called when an exec's
    end was recorded."""

    def __init__(self, loop: Loop, execs: ExecStore, container_id: str, *, streams: set[Stream],
                 on_exit: Callable[[str, int], None]) -> None:
        self.loop = loop
        self.execs = execs
        self.container_id = container_id
        self.streams = streams
        self.on_exit = on_exit
        self.sessions: dict[int, ExecSession] = {}

    def __bool__(self) -> bool:
        return bool(self.sessions)

    def reaped(self, pid: int, status: int) -> bool:
        """Record the wait status of ``pid``; False when it is no exec of ours."""
        session = self.sessions.get(pid)
        if session is None:
            return False
        session.status = status
        session.exited_at = time.monotonic()
        return True

    def master(self, exec_id: str) -> int | None:
        """The pty master of a running exec (None: it has no TTY)."""
        for session in self.sessions.values():
            if session.exec_id == exec_id:
                return session.master
        raise errdefs.NotFound(f"No such exec instance: {exec_id}")

    def start(self, sock: socket.socket, exec_id: str, options: dict[str, Any], run: Run | None,
              load_container: Callable[[], Container]) -> None:
        """Start the exec ``exec_id`` in ``run``; answers on ``sock`` (errors are raised for the
        caller to answer)."""
        if run is None or run.status is not None:
            raise errdefs.Conflict(f"Container {self.container_id} is not running")
        record = self.execs.get(exec_id)
        if record.get("ContainerID") != self.container_id:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        if record.get("Running") or record.get("Pid") or record.get("ExitCode") is not None:
            raise errdefs.Conflict(f"Error: Exec command {exec_id} is already running")
        detach = bool(options.get("detach"))
        keys = protocol.detach_keys_of(options)
        config = dict(record.get("Config") or {})
        container = load_container()
        from lamina.runtime.user import resolve_user_in_root

        user_spec = str(config.get("User") or container.config.get("User") or "")
        try:
            user = resolve_user_in_root(run.rootfs, user_spec)
            process = specs.exec_process(container_id=self.container_id, config=container.config,
                                         host=container.host_config, exec_config=config, user=user)
        except errdefs.LaminaError as exc:
            self._failed(record, exc, 126)
            raise
        tty = bool(config.get("Tty"))
        child: list[int] = []
        parent: dict[int, int] = {}
        master = None
        sink = None
        try:
            if tty:
                master, slave = _open_pty(run.state.pid)
                child.append(slave)
                size = config.get("ConsoleSize") or [0, 0]
                if isinstance(size, list) and len(size) == 2 and size[0] and size[1]:
                    set_window(master, int(size[0]), int(size[1]))
                os.set_blocking(master, False)
                stdio = Stdio(slave, slave, slave)
                parent[master] = STDOUT  # read even when detached: a full pty would block the process
                if config.get("AttachStdin") and not detach:
                    sink = Sink(self.loop, master, pty=True)
            else:
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                child.append(null)
                stdin = stdout = stderr = null
                if config.get("AttachStdin") and not detach:
                    read_end, write_end = os.pipe2(os.O_CLOEXEC)
                    child.append(read_end)
                    stdin = read_end
                    sink = Sink(self.loop, write_end, pty=False)
                for wanted, stream_type in ((config.get("AttachStdout"), STDOUT), (config.get("AttachStderr"), STDERR)):
                    if wanted and not detach:
                        read_end, write_end = os.pipe2(os.O_CLOEXEC)
                        child.append(write_end)
                        os.set_blocking(read_end, False)
                        parent[read_end] = stream_type
                        if stream_type == STDOUT:
                            stdout = write_end
                        else:
                            stderr = write_end
                stdio = Stdio(stdin, stdout, stderr)
            try:
                # in a helper, as a run's start (launch): the exec'd process is handed to us
                pid = int(in_helper(lambda: {"pid": run.runtime.exec(run.state, process, stdio)},
                                    f"start exec {exec_id}")["pid"])
            finally:
                for fd in child:
                    os.close(fd)
                child = []
        except errdefs.LaminaError as exc:
            if sink is not None and not sink.pty:
                sink.release()
            for fd in parent:
                os.close(fd)
            self._failed(record, exc, exit_code_of_start_error(exc, default=126))
            raise
        record.update(Running=True, Pid=pid)
        self.execs.save(record)
        reply(sock, {"ok": True, "pid": pid})
        stream = None
        if detach:
            sock.close()
        else:
            # framed by the Tty of the start request (Docker's rule), the exec's own by default;
            # with a TTY the detach keys are watched and the client's end of input does not end
            # the exec's (Docker's rule)
            raw = bool(options["tty"]) if isinstance(options.get("tty"), bool) else tty
            stream = Stream(self.loop, sock, stdout=bool(config.get("AttachStdout")) or tty,
                            stderr=bool(config.get("AttachStderr")), sink=sink, raw=raw,
                            close_stdin_on_eof=not tty, on_close=self.streams.discard,
                            detach_keys=keys if tty else None)
            self.streams.add(stream)
        session = ExecSession(exec_id=exec_id, pid=pid, master=master, sink=sink, stream=stream, sources=parent)
        self.sessions[pid] = session
        for fd, stream_type in parent.items():
            self.loop.on_read(fd, lambda fd=fd, stream_type=stream_type, s=session: self._output(s, fd, stream_type))

    def _failed(self, record: dict[str, Any], exc: BaseException, code: int) -> None:
        record.update(Running=False, Pid=0, ExitCode=code)
        self.execs.save(record)
        if isinstance(exc, errdefs.LaminaError) and code in (126, 127) and not hasattr(exc, "exit_code"):
            exc.exit_code = code  # type: ignore[attr-defined]

    def _output(self, session: ExecSession, fd: int, stream_type: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.forget(fd)
            session.sources.pop(fd, None)
            if session.sink is not None and session.sink.pty and session.sink.fd == fd:
                session.sink.release()
            os.close(fd)
            if fd == session.master:
                session.master = None
            return
        if session.stream is not None:
            session.stream.deliver(stream_type, data)

    def finish(self, *, force: bool) -> None:
        """Record the end of the execs that exited (and drained), or of all with ``force`` (the
        container exited: what is left of them was killed with it, 137)."""
        for pid, session in list(self.sessions.items()):
            if session.status is None and not force:
                continue
            if session.sources and not force and time.monotonic() - session.exited_at < DRAIN_SECONDS:
                continue
            self._drain(session)
            if session.sink is not None:
                session.sink.release()
            if session.master is not None:
                try:
                    os.close(session.master)
                except OSError:
                    pass
            code = exit_code(session.status) if session.status is not None else 137
            try:
                record = self.execs.get(session.exec_id)
                record.update(Running=False, Pid=0, ExitCode=code)
                self.execs.save(record)
            except errdefs.LaminaError:
                pass
            self.on_exit(session.exec_id, code)
            if session.stream is not None:
                session.stream.finish()
            del self.sessions[pid]

    def _drain(self, session: ExecSession) -> None:
        for fd in list(session.sources):
            # what is still buffered in the pipe goes out before it is closed (when the drain
            # time ran out under load, or when forced); never block on a pipe that a
            # background process of the exec still holds open
            try:
                os.set_blocking(fd, False)
            except OSError:
                pass
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    if session.stream is not None:
                        session.stream.deliver(session.sources[fd], data)
            except OSError:
                pass
            self.loop.forget(fd)
            os.close(fd)
        session.sources.clear()


def _open_pty(container_pid: int) -> tuple[int, int]:
    """A pty of the container's own devpts (``tty`` in the exec answers ``/dev/pts/N``, as in
    Docker); a host pty when the container's cannot be opened (its /dev/pts unmounted)."""
    try:
        root = os.open(f"/proc/{container_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return os.openpty()
    try:
        master, slave = open_pty_in_root(root)
    except OSError:
        return os.openpty()
    finally:
        os.close(root)
    os.set_inheritable(master, False)
    return master, slave
