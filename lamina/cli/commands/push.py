"""``lamina push [-a] [-q] [--format docker|oci] NAME[:TAG]``: upload an image to a registry
(credentials from ``~/.docker/config.json``); ``--format oci`` pushes an OCI image manifest
instead of Docker's schema 2 (the default, what ``docker push`` sends)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_BAD_REQUEST, CommandError
from lamina.cli.progress import render_stream

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all-tags", action="store_true", help="push all tags of the repository")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    parser.add_argument("--disable-content-trust", action="store_true", default=True,
                        help="skip image signing (always: lamina has no content trust)")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker",
                        help="the manifest format: docker (schema 2, the default) or oci")
    parser.add_argument("image", metavar="NAME[:TAG]")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.cli.commands.pull import auth_for
    from lamina.image.reference import parse_normalized_named, with_default_tag

    _, auth = auth_for(args.image)
    reference = parse_normalized_named(args.image)
    if reference.digest is not None:
        raise CommandError("cannot push a digest reference", EXIT_BAD_REQUEST)
    if args.all_tags:
        if reference.tag is not None:
            raise CommandError("tag can't be used with --all-tags/-a", EXIT_BAD_REQUEST)
        tag = ""
    else:
        tag = with_default_tag(reference).tag or "latest"
    messages = context.client.push(reference.name, tag=tag, auth=auth,
                                   manifest_format="" if args.format == "docker" else args.format)
    if args.quiet:
        code = render_stream((m for m in messages if "error" in m or "errorDetail" in m), context.out, context.err)
        if code == 0:
            context.print(with_default_tag(reference).string() if tag else reference.string())
        return code
    return render_stream(messages, context.out, context.err, terminal=is_terminal(context.out))
