"""``lamina save IMAGE...``: write images as a ``docker save`` tar (``--format oci``: an OCI
image layout tar) to ``-o FILE`` or to stdout, never to a terminal.

With ``-o`` the archive is written to a temporary file beside FILE and renamed over it once
complete, so FILE is never a partial archive.  Like ``docker save -o`` and ``tar -c``, the
file is left to the kernel's writeback (no fsync): run ``sync`` when it must be on disk."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_BAD_REQUEST, EXIT_NOT_FOUND, CommandError, UsageError
from lamina.fsutil import temp_name

__all__ = ["configure", "run", "check_output", "write_file", "write_output"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to a file instead of STDOUT")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker",
                        help="archive format: docker (docker save/load) or oci (OCI image layout)")


def check_output(path: str) -> None:
    """Refuse an output path that cannot be written before anything is asked of the engine
    (``save -o /missing/dir/x.tar``: docker's "invalid output path", exit 4)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f'invalid output path: directory "{directory}" does not exist', EXIT_NOT_FOUND)
    if os.path.isdir(path):
        raise CommandError(f'invalid output path: "{path}" is a directory', EXIT_BAD_REQUEST)


def _output_error(path: str, exc: OSError) -> CommandError:
    code = EXIT_NOT_FOUND if isinstance(exc, (FileNotFoundError, NotADirectoryError)) else 1
    return CommandError(f"failed to write {path}: {(exc.strerror or str(exc)).lower()}", code)


def write_file(path: str, chunks: object) -> None:
    """Write ``chunks`` to ``path``: beside it then renamed over it, or straight into a device
    or pipe.  A failure to write (no such directory, disk full) is a :class:`CommandError`
    and leaves no file behind; an error from ``chunks`` passes through."""
    if os.path.exists(path) and not os.path.isfile(path):
        # A device or a pipe (-o /dev/stdout): write into it; never rename over it.
        try:
            file = open(path, "wb")
        except OSError as exc:
            raise _output_error(path, exc) from exc
        with file:
            for chunk in chunks:  # type: ignore[attr-defined]
                try:
                    file.write(chunk)
                except OSError as exc:
                    raise _output_error(path, exc) from exc
        return
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, temp_name(".lamina-save-"))
    try:
        file = open(temporary, "xb")
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        with file:
            for chunk in chunks:  # type: ignore[attr-defined]
                try:
                    file.write(chunk)
                except OSError as exc:
                    raise _output_error(path, exc) from exc
            try:
                file.flush()
            except OSError as exc:
                raise _output_error(path, exc) from exc
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise _output_error(path, exc) from exc
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def write_output(context: Context, output: str | None, chunks: Iterable[bytes]) -> int:
    """``chunks`` into ``output`` (:func:`write_file`) or, without one, to stdout; exit code 0."""
    if output:
        write_file(output, chunks)
        return 0
    context.out.flush()
    binary = context.out.buffer  # type: ignore[attr-defined]
    for chunk in chunks:
        binary.write(chunk)
    binary.flush()
    return 0


def run(args: argparse.Namespace, context: Context) -> int:
    if not args.output and is_terminal(context.out):
        raise UsageError("Cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output:
        check_output(args.output)
    chunks = context.client.save(args.images, format=args.format)
    return write_output(context, args.output, chunks)
