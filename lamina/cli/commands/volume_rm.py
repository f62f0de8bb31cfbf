"""``lamina volume rm [-f] VOLUME...``: remove volumes, printing each name removed.

A volume in use by a container cannot be removed, with or without ``-f`` (``-f`` only makes a
missing volume not an error).  Each name is tried in turn; failures are reported and the exit
code is that of the last one."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.targets import remove_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--force", action="store_true",
                        help="do not fail when a volume does not exist")


def run(args: argparse.Namespace, context: Context) -> int:
    return remove_each(context, args.names, lambda name: context.client.remove_volume(name, force=args.force),
                       kind="volume")
