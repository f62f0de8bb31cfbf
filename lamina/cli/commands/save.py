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
from lamina.cli.errors import UsageError
from lamina.fsutil import temp_name

__all__ = ["configure", "run", "write_file", "write_output"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to a file instead of STDOUT")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker",
                        help="archive format: docker (docker save/load) or oci (OCI image layout)")


def write_file(path: str, chunks: object) -> None:
    """Write ``chunks`` to ``path``: beside it then renamed over it, or straight into a device
    or pipe."""
    if os.path.exists(path) and not os.path.isfile(path):
        # A device or a pipe (-o /dev/stdout): write into it; never rename over it.
        with open(path, "wb") as file:
            for chunk in chunks:  # type: ignore[attr-defined]
                file.write(chunk)
        return
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, temp_name(".lamina-save-"))
    try:
        with open(temporary, "xb") as file:
            for chunk in chunks:  # type: ignore[attr-defined]
                file.write(chunk)
        os.replace(temporary, path)
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
    chunks = context.client.save(args.images, format=args.format)
    return write_output(context, args.output, chunks)
