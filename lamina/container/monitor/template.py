"""The monitor template: one small process per exec root that forks every container's monitor.

Why a template.  A monitor used to be a fork of whichever process started the container (the
CLI, or ``lamina serve``): once that process moved on or exited, every page of its heap the
monitor had inherited was the monitor's alone, 8-13 MiB of private memory per running
container.  Weighed against it:

* exec'ing a slim monitor program costs what importing the monitor costs (the container store,
  layer store, graph driver, runtime, network and volume code: ~150 modules, ~10 MiB of
  private memory and ~100 ms before the first run starts), in every monitor and on the path of
  every ``run``;
* Debian's ``conmon`` (C, 0.3 MiB) speaks its own protocol: it cannot serve lamina's attach
  and control sockets with Docker's framing and detach keys, start execs on request, run
  healthchecks, apply restart policies or write lamina's exit record, and lamina would then
  need a second process per container for those;
* a template imports all of that once, then only forks: a monitor shares the template's pages
  copy-on-write and owns only what it writes (the interpreter's own state after a fork, its
  run's objects, and every page holding an object whose reference count it changes, which is
  why a monitor runs as little Python as it can: the template makes what all monitors need,
  :mod:`~lamina.container.monitor.bootstrap`, and each start, exec and probe runs in a helper
  process that exits, :mod:`~lamina.container.monitor.launch`); starting one is a fork of a
  small single-threaded process, cheaper than the fork of a big multi-threaded server.  The
  template costs its start (interpreter and imports) on the first ``run`` after it left, and
  its own memory once per exec root.  That is what this module is (the figures, measured
  with ``bench/scale.py``: issue 16).

What a monitor writes, and so owns, is mostly what Python writes on its own: the reference
counts of every object its code uses, the warm-up counters and inline caches of every code
object it runs, the first entries of the type attribute cache and of the ABC caches, the shared
attribute keys of the classes it instantiates first, the blocks it allocates in the template's
half-used pools.  Hence three habits here.  A monitor's first steps are rehearsed in the
template, once per context (:func:`~lamina.container.monitor.bootstrap.rehearse`, with a
placeholder container and no side effect), so that what a first time writes is written in
pages every monitor shares.  What the template itself runs between two forks is kept short:
each page it writes then is copied into the monitor forked before (the monitor's modules are
imported at the top of this module, not by the code serving each request).  And the template
maps no library it does not need: a page of OpenSSL that only the template touched counts
as its own (``hashlib`` is imported where a digest is made, not at import).

Life cycle.  :func:`~lamina.container.monitor.client.spawn` connects to
``<exec-root>/monitor-template/<key>.sock`` (the contract: :mod:`~lamina.container.monitor.protocol`);
when nobody listens it takes ``monitor-template/lock`` and starts a template:
``python -I -S -c ...`` with the starter's import path (``key`` names the interpreter and that
path, so two code trees never share a template), in a new session.  The template imports the
monitor, binds the socket, forks itself into the background and the first process exits: the
starter waits for that exit, then connects.  A start need not wait:
:func:`~lamina.container.monitor.client.warm_template` (called by every container create, so
that the start finds a template ready) hands the locked lock's descriptor to the template and
returns at once; the template closes it once its socket listens, so the lock is held from the
starter's check until the template serves, and a ``spawn`` meanwhile waits on the lock, then
connects.  ``lamina serve`` starts one at start-up and holds a lease on it (the protocol's
``{"lease": true}``) for its whole life, so the template never leaves while a server uses it.  Per request the template makes (or reuses) the
:class:`~lamina.container.monitor.api.MonitorContext` of the request's recipe, opens the
requested runtime in it (a runtime's set-up, such as compiling the seccomp profile, is then
shared by every monitor), freezes the garbage collector's view of all of it (``gc.freeze``:
collections in a monitor never write to the shared pages) and forks the monitor
(:func:`~lamina.container.monitor.bootstrap.monitor_main`).  The monitors are the template's
children; it reaps them.  With no monitor left, no lease open and no request for :data:`IDLE_SECONDS` the
template leaves: under the lock (so no starter starts a second one meanwhile) it unlinks its
socket, serves what was already queued on it, and exits.  Its pid is in ``<key>.pid`` beside the
socket (for the operator; nothing reads it to decide anything).

The spare monitor.  A fork of the template takes ~1.5-3 ms on a small VM (its page tables, then
the first writes of both processes), on the path of every start.  So once a spawn was served
and the template idled for :data:`SPARE_DELAY`, it forks one monitor ahead for that spawn's
recipe and runtime (after a ``prepare``, for those): the **spare** closes the template's
listener, selector and leases, names itself :data:`SPARE_NAME` (``/proc/PID/comm``; the
template's name again once it serves) and waits on a socket pair.  The next spawn of the same
recipe and runtime is sent to it, the container's id and the pending attaches with the
request's descriptors, and its pid is the answer: it runs
:func:`~lamina.container.monitor.bootstrap.monitor_main` as a monitor forked for that request
would.  A spawn of another recipe or runtime dismisses it and forks.  The spare ends with its
socket pair: dismissed when the template leaves (it is no monitor: it keeps no template), or
at the template's death.  A spare that dies unasked is not replaced (logged).

The template has its monitors' signal dispositions (SIGTERM, SIGINT, SIGHUP ignored: it is
stopped with SIGKILL, or leaves by itself).  If the template dies, its monitors run on (they are reparented) and the next ``spawn`` starts
a new template; ``lamina serve`` restarting does not touch it.  A template runs the code it
was started with: after lamina is upgraded in place, monitors come from the old code until
the template leaves when idle (or is killed).  Errors of the template itself go to
``monitor-template/template.log``.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import json
import logging
import os
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

# the whole monitor (bootstrap imports the server, the runs, execs, health, io), imported once
# here and shared by every monitor; at the top, not in the functions that serve a request: what
# the template runs between two forks copies, in the monitor forked first, the pages it writes
from lamina import errdefs
from lamina.container.monitor.api import PendingAttach
from lamina.container.monitor.bootstrap import IGNORED_SIGNALS, monitor_main, prepare_logging, rehearse, spare_helper_work
from lamina.container.monitor.launch import SpareHelper, fork_spare_helper
import lamina.container.monitor.protocol as protocol
from lamina.container.rundir import bind_unix
from lamina.records import compile_loaded_inits
from lamina.sys import set_process_name
from lamina.runtime.child import reset_signals

__all__ = ["IDLE_SECONDS", "Template", "main"]

IDLE_SECONDS = 30.0          # no monitor left and no request for that long: the template leaves
_REQUEST_TIMEOUT = 10.0      # a starter that does not finish its request
_MAX_DESCRIPTORS = 64        # the answer pipe and pending attaches of one request
#: seconds without a request after a spawn before the template forks a spare monitor (it forks
#: while no start is under way: on a small machine a fork then takes no time from a start)
SPARE_DELAY = 0.05
#: the name (``/proc/PID/comm``) of a spare monitor while it waits
SPARE_NAME = "spare-monitor"


def main(exec_root: str, key: str, builder: str, lock_fd: str = "", prepare: str = "") -> None:
    """The template process (``builder``'s module is imported now, with the monitor's);
    ``lock_fd``: the starter's lock, held until the socket listens (a start nobody waits for);
    ``prepare``: ``{"arguments": ..., "runtime": name}`` (JSON), the context and runtime the
    first request will most likely want, made before the first request is served."""
    importlib.import_module(builder.partition(":")[0])
    reset_signals(ignore=IGNORED_SIGNALS)  # the monitors' dispositions, inherited by them
    log_handler = prepare_logging()
    compile_loaded_inits()  # once here rather than in each monitor
    os.chdir("/")
    os.umask(0o022)
    path = protocol.template_socket(exec_root, key)
    # the template's own records (a context it cannot make, a spare that died) beside its socket;
    # a monitor points the handler at its own log first thing (bootstrap.monitor_main)
    log_handler.baseFilename = os.path.join(os.path.dirname(path), "template.log")
    listener = bind_unix(path, backlog=128)
    if lock_fd:
        os.close(int(lock_fd))  # the lock's last holder: a starter waiting on it connects now
    if os.fork():
        os._exit(0)  # the starter waits for this exit: the socket listens from now on
    with open(f"{path[:-len('.sock')]}.pid", "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    gc.collect()
    gc.freeze()
    template = Template(listener, path, os.path.join(os.path.dirname(path), "lock"), log_handler=log_handler)
    if prepare:
        wanted = json.loads(prepare)
        template.prepare(builder, wanted.get("arguments"), wanted.get("runtime"))
    template.serve()
    os._exit(0)


class Template:
    """The serving loop of the template process."""

    def __init__(self, listener: socket.socket, path: str, lock_path: str, *,
                 idle_seconds: float = IDLE_SECONDS, log_handler: logging.FileHandler | None = None) -> None:
        self.listener = listener
        self.log_handler = log_handler
        self.idle_seconds = idle_seconds
        self.path = path
        self.lock_path = lock_path
        self.identity = os.stat(path).st_ino
        self.contexts: dict[str, tuple[Any, Any]] = {}
        self.children: set[int] = set()
        self.leases: set[socket.socket] = set()
        self.last_request = time.monotonic()
        self.selector = selectors.DefaultSelector()
        # the spare monitor: forked ahead for the context and runtime of the last spawn
        self.spare: _Spare | None = None
        self.wanted: tuple[str, dict[str, Any], str] | None = None  # builder, arguments, runtime
        self.spare_due = float("inf")   # when to fork it (SPARE_DELAY after a spawn)
        self.sparing = True             # until a spare died unasked
        self.dismissed: set[int] = set()  # spares ended, not reaped yet

    def serve(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ)
        while True:
            wait = min(1.0, self.idle_seconds, max(0.0, self.spare_due - time.monotonic()))
            for key, _events in self.selector.select(wait):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._end_lease(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            if time.monotonic() >= self.spare_due:
                self.spare_due = float("inf")
                self._fork_spare()
            if (not self.children and not self.leases
                    and time.monotonic() - self.last_request > self.idle_seconds and self._leave()):
                self._dismiss()
                self.selector.close()
                return

    def _accept(self) -> None:
        try:
            conn, _address = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        self.last_request = time.monotonic()
        if not self._handle(conn):
            conn.close()

    def _end_lease(self, conn: socket.socket) -> None:
        """A lease's connection is readable: its holder closed it (it sends nothing else)."""
        try:
            if conn.recv(1):
                return  # a protocol error of the holder's: the lease stays until it closes
        except OSError:
            pass
        self.selector.unregister(conn)
        self.leases.discard(conn)
        conn.close()
        self.last_request = time.monotonic()

    def _reap(self) -> None:
        while self.children or self.dismissed or self.spare is not None:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self.dismissed.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            if self.spare is not None and pid == self.spare.pid:  # it died unasked: none again
                self.spare.control.close()
                self.spare = None
                self.sparing = False
                logging.getLogger("lamina.monitor").warning("the spare monitor died: none is forked ahead")
            self.dismissed.discard(pid)

    def _leave(self) -> bool:
        """Unlink the socket and serve what is queued on it; False when a starter holds the
        lock (it is about to use this template, or to start one)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the exec root was removed: nobody can reach this template
            self.listener.close()
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                if os.stat(self.path).st_ino == self.identity:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.listener.setblocking(False)
            while True:
                try:
                    conn, _address = self.listener.accept()
                except BlockingIOError:
                    break
                conn.setblocking(True)
                if not self._handle(conn):
                    conn.close()
            self.listener.close()
            return True
        finally:
            os.close(fd)

    # -- one request -----------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> bool:
        """Serve one connection's request; True when the connection was kept (a lease)."""
        conn.settimeout(_REQUEST_TIMEOUT)
        fds: list[int] = []
        try:
            request, fds = _read_request(conn)
            if request is None:
                return False  # a probe
            if request.get("lease") is True and not fds:
                conn.sendall(protocol.encode({"ok": True, "pid": os.getpid()}))
                conn.setblocking(False)
                self.selector.register(conn, selectors.EVENT_READ)
                self.leases.add(conn)
                prepare = request.get("prepare")
                if isinstance(prepare, dict):
                    self.prepare(prepare.get("builder"), prepare.get("arguments"), prepare.get("runtime"))
                return True
            pid = self._fork_monitor(request, fds)
        except Exception as exc:  # noqa: BLE001 - every failure is the starter's answer
            answer = protocol.error_answer(exc)
        else:
            self.children.add(pid)
            answer = {"ok": True, "pid": pid}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            conn.sendall(protocol.encode(answer))
        except OSError:
            pass  # the starter left; the monitor (if any) still answers on its pipe
        return False

    def _fork_monitor(self, request: dict[str, Any], fds: list[int]) -> int:
        container_id, builder, arguments = request.get("spawn"), request.get("builder"), request.get("arguments")
        hellos, runtime = request.get("pending") or [], request.get("runtime")
        if not (isinstance(container_id, str) and isinstance(builder, str) and isinstance(arguments, dict)
                and isinstance(runtime, str) and isinstance(hellos, list)) or len(fds) != 1 + len(hellos):
            raise errdefs.InvalidArgument("malformed spawn request")
        context, stores = self._context(builder, arguments)
        _open_runtime(context, runtime)
        wanted = (builder, arguments, runtime)
        self.spare_due = time.monotonic() + SPARE_DELAY
        spare = self.spare
        if spare is not None and spare.wanted == wanted:
            self.spare = None
            try:
                socket.send_fds(spare.control, [json.dumps({"spawn": container_id, "pending": hellos}).encode()], fds)
            except OSError:  # it died: reaped as a dismissed spare; a monitor is forked for this request
                self.dismissed.add(spare.pid)
            else:
                return spare.pid
            finally:
                spare.control.close()
        elif spare is not None:
            self._dismiss()  # made for another context or runtime
        self.wanted = wanted
        return self._fork(context, stores, lambda: (container_id, fds[0], hellos, fds[1:], None))

    def _fork(self, context: Any, stores: Any,
              request: Callable[[], tuple[str, int, list[Any], list[int], SpareHelper | None]]) -> int:
        """Fork a monitor of ``context`` for what ``request()`` answers in the child: the
        container's id, the answer's descriptor, the pending attaches and their descriptors, a
        helper forked ahead for its first start."""
        gc.freeze()  # what the template holds now is never collected in a monitor (O(1))
        pid = os.fork()
        if pid == 0:
            container_id, answer_fd, hellos, attach_fds, helper = request()
            pending = [PendingAttach(socket.socket(fileno=fd), dict(hello)) for fd, hello in zip(attach_fds, hellos)]
            log_handler = self.log_handler
            if log_handler is None:  # a template made by a test: the monitor logs to its own file
                log_handler = self.log_handler = prepare_logging()
            monitor_main(context, stores, container_id, answer_fd, pending, log_handler, helper)  # never returns
        return pid

    # -- the spare monitor -----------------------------------------------------------------------

    def _fork_spare(self) -> None:
        """Fork a monitor ahead of its request, for the context and runtime of the last spawn: it
        waits on a socket pair for the container's id and the request's descriptors
        (:meth:`_fork_monitor` sends them instead of forking), so a start does not wait for a
        fork of the template."""
        if self.spare is not None or self.wanted is None or not self.sparing:
            return
        builder, arguments, runtime = self.wanted
        try:
            context, stores = self._context(builder, arguments)
            control, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except Exception:  # noqa: BLE001 - no spare: the next spawn forks
            logging.getLogger("lamina.monitor").exception("cannot fork a spare monitor")
            self.sparing = False
            return
        closed = [control.fileno(), self.listener.fileno(), self.selector.fileno(),
                  *(lease.fileno() for lease in self.leases)]
        try:
            pid = self._fork(context, stores, lambda: _wait_as_spare(spare_end, closed, context, stores))
        except OSError:
            control.close()
            spare_end.close()
            self.sparing = False
            return
        spare_end.close()
        self.spare = _Spare(pid, control, self.wanted)

    def _dismiss(self) -> None:
        """End the spare (it reads the end of its socket pair and exits)."""
        if self.spare is not None:
            self.dismissed.add(self.spare.pid)
            self.spare.control.close()
            self.spare = None

    def prepare(self, builder: Any, arguments: Any, runtime: Any) -> None:
        """Make the context of a recipe and open a runtime in it ahead of the first request
        that needs them (what cannot be made is logged: that request will say why)."""
        if not (isinstance(builder, str) and isinstance(arguments, dict) and isinstance(runtime, str)):
            return
        try:
            context, _stores = self._context(builder, arguments)
            _open_runtime(context, runtime)
        except Exception:  # noqa: BLE001 - the spawn request that needs them reports it
            logging.getLogger("lamina.monitor").exception("cannot prepare the monitors' context")
            return
        if self.wanted is None:
            self.wanted = (builder, arguments, runtime)  # a spare for the first spawn
            self.spare_due = time.monotonic() + SPARE_DELAY

    def _context(self, builder: str, arguments: dict[str, Any]) -> tuple[Any, Any]:
        """The context of a recipe and its stores, made once (this process has one thread:
        nothing is locked at a fork, and the stores hold no descriptors)."""
        key = json.dumps([builder, arguments], sort_keys=True)
        made = self.contexts.get(key)
        if made is None:
            module, _, function = builder.partition(":")
            context = getattr(importlib.import_module(module), function)(arguments)
            made = self.contexts[key] = (context, context.stores())
            compile_loaded_inits()  # those the builder's modules brought
            try:
                rehearse(*made)
            except Exception:  # noqa: BLE001 - a rehearsal only saves memory: the monitors run without it
                logging.getLogger("lamina.monitor").exception("cannot rehearse the monitors' first steps")
            gc.collect()  # once per context: its garbage is not frozen into every monitor
        return made


