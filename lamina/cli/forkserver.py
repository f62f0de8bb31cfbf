"""The engine cache's fork server: a command that is not a read runs in a fork of a warm
interpreter, with the caller's descriptors, environment and working directory.

An in-process ``lamina run --rm busybox true`` spends ~40 ms loading ``argparse``, the command
code and the engine's modules before it creates anything: more than the container's whole start.
The engine cache (:mod:`lamina.cli.enginecache`) has all of them loaded; its fork server, a
child it forks once warm and before any of its threads start (so the fork server is
single-threaded, and every fork of it is safe), forks a **worker** per command.  The worker
becomes the process the command would have run in: the caller's stdin, stdout and stderr as
its descriptors 0, 1 and 2, the caller's working directory (sent as a descriptor: a deleted or
renamed directory too), environment and umask, Python's default signal dispositions, no
``atexit`` handler and no logging handler of the cache's, fresh ``sys.std*`` streams over the
new descriptors; then it runs :func:`lamina.cli.main.run_to_end` with the command line, which
builds the engine as any in-process command does (no state of the cache's engine is used: only
its loaded modules, and the parsers the fork server built).  So a command behaves as it does in-process, and what it prints goes straight
to the caller's descriptors: a terminal, a pipe, a file, with no copy in between.

Which commands: the front's (:mod:`lamina.cli.front`) decision, on the conditions the engine
cache has (the default engine, no global option, ``LAMINA_FORWARD`` not ``0``): every
command but the reads the cache answers itself and :data:`NOT_FORKED`.  What differs from a
process of its own: its parent is the fork server (the caller waits for it, see below); its
session is the cache's, so it has no controlling terminal (``run -t`` sets the terminal's modes
through its descriptor, the caller relays ``SIGWINCH``; a command of a background job that
reads the terminal is not stopped by ``SIGTTIN`` as its own process would be); its cgroup and
resource limits are the cache's (the containers it starts are the monitor template's children,
whose are neither).

The exchange, on ``<exec-root>/engine-cache/<key>.fork.sock`` (mode 0600: its user's only)::

    client:  LENGTH "\\n" PAYLOAD, with SCM_RIGHTS [stdin, stdout, stderr, cwd] on its first byte
             PAYLOAD = "1" NUL umask NUL argc NUL argv... NUL environ...   (environ as KEY=VALUE)
    worker:  "P" pid "\\n"     its first words: the command runs (no "P": it did not run, and the
                               client runs it in-process)
             "X" code "\\n"    its last: it exits with code (once its output is flushed)
    server:  "X" code "\\n"    once it reaped the worker, again (read when the worker's was lost)
          or "K" signal "\\n"  the worker was killed by signal

The client relays ``SIGINT``, ``SIGTERM``, ``SIGHUP``, ``SIGQUIT``, ``SIGWINCH``, ``SIGUSR1`` and
``SIGUSR2`` to the worker, so the terminal's signals reach the command as they would its own
process; ``SIGTSTP`` stops the worker and then the client, ``SIGCONT`` continues the worker
(the shell's job control).  A client that goes away (its connection closes) before its worker ended takes its
worker with it (``SIGKILL``), as the death of an in-process command's process takes the command.

The **spare**: a fork of a big interpreter takes ~3 ms (its page tables), on the command's
path.  So the fork server forks one worker ahead whenever none waits: as it starts, and again
as soon as it handed the spare to a command (or forked a worker for one), while that command
runs (on a second core: the run's processes mostly take turns).  Forked only once no worker
ran, the spare was late for a command that came as soon as the last one told its client its
exit (before its process ended and was reaped): in a loop of ``run --rm``, 6 of 22 commands
found one.  The spare leaves the fork server's descriptors (those of the workers running too),
names itself :data:`SPARE_NAME` (in ``/proc/PID/comm``, the fork server's name again once it
serves), resets its signals and leaves the cache's logging handlers and ``atexit`` functions
(what a worker does first), faults in the pages a worker wrote (:mod:`lamina.warmpages`: the
record ``<socket without .sock>.pages`` beside the socket, written by a worker that faulted
nothing in ahead before it reports its exit, at most every 30 s) and waits on a socket pair.
The fork server reads each request itself (a bad one is refused as before) and, when a spare
waits, sends it the request as the client sent it, with the client's connection as a fifth
descriptor; the spare then becomes that client's worker, as one forked for it would.  A
command that comes while none waits (the next is still being forked) gets a worker forked for
it.  The spare exits when its socket pair ends (the fork server dismissed it when leaving, or
died); one that dies otherwise is not replaced.

Life: the fork server shares the engine cache's idle clock (:class:`ActivityClock`: both leave
once neither served anything for the idle time; a running worker counts as activity), leaves on
``SIGTERM`` or when the cache process dies (``PR_SET_PDEATHSIG``), and always the same way: its
socket is unlinked, what was queued on it is served, the workers still running are waited for
(their callers wait for their status), then it exits.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (the front loads this module)
if TYPE_CHECKING:
    import selectors
    import socket
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["NOT_FORKED", "ActivityClock", "run_forked", "serve"]

#: commands never run in a worker: a daemon (its own process, for its whole life) and a
#: command that prompts on the controlling terminal (a worker has none)
NOT_FORKED = frozenset({"serve", "login"})
#: the signals a client relays to its worker
RELAYED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2")
_VERSION = b"1"
_REQUEST_LIMIT = 1 << 24        # a command line and an environment: ARG_MAX is far below
_REQUEST_TIMEOUT = 5.0          # a client sends its request at once
_DESCRIPTORS = 4                # stdin, stdout, stderr, the working directory


# -- the client (the front: os, sys and _socket only) ------------------------------------------

def encode_request(words: Sequence[str | bytes], environ: dict[bytes, bytes], umask: int) -> bytes:
    fields = [_VERSION, str(umask).encode(), str(len(words)).encode(), *(os.fsencode(word) for word in words),
              *(name + b"=" + value for name, value in environ.items())]
    payload = b"\0".join(fields)
    return str(len(payload)).encode() + b"\n" + payload


def run_forked(path: str, words: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """Run ``words`` with the environment ``environ`` (the one the fork server was chosen by)
    in a worker of the fork server at ``path``; its exit code, or None when no worker ran it
    (no fork server, a refusal, a descriptor 0-2 closed here): run it in-process."""
    import _socket

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return None  # nothing to hand over: in-process, as the command's own process would be
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError:
            return None
        umask = os.umask(0o022)
        os.umask(umask)
        environment = os.environb if environ is os.environ else \
            {os.fsencode(name): os.fsencode(value) for name, value in environ.items()}
        message = encode_request(words, dict(environment), umask)
        try:
            cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))
            sent = sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
            if sent < len(message):
                sock.sendall(message[sent:])
            # nothing more is sent: the worker may have run and ended already, and a send to a
            # closed connection (EPIPE) would read as a refusal, running the command twice
        except OSError:
            return None  # the request went short: the fork server runs nothing of it
        finally:
            os.close(cwd)
        lines = _Lines(sock)
        pid = None
        while (line := lines.next()) is not None and line[1:].isdigit():
            if line[:1] != b"P" or pid is not None:
                break
            pid = int(line[1:])  # the worker's own first words: the command runs
            _relay_signals(pid)
    finally:
        sock.close()
    if pid is None:
        return None  # refused, or the fork server left, or the worker died first: nothing ran
    if line is not None and line[:1] == b"X" and line[1:].isdigit():
        return int(line[1:])
    if line is not None and line[:1] == b"K" and line[1:].isdigit():
        return _die_of(int(line[1:]))
    os.write(2, b"Error: the engine cache's fork server went away while the command ran\n")
    return 125


class _Lines:
    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes | None:
        while b"\n" not in self.buffer:
            try:
                piece = self.sock.recv(256)  # type: ignore[attr-defined]
            except OSError:
                return None
            if not piece:
                return None
            self.buffer += piece
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _relay_signals(pid: int) -> None:
    """Relay :data:`RELAYED` to the worker; on ``SIGTSTP`` (the terminal's suspend key) stop the
    worker, then this process, and on ``SIGCONT`` continue the worker: the shell's job control
    stops and resumes the command as it would its own process."""
    import _signal

    def relay(number: int, frame: object) -> None:
        try:
            os.kill(pid, number)
        except OSError:
            pass  # it ended: its status is on its way

    def suspend(number: int, frame: object) -> None:
        relay(_signal.SIGSTOP, frame)
        os.kill(os.getpid(), _signal.SIGSTOP)

    for name in RELAYED:
        _signal.signal(getattr(_signal, name), relay)
    _signal.signal(_signal.SIGTSTP, suspend)
    _signal.signal(_signal.SIGCONT, relay)


def _die_of(number: int) -> int:
    """End as the worker ended, killed by signal ``number`` (a shell then reports the same);
    128 + ``number`` if that signal does not end this process."""
    import _signal

    try:
        _signal.signal(number, _signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL, SIGSTOP: at their default already
    try:
        os.kill(os.getpid(), number)
    except (OSError, ValueError):
        pass
    return 128 + number


# -- the fork server (forked by the engine cache) ----------------------------------------------

class ActivityClock:
    """When the engine cache and its fork server last served something, shared by both processes
    (a page mapped before the fork): a slot each (:data:`CACHE`, :data:`FORK_SERVER`), a time
    on the monotonic clock or infinity while busy.  Each leaves when the later of the two is older
    than the idle time."""

    CACHE = 0
    FORK_SERVER = 1

    def __init__(self) -> None:
        import mmap
        import time

        self._page = mmap.mmap(-1, 16)
        self.stamp(self.CACHE, time.monotonic())
        self.stamp(self.FORK_SERVER, time.monotonic())

    def stamp(self, slot: int, when: float | None = None) -> None:
        """``slot`` served at ``when`` (None: now; ``math.inf``: it serves still)."""
        import struct
        import time

        struct.pack_into("d", self._page, 8 * slot, time.monotonic() if when is None else when)

    def idle_for(self) -> float:
        import struct
        import time

        return time.monotonic() - max(struct.unpack_from("2d", self._page, 0))


class _Worker:
    __slots__ = ("pid", "pidfd", "conn")

    def __init__(self, pid: int, pidfd: int, conn: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.conn = conn


class _Spare:
    """A worker forked ahead of its command (:func:`_fork_spare`), waiting on ``control`` for the
    connection of the next client."""
    __slots__ = ("pid", "pidfd", "control")

    def __init__(self, pid: int, pidfd: int, control: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.control = control


#: the name (``/proc/PID/comm``) of a spare while it waits; a worker takes back the fork server's
SPARE_NAME = "lamina-spare"


def serve(listener: socket.socket, path: str, clock: ActivityClock, idle_seconds: float, parent: int,
          close_in_worker: Sequence[int] = (), current: Callable[[], bool] | None = None) -> None:
    """The fork server's loop on ``listener`` (bound at ``path``); returns when it left.
    ``parent``: the engine cache's pid (the fork server leaves when it dies);
    ``close_in_worker``: descriptors of the cache's that a worker closes; ``current``: whether
    the namespaces this process works in are still the engine's (a rootless cache's: the
    user's pause process was replaced), asked before each command: when not, the command is
    refused (its client runs it in-process) and the fork server leaves."""
    import gc
    import selectors
    import signal

    from lamina.cli.main import prebuild_parsers
    from lamina.records import compile_loaded_inits
    from lamina.runtime.capabilities import PR_SET_PDEATHSIG, prctl

    from lamina.warmpages import pages_path

    pages = pages_path(path)  # what the last worker wrote, for the next spare (lamina.warmpages)
    prebuild_parsers()  # each worker finds its command's parser built
    compile_loaded_inits()  # and its records' constructors compiled
    gc.freeze()  # a worker's collections never scan (nor so copy) the pages it shares with this process

    leaving: list[str] = []
    signal.signal(signal.SIGTERM, lambda number, frame: leaving.append("SIGTERM"))
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        leaving.append("the engine cache is gone")
    bound = os.stat(path)  # the socket file this listener is bound to, unlinked when it leaves
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    workers: dict[int, _Worker] = {}
    spares: list[_Spare] = []  # at most one
    listening = True
    sparing = True  # until a spare died unasked
    while listening or workers:
        if listening and sparing and not leaving and not spares:
            # the next command does not wait for its fork (~3 ms)
            sparing = _fork_spare(listener, selector, workers, spares, close_in_worker, pages)
        for key, _events in selector.select(1.0):
            if key.data == "listener":
                if current is None or current():
                    _accept(listener, selector, workers, clock, close_in_worker, spares, pages=pages)
                else:  # refused as it leaves (below): its client runs the command in-process
                    leaving.append("its rootless namespaces are no longer the user's")
            elif key.data == "exited":
                _reap(selector, workers, key.fd)
                if not workers:
                    clock.stamp(clock.FORK_SERVER)
            elif key.data == "spare":
                _dismiss(selector, spares)
                sparing = False
                from lamina.log import get_logger

                get_logger("lamina.enginecache").warning("the fork server's spare worker died: none is forked ahead")
            elif key.data in workers:  # the client's connection: readable only once it closed
                _client_gone(selector, workers[key.data])
        if listening and (leaving or (not workers and clock.idle_for() >= idle_seconds)):
            listening = False
            _stop_listening(listener, path, bound, selector, workers, clock, close_in_worker, spares, current, pages)
            _dismiss(selector, spares)


def _stop_listening(listener: socket.socket, path: str, bound: os.stat_result, selector: selectors.BaseSelector,
                    workers: dict[int, _Worker], clock: ActivityClock, close_in_worker: Sequence[int],
                    spares: list[_Spare], current: Callable[[], bool] | None, pages: str) -> None:
    """Unlink the socket (a client that comes now runs its command in-process), serve what was
    queued on it, close it."""
    try:
        found = os.stat(path)
        if (found.st_dev, found.st_ino) == (bound.st_dev, bound.st_ino):
            os.unlink(path)
    except OSError:
        pass
    while _accept(listener, selector, workers, clock, close_in_worker, spares, current, pages=pages):
        pass
    selector.unregister(listener)
    listener.close()


def _accept(listener: socket.socket, selector: selectors.BaseSelector, workers: dict[int, _Worker],
            clock: ActivityClock, close_in_worker: Sequence[int], spares: list[_Spare],
            current: Callable[[], bool] | None = None, *, pages: str | None = None) -> bool:
    import selectors

    try:
        conn, _address = listener.accept()
    except (BlockingIOError, InterruptedError):
        return False
    clock.stamp(clock.FORK_SERVER, float("inf"))  # until its worker (and any other) ended
    fds: list[int] = []
    try:
        conn.settimeout(_REQUEST_TIMEOUT)
        words, environ, umask, fds = _read_request(conn)
        if current is not None and not current():
            raise ValueError("its rootless namespaces are no longer the user's (the pause process was replaced)")
        if spares and _hand_over(selector, spares, workers, conn, encode_request(words, environ, umask), fds):
            return True
        pid = os.fork()
        if pid == 0:
            objects, descriptors = _inherited(listener, selector, workers, close_in_worker)
            _become_worker(words, environ, umask, fds, conn, objects, descriptors, pages=pages)
        pidfd = os.pidfd_open(pid)
    except Exception as exc:  # noqa: BLE001 - a bad request, a failed fork: that client runs in-process
        from lamina.log import get_logger

        get_logger("lamina.enginecache").warning("the fork server refused a command: %s", exc)
        conn.close()
        if not workers:
            clock.stamp(clock.FORK_SERVER)
        return True
    finally:
        for fd in fds:
            os.close(fd)
    _register(selector, workers, _Worker(pid, pidfd, conn))
    return True


def _register(selector: selectors.BaseSelector, workers: dict[int, _Worker], worker: _Worker) -> None:
    import selectors

    worker.conn.setblocking(False)
    workers[worker.pidfd] = worker
    selector.register(worker.pidfd, selectors.EVENT_READ, "exited")
    selector.register(worker.conn, selectors.EVENT_READ, worker.pidfd)


def _hand_over(selector: selectors.BaseSelector, spares: list[_Spare], workers: dict[int, _Worker],
               conn: socket.socket, request: bytes, fds: list[int]) -> bool:
    """Send the spare the client's request as the client sent it, with the client's connection
    as a fifth descriptor: it becomes that client's worker.  False when the spare is gone."""
    import socket
    import struct

    spare = spares.pop()
    selector.unregister(spare.pidfd)
    try:
        rights = struct.pack(f"{_DESCRIPTORS + 1}i", conn.fileno(), *fds)
        sent = spare.control.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        if sent < len(request):
            # never an empty send: a spare that read the whole request may have closed its end
            # already (it runs the command): that send would fail as if it had died
            spare.control.sendall(request[sent:])
    except OSError:  # it died before it had the whole request: a worker is forked for this client
        spares.append(spare)
        _dismiss(selector, spares, registered=False)
        return False
    spare.control.close()
    _register(selector, workers, _Worker(spare.pid, spare.pidfd, conn))
    return True


def _inherited(listener: socket.socket, selector: selectors.BaseSelector, workers: dict[int, _Worker],
               close_in_worker: Sequence[int]) -> tuple[list[object], list[int]]:
    """What a child of the fork server leaves first: its objects (closed through them: never
    twice) and its other descriptors (a worker's client connection held open by another child
    would keep that client waiting for its end)."""
    return ([listener, selector, *(worker.conn for worker in workers.values())],
            [*(worker.pidfd for worker in workers.values()), *close_in_worker])


def _fork_spare(listener: socket.socket, selector: selectors.BaseSelector, workers: dict[int, _Worker],
                spares: list[_Spare], close_in_worker: Sequence[int], pages: str | None = None) -> bool:
    """Fork a spare worker into ``spares``; False when the fork failed (none is forked again)."""
    import selectors
    import socket

    try:
        control, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        pid = os.fork()
    except OSError:
        control.close()
        spare_end.close()
        return False
    if pid == 0:
        objects, descriptors = _inherited(listener, selector, workers, close_in_worker)
        _wait_as_spare(spare_end, [*objects, control], descriptors, pages)
    spare_end.close()
    pidfd = os.pidfd_open(pid)
    selector.register(pidfd, selectors.EVENT_READ, "spare")
    spares.append(_Spare(pid, pidfd, control))
    return True


def _dismiss(selector: selectors.BaseSelector, spares: list[_Spare], *, registered: bool = True) -> None:
    """End the spare (it reads the end of its control socket and exits) and reap it."""
    for spare in spares:
        if registered:
            selector.unregister(spare.pidfd)
        spare.control.close()
        os.waitpid(spare.pid, 0)
        os.close(spare.pidfd)
    spares.clear()


def _wait_as_spare(control: socket.socket, objects: list[object], descriptors: Sequence[int],
                   pages: str | None = None) -> None:
    """The spare: leave the fork server's objects now, wait on ``control`` for a client's
    request and connection (:func:`_hand_over`), then run it as a worker forked for it does;
    exits when ``control`` ends first (the fork server dismissed it, or died); never returns."""
    import socket

    try:
        for item in objects:
            item.close()  # type: ignore[attr-defined]
        for fd in descriptors:
            os.close(fd)
        from lamina.sys import set_process_name

        name = set_process_name(SPARE_NAME)
        _leave_cache_state()  # before the request: ~0.5 ms less on the command's path
        if pages is not None:
            from lamina.warmpages import warm

            if warm(pages):
                pages = None  # its command's pages are not all its own: it records none
        words, environ, umask, fds = _read_request(control, _DESCRIPTORS + 1)
        set_process_name(name)
        conn = socket.socket(fileno=fds[0])
    except BaseException:  # noqa: BLE001 - dismissed (no request): it goes as it came
        os._exit(0)
    _become_worker(words, environ, umask, fds[1:], conn, [control], [], prepared=True, pages=pages)


def _read_request(conn: socket.socket, descriptors: int = _DESCRIPTORS) -> tuple[list[bytes], dict[bytes, bytes], int, list[int]]:
    import socket

    data, ancillary, flags, _address = conn.recvmsg(65536, socket.CMSG_SPACE(descriptors * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[index:index + 4], sys.byteorder) for index in range(0, len(payload) - 3, 4)]
    try:
        if flags & socket.MSG_CTRUNC or len(fds) != descriptors:
            raise ValueError(f"{len(fds)} descriptors, not {descriptors}")
        length, newline, payload = data.partition(b"\n")
        if not newline or not length.isdigit() or int(length) > _REQUEST_LIMIT:
            raise ValueError("no request length")
        chunks = [payload]
        received = len(payload)
        while received < int(length):
            piece = conn.recv(min(1 << 20, int(length) - received))
            if not piece:
                raise ValueError("the request was cut short")
            chunks.append(piece)
            received += len(piece)
        fields = b"".join(chunks).split(b"\0")
        if fields[0] != _VERSION or not fields[1].isdigit() or not fields[2].isdigit():
            raise ValueError("not a version 1 request")
        count = int(fields[2])
        words = fields[3:3 + count]
        if len(words) != count:
            raise ValueError("a short command line")
        environ = {}
        for entry in fields[3 + count:]:
            name, equals, value = entry.partition(b"=")
            if equals and name:
                environ[name] = value
        return words, environ, int(fields[1]) & 0o777, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _reap(selector: selectors.BaseSelector, workers: dict[int, _Worker], pidfd: int) -> None:
    worker = workers.pop(pidfd)
    selector.unregister(pidfd)
    _pid, status = os.waitpid(worker.pid, 0)
    os.close(pidfd)
    code = os.waitstatus_to_exitcode(status)
    try:
        selector.unregister(worker.conn)
    except KeyError:
        pass  # already gone
    try:
        worker.conn.setblocking(True)
        worker.conn.sendall(b"X%d\n" % code if code >= 0 else b"K%d\n" % -code)
    except OSError:
        pass  # its client left
    worker.conn.close()


def _client_gone(selector: selectors.BaseSelector, worker: _Worker) -> None:
    """The client closed its connection before its worker ended: the worker goes too."""
    import signal

    selector.unregister(worker.conn)
    try:
        signal.pidfd_send_signal(worker.pidfd, signal.SIGKILL)
    except OSError:
        pass  # it ended meanwhile


def _become_worker(words: list[bytes], environ: dict[bytes, bytes], umask: int, fds: list[int],
                   conn: socket.socket, objects: list[object], descriptors: list[int], *,
                   prepared: bool = False, pages: str | None = None) -> None:
    """The worker: become the process the command would have run in, run it, tell the client
    its exit code (before this process's own teardown; the fork server tells it again once it
    reaped it, or how it died); never returns.  ``prepared``: a spare, which left the cache's
    state (:func:`_leave_cache_state`) while it waited."""
    code = 125
    status = os.dup(conn.fileno())
    try:
        os.write(status, b"P%d\n" % os.getpid())  # first: what it writes next comes after
    except OSError:
        os._exit(code)  # the client left: run nothing
    try:
        for item in [*objects, conn]:  # the fork server's: closed through their objects, never twice
            item.close()  # type: ignore[attr-defined]
        for fd in descriptors:
            os.close(fd)
        if not prepared:
            _leave_cache_state()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            os.close(fd)
        os.umask(umask)
        from lamina.config import ROOTLESS_UID_ENVIRONMENT

        # a rootless cache's: the user it works for, inside its namespaces (lamina.rootless.join)
        kept = os.environb.get(os.fsencode(ROOTLESS_UID_ENVIRONMENT))
        if kept is not None:
            environ = {**environ, os.fsencode(ROOTLESS_UID_ENVIRONMENT): kept}
        for name in [name for name in os.environb if name not in environ]:
            del os.environb[name]
        for name, value in environ.items():
            if os.environb.get(name) != value:
                os.environb[name] = value
        import time

        time.tzset()
        _fresh_streams()
        sys.argv = ["lamina", *(os.fsdecode(word) for word in words)]
        from lamina.cli.main import run_to_end

        code = run_to_end()
    except BaseException:  # noqa: BLE001 - what went wrong before the command ran (or a lost client)
        try:
            import traceback

            os.write(2, ("Error: the engine cache's worker failed: " + traceback.format_exc()).encode(errors="replace"))
        except BaseException:  # noqa: BLE001
            pass
    finally:
        if pages is not None:
            from lamina.warmpages import record_when_due

            record_when_due(pages)
        try:
            os.write(status, b"X%d\n" % code)
        except OSError:
            pass  # the client left
        os._exit(code)


def _reset_signals() -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGCHLD", "SIGWINCH", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTSTP",
                 "SIGTTIN", "SIGTTOU", "SIGCONT"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it at start
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _leave_cache_state() -> None:
    """What a fresh interpreter has and the cache's process does not, and no request changes:
    Python's default signal dispositions, no logging handler of the cache's, no ``atexit``
    handler (a spare does this before it waits)."""
    import atexit
    import logging

    _reset_signals()
    logger = logging.getLogger("lamina")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    atexit._clear()


def _fresh_streams() -> None:
    """``sys.std*`` over the new descriptors 0-2, as a fresh interpreter has them (buffered as
    the interpreter buffers them: stdout by line on a terminal, stderr always)."""
    import io

    streams = []
    for fd, mode, old in ((0, "r", sys.stdin), (1, "w", sys.stdout), (2, "w", sys.stderr)):
        encoding = getattr(old, "encoding", None) or "utf-8"
        errors = getattr(old, "errors", None) or "strict"
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        line_buffering = fd == 2 or (fd == 1 and raw.isatty())
        streams.append(io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line_buffering,
                                        write_through=fd == 2))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
