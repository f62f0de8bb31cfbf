"""``lamina rename CONTAINER NEW_NAME``."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import UsageError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW_NAME")


def run(args: argparse.Namespace, context: Context) -> int:
    old, new = args.container.strip(), args.new_name.strip()
    if not old or not new:
        raise UsageError("Neither old nor new names may be empty")
    context.client.rename(old, new)
    return 0
