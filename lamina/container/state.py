"""A container's ``State`` as Docker stores and reports it, and the texts derived from it.

``State`` (a member of ``config.v2.json``, and of ``docker inspect``)::

    {"Running": false, "Paused": false, "Restarting": false, "OOMKilled": false,
     "RemovalInProgress": false, "Dead": false, "Pid": 0, "ExitCode": 0, "Error": "",
     "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z", "Health": null}

Times are RFC 3339 with nanoseconds in UTC (Go's ``RFC3339Nano``); Go's zero time means
"never".  While a restart policy waits to restart a container, ``Running`` and ``Restarting``
are both true (as in Docker: every check that refuses to touch a running container applies).
"""

from __future__ import annotations

import time

from lamina.container.durations import human_duration
from lamina.image.rfc3339 import format_time, seconds_of  # not via lamina.container.logs: listing reads no log

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ZERO_TIME",
    "human_duration",
    "is_running",
    "new_state",
    "now",
    "seconds_of",
    "status",
    "status_text",
]

ZERO_TIME = "0001-01-01T00:00:00Z"


def now() -> str:
    return format_time(time.time_ns())


def new_state() -> dict[str, Any]:
    return {"Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
            "RemovalInProgress": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME, "Health": None}


def is_running(state: dict[str, Any]) -> bool:
    return bool(state.get("Running"))


def status(state: dict[str, Any]) -> str:
    """Docker's ``State.Status``: created, running, paused, restarting, removing, exited, dead."""
    if state.get("Running"):
        if state.get("Paused"):
            return "paused"
        if state.get("Restarting"):
            return "restarting"
        return "running"
    if state.get("RemovalInProgress"):
        return "removing"
    if state.get("Dead"):
        return "dead"
    if not seconds_of(state.get("StartedAt")):
        return "created"
    return "exited"


#: the ``Status`` column of a container that is not running and has no exit to show
_STILL_TEXT = {"removing": "Removal In Progress", "dead": "Dead", "created": "Created"}


def status_text(state: dict[str, Any], at: float | None = None) -> str:
    """The ``Status`` column of ``docker ps`` ("Up 3 seconds", "Exited (0) 2 seconds ago")."""
    current = time.time() if at is None else at
    kind = status(state)
    if kind == "paused":
        return f"Up {human_duration(current - seconds_of(state.get('StartedAt')))} (Paused)"
    if kind == "restarting":
        return (f"Restarting ({state.get('ExitCode', 0)}) "
                f"{human_duration(current - seconds_of(state.get('FinishedAt')))} ago")
    if kind == "running":
        health = (state.get("Health") or {}).get("Status")
        # Docker's Health.String(): "health: starting", else the status itself
        label = "health: starting" if health == "starting" else health
        suffix = f" ({label})" if health and health != "none" else ""
        return f"Up {human_duration(current - seconds_of(state.get('StartedAt')))}{suffix}"
    if kind in _STILL_TEXT:
        return _STILL_TEXT[kind]
    if not seconds_of(state.get("FinishedAt")):
        return ""
    return (f"Exited ({state.get('ExitCode', 0)}) "
            f"{human_duration(current - seconds_of(state.get('FinishedAt')))} ago")
