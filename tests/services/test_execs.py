"""End-to-end tests of the exec service: processes started in a running container by its
monitor, inside the container's namespaces and cgroup."""

from __future__ import annotations

import socket

import pytest

from lamina import errdefs
from lamina.container.logs import demultiplex

pytestmark = pytest.mark.privileged


def collect(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        sock.close()


def run_exec(engine, container_id: str, *command: str, **config) -> tuple[dict[int, bytes], dict]:
    body = {"Cmd": list(command), "AttachStdout": True, "AttachStderr": True, **config}
    exec_id = engine.execs.create(container_id, body)["Id"]
    sock = engine.execs.start(exec_id)
    streams: dict[int, bytes] = {1: b"", 2: b""}
    for stream, payload in demultiplex(collect(sock)):
        streams[stream] += payload
    engine.wait_for(lambda: not engine.execs.inspect(exec_id)["Running"], message="the exec to end")
    return streams, engine.execs.inspect(exec_id)


@pytest.fixture
def sleeper(engine):
    container_id = engine.run("sleep", "60", Hostname="sleeper", Env=["FROM_CONTAINER=1"])
    yield container_id
    engine.containers.stop(container_id, timeout=0)


def test_exec_output_and_exit_code(engine, sleeper) -> None:
    streams, info = run_exec(engine, sleeper, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert streams == {1: b"out\n", 2: b"err\n"}
    assert info["ExitCode"] == 5 and info["Running"] is False
    assert info["ContainerID"] == sleeper
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "arguments": ["-c", "echo out; echo err >&2; exit 5"],
                                     "privileged": False, "user": ""}


def test_exec_environment_working_directory_and_user(engine, sleeper) -> None:
    streams, info = run_exec(engine, sleeper, "sh", "-c", "echo $FOO $FROM_CONTAINER $HOME; pwd; id -u; id -g",
                             Env=["FOO=bar"], WorkingDir="/tmp", User="nobody")
    assert streams[1] == b"bar 1 /\n/tmp\n65534\n65534\n"  # busybox: nobody:x:65534:65534:nobody:/:...
    assert info["ExitCode"] == 0


def test_exec_joins_the_container_namespaces(engine, sleeper) -> None:
    streams, _ = run_exec(engine, sleeper, "hostname")
    assert streams[1] == b"sleeper\n"
    streams, _ = run_exec(engine, sleeper, "ps", "-o", "pid,args")
    lines = streams[1].decode().splitlines()
    assert lines[1].split(None, 1) == ["1", "sleep 60"]
    assert len(engine.container_views.inspect(sleeper)["ExecIDs"]) == 2  # finished execs stay until it stops


def test_exec_of_a_missing_command_reports_127(engine, sleeper) -> None:
    exec_id = engine.execs.create(sleeper, {"Cmd": ["nosuch"], "AttachStdout": True})["Id"]
    sock = engine.execs.start(exec_id)
    text = collect(sock)
    assert b"executable file not found" in text
    assert engine.execs.inspect(exec_id)["ExitCode"] == 127


def test_detached_exec_runs_in_the_background(engine, sleeper) -> None:
    exec_id = engine.execs.create(sleeper, {"Cmd": ["sh", "-c", "echo done > /tmp/marker"]})["Id"]
    assert engine.execs.start(exec_id, detach=True) is None
    engine.wait_for(lambda: engine.execs.inspect(exec_id)["ExitCode"] == 0, message="the detached exec")
    streams, _ = run_exec(engine, sleeper, "cat", "/tmp/marker")
    assert streams[1] == b"done\n"
    with pytest.raises(errdefs.Conflict):
        engine.execs.start(exec_id)


def test_exec_stdin_reaches_the_process(engine, sleeper) -> None:
    exec_id = engine.execs.create(sleeper, {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True})["Id"]
    sock = engine.execs.start(exec_id)
    sock.sendall(b"through stdin\n")
    sock.shutdown(socket.SHUT_WR)
    assert list(demultiplex(collect(sock))) == [(1, b"through stdin\n")]
    engine.wait_for(lambda: engine.execs.inspect(exec_id)["ExitCode"] == 0, message="cat to end")


def test_exec_with_a_tty_can_be_resized(engine, sleeper) -> None:
    exec_id = engine.execs.create(sleeper, {"Cmd": ["sh", "-c", "read x; stty size"], "Tty": True,
                                            "AttachStdin": True, "AttachStdout": True})["Id"]
    sock = engine.execs.start(exec_id, tty=True)
    engine.execs.resize(exec_id, height=40, width=120)
    sock.sendall(b"\r")
    output = collect(sock)
    assert b"40 120\r\n" in output
    assert engine.execs.inspect(exec_id)["ProcessConfig"]["tty"] is True


def test_exec_console_size_is_set_before_the_process_starts(engine, sleeper) -> None:
    exec_id = engine.execs.create(sleeper, {"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True,
                                            "ConsoleSize": [24, 91]})["Id"]
    assert b"24 91\r\n" in collect(engine.execs.start(exec_id, tty=True))


def test_exec_needs_a_running_container(engine) -> None:
    container_id = engine.create("true")
    with pytest.raises(errdefs.Conflict, match="is not running"):
        engine.execs.create(container_id, {"Cmd": ["true"]})
    with pytest.raises(errdefs.InvalidArgument, match="No exec command"):
        engine.execs.create(container_id, {"Cmd": []})
    with pytest.raises(errdefs.NotFound):
        engine.execs.inspect("0" * 64)


def test_exec_records_go_when_the_container_stops(engine) -> None:
    container_id = engine.run("sleep", "60")
    exec_id = engine.execs.create(container_id, {"Cmd": ["true"]})["Id"]
    assert engine.container_views.inspect(container_id)["ExecIDs"] == [exec_id]
    engine.containers.stop(container_id, timeout=0)
    with pytest.raises(errdefs.NotFound):
        engine.execs.inspect(exec_id)
