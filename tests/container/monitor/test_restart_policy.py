"""Docker's restart policies and back-off, as a pure function."""

from __future__ import annotations

import pytest

from lamina.container.monitor.policy import RestartDecision, restart_decision
from lamina.container.monitor.runs import exit_code


def decide(policy: str, maximum: int = 0, *, code: int = 1, duration: float = 1.0, stopped: bool = False,
           count: int = 0, previous: float = 0.0) -> RestartDecision:
    return restart_decision(policy, maximum, exit_code=code, duration=duration, manually_stopped=stopped,
                            restart_count=count, previous_delay=previous)


@pytest.mark.parametrize(("policy", "maximum", "code", "count", "restart"), [
    ("no", 0, 1, 0, False),
    ("always", 0, 0, 0, True),
    ("always", 0, 1, 50, True),
    ("unless-stopped", 0, 0, 0, True),
    ("on-failure", 0, 0, 0, False),
    ("on-failure", 0, 3, 99, True),
    ("on-failure", 2, 3, 1, True),
    ("on-failure", 2, 3, 2, False),
    ("an-unknown-policy", 0, 1, 0, False),
], ids=["no never restarts", "always restarts a success", "always has no limit", "unless-stopped restarts",
        "on-failure leaves a success", "on-failure without a maximum", "on-failure below its maximum",
        "on-failure at its maximum", "an unknown policy does not restart"])
def test_which_exits_restart(policy: str, maximum: int, code: int, count: int, restart: bool) -> None:
    assert decide(policy, maximum, code=code, count=count).restart is restart


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_a_manual_stop_ends_every_policy(policy: str) -> None:
    assert decide(policy, stopped=True) == RestartDecision(False)


def test_the_back_off_doubles_up_to_a_minute() -> None:
    delays = []
    previous = 0.0
    for _ in range(12):
        decision = decide("always", previous=previous)
        delays.append(decision.delay)
        previous = decision.delay
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0


def test_a_run_of_ten_seconds_resets_the_back_off() -> None:
    assert decide("always", previous=25.6, duration=10.0).delay == 0.1
    assert decide("always", previous=25.6, duration=9.9).delay == 51.2
    assert decide("no", previous=25.6).delay == 0.0


def test_exit_codes_of_wait_statuses() -> None:
    assert exit_code(3 << 8) == 3          # exited with 3
    assert exit_code(9) == 128 + 9         # killed by SIGKILL
    assert exit_code(0) == 0
