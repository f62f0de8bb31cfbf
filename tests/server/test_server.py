"""Server in a thread: accepting on several sockets, shutdown that closes idle connections at
once, lets requests finish, does not wait for streams whose client hung up, cuts what is left
after the timeout, and a second shutdown request that cuts at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from lamina import errdefs
from lamina.api.http import Headers, Request, Response
from lamina.server.server import Server, ServerConfig
from server.conftest import REPOSITORY, RawConnection


class Handler:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.streaming = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path == "/stream":
            def chunks() -> Iterator[bytes]:
                yield b"first"
                self.streaming.set()
                self.release.wait(30)
                yield b"second"

            return Response(200, Headers({"Content-Type": "application/json"}), chunks())
        return Response(200, Headers({"Content-Type": "text/plain"}), b"OK")


class Running:
    def __init__(self, socket_dir: str, shutdown_timeout: float) -> None:
        self.paths = [os.path.join(socket_dir, "a.sock"), os.path.join(socket_dir, "b.sock")]
        self.handler = Handler()
        self.server = Server(self.handler, ServerConfig(hosts=tuple(f"unix://{p}" for p in self.paths),
                                                        socket_group=None, shutdown_timeout=shutdown_timeout))
        self.server.listen()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10) -> float:
        started = time.monotonic()
        self.server.shutdown("test")
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return time.monotonic() - started


@pytest.fixture
def running(socket_dir) -> Iterator:
    created: list[Running] = []

    def start(shutdown_timeout: float = 5.0) -> Running:
        created.append(Running(socket_dir, shutdown_timeout))
        return created[-1]

    yield start
    for instance in created:
        instance.handler.release.set()
        if instance.thread.is_alive():
            instance.stop()


def test_both_sockets_answer_and_shutdown_removes_them(running) -> None:
    instance = running()
    idle = []
    for path in instance.paths:
        connection = RawConnection.connect(path)
        connection.request("GET", "/_ping")
        assert connection.read_response().body == b"OK"
        idle.append(connection)
    assert instance.stop() < 1.0, "idle keep-alive connections are closed at once"
    assert not any(os.path.exists(path) for path in instance.paths)
    assert all(connection.at_eof() for connection in idle)


def test_shutdown_lets_a_request_in_progress_finish(running) -> None:
    instance = running()
    connection = RawConnection.connect(instance.paths[0])
    connection.request("GET", "/stream")
    assert instance.handler.streaming.wait(5)
    stopper = threading.Thread(target=instance.stop)
    stopper.start()
    time.sleep(0.3)
    assert instance.thread.is_alive()
    instance.handler.release.set()
    response = connection.read_response()
    assert (response.body, response.complete, response.header("transfer-encoding")) == (b"firstsecond", True, "chunked")
    stopper.join(10)
    assert not instance.thread.is_alive()


def test_shutdown_cuts_what_outlives_the_timeout_and_a_second_request_cuts_at_once(running) -> None:
    instance = running(shutdown_timeout=60)
    connection = RawConnection.connect(instance.paths[0])
    connection.request("GET", "/stream")
    assert instance.handler.streaming.wait(5)
    instance.server.shutdown("first")
    time.sleep(0.3)
    assert instance.thread.is_alive()   # waiting for the stream
    started = time.monotonic()
    instance.server.shutdown("second")  # like a second Ctrl-C
    instance.thread.join(10)
    assert not instance.thread.is_alive()
    assert time.monotonic() - started < 4
    response = connection.read_response()
    assert response.body == b"first" and not response.complete


def test_shutdown_does_not_wait_for_a_stream_whose_client_hung_up(running) -> None:
    instance = running(shutdown_timeout=60)
    connection = RawConnection.connect(instance.paths[0])
    connection.request("GET", "/stream")
    assert instance.handler.streaming.wait(5)
    connection.close()
    deadline = time.monotonic() + 5
    while instance.server.busy_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (instance.server.connection_count, instance.server.busy_count) == (1, 0)
    assert instance.stop() < 3


def test_the_same_socket_twice_is_refused(socket_dir) -> None:
    path = os.path.join(socket_dir, "x.sock")
    with pytest.raises(errdefs.InvalidArgument, match="twice"):
        Server(Handler(), ServerConfig(hosts=(f"unix://{path}", path)))


def test_serve_refuses_what_it_cannot_listen_on(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "lamina.cli.main", "--data-root", str(tmp_path / "data"),
                             "serve", "-H", "tcp://0.0.0.0:2375"],
                            capture_output=True, cwd=REPOSITORY, timeout=30, check=False)
    assert result.returncode == 3   # InvalidArgument -> 400 -> 3
    assert b"unix:// sockets only" in result.stderr
    assert not (tmp_path / "data").exists()   # nothing was built for a server that cannot start


def _read_to_eof(connection: RawConnection, timeout: float) -> bytes | None:
    """What arrives until the server closes the connection; None if it is still open after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = connection.buffer
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        connection.sock.settimeout(remaining)
        try:
            chunk = connection.sock.recv(65536)
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return data
        if not chunk:
            return data
        data += chunk


