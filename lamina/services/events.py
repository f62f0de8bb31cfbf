"""The event service: Docker's ``GET /events`` on top of the shared event log.

``events(since=, until=, filters=, stop=)`` checks its arguments at once (a bad filter or
window is an error before anything is streamed) and returns a generator of messages:
the stored events in the window when ``since`` or ``until`` is given, then, unless ``until``
is already past, new events until ``until`` passes or ``stop`` is set.  Times are
nanoseconds since the epoch (Docker's ``timeNano``; seconds in a float would round them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from lamina import errdefs
from lamina.events.filters import EventFilter
from lamina.events.log import EventLog

__all__ = ["EventServiceImpl"]


class EventServiceImpl:
    def __init__(self, log: EventLog) -> None:
        self.log = log

    def events(self, *, since_ns: int | None = None, until_ns: int | None = None,
               filters: dict[str, list[str]] | None = None,
               stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        event_filter = EventFilter(filters)
        if since_ns is not None and until_ns is not None and until_ns < since_ns:
            raise errdefs.InvalidArgument(
                f"`since` time ({_seconds_text(since_ns)}) cannot be after `until` time ({_seconds_text(until_ns)})")
        follow = until_ns is None or until_ns > time.time_ns()
        stream = self.log.stream(since_ns=since_ns, until_ns=until_ns, follow=follow, stop=stop)

        def generate() -> Iterator[dict[str, Any]]:
            try:
                for message in stream:
                    if event_filter.include(message):
                        yield message
            finally:
                stream.close()

        return generate()


def _seconds_text(nanoseconds: int) -> str:
    return f"{nanoseconds // 1_000_000_000}.{nanoseconds % 1_000_000_000:09d}"
