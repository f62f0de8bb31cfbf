"""The engine cache: a warm engine that in-process read commands hand over to, kept for five idle minutes.

An in-process ``lamina ps`` spends ~20 ms loading ``argparse``, ``json``, ``re`` and the
stores before it reads anything; a running ``lamina serve`` answers the same command in ~1 ms
(:mod:`lamina.cli.front` hands it over).  Without a daemon, the engine cache is what keeps that
work across invocations: after a read-only command (:data:`lamina.cli.front.FORWARDED`) ran
in-process with the default engine, the front starts a cache (:func:`start`) that
loads the command code, builds the engine of that command's data root and exec root, and then
runs the next such commands exactly as ``lamina serve`` runs a forwarded one
(:class:`lamina.cli.forwarded.CommandHandler`: the same parser and command code, the same
exchange, the same refusals).  It serves nothing else (404): it is not a daemon to talk to.
Every other command of the front's goes to the cache's **fork server**
(:mod:`lamina.cli.forkserver`), a child the cache forks once warm, before its own threads
start: it forks a worker per command that takes the caller's descriptors, working directory
and environment and runs the command as an in-process one, with the modules the cache loaded
(the commands, the client, the API, the services: :data:`_FORKED_PACKAGES`) and nothing of
its engine.  When neither served anything for :data:`IDLE_SECONDS` (a shared clock), both leave.
While it lives, the cache holds a lease on the monitor template of its exec root, as ``lamina
serve`` does (:class:`lamina.server.server.TemplateKeeper`), once a ``run`` started one (a
cache started by reads starts none): the template, which leaves after its own 30 idle seconds
otherwise, stays, so a later ``run`` through the fork server never waits for its start again
(~140 ms here); it leaves once idle after the cache.

Which commands reach it, decided by the front: those a default-socket ``lamina serve`` would be
given (no global option, no engine environment variable, not ``LAMINA_FORWARD=0``),
when no such daemon took them.  A cache serves one identity (:func:`lamina.cli.front.cache_socket`:
the interpreter, the code tree, the data root, the exec root, ``TZ``, the mount, network,
pid and user namespaces of its starter, its uid and, unprivileged, its cgroups), so a command
from another tree, engine, time zone, namespace or user never reaches it: that command finds
another socket, or none.

An unprivileged user's cache (rootless lamina, :mod:`lamina.rootless`) lives under the
user's exec root (``$XDG_RUNTIME_DIR/lamina``), started at the exit of an in-process command
that joined the user's namespaces (a command that did not join them starts none), so it and
its workers run inside them, as uid 0 there (the user outside), with
``_LAMINA_ROOTLESS_UID`` set for the user's engine (a worker keeps it over the caller's
environment).  Before each command (:func:`_rootless_check`) it does what an in-process
command's joining does: it checks that the namespaces are still the user's pause process's
(once that process was replaced, the command is refused, the front runs it in-process, in the
new namespaces, and the cache leaves), and in a delegated cgroup it enables the controllers
offered since and sweeps the leaves of dead containers (:func:`lamina.runtime.delegation.start_up`).

On disk, under the exec root (``<exec-root>/engine-cache/``, mode 0700)::

    <key>.sock        the socket (mode 0600); present while the cache serves
    <key>.lock        held by the cache (flock) from its start to its exit: one cache per key
    <key>.pid         its pid, for the operator (nothing reads it to decide anything)
    <key>.sock.lock   the listener's own lock (as ``lamina serve``'s sockets have)
    <key>.fork.sock   the fork server's socket (mode 0600); present while it serves
    <key>.fork.pid    its pid, for the operator
    cache.log         what went wrong in a cache or its fork server (warnings and errors only)

Commit point: the socket's ``listen``, once the commands' code is loaded and the engine built;
before it, a front finds nothing and runs in-process (a second cache started meanwhile finds
the lock held and exits).  The fork server's commit point is its own socket's ``listen``, just
before it is forked; it holds the same lock (inherited) until it exits, so no second cache
starts while it serves, and it leaves when the cache does (told with ``SIGTERM``, or by
``PR_SET_PDEATHSIG`` when the cache was killed).
Leaving: the socket is unlinked first (a front that arrives then runs its command
in-process), the commands in progress finish, then the process exits.  Stale state cannot
mislead a command: a read takes the same locks and records as in-process, and the engine
reads the stores' changes made by other processes (the model ``lamina serve`` already lives
by).  What a daemon may do and the cache does not: answer for a data root that is no longer
the directory its engine was built on (removed, or removed and made again: the cache holds it
open and compares it with the path at each command), or answer a command during which the engine failed a request (a
5xx: a part of the data root replaced under the warm engine): such a command gets a 503, the
front runs it in-process, as it would have run without a cache, and the cache leaves, so the
next one builds a fresh engine (the fork server's workers build theirs at each command, as
in-process).  What a cache cannot see, it does not take: a command line with a global
option, an engine variable.
``LAMINA_FORWARD=0`` turns both the cache and the forwarding off.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from lamina.api.http import Request, Response
    from lamina.api.router import Router
    from lamina.config import EngineConfig
    from lamina.server.api import Handler
    from lamina.cli.forkserver import ActivityClock
    from lamina.server.server import Server

__all__ = ["IDLE_SECONDS", "start", "main"]

#: seconds a cache waits for its next command before it leaves: the pauses of an interactive
#: session (after 60 s, a ``run`` took ~320 ms cold against ~70 warm, a read ~60 ms against ~14),
#: for ~50 MiB (PSS) of cache, fork server, spare worker and the monitor template it holds
IDLE_SECONDS = 300.0
_LOG_LIMIT = 1 << 20
_PROGRAM = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from lamina.cli.enginecache import main; main(*sys.argv[2:])")


def start(socket_path: str, environ: Mapping[str, str], *, idle_seconds: float = IDLE_SECONDS) -> int | None:
    """Start a cache for ``socket_path`` in the background (its own session, stdio on
    ``/dev/null``, the environment ``environ``); its pid, or None when it could not be
    started.  Nothing is waited for: a cache that finds another one serving leaves at once."""
    arguments = [sys.executable, "-I", "-S", "-c", _PROGRAM, json.dumps(sys.path), socket_path, str(idle_seconds)]
    try:
        return os.posix_spawn(sys.executable, arguments, dict(environ), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)])
    except OSError:
        return None  # the command ran; the next one runs in-process too


class _CacheHandler:
    """Forwarded commands to ``handler``, everything else 404; counts what is in progress (the
    cache leaves when idle).  A data root that is no longer the directory the engine was built
    on (removed, or removed and made again) gets no answer: 503, and the cache leaves.  The
    directory is held open (``O_PATH``), so its inode cannot be freed and given, number and
    all, to a directory made again at its path."""

    def __init__(self, handler: Handler, data_root: str, clock: ActivityClock,
                 current: Callable[[], bool] | None = None) -> None:
        import threading

        self.handler = handler
        self.clock = clock
        self.data_root = data_root
        #: a rootless cache's check that its namespaces are still the user's (see _serve)
        self.current = current
        try:
            self.built_on: int | None = os.open(data_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.built_on = None
        #: set when the engine failed a command (the handler answered 503): the cache leaves
        self.failed = threading.Event()
        self.lock = threading.Lock()
        self.running = 0

    def _same_data_root(self) -> bool:
        if self.built_on is None:
            return False
        held = os.fstat(self.built_on)
        try:
            found = os.stat(self.data_root)
        except OSError:
            return False
        return held.st_nlink > 0 and (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)

    def handle(self, request: Request) -> Response:
        from lamina.api.streams import json_response
        from lamina.cli.front import COMMAND_PATH

        if request.path != COMMAND_PATH:
            return json_response({"message": "the engine cache runs lamina's read-only commands only"}, 404)
        if not self._same_data_root():
            self.failed.set()
            return json_response({"message": f"{self.data_root} is not the directory this engine was built on"}, 503)
        if self.current is not None and not self.current():
            self.failed.set()
            return json_response({"message": "the user's rootless namespaces are no longer this engine's"}, 503)
        with self.lock:
            self.running += 1
        try:
            response = self.handler.handle(request)
            if response.status == 503:
                self.failed.set()  # a stale engine, perhaps: the next cache builds a fresh one
            return response
        finally:
            with self.lock:
                self.running -= 1
                self.clock.stamp(self.clock.CACHE)

    def idle_for(self) -> float:
        """Seconds since the cache or its fork server (each stamps the shared clock) last served."""
        with self.lock:
            return 0.0 if self.running else self.clock.idle_for()


def main(socket_path: str, idle_seconds: str = str(IDLE_SECONDS)) -> None:
    """The cache process (started by :func:`start`): serve ``socket_path`` until idle."""
    import logging

    directory = os.path.dirname(socket_path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    os.chdir("/")
    os.umask(0o077)
    log_path = os.path.join(directory, "cache.log")
    try:
        if os.path.getsize(log_path) > _LOG_LIMIT:
            os.truncate(log_path, 0)
    except OSError:
        pass
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("lamina")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    try:
        _serve(socket_path, float(idle_seconds))
    except Exception:
        logger.exception("the engine cache at %s failed", socket_path)
    os._exit(0)


def _serve(socket_path: str, idle_seconds: float) -> None:
    import fcntl
    import signal
    import threading

    from lamina.cli.forkserver import ActivityClock
    from lamina.cli.forwarded import CommandHandler
    from lamina.client.transport import InProcessTransport
    from lamina.config import EngineConfig
    from lamina.server.server import Server, ServerConfig, TemplateKeeper

    lock_fd = os.open(socket_path[:-len(".sock")] + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another cache serves there, or starts
    pid_path = socket_path[:-len(".sock")] + ".pid"
    with open(pid_path, "w", encoding="ascii") as pid_file:
        pid_file.write(f"{os.getpid()}\n")
    stopping: list[object] = []
    signal.signal(signal.SIGTERM, lambda number, frame: stopping.append(number))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server = None
    fork_server = None
    keeper = None
    leaving = threading.Event()
    try:
        config = EngineConfig.from_environment()
        router = InProcessTransport(config).router  # the engine an in-process command builds
        _warm(router, config)  # before the socket listens: no client waits for it
        clock = ActivityClock()
        current = _rootless_check(config)
        if not stopping:  # forked now: no thread of this process runs yet
            fork_server = _start_fork_server(socket_path, clock, idle_seconds, lock_fd, current)
        # built now, on the data root as it is after the warm-up (which makes it if need be)
        handler = _CacheHandler(CommandHandler(router, config, refuse_internal_errors=True), config.data_root, clock,
                                current)
        server = Server(handler, ServerConfig(hosts=(f"unix://{socket_path}",), socket_mode=0o600, socket_group=None,
                                           header_timeout=10.0, idle_timeout=10.0))
        signal.signal(signal.SIGTERM, lambda number, frame: server.shutdown("SIGTERM"))  # type: ignore[union-attr]
        if stopping:
            return
        server.listen()
        watcher = threading.Thread(target=_leave_when_idle, args=(server, handler, idle_seconds, fork_server),
                                   name="lamina-engine-cache-idle", daemon=True)
        watcher.start()
        # the monitor template, held as lamina serve holds it once a run started it: a run
        # never pays for its start again (~140 ms) while the cache lives; a thread, so only
        # after the fork server's fork
        keeper = TemplateKeeper(router, leaving, start=False)
        server.serve_forever()
    finally:
        leaving.set()
        if keeper is not None:
            keeper.stop()  # the template leaves once idle, as after a lamina serve
        if server is not None:
            server.close()
        if fork_server is not None:
            try:
                os.kill(fork_server, signal.SIGTERM)  # it unlinks its socket, waits for its workers, exits
            except ProcessLookupError:
                pass  # reaped: it exited
        os.unlink(pid_path)  # before the lock is released with the process (and the fork server's)


def _rootless_check(config: EngineConfig) -> Callable[[], bool] | None:
    """For a rootless engine (the cache was started inside the user's namespaces by a command
    that joined them), what the cache and its fork server do before each command, in place
    of the in-process command's joining (:func:`lamina.cli.main._enter_rootless`): whether the
    namespaces are still those of the user's pause process (once it was replaced, a command
    that runs here would not see what a command joining the new ones sees, their mounts: the
    cache refuses it, the front runs it in-process, and the cache leaves); then, in a delegated
    cgroup, the start-up's controllers and sweep (:func:`lamina.runtime.delegation.start_up`)."""
    if config.rootless_uid is None:
        return None
    exec_root = config.exec_root

    def current() -> bool:
        from lamina.rootless import joined
        from lamina.runtime.delegation import start_up

        if not joined(exec_root):
            return False
        start_up(exec_root)
        return True

    return current


