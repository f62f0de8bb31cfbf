"""``lamina builder prune``: remove build cache (the untagged images builds made), like
``docker builder prune``.

Without ``-a`` only the cache no kept image uses goes (Docker's "dangling build cache"); with
``-a`` every build cache item not used by a container.  Prints ``Deleted build cache
objects:`` with one id a line, then ``Total reclaimed space: …``.  ``--filter`` takes
``until=<timestamp or duration>``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError
from lamina.cli.formatting import human_size
from lamina.cli.options import confirm, parse_filters

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all dangling build cache."
_WARNING_ALL = "WARNING! This will remove all build cache."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="remove all unused build cache, not just dangling ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'until=24h')")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    if not args.force and not confirm(context, _WARNING_ALL if args.all else _WARNING):
        raise CommandError("builder prune has been cancelled")
    report = context.client.prune_build_cache(all=args.all, filters=filters or None)
    deleted = report.get("CachesDeleted") or []
    if deleted:
        context.print("Deleted build cache objects:\n" + "\n".join(deleted) + "\n")
    context.print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
