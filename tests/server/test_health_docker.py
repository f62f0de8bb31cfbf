"""Healthchecks through ``lamina serve``: the real docker CLI's ``--health-*`` flags, docker-py's
``healthcheck`` argument, an image's HEALTHCHECK from a build, a probe that flips from failing
to passing, ``ps`` STATUS and ``--filter health=``, ``health_status`` events, bad input refused,
and probes that go on across a restart of the server (the monitor runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


@pytest.fixture
def busybox(docker) -> None:
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)


def health(docker, name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State.Health}}", name).stdout)


def wait_health(docker, name: str, status: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = health(docker, name)
        if current and current["Status"] == status:
            return current
        assert time.monotonic() < deadline, f"{name} did not become {status}: {current}"
        time.sleep(0.1)


def test_a_probe_that_flips_from_failing_to_passing(docker, busybox) -> None:
    docker("run", "-d", "--name", "flip", "--health-cmd", "test -f /tmp/ok && echo fine",
           "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "300")
    starting = health(docker, "flip")
    assert starting["Status"] in ("starting", "unhealthy")
    status = docker("ps", "--format", "{{.Status}}", "--filter", "name=flip").stdout.decode()
    assert "(health: starting)" in status or "(unhealthy)" in status
    unhealthy = wait_health(docker, "flip", "unhealthy")
    assert unhealthy["FailingStreak"] >= 2 and unhealthy["Log"][-1]["ExitCode"] == 1
    assert docker("ps", "-q", "--filter", "health=unhealthy").stdout.decode().strip()

    docker("exec", "flip", "touch", "/tmp/ok")
    healthy = wait_health(docker, "flip", "healthy")
    assert healthy["FailingStreak"] == 0
    assert healthy["Log"][-1]["Output"] == "fine\n" and len(healthy["Log"]) <= 5
    assert "(healthy)" in docker("ps", "--format", "{{.Status}}").stdout.decode()
    assert docker("ps", "-q", "--filter", "health=unhealthy").stdout.decode().strip() == ""
    assert docker("ps", "-q", "--filter", "health=healthy").stdout.decode().strip()

    events = docker("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "container=flip",
                    "--filter", "event=health_status", "--format", "{{.Action}}").stdout.decode().split("\n")
    assert [line for line in events if line] == ["health_status: unhealthy", "health_status: healthy"]

    docker("stop", "-t", "0", "flip")
    assert health(docker, "flip")["Status"] == "unhealthy"   # Docker's state of a stopped monitor


def test_a_probe_that_outlives_its_timeout_fails(docker, busybox) -> None:
    docker("run", "-d", "--name", "slow", "--health-cmd", "sleep 10", "--health-interval", "100ms",
           "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "300")
    failed = wait_health(docker, "slow", "unhealthy")
    assert failed["Log"][0]["ExitCode"] == -1
    assert failed["Log"][0]["Output"] == "Health check exceeded timeout (300ms)"


def test_bad_health_options_are_refused(docker, busybox) -> None:
    refused = docker("run", "-d", "--health-interval", "10us", "--health-cmd", "true", "busybox", "true",
                     check=False)
    assert refused.returncode == 125
    assert b"Interval in Healthcheck cannot be less than 1ms" in refused.stderr
    conflicting = docker("run", "-d", "--no-healthcheck", "--health-cmd", "true", "busybox", "true", check=False)
    assert conflicting.returncode != 0 and b"--no-healthcheck conflicts with --health-* options" in conflicting.stderr
    bad_filter = docker("ps", "--filter", "health=sickly", check=False)
    assert bad_filter.returncode != 0 and b"Unrecognised filter value for health: sickly" in bad_filter.stderr
    assert docker("ps", "-aq").stdout.decode() == ""


def test_an_image_healthcheck_and_no_healthcheck(docker, busybox, socket_dir) -> None:
    context = os.path.join(socket_dir, "context")
    os.makedirs(context)
    with open(os.path.join(context, "Dockerfile"), "w") as dockerfile:
        dockerfile.write('FROM busybox\nHEALTHCHECK --interval=100ms --retries=1 CMD ["true"]\n')
    docker("build", "-q", "-t", "checked", context, env_extra={"DOCKER_BUILDKIT": "0"})
    docker("run", "-d", "--name", "from-image", "checked", "sleep", "300")
    assert wait_health(docker, "from-image", "healthy")["Log"][-1]["ExitCode"] == 0
    docker("run", "-d", "--name", "unchecked", "--no-healthcheck", "checked", "sleep", "300")
    config = json.loads(docker("inspect", "--format", "{{json .Config.Healthcheck}}", "unchecked").stdout)
    assert config["Test"] == ["NONE"]
    time.sleep(0.4)
    assert health(docker, "unchecked") is None
    assert "(" not in docker("ps", "--format", "{{.Status}}", "--filter", "name=unchecked").stdout.decode()


def test_probes_go_on_across_a_server_restart(start_server, server, docker, busybox) -> None:
    docker("run", "-d", "--name", "kept", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
           "--health-retries", "1", "busybox", "sleep", "300")
    wait_health(docker, "kept", "unhealthy")
    assert server.terminate() == 0
    successor = start_server(data_root=server.data_root)
    environment = successor.environment()

    def inspect() -> dict:
        result = subprocess.run([DOCKER, "inspect", "--format", "{{json .State.Health}}", "kept"],
                                env=environment, capture_output=True, check=True)
        return json.loads(result.stdout)

    subprocess.run([DOCKER, "exec", "kept", "touch", "/tmp/ok"], env=environment, check=True)
    deadline = time.monotonic() + 15
    while (current := inspect())["Status"] != "healthy":
        assert time.monotonic() < deadline, f"kept did not become healthy within 15 s: {current}"
        time.sleep(0.1)


def test_docker_py_healthcheck(server, busybox) -> None:
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=server.host, version="auto", timeout=60)
    try:
        container = client.containers.run(
            "busybox", ["sleep", "300"], detach=True, name="sdk-health",
            healthcheck={"test": ["CMD-SHELL", "echo checked"], "interval": 100_000_000, "retries": 1})
        deadline = time.monotonic() + 15
        while True:
            container.reload()
            state = container.attrs["State"].get("Health") or {}
            if state.get("Status") == "healthy":
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["Log"][-1]["Output"] == "checked\n"
        with pytest.raises(docker_sdk.errors.APIError, match="less than 1ms"):
            client.containers.create("busybox", ["true"], healthcheck={"test": ["CMD", "true"], "interval": 5})
    finally:
        client.close()


SECOND = 1_000_000_000


@pytest.mark.parametrize("healthcheck, status", [
    ({"test": "true", "interval": SECOND, "timeout": SECOND, "retries": 1}, "healthy"),
    ({"test": "false", "interval": SECOND, "timeout": SECOND, "retries": 1}, "unhealthy"),
    ({"test": "echo 'x' >> /counter.txt && test `cat /counter.txt | wc -l` -ge 3", "interval": SECOND,
      "timeout": SECOND, "retries": 1, "start_period": 3 * SECOND}, "healthy"),
], ids=["passes", "fails", "start period"])
def test_docker_py_healthcheck_suite_cases(server, busybox, healthcheck, status) -> None:
    """docker-py's own integration cases (tests/integration/api_healthcheck_test.py), on busybox."""
    docker_sdk = pytest.importorskip("docker")
    api = docker_sdk.APIClient(base_url=server.host, version="auto", timeout=60)
    container = api.create_container("busybox", "top", healthcheck=healthcheck)
    try:
        assert api.inspect_container(container)["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", healthcheck["test"]]
        api.start(container)
        deadline = time.monotonic() + 40
        while (health := api.inspect_container(container)["State"]["Health"])["Status"] != status:
            assert time.monotonic() < deadline, f"the container did not become {status} within 40 s: {health}"
            time.sleep(0.1)
        if healthcheck.get("start_period"):
            log = api.inspect_container(container)["State"]["Health"]["Log"]
            assert [entry["ExitCode"] for entry in log] == [1, 1, 0]   # failures in the start period did not count
    finally:
        api.remove_container(container, force=True)
        api.close()
