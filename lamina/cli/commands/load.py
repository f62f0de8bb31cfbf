"""``lamina load [-i FILE]``: load a ``docker save`` archive or an OCI layout tar (from stdin by
default) and print ``Loaded image: NAME`` for each image."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_NOT_FOUND, CommandError, UsageError
from lamina.cli.progress import render_stream

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", metavar="FILE", help="read from a tar archive file instead of STDIN")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")


def run(args: argparse.Namespace, context: Context) -> int:
    if args.input:
        try:
            stream = open(args.input, "rb")
        except FileNotFoundError as exc:
            raise CommandError(f"open {args.input}: no such file or directory", EXIT_NOT_FOUND) from exc
        except OSError as exc:
            raise CommandError(f"open {args.input}: {exc.strerror}") from exc
    else:
        if is_terminal(context.stdin):
            raise UsageError("requested load from stdin, but stdin is a terminal: use -i FILE or a redirect")
        stream = context.stdin.buffer  # type: ignore[attr-defined]
    terminal = is_terminal(context.out) and not args.quiet
    with stream:
        # Like docker: without a terminal to draw bars on, ask for the quiet stream.
        messages = context.client.load(stream, quiet=not terminal)
        return render_stream(messages, context.out, context.err, terminal=terminal)
