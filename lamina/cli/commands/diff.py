"""``lamina diff CONTAINER``: the changes of the container's filesystem against its image, one
per line as ``C /path`` (changed), ``A /path`` (added), ``D /path`` (deleted)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["KINDS", "configure", "run"]

KINDS = {0: "C", 1: "A", 2: "D"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace, context: Context) -> int:
    for change in context.client.changes(args.container):
        context.print(f"{KINDS.get(change.get('Kind'), '?')} {change.get('Path')}")
    return 0
