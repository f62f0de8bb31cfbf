"""``lamina restart [-t SECONDS] [-s SIGNAL] CONTAINER...``: stop (as ``stop`` does) and start."""

from __future__ import annotations

import argparse

from lamina.cli.commands.stop import configure  # the same flags as stop
from lamina.cli.context import Context
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def run(args: argparse.Namespace, context: Context) -> int:
    client = context.client
    return for_each(context, args.containers,
                    lambda name: client.restart(name, timeout=args.timeout, signal=args.signal))
