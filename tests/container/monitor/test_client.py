"""The monitor client against a stand-in monitor: a thread serving the socket with the
protocol's messages (no container, no root)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from lamina import errdefs
from lamina.container.monitor import MonitorClient, StartError, protocol
from lamina.container.rundir import ExitInfo, RunDirectory, bind_unix

CONTAINER = "c" * 64


class StandIn:
    """Serves one connection on a socket of the run directory with ``serve(conn, request)``;
    ``requests`` are the lines it read."""

    def __init__(self, path: str, serve: Callable[[socket.socket, dict], None]) -> None:
        self.listener = bind_unix(path)
        self.listener.settimeout(10)  # a test that never connects does not leave the thread behind
        self.requests: list[dict] = []
        self.serve = serve
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(1)
                if not chunk:
                    return
                data += chunk
            request = json.loads(data)
            self.requests.append(request)
            self.serve(conn, request)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def client(tmp_path) -> Iterator[MonitorClient]:
    RunDirectory(str(tmp_path), CONTAINER).create()
    yield MonitorClient(str(tmp_path))


def test_a_resize_is_one_request_and_its_error_comes_back_as_its_kind(client: MonitorClient) -> None:
    control = client.run_directory(CONTAINER).control_socket
    monitor = StandIn(control, lambda conn, request: conn.sendall(protocol.encode(protocol.error_answer(
        errdefs.NotFound("No such exec instance: e1")))))
    try:
        with pytest.raises(errdefs.NotFound, match="No such exec instance: e1"):
            client.resize(CONTAINER, 24, 80, "e1")
    finally:
        monitor.close()
    assert monitor.requests == [{"resize": [24, 80], "exec": "e1"}]
    monitor = StandIn(control, lambda conn, request: conn.sendall(protocol.encode(protocol.OK)))
    try:
        client.resize(CONTAINER, 30, 100)
    finally:
        monitor.close()
    assert monitor.requests == [{"resize": [30, 100]}]


def test_an_exec_start_hands_over_the_stream_after_the_answer(client: MonitorClient) -> None:
    control = client.run_directory(CONTAINER).control_socket

    def serve(conn: socket.socket, request: dict) -> None:
        conn.sendall(protocol.encode({"ok": True, "pid": 7}) + b"output of the exec")

    monitor = StandIn(control, serve)
    try:
        sock, refused = client.start_exec(CONTAINER, "e1", detach=False)
        assert refused is None and sock is not None
        sock.settimeout(5)
        assert sock.recv(100) == b"output of the exec"
        sock.close()
    finally:
        monitor.close()
    assert monitor.requests == [{"exec": "e1", "start": {"detach": False}}]


def test_a_refused_exec_is_returned_not_raised(client: MonitorClient) -> None:
    control = client.run_directory(CONTAINER).control_socket
    error = StartError("exec: \"nope\": executable file not found in $PATH", 127)
    monitor = StandIn(control, lambda conn, request: conn.sendall(protocol.encode(protocol.error_answer(error))))
    try:
        sock, refused = client.start_exec(CONTAINER, "e2", detach=True)
    finally:
        monitor.close()
    assert sock is None and isinstance(refused, StartError) and refused.exit_code == 127


def test_attach_sends_its_hello_or_says_nobody_listens(client: MonitorClient) -> None:
    hello = protocol.attach_hello(stdin=False, stdout=True, stderr=True, logs=True)
    assert client.attach(CONTAINER, hello) is None  # no monitor listening
    monitor = StandIn(client.run_directory(CONTAINER).attach_socket,
                      lambda conn, request: conn.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x02hi"))
    try:
        sock = client.attach(CONTAINER, hello)
        assert sock is not None
        sock.settimeout(5)
        assert sock.recv(100) == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
        sock.close()
    finally:
        monitor.close()
    assert monitor.requests == [hello]


def test_a_dead_runs_exit_is_published_to_waiters(client: MonitorClient) -> None:
    assert not client.alive(CONTAINER)
    assert client.runtime_state(CONTAINER) is None
    run_lock, after = client.exits(CONTAINER)
    try:
        assert after == 0
        assert client.publish_exit(CONTAINER, exit_code=255, error="the monitor died") == \
            ExitInfo(sequence=1, exit_code=255, error="the monitor died")
        assert run_lock.wait_exit(after, timeout=5) == ExitInfo(sequence=1, exit_code=255, error="the monitor died")
    finally:
        run_lock.close()
    assert client.release_dead_run(CONTAINER, lambda name: pytest.fail("no run: no runtime")) == ""
