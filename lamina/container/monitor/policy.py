"""The restart policy of a container's monitor, as a pure function: after each exit, whether to
run the container again and how long to wait first (Docker's ``restartmanager``)."""

from __future__ import annotations

from lamina.records import dataclass

__all__ = ["RestartDecision", "restart_decision"]

_FIRST_DELAY = 0.1           # Docker's back-off: 100 ms doubling up to 1 min,
_MAXIMUM_DELAY = 60.0
_RESET_AFTER = 10.0          # reset after a run of 10 s


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay: float = 0.0      # seconds to wait before the next run (the back-off)


def restart_decision(policy: str, maximum: int, *, exit_code: int, duration: float, manually_stopped: bool,
                     restart_count: int, previous_delay: float) -> RestartDecision:
    """Docker's restart policies (``no``, ``on-failure[:maximum]``, ``always``,
    ``unless-stopped``) after a run that lasted ``duration`` seconds and exited with
    ``exit_code``: a manual stop or kill stops every policy; ``on-failure`` restarts a non-zero
    exit up to ``maximum`` times (0: no limit).  The delay is Docker's back-off: 100 ms,
    doubled after each restart up to 1 min, back to 100 ms after a run of 10 s or more."""
    if manually_stopped or policy == "no":
        return RestartDecision(False)
    if policy in ("always", "unless-stopped"):
        restart = True
    elif policy == "on-failure":
        restart = exit_code != 0 and (maximum == 0 or restart_count < maximum)
    else:
        restart = False
    if not restart:
        return RestartDecision(False)
    previous = 0.0 if duration >= _RESET_AFTER else previous_delay
    delay = _FIRST_DELAY if not previous else min(previous * 2, _MAXIMUM_DELAY)
    return RestartDecision(True, delay)
