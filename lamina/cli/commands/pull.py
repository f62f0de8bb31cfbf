"""``lamina pull [-a] [--platform P] [-q] NAME[:TAG|@DIGEST]``: download an image from a
registry (credentials from ``~/.docker/config.json``, see :mod:`lamina.cli.dockerconfig`)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_BAD_REQUEST, CommandError
from lamina.cli.progress import render_stream

__all__ = ["configure", "run", "auth_for"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all-tags", action="store_true", help="download all tagged images in the repository")
    parser.add_argument("--platform", default="", help="set platform if server is multi-platform capable "
                        "(os[/arch[/variant]], default: the host's)")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    parser.add_argument("--disable-content-trust", action="store_true", default=True,
                        help="skip image verification (always: lamina has no content trust)")
    parser.add_argument("image", metavar="NAME[:TAG|@DIGEST]")


def auth_for(image: str) -> tuple[str, str | None]:
    """(registry domain, X-Registry-Auth value or None) for an image reference."""
    from lamina import errdefs
    from lamina.cli.dockerconfig import DockerConfig
    from lamina.image.reference import parse_normalized_named

    try:
        reference = parse_normalized_named(image)
    except errdefs.InvalidArgument as exc:
        raise CommandError(str(exc), EXIT_BAD_REQUEST) from None
    return reference.domain, DockerConfig().auth_header(reference.domain)


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.image.reference import parse_normalized_named, with_default_tag

    _, auth = auth_for(args.image)
    reference = parse_normalized_named(args.image)
    if args.all_tags:
        if reference.tag is not None or reference.digest is not None:
            raise CommandError("tag can't be used with --all-tags/-a", EXIT_BAD_REQUEST)
        image, tag = reference.string(), ""
    else:
        reference = with_default_tag(reference)
        image, tag = reference.name, (reference.digest or reference.tag or "latest")
    messages = context.client.pull_image(image, tag=tag, platform=args.platform, auth=auth)
    if args.quiet:
        code = render_stream((m for m in messages if "error" in m or "errorDetail" in m), context.out, context.err)
        if code == 0:
            context.print(reference.string())
        return code
    return render_stream(messages, context.out, context.err, terminal=is_terminal(context.out))