def test_slow_and_half_open_clients_neither_starve_a_normal_one_nor_hold_connections_for_ever(start_server) -> None:
    server = start_server("--max-connections", "24", "--header-timeout", "1", "--idle-timeout", "2")
    slow: list[RawConnection] = []
    try:
        for number in range(20):
            connection = server.connect()
            if number % 2:
                connection.send(b"GET /_ping HTTP/1.1\r\nHost: slow\r\n")  # a head that never ends
            slow.append(connection)  # the others say nothing at all
        started = time.monotonic()
        normal = server.connect()
        normal.request("GET", "/_ping")
        assert normal.read_response().status == 200
        assert time.monotonic() - started < 2, "a normal client waited behind slow ones"
        normal.close()
        for connection in slow:  # header timeout (1 s) and idle timeout (2 s) close them
            left = _read_to_eof(connection, timeout=6)
            assert left == b"", f"a slow client's connection was not closed by the timeouts: {left!r}"
        normal = server.connect()
        normal.request("GET", "/_ping")
        assert normal.read_response().status == 200
        normal.close()
    finally:
        for connection in slow:
            connection.close()


def _connect_when_the_backlog_has_room(server, timeout: float = 10.0) -> RawConnection:
    """A connection; a unix socket's connect with a timeout fails with EAGAIN (instead of
    blocking) while the listen backlog is full, as it is when 1,000 clients arrive at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.connect()
        except BlockingIOError:
            assert time.monotonic() < deadline, f"the server accepted no connection for {timeout} s"
            time.sleep(0.001)


def _open_event_stream(server, timeout: float = 5.0) -> RawConnection:
    """A connection streaming ``/events``: one that serves a request until the client closes.
    Answered 503 while the server's earlier connections (a closed /_ping) are still ending:
    tried again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        connection = server.connect()
        try:
            connection.request("GET", "/events")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the request was written: the 503 is there to read
        try:
            line = connection.read_line()
        except ConnectionResetError:
            line = None
        if line is not None and line.startswith(b"HTTP/1.1 200"):
            return connection
        connection.close()
        assert line is None or line.startswith(b"HTTP/1.1 503"), line
        assert time.monotonic() < deadline, f"no /events stream within {timeout} s: the server answers 503"
        time.sleep(0.02)


def test_a_thousand_half_open_clients_do_not_keep_a_normal_one_out(start_server) -> None:
    """At the bound (512 by default), a new client takes the place of the connection that has
    waited longest for a request head; a connection serving a request is never evicted."""
    server = start_server()
    busy = _open_event_stream(server)
    clients: list[RawConnection] = []
    try:
        started = time.monotonic()
        for number in range(1000):
            connection = _connect_when_the_backlog_has_room(server)
            if number % 2:
                connection.send(b"GET /_ping HTTP/1.1\r\nHost: half-open\r\n")  # never ends its head
            clients.append(connection)
        opened = time.monotonic() - started
        started = time.monotonic()
        normal = _connect_when_the_backlog_has_room(server)  # the accept loop may still be catching up
        normal.request("GET", "/_ping")
        assert normal.read_response().status == 200
        served = time.monotonic() - started
        normal.close()
        assert served < 3, f"a normal client waited {served:.1f} s behind 1,000 half-open ones"
        busy.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            busy.sock.recv(1)  # the event stream is still open: nothing to read, no EOF
        closed = sum(_read_to_eof(connection, timeout=0.01) == b"" for connection in clients[:400])
        assert closed >= 400 - 10, f"only {closed} of the 400 oldest half-open connections were evicted"
        print(f"1,000 half-open clients connected in {opened:.2f} s; a normal client served in {served * 1000:.0f} ms")
    finally:
        busy.close()
        for connection in clients:
            connection.close()


