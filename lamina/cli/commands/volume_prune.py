"""``lamina volume prune``: remove anonymous volumes no container uses (``-a``: every unused
local volume), like ``docker volume prune`` since Docker 23.

Prints ``Deleted Volumes:`` with one name a line, then ``Total reclaimed space: …``.
``--filter`` takes ``label=KEY[=VALUE]``, ``label!=KEY[=VALUE]`` and ``all=true``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import UsageError
from lamina.cli.options import add_prune_options, confirm_prune, parse_filters, print_prune_report

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove anonymous local volumes not used by at least one container."
_WARNING_ALL = "WARNING! This will remove all local volumes not used by at least one container."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true",
                        help="remove all unused volumes, not just anonymous ones")
    add_prune_options(parser, "'label=<key>=<value>'")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    if args.all:
        if "all" in filters:
            raise UsageError("conflicting options: cannot specify both --all and --filter all=1")
        filters["all"] = ["true"]
    everything = [value.lower() for value in filters.get("all", [])] in (["true"], ["1"])
    confirm_prune(args, context, _WARNING_ALL if everything else _WARNING, "volume prune")
    report = context.client.prune_volumes(filters=filters or None)
    print_prune_report(context, "Deleted Volumes", report.get("VolumesDeleted") or [], report.get("SpaceReclaimed"))
    return 0
