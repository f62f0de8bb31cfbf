"""``lamina network prune``: remove the user-defined networks no container uses.

Prints ``Deleted Networks:`` with one name a line; ``--filter`` takes ``until=``,
``label=KEY[=VALUE]`` and ``label!=KEY[=VALUE]``; ``-f`` skips the confirmation."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError
from lamina.cli.options import confirm, parse_filters

__all__ = ["configure", "run"]

_WARNING = "WARNING! This will remove all custom networks not used by at least one container."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'until=<timestamp>')")


def run(args: argparse.Namespace, context: Context) -> int:
    if not args.force and not confirm(context, _WARNING):
        raise CommandError("network prune has been cancelled")
    report = context.client.prune_networks(filters=parse_filters(args.filter) or None)
    deleted = report.get("NetworksDeleted") or []
    if deleted:
        context.print("Deleted Networks:\n" + "\n".join(deleted))
    return 0
