"""``lamina container prune [-f] [--filter until=|label=]``: remove all stopped containers."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.options import add_prune_options, confirm_prune, parse_filters, print_prune_report

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all stopped containers."


def configure(parser: argparse.ArgumentParser) -> None:
    add_prune_options(parser, "'until=<timestamp>', 'label=KEY'")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    confirm_prune(args, context, _WARNING, "container prune")
    report = context.client.prune_containers(filters=filters or None)
    print_prune_report(context, "Deleted Containers", report.get("ContainersDeleted") or [],
                       report.get("SpaceReclaimed"))
    return 0
