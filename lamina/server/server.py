"""The ``lamina serve`` daemon: listeners, one thread per connection, signals, shutdown.

:class:`Server` accepts on every listener in one loop (``selectors``, woken through a pipe)
and serves each connection in its own thread (:class:`lamina.server.connection.HTTPConnection`);
all connections share one handler, the router, whose services are built once at start and
are safe to share (the stores serialise writers with file locks, across processes too).

Shutdown (:meth:`Server.shutdown`, called by SIGTERM/SIGINT through :func:`serve`):

1. stop accepting and remove the socket files (new clients get "no such file" at once
   instead of hanging);
2. close idle keep-alive connections; let requests in progress finish, including streaming
   and hijacked ones, for up to ``shutdown_timeout`` seconds;
3. cut what is left: streams end without their final chunk, splices stop without forwarding
   a half-close (a running container's stdin stays open);
4. return; :func:`serve` returns 0.

Abuse: at most ``max_connections`` connections are served at once.  When that many are open,
a new client takes the place of the connection that has waited longest for a request head
(idle keep-alive, half-open, or sending its head slowly), which is closed; only when every
connection is serving a request is the new one answered ``503`` and closed at once, without a
thread.  A connection waiting longer than ``idle_timeout`` for its next request, or longer than
``header_timeout`` for the rest of a request head it began, is closed.  So slow or half-open
clients, however many, neither hold threads for ever nor keep a normal client out.

A second signal during step 2 cuts at once.  Running containers are not touched: each has its
own monitor process.  The restart supervisor (below) is not waited for beyond
:data:`SUPERVISOR_JOIN_TIMEOUT`: it starts no new round once stopping, and a round in progress
(which may wait for the host-wide network lock) is cut by the process's exit like a crash at
that point, which every store recovers from; the next ``serve`` or ``system boot`` redoes it.

While it serves, a thread keeps the container monitors' template
(:mod:`lamina.container.monitor.template`) warm: it starts one at start-up, off the start-up
path, and holds a lease on it (a connection the template counts as a request in progress), so
no ``run`` pays for a template's start; when the template dies it starts the next one (after
:data:`TEMPLATE_RETRY_SECONDS`); the lease ends with the server (even a killed one: the kernel
closes the connection), and the template leaves once idle as usual.

A supervisor thread also does what dockerd does when a container's shim dies:
every ``restart_interval`` seconds it records the runs whose monitor died and restarts the
containers whose restart policy (``always``, ``unless-stopped``, ``on-failure``) says so
(:meth:`ContainerLifecycle.boot`, the same step as ``lamina system boot``).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina.config import DEFAULT_HOST, EngineConfig
from lamina.log import get_logger
from lamina.records import dataclass
from lamina.server.api import Handler, TemplateLease
from lamina.server.connection import HTTPConnection
from lamina.server.listener import (
    DEFAULT_GROUP,
    UnixListener,
    open_unix_listener,
    socket_path_from_host,
)

if TYPE_CHECKING:
    from lamina.api.router import Router
    from lamina.services.api import Services

__all__ = ["Server", "ServerConfig", "TemplateKeeper", "serve", "SUPERVISOR_JOIN_TIMEOUT"]

logger = get_logger("lamina.server")

SUPERVISOR_JOIN_TIMEOUT = 1.0   # seconds shutdown waits for a restart round in progress
TEMPLATE_RETRY_SECONDS = 1.0    # after the monitor template went away, before the next one starts


@dataclass(frozen=True)
class ServerConfig:
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    socket_mode: int = 0o660
    socket_group: str | None = DEFAULT_GROUP    # used when the group exists, else root's group
    shutdown_timeout: float = 10.0              # for requests in progress at shutdown
    hijack_linger: float = 5.0                  # after a duplex ended, for the client to end too
    restart_interval: float = 1.0               # between looks for restartable containers whose monitor died
    max_connections: int = 512                  # connections served at once (see "Abuse" above)
    header_timeout: float | None = 60.0         # from a request's first byte to the end of its head
    idle_timeout: float | None = 300.0          # a keep-alive connection waiting for its next request


class Server:
    def __init__(self, handler: Handler, config: ServerConfig) -> None:
        self.handler = handler
        self.config = config
        self.paths = [socket_path_from_host(host) for host in config.hosts]
        if not self.paths:
            raise errdefs.InvalidArgument("lamina serve needs at least one socket to listen on")
        if len(set(self.paths)) != len(self.paths):
            raise errdefs.InvalidArgument("the same socket is given twice")
        self._listeners: list[UnixListener] = []
        self._connections: set[HTTPConnection] = set()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._cut_now = threading.Event()
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._counter = 0
        self.stop_reason = ""

    def close(self) -> None:
        """Close the listeners of a server that will not serve (after :meth:`listen`)."""
        self._close_listeners()
        self._release_pipe()

    def _release_pipe(self) -> None:
        if self._wake_write >= 0:
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = -1

    def listen(self) -> None:
        """Open every listener, or none (raises what the first failure raised)."""
        try:
            for path in self.paths:
                self._listeners.append(open_unix_listener(path, mode=self.config.socket_mode,
                                                          group=self.config.socket_group))
        except BaseException:
            self._close_listeners()
            raise

    @property
    def connection_count(self) -> int:
        with self._changed:
            return len(self._connections)

    @property
    def busy_count(self) -> int:
        """Open connections, less those abandoned by their client mid-stream."""
        with self._changed:
            return len(self._busy_connections())

    def shutdown(self, reason: str = "shutdown requested") -> None:
        """Ask the server to stop (thread- and signal-safe); a second call cuts at once."""
        if self._stopping.is_set():
            self._cut_now.set()
        else:
            self.stop_reason = reason
        self._stopping.set()
        try:
            if self._wake_write >= 0:
                os.write(self._wake_write, b"x")
        except OSError:
            pass  # the pipe is full (already woken)

    def serve_forever(self) -> None:
        """Accept and serve until :meth:`shutdown`; then finish and cut connections."""
        if not self._listeners:
            self.listen()
        selector = selectors.DefaultSelector()
        try:
            for listener in self._listeners:
                listener.socket.setblocking(False)
                selector.register(listener.socket, selectors.EVENT_READ, listener)
            selector.register(self._wake_read, selectors.EVENT_READ, None)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data is None:
                        self._drain_wake_pipe()
                        continue
                    self._accept(key.data)
        finally:
            selector.close()
            logger.info("stopping (%s): no longer accepting connections", self.stop_reason or "error")
            self._close_listeners()
            self._finish_connections()
            self._release_pipe()

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _accept(self, listener: UnixListener) -> None:
        try:
            sock, _ = listener.socket.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: keep serving the connections we have
            logger.error("accept on %s failed: %s", listener.path, exc.strerror or exc)
            time.sleep(0.1)
            return
        if not self._make_room():
            _refuse(sock, f"the server has {self.config.max_connections} connections open, all of them "
                          "serving requests; try again later")
            return
        sock.setblocking(True)
        connection = HTTPConnection(sock, self.handler, linger=self.config.hijack_linger,
                                    header_timeout=self.config.header_timeout, idle_timeout=self.config.idle_timeout)
        with self._changed:
            self._connections.add(connection)
            self._counter += 1
            number = self._counter
        thread = threading.Thread(target=self._run_connection, args=(connection,),
                                  name=f"lamina-connection-{number}", daemon=True)
        thread.start()

    def _make_room(self) -> bool:
        """Whether a new connection may be served: below the bound, or once the connection
        that has waited longest for a request head (a slow, idle or half-open client) was
        evicted for it.  Evicted connections leave as their threads notice; until then they
        are not counted."""
        with self._changed:
            live = [connection for connection in self._connections if not connection.evicted]
            if len(live) < self.config.max_connections:
                return True
            waiting = sorted((connection for connection in live if connection.waiting_since is not None),
                             key=lambda connection: connection.waiting_since or 0.0)
        return any(connection.evict() for connection in waiting)

    def _run_connection(self, connection: HTTPConnection) -> None:
        try:
            connection.serve()
        finally:
            with self._changed:
                self._connections.discard(connection)
                self._changed.notify_all()

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            try:
                listener.close()
            except OSError as exc:
                logger.warning("closing %s: %s", listener.path, exc.strerror or exc)
        self._listeners = []

    def _wait_connections(self, deadline: float) -> bool:
        """Wait until no connection is left, ``deadline`` passes or a cut is asked; True if none left."""
        with self._changed:
            while self._busy_connections() and not self._cut_now.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))
            return not self._busy_connections()

    def _busy_connections(self) -> list[HTTPConnection]:
        """Connections still worth waiting for: not those whose client hung up while their
        producer waits for data that may never come (their threads end with the process)."""
        return [connection for connection in self._connections if not connection.abandoned]

    def _finish_connections(self) -> None:
        with self._changed:
            connections = list(self._connections)
        for connection in connections:
            connection.drain()
        with self._changed:
            busy = len(self._busy_connections())
        if busy:
            logger.info("waiting up to %.0f s for %d connection(s) to finish", self.config.shutdown_timeout, busy)
        if not self._wait_connections(time.monotonic() + self.config.shutdown_timeout):
            with self._changed:
                connections = self._busy_connections()
            logger.warning("cutting %d connection(s) still in progress", len(connections))
            for connection in connections:
                connection.cut()
            self._wait_connections(time.monotonic() + 2.0)
        left = self.connection_count
        if left:
            # Producers blocked waiting for data that may never come (a wait on a container
            # that keeps running, a quiet log): their daemon threads end with the process.
            logger.info("leaving %d abandoned stream(s) to end with the process", left)


def serve(engine_config: EngineConfig, config: ServerConfig, *,
          services_factory: Callable[[], Services] | None = None,
          handler: Callable[[Router], Handler] | None = None) -> int:
    """Run ``lamina serve`` in this (main) thread until SIGTERM or SIGINT; returns 0.

    The sockets are opened first (a live daemon on one of them is refused before anything
    else happens), then the services are built, once, and shared by every connection.
    ``handler`` makes the connections' handler from the router (default: the router itself;
    ``lamina serve`` adds the commands it runs for its clients, :mod:`lamina.cli.forwarded`)."""
    from lamina.api.router import Router

    if services_factory is None:
        def services_factory() -> Services:
            from lamina.services.compose import build_services

            return build_services(engine_config)

    router = Router(services_factory)
    server = Server(router if handler is None else handler(router), config)
    previous: dict[int, object] = {}

    def on_signal(number: int, frame: object) -> None:
        server.shutdown(f"received {signal.Signals(number).name}")

    # Handlers first: a signal while the services are built still stops cleanly.
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, on_signal)
    try:
        server.listen()
        try:
            router.services()
        except BaseException:
            server.close()
            raise
        logger.info("serving the Docker Engine API on %s (data root %s)",
                    ", ".join(f"unix://{path}" for path in server.paths), engine_config.data_root)
        stop = threading.Event()
        supervisor = threading.Thread(target=_supervise, args=(router, config.restart_interval, stop),
                                      name="lamina-restart-supervisor", daemon=True)
        supervisor.start()
        keeper = TemplateKeeper(router, stop)
        try:
            server.serve_forever()
        finally:
            stop.set()
            keeper.stop()
            supervisor.join(SUPERVISOR_JOIN_TIMEOUT)
            if supervisor.is_alive():
                logger.info("leaving a restart round in progress to end with the process")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
    logger.info("stopped")
    return 0


def _refuse(sock: socket.socket, message: str) -> None:
    """Answer 503 without reading the request (never blocking the accept loop), then close."""
    body = json.dumps({"message": message}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.setblocking(False)
        sock.send(head + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()
    logger.warning("refused a connection: %s", message)


class TemplateKeeper:
    """The thread that keeps the monitor template up while the server lives (see the module
    docstring), or the engine cache (:mod:`lamina.cli.enginecache`): until ``stop`` is set
    and :meth:`stop` called.  ``start``: start a template when none listens (the server); else
    (the engine cache) take a lease on one once a ``run`` started it, looking every
    :data:`TEMPLATE_RETRY_SECONDS`, so that a cache started by a read starts no template."""

    def __init__(self, router: Router, stop: threading.Event, *, start: bool = True) -> None:
        self.router = router
        self.stop_event = stop
        self.start = start
        self.lock = threading.Lock()
        self.lease: TemplateLease | None = None
        self.thread = threading.Thread(target=self._run, name="lamina-monitor-template", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        lease_of = getattr(self.router.services().containers, "monitor_template_lease", None)
        if lease_of is None:
            return  # an engine without monitors (a test double)
        while not self.stop_event.is_set():
            try:
                lease = lease_of(start=self.start)
            except errdefs.LaminaError as exc:
                if self.start or not isinstance(exc, errdefs.NotFound):  # the cache's: none yet
                    logger.warning("cannot start the monitor template: %s", exc)
                self.stop_event.wait(TEMPLATE_RETRY_SECONDS)
                continue
            with lease:
                with self.lock:
                    self.lease = lease
                if not self.stop_event.is_set():
                    lease.wait()
                with self.lock:
                    self.lease = None
            if not self.stop_event.is_set():
                logger.info("the monitor template (pid %d) went away%s", lease.pid,
                            "; starting the next one" if self.start else "")
            self.stop_event.wait(TEMPLATE_RETRY_SECONDS)

    def stop(self) -> None:
        """End the lease (``stop`` is set: no next one); the template leaves once idle."""
        with self.lock:
            if self.lease is not None:
                self.lease.close()
        self.thread.join(SUPERVISOR_JOIN_TIMEOUT)


def _supervise(router: Router, interval: float, stop: threading.Event) -> None:
    """Restart containers whose monitor died, as their restart policy says, until ``stop``."""
    boot = getattr(router.services().containers, "boot", None)
    if boot is None:
        return  # an engine that cannot restart containers (a test double)
    while not stop.wait(interval):
        try:
            report = boot(dead_monitors_only=True)
        except errdefs.LaminaError as exc:
            logger.warning("restarting containers whose monitor died: %s", exc)
            continue
        for container_id in report.get("Restarted", ()):
            logger.info("restarted container %s after its monitor died", container_id)
        for failure in report.get("Failed", ()):
            logger.warning("cannot restart container %s: %s", failure.get("Id"), failure.get("Error"))
