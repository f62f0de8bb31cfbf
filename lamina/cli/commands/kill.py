"""``lamina kill [-s SIGNAL] CONTAINER...``: send a signal (SIGKILL by default; names with or
without ``SIG``, or numbers) to each container's main process."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-s", "--signal", metavar="SIGNAL", help="signal to send to the container (default KILL)")


def run(args: argparse.Namespace, context: Context) -> int:
    client = context.client
    return for_each(context, args.containers, lambda name: client.kill(name, signal=args.signal))
