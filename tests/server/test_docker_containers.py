"""Containers through ``lamina serve`` with the real docker CLI and docker-py: run (attached,
with stdin, with a TTY under a pty, detached), exit codes, stdout/stderr separation,
logs -f, exec, cp both ways, attach, rm -f; and a server stopped by SIGTERM leaves its
running containers running for the next server."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


@pytest.fixture
def busybox(docker) -> None:
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)


def output(result) -> str:
    return result.stdout.decode()


def test_run_rm_prints_the_output_and_removes_the_container(docker, busybox) -> None:
    assert output(docker("run", "--rm", "busybox", "echo", "hi")) == "hi\n"
    assert output(docker("ps", "-aq")) == ""


def test_run_keeps_stdout_and_stderr_apart_and_returns_the_exit_code(docker, busybox) -> None:
    result = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (7, b"out\n", b"err\n")


def test_run_with_stdin_sees_its_end_and_finishes(docker, busybox) -> None:
    # The client's half-close must reach the container as the end of its stdin.
    result = docker("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input=b"abc\n", timeout=30)
    assert output(result) == "abc\ndone\n"


@pytest.mark.skipif(shutil.which("script") is None, reason="script(1) is needed for a pty")
def test_run_it_under_a_pty(server, busybox) -> None:
    result = subprocess.run(
        ["script", "-qec", f"{DOCKER} run --rm -it busybox sh -c 'echo tty-ok; exit 4'", "/dev/null"],
        env=server.environment(), capture_output=True, timeout=30, check=False)
    assert result.returncode == 4, result
    assert b"tty-ok\r\n" in result.stdout   # a TTY turns \n into \r\n


def test_detached_container_logs_follow_exec_cp_and_rm(docker, busybox, server, socket_dir) -> None:
    container = output(docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                              "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done")).strip()
    assert len(container) == 64
    assert output(docker("ps", "--format", "{{.Names}} {{.Status}}")).startswith("ticker Up")

    follower = subprocess.Popen([DOCKER, "logs", "-f", "ticker"], env=server.environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [follower.stdout.readline() for _ in range(5)]
        assert lines[0] == b"line 0\n" and lines[4] == b"line 4\n"
    finally:
        follower.kill()
        follower.wait()

    executed = docker("exec", "ticker", "sh", "-c", "echo from exec; exit 3", check=False)
    assert (executed.returncode, executed.stdout) == (3, b"from exec\n")
    assert output(docker("exec", "-i", "ticker", "cat", input=b"piped\n")) == "piped\n"

    source = os.path.join(socket_dir, "to-container.txt")
    with open(source, "w") as file:
        file.write("copied in\n")
    docker("cp", source, "ticker:/tmp/in.txt")
    assert output(docker("exec", "ticker", "cat", "/tmp/in.txt")) == "copied in\n"
    docker("exec", "ticker", "sh", "-c", "echo copied out > /tmp/out.txt")
    destination = os.path.join(socket_dir, "from-container.txt")
    docker("cp", "ticker:/tmp/out.txt", destination)
    with open(destination) as file:
        assert file.read() == "copied out\n"

    # The follower left: the server notices at the next log line and closes that stream.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "/logs?" not in server.output():
        time.sleep(0.1)
    assert "/logs?" in server.output()

    assert output(docker("rm", "-f", "ticker")).strip() == "ticker"
    assert output(docker("ps", "-aq")) == ""


def test_attach_streams_output_and_leaving_keeps_the_container_running(docker, busybox, server) -> None:
    docker("run", "-d", "--name", "talker", "busybox", "sh", "-c",
           "while true; do echo talking; sleep 0.1; done")
    attached = subprocess.Popen([DOCKER, "attach", "--no-stdin", "talker"], env=server.environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert attached.stdout.readline() == b"talking\n"
    finally:
        attached.kill()
        attached.wait()
    time.sleep(0.3)
    assert output(docker("inspect", "--format", "{{.State.Running}}", "talker")).strip() == "true"
    server.wait_logged("hijacked")


def test_sigterm_leaves_running_containers_running_for_the_next_server(start_server, busybox, docker, server) -> None:
    docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c", "while true; do echo alive; sleep 0.1; done")
    assert server.terminate() == 0
    successor = start_server(data_root=server.data_root)
    environment = successor.environment()
    state = subprocess.run([DOCKER, "inspect", "--format", "{{.State.Running}} {{.State.Pid}}", "survivor"],
                           env=environment, capture_output=True, check=True)
    running, pid = state.stdout.decode().split()
    assert running == "true"
    os.kill(int(pid), 0)   # the container's process is alive
    before = subprocess.run([DOCKER, "logs", "survivor"], env=environment, capture_output=True, check=True)
    deadline = time.monotonic() + 10
    while True:   # still logging
        after = subprocess.run([DOCKER, "logs", "survivor"], env=environment, capture_output=True, check=True)
        if after.stdout.count(b"alive") > before.stdout.count(b"alive"):
            break
        assert time.monotonic() < deadline, "no new log line for 10 s after the server was replaced"
        time.sleep(0.1)


# -- docker-py --------------------------------------------------------------------------------


@pytest.fixture
def client(server, busybox):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=server.host, version="auto", timeout=60)
    yield client
    client.close()


def test_docker_py_runs_containers(client) -> None:
    assert client.containers.run("busybox", ["echo", "from sdk"], remove=True) == b"from sdk\n"
    container = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; sleep 30"], detach=True)
    try:
        deadline = time.monotonic() + 10
        while b"err" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert container.logs(stdout=True, stderr=False) == b"out\n"
        assert container.logs(stdout=False, stderr=True) == b"err\n"
        assert tuple(container.exec_run(["sh", "-c", "echo exec-out; exit 2"])) == (2, b"exec-out\n")
        assert tuple(container.exec_run(["sh", "-c", "echo a; echo b >&2"], demux=True)) == (0, (b"a\n", b"b\n"))

        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            entry = tarfile.TarInfo("put.txt")
            entry.size = 4
            tar.addfile(entry, io.BytesIO(b"put\n"))
        assert container.put_archive("/tmp", archive.getvalue()) is True
        chunks, stat = container.get_archive("/tmp/put.txt")
        assert stat["name"] == "put.txt" and stat["size"] == 4
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            assert tar.extractfile("put.txt").read() == b"put\n"

        container.reload()
        assert container.status == "running"
        assert [found.id for found in client.containers.list()] == [container.id]
        container.kill()
        assert container.wait()["StatusCode"] == 137
    finally:
        container.remove(force=True)
    assert client.containers.list(all=True) == []


def test_docker_py_low_level_attach_socket(client) -> None:
    api = client.api
    created = api.create_container("busybox", ["sh", "-c", "read line; echo got $line"], stdin_open=True)
    try:
        sock = api.attach_socket(created["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        api.start(created["Id"])
        raw = sock._sock
        raw.sendall(b"hello\n")
        received = b""
        deadline = time.monotonic() + 10
        while b"got hello" not in received and time.monotonic() < deadline:
            piece = raw.recv(4096)
            if not piece:
                break
            received += piece
        assert b"got hello\n" in received   # a multiplexed frame: 8-byte header then the line
        assert received.startswith(b"\x01\x00\x00\x00")
        sock.close()
        raw.close()   # SocketIO.close() leaves the socket itself open
        assert api.wait(created["Id"], timeout=20)["StatusCode"] == 0
    finally:
        api.remove_container(created["Id"], force=True)


def test_the_server_restarts_a_restart_always_container_whose_monitor_died(docker, busybox, server) -> None:
    from lamina.container.rundir import RunDirectory

    container_id = output(docker("run", "-d", "--restart", "always", "--name", "phoenix", "busybox",
                                 "sleep", "60")).strip()
    docker("run", "-d", "--restart", "always", "--name", "stopped-by-hand", "busybox", "sleep", "60")
    docker("stop", "-t", "0", "stopped-by-hand")
    first_pid = output(docker("inspect", "--format", "{{.State.Pid}}", "phoenix")).strip()
    monitor = RunDirectory(server.exec_root, container_id).monitor_pid()
    assert monitor is not None
    os.kill(monitor, 9)
    deadline = time.monotonic() + 20
    state = ""
    while time.monotonic() < deadline:
        state = output(docker("inspect", "--format", "{{.State.Running}} {{.State.Pid}} {{.RestartCount}}",
                              "phoenix")).strip()
        running, pid, _ = state.split()
        if running == "true" and pid not in (first_pid, "0"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"phoenix was not restarted within 20 s of its monitor's death: {state}\n"
                             f"{server.output()[-3000:]}")
    assert output(docker("inspect", "--format", "{{.State.Running}}", "stopped-by-hand")).strip() == "false"
    docker("rm", "-f", "phoenix", "stopped-by-hand")
