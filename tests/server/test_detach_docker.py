"""Detach keys through ``lamina serve``: the real docker CLI's ``run -it`` and ``attach`` on a
pty leave the container running; the engine itself watches a TTY's input (docker-py's raw
attach socket with ``detachKeys``: the keys never reach the container, the connection closes);
unknown keys are a 400 naming them."""

from __future__ import annotations

import json
import os
import time

import pytest

from cli.terminal import Terminal
from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


@pytest.fixture
def busybox(docker) -> None:
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)


def state(docker, name: str) -> str:
    return docker("inspect", "--format", "{{.State.Status}}", name).stdout.decode().strip()


def test_docker_run_it_and_attach_detach_and_the_container_keeps_running(docker, busybox, server) -> None:
    with Terminal([DOCKER, "run", "-it", "--rm", "--name", "stays", "busybox", "cat"],
                  server.environment()) as terminal:
        terminal.send(b"typed\r")
        terminal.read_until(b"typed\r\ntyped\r\n")
        terminal.send(b"\x10\x11")
        assert terminal.wait() == 0
    time.sleep(0.3)
    assert state(docker, "stays") == "running"     # not ended by the client leaving, nor removed

    config = os.path.join(os.path.dirname(server.socket_path), "docker-config")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "config.json"), "w") as handle:
        json.dump({"detachKeys": "ctrl-x,x"}, handle)
    with Terminal([DOCKER, "attach", "stays"], server.environment()) as terminal:
        terminal.wait_raw()
        terminal.send(b"again\r")
        terminal.read_until(b"again\r\nagain\r\n")
        terminal.send(b"\x18")
        time.sleep(0.2)
        terminal.send(b"x")
        terminal.wait()   # the docker CLI's own exit: it says "read escape sequence" after an attach
        assert b"^X" not in terminal.output          # the keys did not reach the container's tty
    time.sleep(0.3)
    assert state(docker, "stays") == "running"
    docker("rm", "-f", "stays")


def test_docker_exec_it_detaches_and_the_exec_runs_on(docker, busybox, server) -> None:
    docker("run", "-d", "--name", "host", "busybox", "sleep", "300")
    with Terminal([DOCKER, "exec", "-it", "host", "sh", "-c", "echo ready; exec cat"],
                  server.environment()) as terminal:
        terminal.read_until(b"ready")
        terminal.send(b"\x10")
        time.sleep(0.2)
        terminal.send(b"\x11")
        terminal.wait()   # the docker CLI's own exit: it says "read escape sequence" after an exec
        assert b"^P" not in terminal.output          # the keys did not reach the exec's tty
    assert "cat" in docker("top", "host").stdout.decode()
    docker("rm", "-f", "host")


def test_the_engine_watches_a_tty_attach_for_the_detach_keys(server, busybox) -> None:
    docker_sdk = pytest.importorskip("docker")
    api = docker_sdk.APIClient(base_url=server.host, version="auto", timeout=30)
    created = api.create_container("busybox", ["cat"], stdin_open=True, tty=True)
    try:
        api.start(created["Id"])
        sock = api.attach_socket(created["Id"], params={"stdin": 1, "stdout": 1, "stream": 1,
                                                        "detachKeys": "ctrl-a,d"})
        raw = sock._sock
        raw.settimeout(10)
        raw.sendall(b"one\r\x01z\r")         # a broken sequence reaches cat
        received = b""
        while b"\x01z\r\n" not in received:
            piece = raw.recv(4096)
            assert piece, received
            received += piece
        raw.sendall(b"\x01d")
        rest = b""
        while True:
            piece = raw.recv(4096)
            if not piece:
                break                         # the engine closed the connection
            rest += piece
        assert b"\x01d" not in received + rest
        sock.close()
        raw.close()
        assert api.inspect_container(created["Id"])["State"]["Running"] is True
        with pytest.raises(docker_sdk.errors.APIError) as refused:
            api.attach_socket(created["Id"], params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-1"})
        assert refused.value.status_code == 400 and "ctrl-1" in str(refused.value)
        with pytest.raises(docker_sdk.errors.APIError) as refused_exec:
            api.exec_create(created["Id"], ["true"], detach_keys="hyper-x")
        assert refused_exec.value.status_code == 400 and "hyper-x" in str(refused_exec.value)
    finally:
        api.remove_container(created["Id"], force=True)
        api.close()
