"""``lamina network disconnect [-f] NETWORK CONTAINER``: remove a container's endpoint."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--force", action="store_true", help="force the container to disconnect")


def run(args: argparse.Namespace, context: Context) -> int:
    context.client.disconnect_network(args.network, args.container, force=args.force)
    return 0
