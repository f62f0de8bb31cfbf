"""``docker events``, ``docker network`` and the swarm-only commands with the real docker CLI,
and docker-py's ``events`` and ``networks``, against ``lamina serve``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 "this node to swarm and try again.")


def now() -> str:
    return f"{time.time():.9f}"


@pytest.fixture
def busybox(docker) -> None:
    docker("load", "-i", BUSYBOX_ARCHIVE)


def event_lines(result) -> list[list[str]]:
    """(type, action, name) of each default-format line of docker events."""
    found = []
    for line in result.stdout.decode().splitlines():
        _time, event_type, action, _actor, attributes = line.split(" ", 4)
        pairs = dict(item.split("=", 1) for item in attributes.strip("()").split(", "))
        found.append([event_type, action, pairs.get("name", "")])
    return found


def test_docker_events_replays_a_window(docker, busybox) -> None:
    since = now()
    failed = docker("run", "--rm", "--name", "ev1", "busybox", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    docker("volume", "create", "evdata")
    docker("volume", "rm", "evdata")
    until = now()
    result = docker("events", "--since", since, "--until", until, timeout=20)
    assert event_lines(result) == [
        ["container", "create", "ev1"], ["container", "attach", "ev1"], ["network", "connect", "bridge"],
        ["container", "start", "ev1"], ["container", "die", "ev1"], ["network", "disconnect", "bridge"],
        ["container", "destroy", "ev1"], ["volume", "create", ""], ["volume", "destroy", ""]]
    assert "exitCode=3" in result.stdout.decode().splitlines()[4]
    only_dies = docker("events", "--since", since, "--until", until, "--filter", "event=die",
                       "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert only_dies.stdout.decode() == "ev1 3\n"


def test_docker_events_follows_containers_as_they_run_and_the_server_lets_go(docker, busybox, server) -> None:
    command = [DOCKER, "events", "--since", now(), "--filter", "type=container", "--format", "{{json .}}"]
    follower = subprocess.Popen(command, env=server.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        container = docker("run", "-d", "--name", "ev2", "busybox", "sleep", "30").stdout.decode().strip()
        docker("volume", "create", "evfollow")
        docker("stop", "-t", "1", "ev2")
        docker("rm", "ev2")
        seen: list[dict] = []
        assert follower.stdout is not None
        deadline = time.monotonic() + 20
        pending = b""  # read from the descriptor: a buffered readline would hide lines from select
        while not seen or seen[-1]["Action"] != "destroy":
            if b"\n" not in pending:
                ready, _, _ = select.select([follower.stdout], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"no destroy event within 20 s; seen {[event['Action'] for event in seen]}"
                chunk = os.read(follower.stdout.fileno(), 65536)
                assert chunk, f"docker events ended early: {follower.stderr.read() if follower.stderr else ''}"
                pending += chunk
                continue
            line, pending = pending.split(b"\n", 1)
            seen.append(json.loads(line))
        assert [event["Action"] for event in seen] == ["create", "start", "kill", "kill", "die", "stop", "destroy"]
        assert {event["Actor"]["ID"] for event in seen} == {container}
        assert seen[2]["Actor"]["Attributes"]["signal"] == "15"
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)
    deadline = time.monotonic() + 2
    while "GET /v1.45/events" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /v1.45/events" in server.output(), "the server still serves the abandoned events stream"


def test_docker_network_ls_and_inspect(docker, busybox) -> None:
    listed = docker("network", "ls").stdout.decode().splitlines()
    assert listed[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in listed[1:]] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                                         ["none", "null", "local"]]
    container = docker("run", "-d", "--name", "netted", "busybox", "sleep", "30").stdout.decode().strip()
    inspected = json.loads(docker("network", "inspect", "bridge").stdout)
    assert inspected[0]["Name"] == "bridge" and inspected[0]["Driver"] == "bridge"
    assert inspected[0]["Containers"][container]["Name"] == "netted"
    assert inspected[0]["Containers"][container]["IPv4Address"]
    assert json.loads(docker("network", "inspect", "host").stdout)[0]["Containers"] == {}
    docker("rm", "-f", "netted")
    assert json.loads(docker("network", "inspect", "bridge").stdout)[0]["Containers"] == {}


@pytest.mark.parametrize(("argv", "message"), [
    (("node", "ls"), NOT_A_MANAGER),
    (("service", "ls"), NOT_A_MANAGER),
    (("secret", "ls"), NOT_A_MANAGER),
    (("swarm", "init"), "lamina does not support swarm mode"),
    (("swarm", "leave"), "This node is not part of a swarm"),
], ids=["node ls", "service ls", "secret ls", "swarm init", "swarm leave"])
def test_swarm_commands_fail_like_a_docker_engine_outside_a_swarm(docker, argv, message) -> None:
    result = docker(*argv, check=False)
    assert result.returncode != 0
    assert f"Error response from daemon: {message}" in result.stderr.decode()


def test_plugin_ls_is_empty(docker) -> None:
    result = docker("plugin", "ls", "--format", "{{.Name}}")
    assert result.stdout == b""


def test_docker_py_events_and_networks(server, docker, busybox) -> None:
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=server.host, version="auto", timeout=60)
    try:
        since = int(time.time()) - 1
        client.containers.run("busybox", ["true"], name="pyev", remove=True)
        until = int(time.time()) + 1
        events = list(client.events(since=since, until=until, decode=True, filters={"container": "pyev"}))
        # docker-py reads the output with logs after the start: no attach
        assert [event["Action"] for event in events] == ["create", "start", "die", "destroy"]
        assert all(event["Actor"]["Attributes"]["name"] == "pyev" for event in events)
        assert sorted(network.name for network in client.networks.list()) == ["bridge", "host", "none"]
        bridge = client.networks.get("bridge")
        assert bridge.attrs["Driver"] == "bridge"
        with pytest.raises(docker_py.errors.NotFound):
            client.networks.get("backend")
        with pytest.raises(docker_py.errors.APIError) as refused:
            client.swarm.init()
        assert refused.value.status_code == 503
    finally:
        client.close()
