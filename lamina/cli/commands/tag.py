"""``lamina tag SOURCE TARGET``: add the name TARGET (default tag ``latest``) to an image."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError, EXIT_BAD_REQUEST
from lamina.cli.formatting import split_reference

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def run(args: argparse.Namespace, context: Context) -> int:
    repository, tag = split_reference(args.target)
    if tag.startswith("@"):
        raise CommandError("refusing to create a tag with a digest reference", EXIT_BAD_REQUEST)
    if not repository:
        raise CommandError(f"invalid reference format: {args.target!r}", EXIT_BAD_REQUEST)
    context.client.tag(args.source, repository, tag or "latest")
    return 0
