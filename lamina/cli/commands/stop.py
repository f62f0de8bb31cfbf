"""``lamina stop [-t SECONDS] [-s SIGNAL] CONTAINER...``: send the stop signal (the container's
StopSignal, SIGTERM by default), then SIGKILL after the timeout (the container's StopTimeout,
10 s by default).  Stopping a stopped container is not an error (docker's 304)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-t", "--time", "--timeout", dest="timeout", type=int, metavar="SECONDS",
                        help="seconds to wait before killing the container")
    parser.add_argument("-s", "--signal", metavar="SIGNAL", help="signal to send to the container")


def run(args: argparse.Namespace, context: Context) -> int:
    client = context.client
    return for_each(context, args.containers,
                    lambda name: client.stop(name, timeout=args.timeout, signal=args.signal))
