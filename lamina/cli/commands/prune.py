"""``lamina image prune``: remove dangling images (``-a``: every image no container uses)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.options import add_prune_options, confirm_prune, parse_filters, print_prune_report

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all dangling images."
_WARNING_ALL = "WARNING! This will remove all images without at least one container associated to them."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
    add_prune_options(parser, "'until=<timestamp>', 'label=KEY'")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    filters["dangling"] = ["false" if args.all else "true"]
    confirm_prune(args, context, _WARNING_ALL if args.all else _WARNING, "image prune")
    report = context.client.prune_images(filters=filters)
    deleted = [f"untagged: {item['Untagged']}" if item.get("Untagged") else f"deleted: {item.get('Deleted', '')}"
               for item in report.get("ImagesDeleted") or []]
    print_prune_report(context, "Deleted Images", deleted, report.get("SpaceReclaimed"))
    return 0
