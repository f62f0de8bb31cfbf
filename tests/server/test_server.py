"""Server in a thread: accepting on several sockets, shutdown that closes idle connections at
once, lets requests finish, does not wait for streams whose client hung up, cuts what is left
after the timeout, and a second shutdown request that cuts at once."""

from __future__ import annotations

import os
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
        extra = [server.connect() for _ in range(4)]
        slow.extend(extra)  # 24 open: the bound
        deadline = time.monotonic() + 5
        refused = None
        while time.monotonic() < deadline:  # the server may not have accepted the last ones yet
            probe = server.connect()
            try:
                probe.request("GET", "/_ping")
                response = probe.read_response()
            except OSError:
                response = None
            finally:
                probe.close()
            if response is not None and response.status == 503:
                refused = response
                break
            time.sleep(0.05)
        assert refused is not None and b"connections open" in refused.body, "no 503 past --max-connections"
        for connection in slow:  # header timeout (1 s) and idle timeout (2 s) close them
            left = _read_to_eof(connection, timeout=6)
            assert left is not None, "a slow client's connection was not closed by the timeouts"
            assert left == b"" or left.startswith(b"HTTP/1.1 503 "), left  # closed silently, or refused
        normal = server.connect()
        normal.request("GET", "/_ping")
        assert normal.read_response().status == 200
        normal.close()
    finally:
        for connection in slow:
            connection.close()
