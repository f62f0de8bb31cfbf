"""Healthchecks as Docker runs them: the configuration, the probe's command, and ``State.Health``.

``Config.Healthcheck`` (the container's, merged at create with the image's ``HEALTHCHECK``)::

    {"Test": ["CMD", argv...] | ["CMD-SHELL", "command"] | ["NONE"] | [],
     "Interval": ns, "Timeout": ns, "StartPeriod": ns, "StartInterval": ns, "Retries": n}

Zero durations mean Docker's defaults: interval 30 s, timeout 30 s, start period 0, start
interval 5 s, retries 3.  ``NONE`` (``--no-healthcheck``) and an empty Test mean no healthcheck.

``State.Health`` (in ``config.v2.json``, written by the container's monitor, which runs the
probes: :mod:`lamina.container.monitor.health`)::

    {"Status": "starting" | "healthy" | "unhealthy", "FailingStreak": n,
     "Log": [{"Start": time, "End": time, "ExitCode": n, "Output": text}, ...]}   # last 5

Docker's rules (moby ``daemon/health.go``), applied by :func:`record_result`: exit code 0 is
healthy and resets the streak; any other result (a timeout is ``-1``) increments the streak,
except while the container is still ``starting`` inside its start period; ``Retries``
consecutive failures make it unhealthy.  Each run starts ``starting`` with a zero streak (the
log is kept); when the run ends, a container that has a healthcheck is ``unhealthy``.  The
probe's stdout and stderr share one buffer capped at 4096 bytes (``...`` marks a cut).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.container.durations import go_duration
from lamina.records import dataclass

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_RETRIES",
    "DEFAULT_START_INTERVAL",
    "DEFAULT_TIMEOUT",
    "HEALTH_STATUSES",
    "HEALTHY",
    "MAXIMUM_LOG_ENTRIES",
    "MAXIMUM_OUTPUT",
    "MINIMUM_DURATION",
    "STARTING",
    "UNHEALTHY",
    "OutputBuffer",
    "Probe",
    "ProbeResult",
    "end_of_run",
    "go_duration",
    "next_interval",
    "probe_of",
    "record_result",
    "start_of_run",
    "validate_healthcheck",
]

SECOND = 1_000_000_000
MINIMUM_DURATION = 1_000_000          # 1 ms, Docker's containertypes.MinimumDuration
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAXIMUM_LOG_ENTRIES = 5
MAXIMUM_OUTPUT = 4096

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
HEALTH_STATUSES = ("starting", "healthy", "unhealthy", "none")   # the values of ps's health= filter

_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def validate_healthcheck(healthcheck: Any) -> None:
    """Docker's checks of a create request's ``Healthcheck`` (InvalidArgument, naming the field)."""
    if healthcheck is None:
        return
    if not isinstance(healthcheck, Mapping):
        raise errdefs.InvalidArgument("Healthcheck must be a JSON object")
    for key in _DURATIONS:
        value = healthcheck.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise errdefs.InvalidArgument(f"{key} in Healthcheck must be an integer (nanoseconds)")
        if value != 0 and value < MINIMUM_DURATION:
            raise errdefs.InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = healthcheck.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise errdefs.InvalidArgument("Retries in Healthcheck must be an integer")
    if retries < 0:
        raise errdefs.InvalidArgument("Retries in Healthcheck cannot be negative")
    test = healthcheck.get("Test")
    if test is None or test == []:
        return
    if isinstance(test, str):
        test = [test]
    if not isinstance(test, list) or not all(isinstance(item, str) for item in test):
        raise errdefs.InvalidArgument("Test in Healthcheck must be an array of strings")
    kind = test[0]
    if kind == "NONE":
        return
    if kind not in ("CMD", "CMD-SHELL"):
        raise errdefs.InvalidArgument(f"Unknown type {kind!r} in Healthcheck Test (try CMD or CMD-SHELL)")
    if len(test) < 2 or not any(test[1:]):
        raise errdefs.InvalidArgument(f"Missing command after {kind} in Healthcheck Test")


@dataclass(frozen=True)
class Probe:
    """What the monitor runs: the command (inside the container, as an exec) and its timing,
    all in nanoseconds with Docker's defaults filled in."""

    command: tuple[str, ...]
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int


