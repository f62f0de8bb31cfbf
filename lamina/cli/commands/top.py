"""``lamina top CONTAINER [ps OPTIONS]``: the container's processes as ``ps`` shows them
(``-ef`` by default), aligned like docker's (columns at least 20 wide)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.formatting import tabulate

__all__ = ["OPTIONS_END_AT_POSITIONAL", "configure", "run"]

OPTIONS_END_AT_POSITIONAL = True


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="ps OPTIONS")


def run(args: argparse.Namespace, context: Context) -> int:
    answer = context.client.top(args.container, ps_args=" ".join(args.ps_args))
    rows = [answer.get("Titles") or []]
    rows.extend(answer.get("Processes") or [])
    context.out.write(tabulate(rows, min_width=20, padding=3))
    return 0
