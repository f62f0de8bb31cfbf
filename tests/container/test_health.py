"""Healthcheck rules (:mod:`lamina.container.health`): Docker's state machine, output cap,
validation messages, the probe's command and timing."""

from __future__ import annotations

import pytest

from lamina import errdefs
from lamina.container import health
from lamina.container.health import ProbeResult

SECOND = 1_000_000_000


def probe(**healthcheck) -> health.Probe:
    found = health.probe_of({"Healthcheck": {"Test": ["CMD", "true"], **healthcheck}})
    assert found is not None
    return found


def result(code: int, start: int = 100 * SECOND) -> ProbeResult:
    return ProbeResult(start=start, end=start + 1000, exit_code=code, output=f"exit {code}")


def test_failures_become_unhealthy_after_retries_and_a_success_resets_the_streak() -> None:
    rules = probe(Retries=2)
    state = health.start_of_run(None)
    state = health.record_result(state, result(1), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("starting", 1)
    state = health.record_result(state, result(1), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("unhealthy", 2)
    state = health.record_result(state, result(0), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 0)
    state = health.record_result(state, result(-1), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 1)


def test_failures_inside_the_start_period_do_not_count_while_starting() -> None:
    rules = probe(Retries=1, StartPeriod=10 * SECOND)
    state = health.start_of_run(None)
    state = health.record_result(state, result(1, start=5 * SECOND), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("starting", 0)
    state = health.record_result(state, result(1, start=11 * SECOND), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("unhealthy", 1)


def test_a_failure_in_the_start_period_counts_once_healthy() -> None:
    rules = probe(Retries=1, StartPeriod=10 * SECOND)
    state = health.record_result(health.start_of_run(None), result(0, start=SECOND), rules, started_at=0)
    state = health.record_result(state, result(1, start=2 * SECOND), rules, started_at=0)
    assert (state["Status"], state["FailingStreak"]) == ("unhealthy", 1)


def test_the_log_keeps_the_last_five_results_with_docker_fields() -> None:
    rules = probe()
    state = health.start_of_run(None)
    for code in range(7):
        state = health.record_result(state, result(code, start=(code + 1) * SECOND), rules, started_at=0)
    assert [entry["ExitCode"] for entry in state["Log"]] == [2, 3, 4, 5, 6]
    assert set(state["Log"][0]) == {"Start", "End", "ExitCode", "Output"}
    assert state["Log"][0]["Start"].endswith("Z") and state["Log"][0]["Output"] == "exit 2"


def test_a_run_starts_starting_keeping_the_log_and_ends_unhealthy() -> None:
    previous = {"Status": "healthy", "FailingStreak": 2, "Log": [{"ExitCode": 0}]}
    assert health.start_of_run(previous) == {"Status": "starting", "FailingStreak": 0, "Log": [{"ExitCode": 0}]}
    assert health.end_of_run(previous)["Status"] == "unhealthy"
    assert health.end_of_run(None) is None


def test_output_is_capped_at_4096_bytes_with_an_ellipsis() -> None:
    buffer = health.OutputBuffer()
    buffer.write(b"a" * 4000)
    buffer.write(b"b" * 200)
    assert buffer.text() == "a" * 4000 + "b" * 96 + "..."
    small = health.OutputBuffer()
    small.write(b"ok\n")
    assert small.text() == "ok\n"


def test_probe_commands_and_defaults() -> None:
    assert health.probe_of({}) is None
    assert health.probe_of({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert health.probe_of({"Healthcheck": {"Test": []}}) is None
    shell = health.probe_of({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"]}})
    assert shell == health.Probe(command=("/bin/sh", "-c", "test -f /ok"), interval=30 * SECOND,
                                 timeout=30 * SECOND, start_period=0, start_interval=5 * SECOND, retries=3)
    custom_shell = health.probe_of({"Shell": ["/bin/ash", "-e", "-c"], "Healthcheck": {"Test": ["CMD-SHELL", "x"]}})
    assert custom_shell is not None and custom_shell.command == ("/bin/ash", "-e", "-c", "x")
    assert probe().command == ("true",)


def test_the_start_interval_applies_while_starting_in_the_start_period() -> None:
    rules = probe(Interval=10 * SECOND, StartInterval=SECOND, StartPeriod=60 * SECOND)
    assert health.next_interval(rules, {"Status": "starting"}, 0) == SECOND
    assert health.next_interval(rules, {"Status": "healthy"}, 0) == 10 * SECOND
    assert health.next_interval(rules, {"Status": "starting"}, 61 * SECOND) == 10 * SECOND


@pytest.mark.parametrize("healthcheck, message", [
    ({"Interval": 999_999}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Timeout": 1}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"StartPeriod": -5}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"StartInterval": 10}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["SHELL", "x"]}, "Unknown type 'SHELL'"),
    ({"Test": ["CMD"]}, "Missing command after CMD"),
], ids=["interval below 1ms", "timeout below 1ms", "negative start period", "start interval below 1ms",
        "negative retries", "unknown test type", "CMD without a command"])
def test_bad_healthchecks_are_refused_naming_the_field(healthcheck, message) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        health.validate_healthcheck(healthcheck)


def test_good_healthchecks_pass() -> None:
    for healthcheck in (None, {}, {"Test": ["NONE"]}, {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000},
                        {"Test": ["CMD", "true"], "Retries": 0, "Timeout": 0}):
        health.validate_healthcheck(healthcheck)


@pytest.mark.parametrize("nanoseconds, text", [
    (30 * SECOND, "30s"), (90 * SECOND, "1m30s"), (1_500_000_000, "1.5s"), (300_000_000, "300ms"),
    (3600 * SECOND, "1h0m0s"), (0, "0s")])
def test_timeouts_print_as_go_durations(nanoseconds, text) -> None:
    assert health.go_duration(nanoseconds) == text
