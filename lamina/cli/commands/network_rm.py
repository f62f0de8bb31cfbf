"""``lamina network rm NETWORK...``: remove networks, printing each name given.

Each is tried in turn; a network with endpoints is refused (409), a predefined one too (403);
failures are reported and the exit code is that of the last one."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status
from lamina.client.client import ClientError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--force", action="store_true", help="do not error if the network does not exist")


def run(args: argparse.Namespace, context: Context) -> int:
    status = 0
    for name in args.names:
        try:
            context.client.remove_network(name)
        except ClientError as exc:
            if exc.status == 404 and args.force:
                continue
            if exc.status == 404:
                context.error(f"Error: No such network: {name}")
            else:
                context.error(f"Error response from daemon: {exc.message}")
            status = exit_code_for_status(exc.status)
            continue
        context.print(name)
    return status
