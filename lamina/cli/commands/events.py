"""``lamina events [--since T] [--until T] [-f FILTER]... [--format F]``: the engine's events,
like ``docker events``.

Without ``--until`` it keeps printing new events until interrupted; with ``--since`` it first
prints the stored events from then on; with an ``--until`` in the past it prints the stored
events of the window and exits.  Times are Go durations before now (``10m``, ``1h30m``), RFC
3339 times or dates (local time when they have no zone) or unix timestamps.

Default output, one line per event (docker's, time in the local zone)::

    2026-11-23T05:00:00.000000000Z container start 3f4a... (image=busybox, name=web)

``--format json`` (or ``{{json .}}``) prints each message as JSON; any other Go template is
executed per event with docker's field names (``.Type``, ``.Action``, ``.Actor.ID``,
``.Actor.Attributes``, ``.Status``, ``.ID``, ``.From``, ``.Scope``, ``.Time``, ``.TimeNano``).
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime

from lamina.cli.container_flags import parse_time
from lamina.cli.context import Context
from lamina.cli.options import parse_filters

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["api_time", "configure", "format_event", "run"]

# Go field names of events.Message -> its JSON names (what the daemon sends)
_GO_FIELDS = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope", "Time": "time",
              "TimeNano": "timeNano"}


class _Message(dict):  # type: ignore[type-arg]
    """An event message that templates can address by Go field names (``.TimeNano``)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(_GO_FIELDS.get(key, key), default)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="", metavar="TIME", help="show all events created since timestamp")
    parser.add_argument("--until", default="", metavar="TIME", help="stream events until this timestamp")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="FILTER",
                        help="filter output based on conditions provided (e.g. 'type=container', "
                             "'event=die', 'container=NAME', 'image=NAME', 'label=KEY[=VALUE]')")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'json', or a Go template such as '{{.Type}} {{.Action}} {{.Actor.ID}}'")


def api_time(text: str, now: float, flag: str) -> str:
    """A ``--since`` / ``--until`` value as the API takes it: unix seconds with nine digits of
    fraction (a unix timestamp given is passed on unchanged, keeping its precision)."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        return value
    moment = parse_time(value, now, flag)
    seconds = int(moment // 1)
    return f"{seconds}.{round((moment - seconds) * 1e9) % 1_000_000_000:09d}"


def _timestamp(message: dict[str, Any]) -> str:
    nanoseconds = message.get("timeNano") or int(message.get("time") or 0) * 1_000_000_000
    moment = datetime.fromtimestamp(nanoseconds // 1_000_000_000).astimezone()
    offset = moment.utcoffset()
    if not offset:
        zone = "Z"
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanoseconds % 1_000_000_000:09d}{zone}"


def format_event(message: dict[str, Any]) -> str:
    """docker's default line for an event: time, type, action, actor id, sorted attributes."""
    actor = message.get("Actor") or {}
    line = f"{message.get('Type', '')} {message.get('Action', '')} {actor.get('ID', '')}"
    if message.get("timeNano") or message.get("time"):
        line = f"{_timestamp(message)} {line}"
    attributes = actor.get("Attributes") or {}
    if attributes:
        line += " (" + ", ".join(f"{key}={attributes[key]}" for key in sorted(attributes)) + ")"
    return line


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.cli.templates import Template

    now = time.time()
    since = api_time(args.since, now, "--since") if args.since else ""
    until = api_time(args.until, now, "--until") if args.until else ""
    template = None
    if args.format and args.format.strip():
        text = args.format.strip()
        template = Template("{{json .}}" if text == "json" else text.replace("\\t", "\t").replace("\\n", "\n"))
    filters = parse_filters(args.filter) or None
    for message in context.client.events(since=since, until=until, filters=filters):
        if template is not None:
            context.out.write(template.render(_Message(message)) + "\n")
        else:
            context.out.write(format_event(message) + "\n")
        context.out.flush()
    return 0
