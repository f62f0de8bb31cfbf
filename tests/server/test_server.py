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
