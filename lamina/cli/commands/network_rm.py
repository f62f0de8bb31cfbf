"""``lamina network rm NETWORK...``: remove networks, printing each name given.

Each is tried in turn; a network with endpoints is refused (409), a predefined one too (403);
failures are reported and the exit code is that of the last one."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.targets import remove_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--force", action="store_true", help="do not error if the network does not exist")


def run(args: argparse.Namespace, context: Context) -> int:
    return remove_each(context, args.names, context.client.remove_network, kind="network", missing_ok=args.force)