def _start_fork_server(socket_path: str, clock: ActivityClock, idle_seconds: float, lock_fd: int,
                       current: Callable[[], bool] | None = None) -> int | None:
    """Fork the fork server (:mod:`lamina.cli.forkserver`) listening beside ``socket_path``;
    its pid, or None (a thread runs here, so no fork is safe)."""
    import logging
    import socket

    from lamina.cli import forkserver
    from lamina.cli.front import fork_socket

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() != 1:
        logging.getLogger("lamina.enginecache").warning("no fork server: a thread runs in the engine cache")
        return None
    path = fork_socket(socket_path)  # it fits a unix address: cache_socket made sure
    try:
        os.unlink(path)  # a fork server that was killed left it; the key's lock is ours
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    parent = os.getpid()
    pid_path = path[:-len(".sock")] + ".pid"
    pid = os.fork()
    if pid == 0:
        try:
            forkserver.serve(listener, path, clock, idle_seconds, parent, close_in_worker=[lock_fd], current=current)
            os.unlink(pid_path)
        except BaseException:  # noqa: BLE001 - logged; the cache's clients run in-process
            logging.getLogger("lamina.enginecache").exception("the fork server at %s failed", path)
        finally:
            os._exit(0)
    listener.close()
    from lamina import fsutil

    # written whole (a reader never finds it empty), before the cache's own socket listens
    fsutil.atomic_replace(pid_path, f"{pid}\n", 0o600)
    return pid


