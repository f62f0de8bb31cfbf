"""``lamina image prune``: remove dangling images (``-a``: every image no container uses)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError
from lamina.cli.formatting import human_size
from lamina.cli.options import confirm, parse_filters

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all dangling images."
_WARNING_ALL = "WARNING! This will remove all images without at least one container associated to them."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'until=<timestamp>', 'label=KEY')")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    filters["dangling"] = ["false" if args.all else "true"]
    if not args.force and not confirm(context, _WARNING_ALL if args.all else _WARNING):
        raise CommandError("image prune has been cancelled")
    report = context.client.prune_images(filters=filters)
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        lines = ["Deleted Images:"]
        for item in deleted:
            if item.get("Untagged"):
                lines.append(f"untagged: {item['Untagged']}")
            else:
                lines.append(f"deleted: {item.get('Deleted', '')}")
        context.print("\n".join(lines) + "\n")
    context.print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