def probe_of(config: Mapping[str, Any]) -> Probe | None:
    """The probe of a container ``Config``; None when it has no healthcheck (none, ``NONE``,
    an empty or unknown Test)."""
    healthcheck = config.get("Healthcheck")
    if not isinstance(healthcheck, Mapping):
        return None
    test = healthcheck.get("Test") or []
    if isinstance(test, str):
        test = [test]
    if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        return None
    if test[0] == "CMD-SHELL":
        shell = config.get("Shell") or ["/bin/sh", "-c"]
        command = (*shell, " ".join(test[1:]))
    else:
        command = tuple(test[1:])
    return Probe(command=tuple(str(part) for part in command),
                 interval=int(healthcheck.get("Interval") or 0) or DEFAULT_INTERVAL,
                 timeout=int(healthcheck.get("Timeout") or 0) or DEFAULT_TIMEOUT,
                 start_period=int(healthcheck.get("StartPeriod") or 0),
                 start_interval=int(healthcheck.get("StartInterval") or 0) or DEFAULT_START_INTERVAL,
                 retries=int(healthcheck.get("Retries") or 0) or DEFAULT_RETRIES)


def next_interval(probe: Probe, health: Mapping[str, Any] | None, since_start: int) -> int:
    """Nanoseconds until the next probe: the start interval while the container is still
    ``starting`` within its start period, the interval otherwise."""
    if since_start < probe.start_period and (health or {}).get("Status") == STARTING:
        return probe.start_interval
    return probe.interval


@dataclass(frozen=True)
class ProbeResult:
    """One probe's result, as it goes into ``Health.Log`` (times in ns since the epoch)."""

    start: int
    end: int
    exit_code: int
    output: str

    def to_dict(self) -> dict[str, Any]:
        from lamina.container.logs import format_time

        return {"Start": format_time(self.start), "End": format_time(self.end), "ExitCode": self.exit_code,
                "Output": self.output}


class OutputBuffer:
    """A probe's stdout and stderr together, capped at :data:`MAXIMUM_OUTPUT` bytes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.truncated = False

    def write(self, chunk: bytes) -> None:
        keep = max(0, min(MAXIMUM_OUTPUT - len(self.data), len(chunk)))
        self.data += chunk[:keep]
        if keep < len(chunk):
            self.truncated = True

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        return text + "..." if self.truncated else text


def start_of_run(health: Mapping[str, Any] | None) -> dict[str, Any]:
    """``State.Health`` when a run starts: starting, no failing streak, the log kept."""
    log = list((health or {}).get("Log") or [])
    return {"Status": STARTING, "FailingStreak": 0, "Log": log}


def end_of_run(health: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``State.Health`` when the run ended: unhealthy, as Docker reports a stopped monitor."""
    if health is None:
        return None
    return {**health, "Status": UNHEALTHY}


def record_result(health: Mapping[str, Any] | None, result: ProbeResult, probe: Probe,
                  started_at: int) -> dict[str, Any]:
    """The new ``State.Health`` after ``result`` (``started_at``: the run's start, ns)."""
    current = dict(health or start_of_run(None))
    log = [*list(current.get("Log") or []), result.to_dict()][-MAXIMUM_LOG_ENTRIES:]
    status = current.get("Status") or STARTING
    streak = int(current.get("FailingStreak") or 0)
    if result.exit_code == 0:
        status, streak = HEALTHY, 0
    elif not (status == STARTING and result.start - started_at < probe.start_period):
        streak += 1
        if streak >= probe.retries:
            status = UNHEALTHY
    return {"Status": status, "FailingStreak": streak, "Log": log}
