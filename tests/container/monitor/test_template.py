"""The monitor template's own life (no container, no root): it leaves once idle, not while a
starter holds its lock, and answers a malformed request with its kind."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time

import pytest

from lamina.container.monitor import protocol
from lamina.container.monitor.template import Template
from lamina.container.rundir import bind_unix, connect_unix


@pytest.fixture
def paths(tmp_path) -> tuple[str, str]:
    directory = tmp_path / "monitor-template"
    directory.mkdir()
    return str(directory / "k.sock"), str(directory / "lock")


def serve_in_thread(template: Template) -> threading.Thread:
    thread = threading.Thread(target=template.serve, daemon=True)
    thread.start()
    return thread


def test_an_idle_template_unlinks_its_socket_and_leaves(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.1))
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_a_template_does_not_leave_while_a_starter_holds_its_lock(paths) -> None:
    path, lock = paths
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.1))
        time.sleep(0.5)
        assert thread.is_alive() and os.path.exists(path)
    finally:
        os.close(fd)  # the lock goes with it
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_a_malformed_spawn_request_is_answered_invalid_argument_and_its_descriptors_closed(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.3))
    read_fd, write_fd = os.pipe()
    try:
        with connect_unix(path) as sock:
            socket.send_fds(sock, [protocol.encode({"spawn": "c" * 64})], [write_fd])
            os.close(write_fd)
            answer = protocol.read_answer(sock, 10)
        assert answer["error"]["kind"] == "invalid_argument"
        # the template closed its copy of the pipe: nobody holds the write end any more
        assert os.read(read_fd, 10) == b""
    finally:
        os.close(read_fd)
        thread.join(10)
    assert not thread.is_alive()
