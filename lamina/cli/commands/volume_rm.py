"""``lamina volume rm [-f] VOLUME...``: remove volumes, printing each name removed.

A volume in use by a container cannot be removed, with or without ``-f`` (``-f`` only makes a
missing volume not an error).  Each name is tried in turn; failures are reported and the exit
code is that of the last one."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status
from lamina.client.client import ClientError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--force", action="store_true",
                        help="do not fail when a volume does not exist")


def run(args: argparse.Namespace, context: Context) -> int:
    status = 0
    for name in args.names:
        try:
            context.client.remove_volume(name, force=args.force)
        except ClientError as exc:
            if exc.status == 404:
                context.error(f"Error: No such volume: {name}")
            else:
                context.error(f"Error response from daemon: {exc.message}")
            status = exit_code_for_status(exc.status)
            continue
        context.print(name)
    return status