def test_when_every_connection_serves_a_request_a_new_client_gets_503(start_server) -> None:
    server = start_server("--max-connections", "3")
    streams = [_open_event_stream(server) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        refused = None
        while refused is None:  # the last stream's connection may not be counted yet
            assert time.monotonic() < deadline, "no 503 past --max-connections busy connections"
            probe = server.connect()
            try:
                try:
                    probe.request("GET", "/_ping")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused and closed before the request was written: the answer is there to read
                response = probe.read_response()
            finally:
                probe.close()
            if response.status == 503:
                refused = response
        assert b"all of them serving requests" in refused.body
        assert all(_read_to_eof(stream, timeout=0.05) is None for stream in streams)  # none evicted
    finally:
        for stream in streams:
            stream.close()


SLOW_SUPERVISOR_SERVER = """
import sys, threading
from lamina.config import EngineConfig
from lamina.server.server import ServerConfig, serve

class Containers:
    def boot(self, *, dead_monitors_only=False):
        print("round started", flush=True)
        threading.Event().wait()  # a round that never ends (as if the network lock were held)

class Services:
    containers = Containers()

sys.exit(serve(EngineConfig(data_root=sys.argv[2], exec_root=sys.argv[2] + "-exec"),
               ServerConfig(hosts=("unix://" + sys.argv[1],), socket_group=None, shutdown_timeout=30,
                            restart_interval=0.05),
               services_factory=Services))
"""


def test_sigint_does_not_wait_for_a_restart_round_in_progress(socket_dir, tmp_path) -> None:
    path = os.path.join(socket_dir, "s.sock")
    process = subprocess.Popen([sys.executable, "-c", SLOW_SUPERVISOR_SERVER, path, str(tmp_path / "data")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPOSITORY)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"round started\n"  # the supervisor is stuck in its round
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        took = time.monotonic() - started
        assert took < 1 + 2, f"serve took {took:.1f} s to exit after SIGINT, its supervisor being busy"
        assert not os.path.exists(path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _live_template(exec_root: str, other_than: int = 0, timeout: float = 30.0) -> int:
    """The pid of the running monitor template of ``exec_root`` (not ``other_than``)."""
    directory = os.path.join(exec_root, "monitor-template")
    deadline = time.monotonic() + timeout
    while True:
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if not name.endswith(".pid"):
                continue
            with open(os.path.join(directory, name), encoding="ascii") as handle:
                text = handle.read().strip()
            pid = int(text) if text.isdigit() else 0
            if pid and pid != other_than and os.path.exists(f"/proc/{pid}") and os.path.exists(
                    os.path.join(directory, name[:-len(".pid")] + ".sock")):
                return pid
        assert time.monotonic() < deadline, "no monitor template runs"
        time.sleep(0.02)


def _template_sockets(pid: int) -> int:
    """How many sockets the process holds (its listener, plus one per open lease)."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


@pytest.mark.privileged
def test_serve_keeps_a_monitor_template_while_it_lives(start_server) -> None:
    """Started at start-up with no request, held by a lease (the template does not leave while
    the server lives), started again when it dies, released when the server stops."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    server = start_server()
    template = _live_template(server.exec_root)
    try:
        deadline = time.monotonic() + 10
        while _template_sockets(template) < 2:  # its listener and the server's lease
            assert time.monotonic() < deadline, "the server holds no lease on the template"
            time.sleep(0.02)
        os.kill(template, signal.SIGKILL)
        template = _live_template(server.exec_root, other_than=template)
        deadline = time.monotonic() + 10
        while _template_sockets(template) < 2:
            assert time.monotonic() < deadline, "the server holds no lease on the next template"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)  # not terminate(): it kills the template
        assert server.process.wait(20) == 0
        deadline = time.monotonic() + 10
        while _template_sockets(template) > 1:  # the template lives on, without the lease
            assert time.monotonic() < deadline, "the lease outlived the server"
            time.sleep(0.02)
    finally:
        try:
            os.kill(template, signal.SIGKILL)
        except ProcessLookupError:
            pass
