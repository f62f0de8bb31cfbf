"""``lamina pause CONTAINER...``: freeze every process of the containers (cgroup freezer)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, context: Context) -> int:
    return for_each(context, args.containers, context.client.pause)