#: command lines run once at start, their output dropped: what the commonest reads load on
#: first use (their API routes, the image and container services) is loaded before a client
#: waits; the other forwarded commands' modules are imported (their services, such as the
#: network and volume stores, are built when a command first needs them, as in-process)
_WARM_UP = (("ps", "-a"), ("images",), ("inspect", "--type", "container", "lamina-engine-cache-warm-up"))


def _warm(router: Router, config: EngineConfig) -> None:
    import importlib
    import io

    from lamina.cli.context import Context, GlobalOptions
    from lamina.cli.main import run_command
    from lamina.client.transport import InProcessTransport

    for module in _forked_modules():  # every command's (the forwarded reads' too) and what workers load
        importlib.import_module(module)
    from lamina.image import reference, rfc3339

    # expressions compiled on their first use, which a create makes (an image name, a time)
    reference.parse("lamina-engine-cache-warm-up")
    rfc3339.parse_time("2013-06-13T00:00:00Z")
    transport = InProcessTransport(config, router=router)
    for words in _WARM_UP:
        context = Context(GlobalOptions(), stdin=io.StringIO(""), stdout=io.StringIO(), stderr=io.StringIO(),
                          transport=transport)
        run_command(list(words), context, in_daemon=True)


#: the packages whose every module a worker of the fork server finds loaded: the commands,
#: the client, the API and the services (what ``run``, ``create``, ``rm`` load beyond a read)
_FORKED_PACKAGES = ("lamina.cli", "lamina.client", "lamina.api", "lamina.services")
_FORKED_MODULES = ("lamina.container.monitor.client", "lamina.container.monitor.api", "lamina.graphdriver.overlay2_init",
                   "lamina.runtime.delegation", "queue", "heapq")


def _forked_modules() -> list[str]:
    import importlib
    import pkgutil

    names = []
    for package in _FORKED_PACKAGES:
        names += [found.name for found in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")]
    return [*names, *_FORKED_MODULES]


def _leave_when_idle(server: Server, handler: _CacheHandler, seconds: float, fork_server: int | None) -> None:
    """Shut ``server`` down once idle for ``seconds``, at once when its engine failed, or when
    its fork server is gone (the next command then starts a whole new cache)."""
    import logging

    while (waited := handler.idle_for()) < seconds:
        if handler.failed.wait(max(0.05, min(1.0, seconds - waited))):
            logging.getLogger("lamina.enginecache").warning(
                "the engine failed a command, or its data root changed under it: leaving")
            server.shutdown("a stale engine")
            return
        if fork_server is not None and os.waitpid(fork_server, os.WNOHANG)[0] == fork_server:
            logging.getLogger("lamina.enginecache").warning("the fork server exited: leaving")
            server.shutdown("no fork server")
            return
    server.shutdown("idle")