def _open_runtime(context: Any, name: str) -> None:
    """Open the runtime ``name`` in ``context`` and load what its starts share, once: the
    monitors forked from here find both done.  What cannot be loaded is logged (each start
    then tries again, and says why it fails)."""
    runtime = context.runtime(name)
    try:
        runtime.prepare()
    except Exception:  # noqa: BLE001 - see above
        logging.getLogger("lamina.monitor").exception("cannot prepare the %s runtime", name)


class _Spare:
    __slots__ = ("pid", "control", "wanted")

    def __init__(self, pid: int, control: socket.socket, wanted: tuple[str, dict[str, Any], str]) -> None:
        self.pid = pid
        self.control = control
        self.wanted = wanted


def _wait_as_spare(control: socket.socket, closed: list[int], context: Any,
                   stores: Any) -> tuple[str, int, list[Any], list[int], SpareHelper | None]:
    """In a spare monitor: close the template's descriptors ``closed`` (never unregistering
    them: the selector's set is the template's too), fork the helper of the first start ahead
    (:func:`~lamina.container.monitor.launch.fork_spare_helper`), wait for a request on
    ``control``; what :meth:`Template._fork` needs of it.  Exits when ``control`` ends first
    (the template left, or died; the helper then ends with it)."""
    try:
        for fd in closed:
            os.close(fd)
        helper = fork_spare_helper(spare_helper_work(context, stores), [control.fileno()])
        name = set_process_name(SPARE_NAME)
        message, fds, _flags, _address = socket.recv_fds(control, 1 << 20, _MAX_DESCRIPTORS)
        control.close()
        if not fds:
            os._exit(0)  # dismissed
        for fd in fds:
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        set_process_name(name)
        request = json.loads(message)
        return str(request["spawn"]), fds[0], list(request["pending"]), fds[1:], helper
    except BaseException:  # noqa: BLE001 - nothing to start: it goes as it came
        os._exit(0)


def _read_request(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The request line and the descriptors sent with it; None for a connection closed
    without sending anything (a probe)."""
    data = bytearray()
    fds: list[int] = []
    try:
        while not data.endswith(b"\n"):
            chunk, received, _flags, _address = socket.recv_fds(conn, 1 << 16, _MAX_DESCRIPTORS)
            for fd in received:
                fds.append(fd)
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                break
        if not data and not fds:
            return None, fds
        return protocol.decode_request(bytes(data)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


if __name__ == "__main__":  # pragma: no cover - started by lamina.container.monitor.client
    main(*sys.argv[1:6])
