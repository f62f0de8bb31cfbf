"""``lamina import FILE|- [REPOSITORY[:TAG]]``: create a one-layer image from a filesystem tar;
prints the new image's id."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_NOT_FOUND, CommandError
from lamina.cli.progress import render_stream

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE|URL|-", help="the tar archive ('-' for STDIN)")
    parser.add_argument("reference", nargs="?", default="", metavar="REPOSITORY[:TAG]")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                             "ONBUILD, USER, VOLUME, WORKDIR) to the created image")
    parser.add_argument("-m", "--message", default="", help="set a commit message for the imported image")
    parser.add_argument("--platform", default="", help="set the platform (os[/arch[/variant]])")


def run(args: argparse.Namespace, context: Context) -> int:
    source = args.source
    common = dict(repository=args.reference, changes=args.change, message=args.message,
                  platform=args.platform)
    if source == "-":
        stream = context.stdin.buffer  # type: ignore[attr-defined]
        messages = context.client.import_image(stream, source="-", **common)
    elif "://" in source:
        messages = context.client.import_image(None, source=source, **common)
    else:
        try:
            stream = open(source, "rb")
        except FileNotFoundError as exc:
            raise CommandError(f"open {source}: no such file or directory", EXIT_NOT_FOUND) from exc
        except OSError as exc:
            raise CommandError(f"open {source}: {exc.strerror}") from exc
        with stream:
            messages = context.client.import_image(stream, source="-", **common)
            return render_stream(messages, context.out, context.err, terminal=is_terminal(context.out))
    return render_stream(messages, context.out, context.err, terminal=is_terminal(context.out))
