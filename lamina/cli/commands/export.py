"""``lamina export [-o FILE] CONTAINER``: the container's whole filesystem as a tar, to FILE or
to stdout (never to a terminal).  With ``-o`` the tar is written beside FILE and renamed over
it once complete, like ``save``."""

from __future__ import annotations

import argparse

from lamina.cli.commands.save import check_output, write_output
from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import UsageError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to a file, instead of STDOUT")


def run(args: argparse.Namespace, context: Context) -> int:
    if not args.output and is_terminal(context.out):
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output:
        check_output(args.output)
    chunks = context.client.export(args.container)
    return write_output(context, args.output, chunks)
