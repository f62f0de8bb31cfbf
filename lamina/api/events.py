"""``GET /events``: Docker's event stream.

Query: ``since`` and ``until`` are unix times as Docker's clients send them (``1700000000``,
``1700000000.123456789``: seconds, then up to nine digits of fraction) or RFC 3339 times
(``2026-11-23T05:00:00.5Z``); ``filters`` is the usual JSON object (names in
:data:`lamina.events.filters.EVENT_FILTERS`).  ``until`` before ``since`` is a 400.

The answer is ``200`` with ``Content-Type: application/json`` at once (the docker CLI waits
for the head), then one event message per line (:mod:`lamina.events.message`), flushed as
each is produced: the stored events in the window when ``since`` or ``until`` is given, then
new events unless ``until`` has passed; the stream ends when ``until`` passes.  Without
``until`` it ends only when the client leaves: the body's ``cancel()`` (called by the server
when it sees the client hang up) stops the producer within a poll interval, instead of at
its next event.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from lamina import errdefs
from lamina.api import params
from lamina.api.errors import log_unexpected, message_for, status_for
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.streams import JSON, StreamBody, json_line

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.call import Call

__all__ = ["get_events", "parse_event_time"]

# patterns stay strings (re caches them when used): compiling at import costs every command
_UNIX_TIME = r"^(-?\d+)(?:\.(\d{1,9}))?$"
_RFC3339 = r"^(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"


def parse_event_time(text: str, name: str = "since") -> int | None:
    """A ``since`` / ``until`` value in nanoseconds since the epoch; None when empty."""
    value = text.strip()
    if not value:
        return None
    match = re.match(_UNIX_TIME, value)
    if match is not None:
        seconds = int(match.group(1))
        fraction = int((match.group(2) or "0").ljust(9, "0"))
        return seconds * 1_000_000_000 + (-fraction if seconds < 0 else fraction)
    match = re.match(_RFC3339, value)
    if match is not None:
        from datetime import datetime

        zone = match.group(3).upper().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(match.group(1).replace("t", "T").replace(" ", "T") + zone)
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid value for {name}: {text!r}: {exc}") from exc
        fraction = int((match.group(2) or "0").ljust(9, "0"))
        return int(moment.timestamp()) * 1_000_000_000 + fraction
    raise errdefs.InvalidArgument(
        f"invalid value for {name}: {text!r}: expected unix seconds (1700000000.5) or an RFC 3339 time")


class _EventBody(StreamBody):
    """The streamed messages; ``cancel()`` (thread-safe) ends a producer waiting for events."""

    def cancel(self) -> None:
        self._release()


def _request_times(request: Request) -> tuple[int | None, int | None]:
    return (parse_event_time(params.string(request, "since"), "since"),
            parse_event_time(params.string(request, "until"), "until"))


def get_events(call: Call) -> Response:
    from lamina.events.filters import EVENT_FILTERS

    since_ns, until_ns = _request_times(call.request)
    filters = params.filters(call.request, EVENT_FILTERS)
    stop = threading.Event()
    messages = call.services.events.events(since_ns=since_ns, until_ns=until_ns, filters=filters, stop=stop)

    def chunks() -> Iterator[bytes]:
        try:
            for message in messages:
                yield json_line(message)
        except StreamAborted:
            raise
        except Exception as exc:
            log_unexpected(exc, "GET /events")
            raise StreamAborted(status_for(exc), message_for(exc)) from exc
        finally:
            messages.close()  # type: ignore[attr-defined]

    return Response(200, Headers({"Content-Type": JSON}), _EventBody(chunks(), stop.set))
