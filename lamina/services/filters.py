"""Docker's filter values shared by the list and prune endpoints of every resource.

``until`` (the prune endpoints): a unix timestamp (``1700000000``, ``1700000000.5``), an RFC
3339 time, or a Go-style duration before now (``24h``, ``1h30m``, ``90s``).  ``label``:
``key`` (the label is set) or ``key=value`` (set to that value), every one of them required.
"""

from __future__ import annotations

import re
import time

from lamina import errdefs
from lamina.container.state import seconds_of

__all__ = ["all_labels_match", "until_seconds"]

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def until_seconds(value: str) -> float:
    """The time an ``until`` filter names, in seconds since the epoch."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if text and match and any(match.groups()):
        hours, minutes, seconds = (int(group or 0) for group in match.groups())
        return time.time() - (hours * 3600 + minutes * 60 + seconds)
    created = seconds_of(text)
    if not created:
        raise errdefs.InvalidArgument(f"invalid filter 'until={value}': not a time or a duration")
    return created


def all_labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Whether ``labels`` has every ``key`` / ``key=value`` of ``wanted``."""
    for item in wanted:
        key, equals, value = item.partition("=")
        if key not in labels or (equals and labels[key] != value):
            return False
    return True
