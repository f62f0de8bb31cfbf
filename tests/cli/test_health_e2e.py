"""Healthchecks through the ``lamina`` CLI (a separate process, the in-process engine, real
monitors): ``--health-*`` flags, a probe that flips from failing to passing, ``ps`` STATUS and
``--filter health=``, bad flag values."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cli.test_containers_e2e import Lamina, loaded_engine

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def lamina() -> Iterator[Lamina]:
    with loaded_engine("lhe-") as runner:
        yield runner


def test_a_probe_flips_from_failing_to_passing(lamina) -> None:
    lamina.ok("run", "-d", "--name", "probed", "--health-cmd", "test -f /tmp/ok", "--health-interval", "150ms",
              "--health-retries", "1", "--health-start-period", "1s", "--health-start-interval", "100ms",
              "busybox", "sleep", "300")

    def status() -> str:
        return json.loads(lamina.ok("inspect", "--format", "{{json .State.Health}}", "probed"))["Status"]

    lamina.wait_for(lambda: status() == "unhealthy", timeout=15)
    assert "(unhealthy)" in lamina.ok("ps", "--format", "{{.Status}}")
    lamina.ok("exec", "probed", "touch", "/tmp/ok")
    lamina.wait_for(lambda: status() == "healthy", timeout=15)
    assert lamina.ok("ps", "--filter", "health=healthy", "--format", "{{.Names}}") == "probed\n"
    assert lamina.ok("ps", "--filter", "health=starting", "--format", "{{.Names}}") == ""
    lamina.ok("rm", "-f", "probed")


@pytest.mark.parametrize("argv, message", [
    (["--health-interval", "0.5ms", "--health-cmd", "true"], "Interval in Healthcheck cannot be less than 1ms"),
    (["--health-timeout", "soon"], 'invalid argument "soon" for "--health-timeout" flag'),
    (["--health-retries", "-2"], "--health-retries cannot be negative"),
    (["--no-healthcheck", "--health-retries", "2"], "--no-healthcheck conflicts with --health-* options"),
], ids=["interval below 1ms", "unparsable timeout", "negative retries", "no-healthcheck with options"])
def test_bad_health_flags_are_refused(lamina, argv, message) -> None:
    result = lamina("run", "-d", *argv, "busybox", "true")
    assert result.code == 125 and message in result.err
    assert lamina.ok("ps", "-aq") == ""


def test_a_starting_container_shows_health_starting(lamina) -> None:
    lamina.ok("run", "-d", "--name", "slowstart", "--health-cmd", "true", "--health-interval", "1h",
              "busybox", "sleep", "300")
    assert lamina.ok("ps", "--format", "{{.Status}}").strip().endswith("(health: starting)")
    assert lamina.ok("ps", "--filter", "health=starting", "--format", "{{.Names}}") == "slowstart\n"
    lamina.ok("rm", "-f", "slowstart")


def test_probes_of_a_paused_container_fail_without_running(lamina) -> None:
    # paused before its first probe (4 s after the start), so no probe is being started when
    # the cgroup freezes (one caught starting waits for the unpause: see monitor/health.py)
    lamina.ok("run", "-d", "--name", "frozen", "--health-cmd", "true", "--health-interval", "4s",
              "--health-retries", "1", "busybox", "sleep", "300")
    lamina.ok("pause", "frozen")

    def health() -> dict:
        return json.loads(lamina.ok("inspect", "--format", "{{json .State.Health}}", "frozen"))

    assert health()["Status"] == "starting"
    lamina.wait_for(lambda: health()["Status"] == "unhealthy", timeout=15)
    assert health()["Log"][-1]["ExitCode"] == -1 and "is paused" in health()["Log"][-1]["Output"]
    lamina.ok("unpause", "frozen")
    lamina.wait_for(lambda: health()["Status"] == "healthy", timeout=15)
    lamina.ok("rm", "-f", "frozen")
