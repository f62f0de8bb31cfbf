"""The monitor process: its locks, signals, sockets and clients (the server end of
:mod:`lamina.container.monitor.protocol`).

:class:`Monitor` takes ``monitor.lock`` for its whole life, then serves the attach and control
sockets from one event loop (:class:`~lamina.container.monitor.io.Loop`) while
:class:`~lamina.container.monitor.run.Runner` runs the container and
:class:`~lamina.container.monitor.execs.ExecSessions` its execs.  Children are reaped with
``waitpid``, woken by SIGCHLD through ``signal.set_wakeup_fd``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container import spec as specs
from lamina.container.logs import STDERR, STDOUT, JsonFileWriter, parse_log_options, read_logs
import lamina.container.monitor.protocol as protocol
from lamina.container.monitor.api import MonitorContext, MonitorStores, PendingAttach
from lamina.container.monitor.execs import ExecSessions
from lamina.container.monitor.health import HealthProbes
from lamina.container.monitor.io import Handshake, Loop, Stream, reply, set_window
from lamina.container.monitor.run import Runner
from lamina.container.monitor.launch import SpareHelper
from lamina.container.monitor.runs import Run
from lamina.container.rundir import RunDirectory, RunLock, bind_unix
from lamina.container.store import Container
from lamina.events.api import CONTAINER
from lamina.events.message import container_attributes
from lamina.log import get_logger

__all__ = ["Monitor"]

log = get_logger("lamina.monitor")

_FLUSH_SECONDS = 2.0          # clients still reading what was sent to them
_MONITOR_LOCK_WAIT = 15.0     # a previous monitor of the same container finishing its exit


class Monitor:
    def __init__(self, context: MonitorContext, stores: MonitorStores, container_id: str, answer_fd: int,
                 pending: list[PendingAttach]) -> None:
        self.store = stores.store
        self.mounts = stores.mounts
        self.execs = stores.execs
        self.context = context
        self.id = container_id
        self.events = context.events
        self.answer_fd: int | None = answer_fd
        self.pending = pending
        self.run_dir = RunDirectory(context.exec_root, container_id)
        self.loop = Loop()
        self.streams: set[Stream] = set()
        self.handshakes: set[Handshake] = set()
        self.attached: list[Stream] = []
        self.run: Run | None = None
        self.writer: JsonFileWriter | None = None
        self.run_lock: RunLock | None = None
        self.listeners: list[socket.socket] = []
        self.sessions = ExecSessions(self.loop, self.execs, container_id, streams=self.streams,
                                     on_exit=self._exec_died)
        self.health = HealthProbes(self.loop, self.store, container_id, self.event)
        self.runner = Runner(self)
        #: a spare monitor's helper for its first start (launch.SpareHelper), until used
        self.spare_helper: SpareHelper | None = None

    def event(self, container: Container, action: str, extra: dict[str, str] | None = None) -> None:
        self.events.emit(CONTAINER, action, self.id, container_attributes(container.config, container.name, extra))

    def _exec_died(self, exec_id: str, code: int) -> None:
        if self.run is not None:
            self.event(self.run.container, "exec_die", {"execID": exec_id, "exitCode": str(code)})

    def answer(self, answer: dict[str, Any]) -> None:
        """Answer the starter (once) on the answer pipe."""
        if self.answer_fd is None:
            return
        try:
            os.write(self.answer_fd, protocol.encode(answer))
        except OSError:
            pass
        os.close(self.answer_fd)
        self.answer_fd = None

    def dismiss_spare_helper(self) -> None:
        """A spare helper not used: it undoes what it prepared and exits (waited for)."""
        if self.spare_helper is not None:
            self.spare_helper.dismiss()
            self.spare_helper = None

    # -- set-up ----------------------------------------------------------------------------------

    def _running(self) -> bool:
        try:
            return bool(self.store.get(self.id).state.get("Running"))
        except errdefs.LaminaError:
            return False

    def _acquire_monitor_lock(self) -> int | None:
        """The monitor lock; None when another monitor runs the container (or does not let go
        of it in time)."""
        fd = os.open(self.run_dir.monitor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + _MONITOR_LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            # a previous monitor finishing its exit lets go soon; a live one runs the container
            if self._running() or time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.005)

    def _setup_signals(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._wakeup = read_fd
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.loop.on_read(read_fd, self._on_signal)

    def _on_signal(self) -> None:
        try:
            while os.read(self._wakeup, 4096):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.sessions.reaped(pid, status) or self.health.reaped(pid, status):
                continue
            if self.run is not None and pid == self.run.state.pid:
                self.run.status = status
                self.run.exited_at = time.monotonic()
            # other children (an OCI runtime's helpers reparented to us) are just reaped

    def _open_log(self, container: Container) -> None:
        log_type, options = specs.log_options(container.host_config)
        if log_type not in ("json-file", "local"):
            return
        if log_type == "local":
            # Docker's local driver keeps 5 files of 20 MB by default; lamina writes them as json-file
            options = {"max-size": "20m", "max-file": "5", **options}
        parsed = parse_log_options(options)
        self.writer = JsonFileWriter(self.store.log_path(self.id), max_size=parsed.max_size,
                                     max_file=parsed.max_file)

    # -- main ------------------------------------------------------------------------------------

    def main(self) -> None:
        self.run_dir.create()
        lock_fd = self._acquire_monitor_lock()
        if lock_fd is None:
            if self._running():
                self.answer(protocol.OK)  # started by a concurrent start: nothing to do
            else:
                self.answer(protocol.error_answer(errdefs.Conflict(
                    f"container {self.id} has another monitor that does not exit")))
            return
        try:
            # the lock file holds the pid of the monitor that holds it (no file of its own)
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{os.getpid()}\n".encode("ascii"), 0)
            container = self.store.get(self.id)
            if container.state.get("Running"):
                self.answer(protocol.OK)  # started by another monitor meanwhile
                return
            if self.spare_helper is not None and not self.spare_helper.begin(
                    {"id": self.id, "what": f"start container {self.id}"}):
                self.spare_helper = None  # it died first: the start forks a helper
            self._setup_signals()
            self.run_lock = self.run_dir.run_lock()
            self._open_log(container)
            attach, control = bind_unix(self.run_dir.attach_socket), bind_unix(self.run_dir.control_socket)
            self.listeners = [attach, control]
            self.loop.on_read(attach.fileno(), lambda: self._accept(attach, self._attach))
            self.loop.on_read(control.fileno(), lambda: self._accept(control, self._control))
            self.runner.run_all()
        finally:
            self._teardown()
            os.close(lock_fd)

    # -- clients ---------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, handler: Callable[[socket.socket, dict[str, Any], bytes], None]) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        self.handshakes.add(Handshake(self.loop, conn, handler, on_done=self.handshakes.discard))

    def attach_pending(self) -> None:
        """Connect the attaches made before the first run started."""
        for item in self.pending:
            self._attach(item.sock, item.options, b"")
        self.pending = []

    def deliver(self, stream_type: int, data: bytes) -> None:
        """The container's output, to every attached client."""
        for stream in list(self.attached):
            stream.deliver(stream_type, data)

    def _attach(self, sock: socket.socket, options: dict[str, Any], rest: bytes) -> None:
        run = self.run
        if run is None or run.status is not None:
            sock.close()
            return
        config = run.container.config
        sink = run.sink if options.get("stdin") and config.get("OpenStdin") else None
        try:
            keys = protocol.detach_keys_of(options) if run.tty else None
        except errdefs.InvalidArgument:
            sock.close()
            return
        container = run.container
        # Docker's rule: a client's end of input closes the container's stdin only without a TTY
        stream = Stream(self.loop, sock, stdout=bool(options.get("stdout")), stderr=bool(options.get("stderr")),
                        sink=sink, raw=run.tty, close_stdin_on_eof=bool(config.get("StdinOnce")) and not run.tty,
                        on_close=self._stream_closed, detach_keys=keys,
                        on_detach=lambda stream: self.event(container, "detach"))
        self.streams.add(stream)
        if options.get("logs") and self.writer is not None:
            self.writer.flush()
            for stream_name, payload, _time in read_logs(self.store.log_path(self.id)):
                stream.deliver(STDOUT if stream_name == "stdout" else STDERR, payload)
        if not options.get("stream", True):
            stream.finish()
            return
        self.attached.append(stream)
        stream.input(rest)

    def _stream_closed(self, stream: Stream) -> None:
        self.streams.discard(stream)
        if stream in self.attached:
            self.attached.remove(stream)

    def _control(self, sock: socket.socket, request: dict[str, Any], rest: bytes) -> None:
        try:
            if "resize" in request:
                self._resize(request)
                reply(sock, protocol.OK)
                sock.close()
            elif "exec" in request and "start" in request:
                self.sessions.start(sock, str(request["exec"]), dict(request.get("start") or {}), self.run,
                                    lambda: self.store.get(self.id))
                self.reap()
            else:
                raise errdefs.InvalidArgument(f"unknown monitor request {sorted(request)}")
        except errdefs.LaminaError as exc:
            reply(sock, protocol.error_answer(exc))
            sock.close()

    def _resize(self, request: dict[str, Any]) -> None:
        height, width = protocol.resize_size(request)
        if "exec" in request:
            master = self.sessions.master(str(request["exec"]))
        else:
            master = self.run.master if self.run is not None else None
        if master is None:
            raise errdefs.Conflict("the process has no TTY: its window size cannot be set")
        try:
            set_window(master, height, width)
        except OSError as exc:
            raise errdefs.System(f"cannot resize the terminal: {exc.strerror}") from exc

    def close_clients(self) -> None:
        for stream in list(self.attached):
            stream.finish()
        self.attached = []
        deadline = time.monotonic() + _FLUSH_SECONDS
        while any(stream.out for stream in self.streams) and time.monotonic() < deadline:
            self.loop.poll(0.05)
        for stream in list(self.streams):
            stream.close()
        for handshake in list(self.handshakes):
            handshake.drop()

    def close_listeners(self) -> None:
        if not self.listeners:
            return  # the socket files may be another monitor's by now
        for listener in self.listeners:
            self.loop.forget(listener.fileno())
            listener.close()
        self.listeners = []
        for path in (self.run_dir.attach_socket, self.run_dir.control_socket):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _teardown(self) -> None:
        self.dismiss_spare_helper()
        self.close_listeners()
        for stream in list(self.streams):
            stream.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.run_lock is not None:
            self.run_lock.close()
