"""``lamina rm [-f] [-v] CONTAINER...``: remove containers (``-f`` kills running ones first;
``-v`` also removes their anonymous volumes; ``-l``: the legacy links ``PARENT/ALIAS`` instead)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import EXIT_BAD_REQUEST, EXIT_OK
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-f", "--force", action="store_true", help="force the removal of a running container (uses SIGKILL)")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes associated with the container")
    parser.add_argument("-l", "--link", action="store_true", help="remove the specified link")


def run(args: argparse.Namespace, context: Context) -> int:
    client = context.client
    names = [name for name in args.containers if name.strip("/")]  # docker trims slashes only
    if len(names) != len(args.containers):
        context.error("Error: container name cannot be empty")
    code = for_each(context, names, lambda name: client.remove_container(name, force=args.force,
                                                                         volumes=args.volumes, link=args.link))
    # like docker, the others are removed all the same, and the command fails
    return code or (EXIT_BAD_REQUEST if len(names) != len(args.containers) else EXIT_OK)
