"""``lamina load [-i FILE|DIR]``: load a ``docker save`` archive, an OCI layout tar or an OCI
layout directory (from stdin by default) and print ``Loaded image: NAME`` for each image."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_NOT_FOUND, CommandError, UsageError
from lamina.cli.progress import render_stream

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", metavar="FILE", help="read from a tar archive file instead of STDIN")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")


def _directory_stream(path: str):
    """A tar of an OCI layout directory, produced by a thread into a pipe (no temporary file)."""
    import os
    import threading

    from lamina.archive import TarWriter

    read_fd, write_fd = os.pipe()

    def produce() -> None:
        with open(write_fd, "wb", buffering=1 << 20) as out:
            writer = TarWriter(out.write)
            try:
                for directory, dirs, files in os.walk(path):
                    dirs.sort()
                    relative = os.path.relpath(directory, path)
                    if relative != ".":
                        writer.add_directory(relative.replace(os.sep, "/"))
                    for name in sorted(files):
                        full = os.path.join(directory, name)
                        member = name if relative == "." else f"{relative}/{name}".replace(os.sep, "/")
                        with open(full, "rb") as handle:
                            writer.add_file(member, os.fstat(handle.fileno()).st_size, handle)
                writer.close()
            except BrokenPipeError:
                pass

    threading.Thread(target=produce, name="lamina-load-dir", daemon=True).start()
    return open(read_fd, "rb")


def run(args: argparse.Namespace, context: Context) -> int:
    import os

    if args.input and os.path.isdir(args.input):
        stream = _directory_stream(args.input)
    elif args.input:
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
