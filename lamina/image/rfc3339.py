"""RFC 3339 times as Go writes and reads them (``time.RFC3339Nano``): image configs' ``created``,
history entries, image metadata's ``lastUpdated``, a container's ``Created`` and ``State``
times, the ``time`` of each json-file log line.  The one home of RFC 3339 in lamina
(:mod:`lamina.container.logs` re-exports these functions).

Parsing uses its own ``timegm`` instead of importing ``calendar`` and ``datetime`` (~2 ms):
every image config read validates its times, and ``ps`` parses every container's ``Created``.
"""

from __future__ import annotations

import functools
import re
import time

from lamina import errdefs

__all__ = ["format_time", "parse_time", "seconds_of"]


@functools.cache
def _time_expression() -> re.Pattern[str]:
    """Compiled on the first parse: a command that parses no time does not pay for it."""
    return re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})")


def format_time(nanoseconds: int | None = None) -> str:
    """Go's ``time.RFC3339Nano`` for a UTC instant (``2024-05-01T12:00:00.123456789Z``,
    trailing zeros of the fraction dropped).  Default: now."""
    if nanoseconds is None:
        nanoseconds = time.time_ns()
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def _timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """``calendar.timegm`` (same results and errors) without importing calendar and datetime
    (~2 ms): every image config read validates its times.  Days from the civil date by
    H. Hinnant's algorithm (proleptic Gregorian calendar, March-based years)."""
    if not 1 <= month <= 12:
        raise ValueError("month must be in 1..12")
    if not 1 <= year <= 9999:
        raise ValueError(f"year {year} is out of range")
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    return ((days + day - 1) * 24 + hour) * 3600 + minute * 60 + second


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (any offset, up to 9 fraction digits)."""
    match = _time_expression().fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    month_number, day_number, hour_number = int(month), int(day), int(hour)
    minute_number, second_number = int(minute), int(second)
    if not (day_number <= 31 and hour_number < 24 and minute_number < 60 and second_number < 61
            and day_number):
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {text!r}: field out of range")
    try:
        seconds = _timegm(int(year), month_number, day_number, hour_number, minute_number, second_number)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {text!r}: {exc}") from exc
    if zone != "Z" and zone != "z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    if fraction:
        return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))
    return seconds * 1_000_000_000


def seconds_of(text: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time; 0 for the zero time (``0001-01-01...``) or
    garbage (a damaged time reads as "never"; inspect still shows the stored text)."""
    if not text or text.startswith("0001-01-01"):
        return 0.0
    try:
        return parse_time(text) / 1e9
    except errdefs.InvalidArgument:
        return 0.0
