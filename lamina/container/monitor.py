"""The per-container monitor: one process per running container, like conmon or containerd-shim.

:func:`spawn` forks it (double fork + ``setsid``: it survives the CLI or server that started it;
no new interpreter is exec'd: the forked process closes every inherited descriptor it does not
need, freezes the garbage collector's view of inherited objects and resets its signal
dispositions).  The monitor then, for each run of the container:

1. mounts the root filesystem (:meth:`MountStore.mount`), writes ``containers/<id>/{hostname,
   hosts,resolv.conf}`` and builds the :class:`ContainerSpec` (:mod:`lamina.container.spec`);
2. prepares stdio: pipes for stdout/stderr, a pipe for stdin with ``OpenStdin`` (else
   /dev/null), or one pty for all three with ``Tty`` (the monitor keeps the master);
3. calls ``runtime.start``: it becomes the parent of the container's PID 1, records ``State``
   (Running, Pid, StartedAt) and ``runtime.json``, and tells the starter "started" (or the
   error) over the answer pipe, one JSON line: ``{"ok": true}`` or ``{"error": {"kind": ...,
   "message": ..., "exit_code": n}}``;
4. copies the container's output to its json-file log and to attached clients, feeds
   attached clients' input to the container's stdin, serves the attach and control sockets,
   and reaps with ``waitpid`` (woken by SIGCHLD through ``signal.set_wakeup_fd``);
5. at exit: drains the output, records ExitCode (128 + n for signal n), FinishedAt, OOMKilled
   (from the cgroup), kills what is left in the cgroup, ``runtime.delete``, unmounts the root
   filesystem, then applies the restart policy (``no``, ``on-failure[:N]``, ``always``,
   ``unless-stopped``; Docker's back-off: 100 ms doubling up to 1 min, reset after a run of
   10 s; a manual stop or kill sets ``HasBeenManuallyStopped``, which stops every policy) and
   ``AutoRemove``.  A failed start rolls back the same way.

The run of a ``--rm`` (``AutoRemove``) container is disposable: its root filesystem is mounted
``volatile`` and its start and exit are recorded atomically but not synced (no fsync, no sync
of the backing filesystem at the unmount).  After a host crash such a container is removed at
start-up, or is still "created" if its start never reached the disk.

Attach socket (``<exec-root>/containers/<id>/attach.sock``): a client connects and sends one
JSON line ``{"stdin": true, "stdout": true, "stderr": true, "logs": false, "stream": true}``;
from then on the connection carries Docker's hijacked-attach wire format: output as 8-byte
header frames (:func:`lamina.container.logs.frame`) without a TTY, raw bytes with one; bytes
the client sends go to the container's stdin (with ``OpenStdin``); the client's half-close
closes that stdin when the container has ``StdinOnce``.  Clients are closed when the container
stops.

Control socket (``ctl.sock``): one JSON line per connection, one JSON line answered
(``{"ok": true}`` or ``{"error": {...}}``):

- ``{"resize": [height, width]}`` / ``{"resize": [h, w], "exec": id}``: TIOCSWINSZ on a pty;
- ``{"exec": id, "start": {"detach": false}}``: start the exec ``id`` (its record in
  :class:`ExecStore`) with ``runtime.exec``; the monitor is its parent and records its exit
  code; unless detached, after the answer the connection carries the exec's stdio in the
  attach wire format and is closed when the exec's output ended, after its record was written.

Events (through ``MonitorContext.events``, see :mod:`lamina.events`): per run, the volume
``mount`` events and the container's ``start``; at its end ``oom`` (when the cgroup saw an
OOM kill), ``die`` (``exitCode``, ``execDuration`` in seconds) and the volume ``unmount``
events, written before waiters of the exit are woken; ``destroy`` after a ``--rm`` removal;
``exec_die`` (``execID``, ``exitCode``) when an exec ends.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import selectors
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lamina import errdefs
from lamina.container import spec as specs
from lamina.container.execstore import ExecStore
from lamina.container.logs import (
    STDERR,
    STDOUT,
    JsonFileWriter,
    frame,
    parse_log_options,
    read_logs,
)
from lamina.container.removal import destroy, release_mount
from lamina.container.rundir import ExitInfo, RunDirectory, RunLock, bind_unix
from lamina.container.state import now
from lamina.container.store import Container, ContainerStore
from lamina.events.api import CONTAINER, DISCARD, VOLUME, EventSink
from lamina.events.message import container_attributes
from lamina.layer.mounts import MountStore
from lamina.layer.store import LayerStore
from lamina.log import get_logger
from lamina.records import dataclass, field, replace
from lamina.runtime.api import Runtime, RuntimeState, Stdio
from lamina.volume.mounts import load_mount_points, volume_names

if TYPE_CHECKING:
    from lamina.network.run import RunNetwork

__all__ = [
    "ERROR_KINDS",
    "MonitorContext",
    "PendingAttach",
    "StartError",
    "exit_code_of_start_error",
    "spawn",
]

log = get_logger("lamina.monitor")

ERROR_KINDS: dict[str, type[errdefs.LaminaError]] = {
    cls.kind: cls for cls in (errdefs.NotFound, errdefs.AlreadyExists, errdefs.InvalidArgument, errdefs.Conflict,
                              errdefs.FailedPrecondition, errdefs.Unavailable, errdefs.DataLoss,
                              errdefs.NotImplemented, errdefs.System, errdefs.Cancelled)
}
_DRAIN_SECONDS = 2.0          # output still arriving after PID 1 exited
_FLUSH_SECONDS = 2.0          # clients still reading what was sent to them
_CLIENT_BUFFER_LIMIT = 16 << 20
_MONITOR_LOCK_WAIT = 15.0     # a previous monitor of the same container finishing its exit
_ANSWER_TIMEOUT = 120.0


class StartError(errdefs.InvalidArgument):
    """The container's command cannot be run; ``exit_code`` is Docker's: 127 (not found),
    126 (not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_of_start_error(exc: BaseException, default: int = 128) -> int:
    """Docker's exit code for a failed start or exec: 127 command not found, 126 cannot be
    invoked (from the runtime's error), ``default`` otherwise."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and code:
        return code
    text = str(exc).lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return default


@dataclass(frozen=True)
class MonitorContext:
    """What a monitor needs, handed over by fork (paths and stores, no open descriptors)."""

    store: ContainerStore
    mounts: MountStore
    execs: ExecStore
    exec_root: str
    runtime: Callable[[str], Runtime]   # a runtime by HostConfig.Runtime name
    volumes: Any = None                 # the VolumeService: volume mounts per run, --rm's volumes
    events: EventSink = DISCARD         # where the monitor's events go
    network: RunNetwork | None = None   # sandboxes set up and torn down with each run


@dataclass
class PendingAttach:
    """An attach made before the container started: the monitor's end of a socket pair and
    the attach options (stdin, stdout, stderr, logs, stream)."""

    sock: socket.socket
    options: dict[str, bool]


# --------------------------------------------------------------------------------------------
# starting a monitor


def _error_payload(exc: BaseException) -> dict[str, Any]:
    kind = exc.kind if isinstance(exc, errdefs.LaminaError) else "system"
    payload: dict[str, Any] = {"kind": kind, "message": str(exc) or type(exc).__name__}
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        payload["exit_code"] = code
    return payload


def _raise_answer(answer: dict[str, Any]) -> None:
    error = answer.get("error")
    if not error:
        return
    message = str(error.get("message") or "the container failed to start")
    if "exit_code" in error and error.get("kind") == "invalid_argument":
        raise StartError(message, int(error["exit_code"]))
    raise ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)


def spawn(context: MonitorContext, container_id: str, pending: list[PendingAttach] | None = None) -> None:
    """Start the monitor of ``container_id`` and wait until it started the container (or
    failed to: its error is raised here)."""
    pending = list(pending or [])
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise errdefs.System(f"cannot start the container's monitor: {exc.strerror}") from exc
    if pid == 0:  # the intermediate child
        code = 1
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() == 0:
                _monitor_main(context, container_id, write_fd, pending)
            code = 0
        finally:
            os._exit(code)
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
        line = _read_line(read_fd, _ANSWER_TIMEOUT)
    finally:
        os.close(read_fd)
    if not line:
        raise errdefs.System(f"the monitor of container {container_id} exited without starting it "
                             f"(see {RunDirectory(context.exec_root, container_id).monitor_log})")
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise errdefs.System(f"the monitor of container {container_id} answered {line!r}") from exc
    _raise_answer(answer)


def _read_line(fd: int, timeout: float) -> bytes:
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errdefs.Unavailable("the container's monitor did not answer in time")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        selector.close()
    return bytes(data.split(b"\n", 1)[0])


def _monitor_main(context: MonitorContext, container_id: str, answer_fd: int, pending: list[PendingAttach]) -> None:
    """The monitor process; never returns."""
    code = 0
    try:
        gc.freeze()  # objects inherited from the starter are never collected (their fds are closed)
        keep = {answer_fd, *(item.sock.fileno() for item in pending)}
        _close_inherited(keep)
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        if null > 2:
            os.close(null)
        os.chdir("/")
        os.umask(0o022)
        for number in signal.valid_signals():
            if number in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(number, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        for number in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTOU,
                       signal.SIGTTIN, signal.SIGTSTP):
            signal.signal(number, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        Monitor(context, container_id, answer_fd, pending).main()
    except BaseException as exc:  # noqa: BLE001 - the last resort: tell the starter, then exit
        code = 1
        try:
            log.exception("monitor of %s failed", container_id)
            os.write(answer_fd, json.dumps({"error": _error_payload(exc)}).encode() + b"\n")
        except OSError:
            pass
    finally:
        os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# the event loop


class _Loop:
    """A selector with separate read and write callbacks per descriptor."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.readers: dict[int, Callable[[], None]] = {}
        self.writers: dict[int, Callable[[], None]] = {}

    def _update(self, fd: int) -> None:
        events = (selectors.EVENT_READ if fd in self.readers else 0) | \
                 (selectors.EVENT_WRITE if fd in self.writers else 0)
        try:
            registered = self.selector.get_key(fd).events
        except KeyError:
            registered = 0
        if events == registered:
            return
        if not registered:
            self.selector.register(fd, events)
        elif not events:
            self.selector.unregister(fd)
        else:
            self.selector.modify(fd, events)

    def on_read(self, fd: int, callback: Callable[[], None] | None) -> None:
        if callback is None:
            self.readers.pop(fd, None)
        else:
            self.readers[fd] = callback
        self._update(fd)

    def on_write(self, fd: int, callback: Callable[[], None] | None) -> None:
        if callback is None:
            self.writers.pop(fd, None)
        else:
            self.writers[fd] = callback
        self._update(fd)

    def forget(self, fd: int) -> None:
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def poll(self, timeout: float | None) -> None:
        for key, mask in self.selector.select(timeout):
            fd = key.fd
            if mask & selectors.EVENT_READ and fd in self.readers:
                self.readers[fd]()
            if mask & selectors.EVENT_WRITE and fd in self.writers:
                self.writers[fd]()


class _Sink:
    """A process's stdin (a pipe, or the pty master shared with the output side)."""

    def __init__(self, loop: _Loop, fd: int, *, pty: bool) -> None:
        self.loop = loop
        self.fd = fd
        self.pty = pty
        self.buffer = bytearray()
        self.closing = False
        self.closed = False
        if not pty:
            os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.closed or self.closing:
            return
        self.buffer += data
        self.loop.on_write(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            while self.buffer:
                written = os.write(self.fd, self.buffer)
                del self.buffer[:written]
        except BlockingIOError:
            return
        except OSError:
            self.buffer.clear()  # the reader is gone
        if not self.buffer:
            self.loop.on_write(self.fd, None)
            if self.closing:
                self._close_now()

    def close_when_drained(self) -> None:
        if self.closed:
            return
        self.closing = True
        if not self.buffer:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pty:
            try:
                os.write(self.fd, b"\x04")  # end of input on a terminal: ^D
            except OSError:
                pass
            self.loop.on_write(self.fd, None)
        else:
            self.loop.forget(self.fd)
            os.close(self.fd)

    def release(self) -> None:
        """Close for good (the process is gone)."""
        if not self.closed:
            self.closed = True
            self.loop.on_write(self.fd, None)
            if not self.pty:
                self.loop.forget(self.fd)
                os.close(self.fd)


class _Stream:
    """A client connection carrying a hijacked stdio stream (attach, or an exec's)."""

    def __init__(self, monitor: Monitor, sock: socket.socket, *, stdout: bool, stderr: bool,
                 sink: _Sink | None, raw: bool, close_stdin_on_eof: bool) -> None:
        self.monitor = monitor
        self.sock = sock
        self.fd = sock.fileno()
        self.stdout = stdout
        self.stderr = stderr
        self.sink = sink
        self.raw = raw
        self.close_stdin_on_eof = close_stdin_on_eof
        self.out = bytearray()
        self.closing = False
        self.closed = False
        sock.setblocking(False)
        monitor.loop.on_read(self.fd, self._readable)

    def deliver(self, stream_type: int, data: bytes) -> None:
        if self.closed or self.closing:
            return
        if (stream_type == STDOUT and not self.stdout) or (stream_type == STDERR and not self.stderr):
            return
        self.out += data if self.raw else frame(stream_type, data)
        if len(self.out) > _CLIENT_BUFFER_LIMIT:
            log.warning("dropping an attached client that does not read its output")
            self.close()
            return
        self.monitor.loop.on_write(self.fd, self._writable)

    def input(self, data: bytes) -> None:
        if data and self.sink is not None:
            self.sink.write(data)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if data:
            self.input(data)
            return
        self.monitor.loop.on_read(self.fd, None)  # half-closed: output may still be wanted
        if self.close_stdin_on_eof and self.sink is not None:
            self.sink.close_when_drained()
            self.sink = None

    def _writable(self) -> None:
        try:
            while self.out:
                sent = self.sock.send(self.out)
                del self.out[:sent]
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.monitor.loop.on_write(self.fd, None)
        if self.closing:
            self.close()

    def finish(self) -> None:
        """Close once everything queued was sent."""
        self.closing = True
        if not self.out:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.monitor.loop.forget(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        self.monitor.streams.discard(self)


class _Handshake:
    """A new connection on the attach or control socket, until its first JSON line."""

    def __init__(self, monitor: Monitor, sock: socket.socket, handler: Callable[[socket.socket, dict[str, Any], bytes], None]) -> None:
        self.monitor = monitor
        self.sock = sock
        self.handler = handler
        self.data = bytearray()
        sock.setblocking(False)
        monitor.handshakes.add(self)
        monitor.loop.on_read(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop()
            return
        self.data += chunk
        if b"\n" not in self.data:
            if len(self.data) > 1 << 16:
                self._drop()
            return
        line, _, rest = bytes(self.data).partition(b"\n")
        self.monitor.loop.forget(self.sock.fileno())
        self.monitor.handshakes.discard(self)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            _reply(self.sock, {"error": {"kind": "invalid_argument", "message": "malformed request"}})
            self.sock.close()
            return
        self.handler(self.sock, request, rest)

    def _drop(self) -> None:
        self.monitor.loop.forget(self.sock.fileno())
        self.monitor.handshakes.discard(self)
        self.sock.close()


def _reply(sock: socket.socket, answer: dict[str, Any]) -> None:
    data = json.dumps(answer).encode() + b"\n"
    sock.setblocking(True)
    sock.settimeout(5.0)
    try:
        sock.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass


def _set_window(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


@dataclass
class _Run:
    """One run of the container (between a start and its exit)."""

    container: Container
    runtime: Runtime
    state: RuntimeState
    rootfs: str
    tty: bool
    master: int | None
    sink: _Sink | None
    sources: dict[int, int] = field(default_factory=dict)   # fd -> STDOUT / STDERR
    started: float = field(default_factory=time.monotonic)
    status: int | None = None
    exited_at: float = 0.0


@dataclass
class _Exec:
    """One exec the monitor started (its process, terminal, stdin and client stream)."""

    exec_id: str
    pid: int
    master: int | None
    sink: _Sink | None
    stream: _Stream | None
    sources: dict[int, int] = field(default_factory=dict)
    status: int | None = None
    exited_at: float = 0.0


# --------------------------------------------------------------------------------------------
# the monitor


class Monitor:
    def __init__(self, context: MonitorContext, container_id: str, answer_fd: int,
                 pending: list[PendingAttach]) -> None:
        # fresh store objects: the inherited ones may hold locks taken by other threads of the
        # starter at the moment of fork
        driver = type(context.mounts.driver)(context.mounts.driver.home)  # type: ignore[call-arg]
        self.mounts = MountStore(LayerStore(context.mounts.layers.root, driver))
        self.store = ContainerStore(context.store.root)
        self.execs = ExecStore(context.exec_root)
        self.context = context
        self.id = container_id
        self.answer_fd: int | None = answer_fd
        self.pending = pending
        self.run_dir = RunDirectory(context.exec_root, container_id)
        self.loop = _Loop()
        self.streams: set[_Stream] = set()
        self.handshakes: set[_Handshake] = set()
        self.attached: list[_Stream] = []
        self.run: _Run | None = None
        self.exec_runs: dict[int, _Exec] = {}    # pid -> exec
        self.reaped: dict[int, int] = {}
        self.writer: JsonFileWriter | None = None
        self.run_lock: RunLock | None = None
        self.listeners: list[socket.socket] = []
        self.restarts = 0
        self.backoff = 0.0
        self.events = context.events

    def _event(self, container: Container, action: str, extra: dict[str, str] | None = None) -> None:
        self.events.emit(CONTAINER, action, self.id, container_attributes(container.config, container.name, extra))

    def _volume_events(self, container: Container, action: str) -> None:
        """``mount`` / ``unmount`` of each volume the run uses, with Docker's attributes."""
        for point in load_mount_points(container.data.get("MountPoints")):
            if point.type != "volume" or not point.name:
                continue
            attributes = {"driver": point.driver, "container": self.id}
            if action == "mount":
                attributes.update({"destination": point.destination, "read/write": "true" if point.rw else "false",
                                   "propagation": point.propagation})
            self.events.emit(VOLUME, action, point.name, attributes)

    # -- answering the starter -----------------------------------------------------------------

    def _answer(self, answer: dict[str, Any]) -> None:
        if self.answer_fd is None:
            return
        try:
            os.write(self.answer_fd, json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        os.close(self.answer_fd)
        self.answer_fd = None

    # -- set-up --------------------------------------------------------------------------------

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
            try:
                running = bool(self.store.get(self.id).state.get("Running"))
            except errdefs.LaminaError:
                running = False
            if running or time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.005)

    def _setup_logging(self) -> None:
        import logging

        root = logging.getLogger("lamina")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.FileHandler(self.run_dir.monitor_log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False

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
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            execution = self.exec_runs.get(pid)
            if execution is not None:
                execution.status = status
                execution.exited_at = time.monotonic()
            elif self.run is not None and pid == self.run.state.pid:
                self.run.status = status
                self.run.exited_at = time.monotonic()
            # other children (an OCI runtime's helpers reparented to us) are just reaped

    def _open_log(self, container: Container) -> None:
        log_type, options = specs.log_options(container.host_config)
        if log_type != "json-file":
            return
        parsed = parse_log_options(options)
        self.writer = JsonFileWriter(self.store.log_path(self.id), max_size=parsed.max_size,
                                     max_file=parsed.max_file)

    def _update(self, change: Callable[[Container], None], *, durable: bool = True) -> bool:
        """Read-modify-write the record; False when the container is gone."""
        try:
            with self.store.modify(self.id, durable=durable) as container:
                change(container)
            return True
        except errdefs.NotFound:
            return False

    def _next_exit(self, *, exit_code: int, error: str = "", oom_killed: bool = False,
                   removed: bool = False) -> None:
        assert self.run_lock is not None
        previous = self.run_lock.read()
        self.run_lock.write(ExitInfo(sequence=previous.sequence + 1, exit_code=exit_code, error=error,
                                     oom_killed=oom_killed, removed=removed))

    # -- main ----------------------------------------------------------------------------------

    def main(self) -> None:
        self.run_dir.create()
        lock_fd = self._acquire_monitor_lock()
        if lock_fd is None:
            try:
                running = bool(self.store.get(self.id).state.get("Running"))
            except errdefs.LaminaError:
                running = False
            if running:
                self._answer({"ok": True})  # started by a concurrent start: nothing to do
            else:
                self._answer({"error": {"kind": "conflict",
                                        "message": f"container {self.id} has another monitor that does not exit"}})
            return
        try:
            with open(self.run_dir.monitor_pid_file, "w", encoding="ascii") as handle:
                handle.write(f"{os.getpid()}\n")
            container = self.store.get(self.id)
            if container.state.get("Running"):
                self._answer({"ok": True})  # started by another monitor meanwhile
                return
            self._setup_logging()
            self._setup_signals()
            self.run_lock = self.run_dir.run_lock()
            self._open_log(container)
            self.listeners = [bind_unix(self.run_dir.attach_socket), bind_unix(self.run_dir.control_socket)]
            self.loop.on_read(self.listeners[0].fileno(), lambda: self._accept(self.listeners[0], self._attach))
            self.loop.on_read(self.listeners[1].fileno(), lambda: self._accept(self.listeners[1], self._control))
            self._lifecycle()
        finally:
            self._teardown()
            os.close(lock_fd)

    def _lifecycle(self) -> None:
        assert self.run_lock is not None
        first = True
        while True:
            self.run_lock.lock(shared=False)
            try:
                self.run = self._start()
            except errdefs.LaminaError as exc:
                self._start_failed(exc, first)
                return
            except Exception as exc:  # noqa: BLE001 - a bug or an OS error: recorded like any failure
                log.exception("starting container %s", self.id)
                self._start_failed(errdefs.System(f"cannot start container {self.id}: {exc}"), first)
                return
            if first:
                for item in self.pending:
                    self._attach(item.sock, item.options, b"")
                self.pending = []
                self._answer({"ok": True})
                first = False
            status = self._serve_guarded()
            ran = self.run.container if self.run is not None else None
            exit_code, oom, duration = self._end_run(status)
            restart, container = self._decide(exit_code, duration)
            # the exit of a --rm container about to be removed needs no fsync: if a crash
            # loses it, the start-up finds a dead run and removes the container all the same
            removing = not restart and container is not None and bool(container.host_config.get("AutoRemove"))
            self._record_exit(exit_code, oom, restarting=restart, durable=not removing)
            self._exit_events(container if container is not None else ran, exit_code, oom, duration)
            if self.context.network is not None:
                self.context.network.detach(self.id)  # after "die", as dockerd releases the network
            self._close_clients()
            if not restart:
                break
            self._next_exit(exit_code=exit_code, oom_killed=oom)
            self.run_lock.unlock()   # waiters for this exit wake up
            self.run_lock.lock(shared=False)
            if not self._wait_to_restart():
                self._update(lambda c: c.state.update(Running=False, Restarting=False))
                self._next_exit(exit_code=exit_code, oom_killed=oom)
                self.run_lock.unlock()
                return
            self.run_lock.unlock()
        self._close_listeners()
        removed = False
        if container is not None and container.host_config.get("AutoRemove"):
            try:
                destroy(self.store, self.mounts, self.execs, self.context.exec_root, self.id,
                        volumes=self.context.volumes, remove_volumes=True)
                removed = True
                self._event(container, "destroy")
            except errdefs.NotFound:
                removed = True
            except errdefs.LaminaError as exc:
                log.error("cannot remove container %s (--rm): %s", self.id, exc)
        self._next_exit(exit_code=exit_code, oom_killed=oom, removed=removed)
        self.run_lock.unlock()

    def _exit_events(self, container: Container | None, exit_code: int, oom: bool, duration: float) -> None:
        if container is None:
            return
        if oom:
            self._event(container, "oom")
        self._event(container, "die", {"exitCode": str(exit_code), "execDuration": str(int(duration))})
        self._volume_events(container, "unmount")

    def _start_failed(self, exc: errdefs.LaminaError, first: bool) -> None:
        assert self.run_lock is not None
        code = exit_code_of_start_error(exc)
        message = str(exc)
        log.error("container %s failed to start: %s", self.id, message)

        def change(container: Container) -> None:
            state = container.state
            state.update(Running=False, Restarting=False, Paused=False, Pid=0, ExitCode=code, Error=message)
            if not first:
                state["FinishedAt"] = now()

        recorded = self._update(change)
        removed = False
        container = None
        if recorded and first:
            try:
                container = self.store.get(self.id)
            except errdefs.LaminaError:
                container = None
        self._close_listeners()
        if container is not None and container.host_config.get("AutoRemove"):
            try:
                destroy(self.store, self.mounts, self.execs, self.context.exec_root, self.id,
                        volumes=self.context.volumes, remove_volumes=True)
                removed = True
                self._event(container, "destroy")
            except errdefs.LaminaError as error:
                log.error("cannot remove container %s (--rm): %s", self.id, error)
        self._next_exit(exit_code=code, error=message, removed=removed)
        self.run_lock.unlock()
        if first:
            payload = _error_payload(exc)
            if code in (126, 127):
                payload["exit_code"] = code
            self._answer({"error": payload})

    # -- one run -------------------------------------------------------------------------------

    def _write_files(self, container: Container, sandbox: dict[str, Any] | None = None) -> dict[str, str]:
        config, host = container.config, container.host_config
        directory = self.store.directory(self.id)
        network = specs.network_mode(host)
        hostname = str(config.get("Hostname") or self.id[:12])
        try:
            with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as handle:
                host_resolv = handle.read()
        except OSError:
            host_resolv = ""
        host_hosts = ""
        if network == "host":
            try:
                with open("/etc/hosts", encoding="utf-8", errors="replace") as handle:
                    host_hosts = handle.read()
            except OSError:
                host_hosts = ""
        own_addresses, extra_hosts, servers = "", host.get("ExtraHosts") or None, None
        if sandbox is not None:
            from lamina.network.run import host_entries, name_servers

            own_addresses, extra_hosts = host_entries(sandbox, hostname, extra_hosts)
            servers = name_servers(sandbox) or None
        files = {
            "/etc/resolv.conf": ("resolv.conf", specs.resolv_conf(
                host_resolv, network=network, dns=host.get("Dns") or servers,
                search=host.get("DnsSearch") or None, options=host.get("DnsOptions") or None)),
            "/etc/hostname": ("hostname", hostname + "\n"),
            "/etc/hosts": ("hosts", specs.hosts_file(
                hostname=hostname, domainname=str(config.get("Domainname") or ""), network=network,
                extra_hosts=extra_hosts or None, host_text=host_hosts) + own_addresses),
        }
        out = {}
        for destination, (name, text) in files.items():
            path = os.path.join(directory, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(path, 0o644)
            out[destination] = path
        return out

    def _stdio(self, config: dict[str, Any], host: dict[str, Any]) -> tuple[Stdio, list[int], int | None, _Sink | None, dict[int, int]]:
        """(stdio for the runtime, child-side fds to close after start, pty master, stdin
        sink, output sources)."""
        child: list[int] = []
        parent: list[int] = []
        try:
            if config.get("Tty"):
                master, slave = os.openpty()
                parent.append(master)
                child.append(slave)
                size = host.get("ConsoleSize") or [0, 0]
                if len(size) == 2 and size[0] and size[1]:
                    _set_window(master, int(size[0]), int(size[1]))
                os.set_blocking(master, False)
                sink = _Sink(self.loop, master, pty=True) if config.get("OpenStdin") else None
                return Stdio(slave, slave, slave), child, master, sink, {master: STDOUT}
            if config.get("OpenStdin"):
                stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
                child.append(stdin_read)
                parent.append(stdin_write)
                sink: _Sink | None = _Sink(self.loop, stdin_write, pty=False)
            else:
                stdin_read = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                child.append(stdin_read)
                sink = None
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            parent.append(out_read)
            child.append(out_write)
            err_read, err_write = os.pipe2(os.O_CLOEXEC)
            parent.append(err_read)
            child.append(err_write)
            for fd in (out_read, err_read):
                os.set_blocking(fd, False)
            return Stdio(stdin_read, out_write, err_write), child, None, sink, {out_read: STDOUT, err_read: STDERR}
        except BaseException:
            for fd in child + parent:
                os.close(fd)
            raise

    def _start(self) -> _Run:
        container = self.store.get(self.id)
        if container.state.get("RemovalInProgress"):
            raise errdefs.Conflict(f"container {self.id} is marked for removal and cannot be started")
        config, host = container.config, container.host_config
        runtime = self.context.runtime(str(host.get("Runtime") or "native"))
        # a --rm container's files go with it: no sync of them, nor of the backing filesystem
        # when they are unmounted (if the host crashes, the start-up removes the container)
        rootfs = self.mounts.mount(self.id, volatile=bool(host.get("AutoRemove")))
        child: list[int] = []
        master = None
        sink = None
        sources: dict[int, int] = {}
        sandbox = None
        try:
            if self.context.network is not None:
                endpoints = (container.data.get("NetworkSettings") or {}).get("Networks") or {}
                sandbox = self.context.network.attach(self.id, container.name.lstrip("/"), config, host,
                                                      {"EndpointsConfig": endpoints})
            files = self._write_files(container, sandbox)
            from lamina.runtime.user import resolve_user_in_root

            user = resolve_user_in_root(rootfs, str(config.get("User") or ""))
            mount_points = container.data.get("MountPoints")
            self._mount_volumes(mount_points)
            spec = specs.container_spec(container_id=self.id, config=config, host=host, rootfs=rootfs, user=user,
                                        files=files, mount_points=mount_points)
            if sandbox is not None:
                spec = replace(spec, network_namespace=sandbox["SandboxKey"])
            stdio, child, master, sink, sources = self._stdio(config, host)
            try:
                state = runtime.start(spec, stdio)
            finally:
                for fd in child:
                    os.close(fd)
                child = []
        except BaseException:
            if sink is not None:
                sink.release()  # a pipe's write end; a pty master is among the sources
            for fd in sources:
                os.close(fd)
            release_mount(self.mounts, self.id)
            self._unmount_volumes(container)
            if sandbox is not None and self.context.network is not None:
                self.context.network.detach(self.id)
            raise
        run = _Run(container=container, runtime=runtime, state=state, rootfs=rootfs, tty=bool(config.get("Tty")),
                   master=master, sink=sink, sources=sources)
        for fd, stream_type in sources.items():
            self.loop.on_read(fd, lambda fd=fd, stream_type=stream_type: self._output(run, fd, stream_type))
        self.run_dir.write_runtime_state(state)
        started_at = now()

        def change(record: Container) -> None:
            record.state.update(Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
                                Pid=state.pid, ExitCode=0, Error="", StartedAt=started_at)
            record.data["HasBeenStartedBefore"] = True
            directory = self.store.directory(self.id)
            record.data["LogPath"] = self.store.log_path(self.id) if self.writer is not None else ""
            record.data["HostnamePath"] = os.path.join(directory, "hostname")
            record.data["HostsPath"] = os.path.join(directory, "hosts")
            record.data["ResolvConfPath"] = os.path.join(directory, "resolv.conf")

        # a --rm container's run is not made durable (nor is its root filesystem): if the host
        # crashes while it runs, the record may still say "created"
        self._update(change, durable=not host.get("AutoRemove"))
        log.info("container %s started (pid %d, runtime %s)", self.id, state.pid, state.runtime)
        self._volume_events(container, "mount")
        self._event(container, "start")
        return run

    def _output(self, run: _Run, fd: int, stream_type: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a pty whose slave side is closed everywhere
                log.warning("reading the container's output: %s", exc)
            data = b""
        if not data:
            self.loop.forget(fd)
            run.sources.pop(fd, None)
            if run.sink is not None and run.sink.pty and run.sink.fd == fd:
                run.sink.release()
            os.close(fd)
            if self.writer is not None:
                self.writer.flush("stdout" if stream_type == STDOUT else "stderr")
            return
        if self.writer is not None:
            try:
                self.writer.write("stdout" if stream_type == STDOUT else "stderr", data)
            except errdefs.LaminaError as exc:
                log.error("cannot write the log: %s", exc)
        for stream in list(self.attached):
            stream.deliver(stream_type, data)

    def _serve_guarded(self) -> int:
        """:meth:`_serve`; if the monitor itself fails, the container is killed (a container
        nobody watches would leave its mounts and cgroups behind) and its end recorded."""
        try:
            return self._serve()
        except Exception:  # noqa: BLE001 - logged; the run still ends cleanly
            log.exception("monitor of %s failed while the container ran: killing it", self.id)
            run = self.run
            assert run is not None
            try:
                run.runtime.kill(run.state, signal.SIGKILL)
            except errdefs.LaminaError:
                pass
            deadline = time.monotonic() + 10
            while run.status is None and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.01)
            for fd in list(run.sources):
                self.loop.forget(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
            run.sources.clear()
            return run.status if run.status is not None else signal.SIGKILL

    def _serve(self) -> int:
        run = self.run
        assert run is not None
        self._reap()
        while True:
            if run.status is not None:
                if not run.sources or time.monotonic() - run.exited_at > _DRAIN_SECONDS:
                    break
                timeout: float | None = max(0.0, _DRAIN_SECONDS - (time.monotonic() - run.exited_at))
            else:
                timeout = None
            if self.exec_runs:
                timeout = 0.1 if timeout is None else min(timeout, 0.1)
            self.loop.poll(timeout)
            self._finish_execs(force=False)
        for fd in list(run.sources):
            self.loop.forget(fd)
            os.close(fd)
        run.sources.clear()
        if run.sink is not None:
            run.sink.release()
        if self.writer is not None:
            self.writer.flush()
        self._finish_execs(force=True)
        assert run.status is not None
        return run.status

    def _end_run(self, status: int) -> tuple[int, bool, float]:
        """Release what the run holds; (exit code, OOM killed, seconds it ran)."""
        run = self.run
        assert run is not None
        exit_code = _exit_code(status)
        oom = False
        try:
            oom = run.runtime.oom_killed(run.state)
        except errdefs.LaminaError as exc:
            log.warning("cannot read the OOM state of %s: %s", self.id, exc)
        self._release_runtime(run)
        release_mount(self.mounts, self.id)
        self._unmount_volumes(run.container)
        self.run_dir.clear_runtime_state()
        if run.master is not None:
            try:
                os.close(run.master)
            except OSError:
                pass
        self.execs.remove_for_container(self.id)
        self.run = None
        log.info("container %s exited with %d%s", self.id, exit_code, " (OOM killed)" if oom else "")
        return exit_code, oom, time.monotonic() - run.started

    def _mount_volumes(self, mount_points: Any) -> None:
        """Create missing ``-v`` host directories (as ``docker run -v`` does) and mount the
        volumes that have a filesystem of their own (``-o type=... device=...``)."""
        for point in load_mount_points(mount_points):
            if point.type == "bind" and not point.skip_mountpoint_creation and not os.path.exists(point.source):
                try:
                    os.makedirs(point.source, 0o755, exist_ok=True)
                except OSError as exc:
                    raise errdefs.System(f"error while creating mount source path '{point.source}': "
                                         f"{exc.strerror}") from exc
        volumes = self.context.volumes
        if volumes is None:
            return
        mounted: list[str] = []
        try:
            for name in volume_names(mount_points):
                volumes.mount(name, self.id)
                mounted.append(name)
        except BaseException:
            for name in mounted:
                try:
                    volumes.unmount(name, self.id)
                except errdefs.LaminaError as exc:
                    log.warning("unmounting volume %s of %s: %s", name, self.id, exc)
            raise

    def _unmount_volumes(self, container: Container | None) -> None:
        volumes = self.context.volumes
        if volumes is None or container is None:
            return
        for name in volume_names(container.data.get("MountPoints")):
            try:
                volumes.unmount(name, self.id)
            except errdefs.LaminaError as exc:
                log.warning("unmounting volume %s of %s: %s", name, self.id, exc)

    def _release_runtime(self, run: _Run) -> None:
        for _attempt in range(200):
            try:
                # forced: what the container left in its cgroup is killed; Conflict while
                # exited children of ours wait to be reaped
                run.runtime.delete(run.state, force=True)
                return
            except errdefs.Conflict:
                self._reap()
                time.sleep(0.01)
            except errdefs.LaminaError as exc:
                log.error("cannot release the runtime state of %s: %s", self.id, exc)
                return
        log.error("container %s: processes remain in its cgroup; giving up", self.id)

    def _decide(self, exit_code: int, duration: float) -> tuple[bool, Container | None]:
        try:
            container = self.store.get(self.id)
        except errdefs.LaminaError:
            return False, None
        if container.data.get("HasBeenManuallyStopped") or container.state.get("RemovalInProgress"):
            return False, container
        name, maximum = specs.restart_policy(container.host_config)
        if name == "no":
            return False, container
        if duration >= 10:
            self.backoff = 0.0
        self.backoff = 0.1 if not self.backoff else min(self.backoff * 2, 60.0)
        if name == "always" or name == "unless-stopped":
            restart = True
        elif name == "on-failure":
            restart = exit_code != 0 and (maximum == 0 or self.restarts < maximum)
        else:
            restart = False
        return restart, container

    def _record_exit(self, exit_code: int, oom: bool, *, restarting: bool, durable: bool = True) -> None:
        finished = now()

        def change(container: Container) -> None:
            container.state.update(Running=restarting, Restarting=restarting, Paused=False, Pid=0,
                                   ExitCode=exit_code, OOMKilled=oom, FinishedAt=finished, Error="")
            if restarting:
                container.data["RestartCount"] = int(container.data.get("RestartCount") or 0) + 1

        self._update(change, durable=durable)
        if restarting:
            self.restarts += 1

    def _wait_to_restart(self) -> bool:
        deadline = time.monotonic() + self.backoff
        while True:
            try:
                container = self.store.get(self.id)
            except errdefs.LaminaError:
                return False
            if container.data.get("HasBeenManuallyStopped") or container.state.get("RemovalInProgress"):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, 0.05))

    # -- clients -------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, handler: Callable[[socket.socket, dict[str, Any], bytes], None]) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        _Handshake(self, conn, handler)

    def _attach(self, sock: socket.socket, options: dict[str, Any], rest: bytes) -> None:
        run = self.run
        if run is None or run.status is not None:
            sock.close()
            return
        config = run.container.config
        sink = run.sink if options.get("stdin") and config.get("OpenStdin") else None
        stream = _Stream(self, sock, stdout=bool(options.get("stdout")), stderr=bool(options.get("stderr")),
                         sink=sink, raw=run.tty, close_stdin_on_eof=bool(config.get("StdinOnce")))
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

    def _control(self, sock: socket.socket, request: dict[str, Any], rest: bytes) -> None:
        try:
            if "resize" in request:
                self._resize(request)
                _reply(sock, {"ok": True})
                sock.close()
            elif "exec" in request and "start" in request:
                self._exec_start(sock, str(request["exec"]), dict(request.get("start") or {}))
            else:
                raise errdefs.InvalidArgument(f"unknown monitor request {sorted(request)}")
        except errdefs.LaminaError as exc:
            _reply(sock, {"error": _error_payload(exc)})
            sock.close()

    def _resize(self, request: dict[str, Any]) -> None:
        size = request.get("resize")
        if not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) for v in size):
            raise errdefs.InvalidArgument("resize needs [height, width]")
        if "exec" in request:
            matches = [e for e in self.exec_runs.values() if e.exec_id == request["exec"]]
            if not matches:
                raise errdefs.NotFound(f"No such exec instance: {request['exec']}")
            master = matches[0].master
        else:
            master = self.run.master if self.run is not None else None
        if master is None:
            raise errdefs.Conflict("the process has no TTY: its window size cannot be set")
        try:
            _set_window(master, size[0], size[1])
        except OSError as exc:
            raise errdefs.System(f"cannot resize the terminal: {exc.strerror}") from exc

    def _close_clients(self) -> None:
        for stream in list(self.attached):
            stream.finish()
        self.attached = []
        deadline = time.monotonic() + _FLUSH_SECONDS
        while any(stream.out for stream in self.streams) and time.monotonic() < deadline:
            self.loop.poll(0.05)
        for stream in list(self.streams):
            stream.close()
        for handshake in list(self.handshakes):
            handshake._drop()

    def _close_listeners(self) -> None:
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
        self._close_listeners()
        for stream in list(self.streams):
            stream.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.run_lock is not None:
            self.run_lock.close()

    # -- exec ----------------------------------------------------------------------------------

    def _exec_start(self, sock: socket.socket, exec_id: str, options: dict[str, Any]) -> None:
        run = self.run
        if run is None or run.status is not None:
            raise errdefs.Conflict(f"Container {self.id} is not running")
        record = self.execs.get(exec_id)
        if record.get("ContainerID") != self.id:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        if record.get("Running") or record.get("Pid") or record.get("ExitCode") is not None:
            raise errdefs.Conflict(f"Error: Exec command {exec_id} is already running")
        detach = bool(options.get("detach"))
        config = dict(record.get("Config") or {})
        container = self.store.get(self.id)
        from lamina.runtime.user import resolve_user_in_root

        user_spec = str(config.get("User") or container.config.get("User") or "")
        try:
            user = resolve_user_in_root(run.rootfs, user_spec)
            process = specs.exec_process(container_id=self.id, config=container.config,
                                         host=container.host_config, exec_config=config, user=user)
        except errdefs.LaminaError as exc:
            self._exec_failed(record, exc, 126)
            raise
        tty = bool(config.get("Tty"))
        child: list[int] = []
        parent: dict[int, int] = {}
        master = None
        sink = None
        try:
            if tty:
                master, slave = os.openpty()
                child.append(slave)
                size = config.get("ConsoleSize") or [0, 0]
                if isinstance(size, list) and len(size) == 2 and size[0] and size[1]:
                    _set_window(master, int(size[0]), int(size[1]))
                os.set_blocking(master, False)
                stdio = Stdio(slave, slave, slave)
                parent[master] = STDOUT  # read even when detached: a full pty would block the process
                if config.get("AttachStdin") and not detach:
                    sink = _Sink(self.loop, master, pty=True)
            else:
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                child.append(null)
                stdin = stdout = stderr = null
                if config.get("AttachStdin") and not detach:
                    read_end, write_end = os.pipe2(os.O_CLOEXEC)
                    child.append(read_end)
                    stdin = read_end
                    sink = _Sink(self.loop, write_end, pty=False)
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
                pid = run.runtime.exec(run.state, process, stdio)
            finally:
                for fd in child:
                    os.close(fd)
                child = []
        except errdefs.LaminaError as exc:
            if sink is not None and not sink.pty:
                sink.release()
            for fd in parent:
                os.close(fd)
            self._exec_failed(record, exc, exit_code_of_start_error(exc, default=126))
            raise
        record.update(Running=True, Pid=pid)
        self.execs.save(record)
        _reply(sock, {"ok": True, "pid": pid})
        stream = None
        if detach:
            sock.close()
        else:
            stream = _Stream(self, sock, stdout=bool(config.get("AttachStdout")) or tty,
                             stderr=bool(config.get("AttachStderr")), sink=sink, raw=tty, close_stdin_on_eof=True)
            self.streams.add(stream)
        execution = _Exec(exec_id=exec_id, pid=pid, master=master, sink=sink, stream=stream, sources=parent)
        self.exec_runs[pid] = execution
        for fd, stream_type in parent.items():
            self.loop.on_read(fd, lambda fd=fd, stream_type=stream_type, e=execution: self._exec_output(e, fd, stream_type))
        self._reap()

    def _exec_failed(self, record: dict[str, Any], exc: BaseException, code: int) -> None:
        record.update(Running=False, Pid=0, ExitCode=code)
        self.execs.save(record)
        if isinstance(exc, errdefs.LaminaError) and code in (126, 127) and not hasattr(exc, "exit_code"):
            exc.exit_code = code  # type: ignore[attr-defined]

    def _exec_output(self, execution: _Exec, fd: int, stream_type: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.forget(fd)
            execution.sources.pop(fd, None)
            if execution.sink is not None and execution.sink.pty and execution.sink.fd == fd:
                execution.sink.release()
            os.close(fd)
            if fd == execution.master:
                execution.master = None
            return
        if execution.stream is not None:
            execution.stream.deliver(stream_type, data)

    def _finish_execs(self, *, force: bool) -> None:
        for pid, execution in list(self.exec_runs.items()):
            if execution.status is None and not force:
                continue
            if execution.sources and not force and time.monotonic() - execution.exited_at < _DRAIN_SECONDS:
                continue
            for fd in list(execution.sources):
                # what is still buffered in the pipe goes out before it is closed (when the
                # drain time ran out under load, or when forced); never block on a pipe that
                # a background process of the exec still holds open
                try:
                    os.set_blocking(fd, False)
                except OSError:
                    pass
                try:
                    while True:
                        data = os.read(fd, 65536)
                        if not data:
                            break
                        if execution.stream is not None:
                            execution.stream.deliver(execution.sources[fd], data)
                except OSError:
                    pass
                self.loop.forget(fd)
                os.close(fd)
            execution.sources.clear()
            if execution.sink is not None:
                execution.sink.release()
            if execution.master is not None:
                try:
                    os.close(execution.master)
                except OSError:
                    pass
            code = _exit_code(execution.status) if execution.status is not None else 137
            try:
                record = self.execs.get(execution.exec_id)
                record.update(Running=False, Pid=0, ExitCode=code)
                self.execs.save(record)
            except errdefs.LaminaError:
                pass
            if self.run is not None:
                self._event(self.run.container, "exec_die", {"execID": execution.exec_id, "exitCode": str(code)})
            if execution.stream is not None:
                execution.stream.finish()
            del self.exec_runs[pid]
