"""``lamina commit [-a AUTHOR] [-c CHANGE]... [-m MESSAGE] [-p] CONTAINER [REPOSITORY[:TAG]]``:
make an image of the container's changes (the container is paused meanwhile unless
``--pause=false``) and print its id."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.formatting import split_reference

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument("-a", "--author", default="", help='author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="apply Dockerfile instruction to the created image")
    parser.add_argument("-m", "--message", default="", help="commit message")
    parser.add_argument("-p", "--pause", action="store_true", default=True,
                        help="pause container during commit (default true)")


def run(args: argparse.Namespace, context: Context) -> int:
    repository, tag = split_reference(args.reference) if args.reference else ("", "")
    if tag.startswith("@"):
        from lamina.cli.errors import UsageError

        raise UsageError(f"invalid reference {args.reference!r}: commit cannot take a digest")
    answer = context.client.commit(args.container, repository=repository, tag=tag, comment=args.message,
                                   author=args.author, pause=args.pause, changes=args.change)
    context.print(str(answer.get("Id", "")))
    return 0
