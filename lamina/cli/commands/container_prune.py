"""``lamina container prune [-f] [--filter until=|label=]``: remove all stopped containers."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError
from lamina.cli.formatting import human_size
from lamina.cli.options import confirm, parse_filters

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all stopped containers."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'until=<timestamp>', 'label=KEY')")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    if not args.force and not confirm(context, _WARNING):
        raise CommandError("container prune has been cancelled")
    report = context.client.prune_containers(filters=filters or None)
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        context.print("Deleted Containers:\n" + "\n".join(deleted) + "\n")
    context.print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
