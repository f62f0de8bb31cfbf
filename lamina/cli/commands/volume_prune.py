"""``lamina volume prune``: remove anonymous volumes no container uses (``-a``: every unused
local volume), like ``docker volume prune`` since Docker 23.

Prints ``Deleted Volumes:`` with one name a line, then ``Total reclaimed space: …``.
``--filter`` takes ``label=KEY[=VALUE]``, ``label!=KEY[=VALUE]`` and ``all=true``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError, UsageError
from lamina.cli.formatting import human_size
from lamina.cli.options import confirm, parse_filters

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove anonymous local volumes not used by at least one container."
_WARNING_ALL = "WARNING! This will remove all local volumes not used by at least one container."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true",
                        help="remove all unused volumes, not just anonymous ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'label=<key>=<value>')")


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    if args.all:
        if "all" in filters:
            raise UsageError("conflicting options: cannot specify both --all and --filter all=1")
        filters["all"] = ["true"]
    everything = [value.lower() for value in filters.get("all", [])] in (["true"], ["1"])
    if not args.force and not confirm(context, _WARNING_ALL if everything else _WARNING):
        raise CommandError("volume prune has been cancelled")
    report = context.client.prune_volumes(filters=filters or None)
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        context.print("Deleted Volumes:\n" + "\n".join(deleted) + "\n")
    context.print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
