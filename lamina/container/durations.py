"""Human durations as Docker writes them (go-units' ``HumanDuration``).

``docker ps``'s status column ("Up 3 seconds", "Exited (0) 2 weeks ago") and the CLI's "3 days
ago" columns both use this.  The module imports nothing from lamina so that the CLI can use it
without loading the container store.
"""

from __future__ import annotations

__all__ = ["go_duration", "human_duration"]

SECOND = 1_000_000_000


def human_duration(seconds: float) -> str:
    """Go's ``units.HumanDuration``: ``Less than a second``, ``About a minute``, ``2 weeks``..."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String`` (``30s``, ``1m30s``, ``1.5s``, ``500ms``), as Docker's
    timeout message prints it."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if value >= size:
                return sign + _decimal(value, size) + unit
    hours, rest = divmod(value, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + text + _decimal(rest, SECOND) + "s"


def _decimal(value: int, size: int) -> str:
    whole, fraction = divmod(value, size)
    if not fraction:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{fraction:0{digits}d}".rstrip("0")
