"""``lamina logs [-f] [-n|--tail N] [--since T] [--until T] [-t] CONTAINER``: the container's
output, stdout to stdout and stderr to stderr.

``--since`` / ``--until`` take a Go duration before now (``10m``, ``1h30m``), an RFC 3339 time
or date, or a unix timestamp (:func:`lamina.cli.container_flags.parse_time`); ``-t`` prefixes
each line with its RFC 3339 nanosecond timestamp; ``-f`` keeps following until the container
stops (or Ctrl-C).
"""

from __future__ import annotations

import argparse
import time

from lamina.cli.container_flags import parse_time
from lamina.cli.context import Context
from lamina.cli.errors import UsageError
from lamina.cli.stdio import binary

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--follow", action="store_true", help="follow log output")
    parser.add_argument("-n", "--tail", default="all", metavar="N",
                        help='number of lines to show from the end of the logs (default "all")')
    parser.add_argument("--since", default="", metavar="TIME",
                        help="show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
    parser.add_argument("--until", default="", metavar="TIME",
                        help="show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    parser.add_argument("--details", action="store_true", help="show extra details provided to logs")


def run(args: argparse.Namespace, context: Context) -> int:
    tail = args.tail.strip() or "all"
    if tail != "all":
        try:
            if int(tail) < 0:
                tail = "all"
        except ValueError as exc:
            raise UsageError(f'invalid argument "{args.tail}" for "-n, --tail" flag: expected a number or "all"') from exc
    now = time.time()
    since = parse_time(args.since, now, "--since") if args.since else None
    until = parse_time(args.until, now, "--until") if args.until else None
    items = context.client.logs(args.container, stdout=True, stderr=True, follow=args.follow, since=since,
                                until=until, timestamps=args.timestamps, tail=tail)
    out = binary(context.out)
    err = binary(context.err)
    for stream, payload in items:
        if stream == 3:
            context.error(f"Error: {payload.decode('utf-8', 'replace').strip()}")
            return 1
        target = err if stream == 2 else out
        if target is None:
            (context.err if stream == 2 else context.out).write(payload.decode("utf-8", "replace"))
            continue
        target.write(payload)
        target.flush()
    return 0
