"""``lamina manifest inspect NAME[:TAG|@DIGEST]``: the manifest or manifest list (index) of an
image as its registry serves it, printed as JSON like ``docker manifest inspect``."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure", action="store_true",
                        help="accepted for docker's syntax; insecure registries are set in the engine's "
                        "configuration (LAMINA_INSECURE_REGISTRIES)")
    parser.add_argument("-v", "--verbose", action="store_true", help="not supported: refused")
    parser.add_argument("image", metavar="NAME[:TAG|@DIGEST]")


def run(args: argparse.Namespace, context: Context) -> int:
    import json

    from lamina.cli.commands.pull import auth_for
    from lamina.cli.errors import EXIT_NOT_IMPLEMENTED, CommandError

    if args.verbose:
        raise CommandError("lamina manifest inspect does not support --verbose", EXIT_NOT_IMPLEMENTED)
    _, auth = auth_for(args.image)
    context.print(json.dumps(context.client.manifest(args.image, auth=auth), indent=8))
    return 0
