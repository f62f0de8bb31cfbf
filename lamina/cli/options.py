"""Helpers shared by commands: ``--filter`` parsing, the yes/no confirmation prompt, what
every ``prune`` command does around its request, and the output of a listing (``-q`` or
``--format``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

from lamina.cli.context import Context
from lamina.cli.errors import CommandError, UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.cli.rows import Record

__all__ = ["parse_filters", "confirm", "add_listing_options", "add_prune_options", "confirm_prune", "print_prune_report", "print_rows"]


def parse_filters(values: Iterable[str]) -> dict[str, list[str]]:
    """``["dangling=true", "reference=busybox*"]`` -> ``{"dangling": ["true"], ...}``."""
    filters: dict[str, list[str]] = {}
    for value in values:
        name, equals, argument = value.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"bad format of filter {value!r} (expected name=value)")
        filters.setdefault(name.strip().lower(), []).append(argument)
    return filters


def confirm(context: Context, message: str) -> bool:
    """Ask ``message`` and read y/N from stdin (EOF or anything else means no)."""
    context.out.write(f"{message}\nAre you sure you want to continue? [y/N] ")
    context.out.flush()
    line = context.stdin.readline() if context.stdin is not None else ""
    return line.strip().lower() in ("y", "yes")


def add_listing_options(parser: argparse.ArgumentParser, *, filter_help: str, format_example: str) -> None:
    """``--no-trunc``, ``-f/--filter`` and ``--format``, as every ``ls`` command has them."""
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="FILTER", help=filter_help)
    parser.add_argument("--format", metavar="FORMAT",
                        help=f"'table', 'table TEMPLATE', 'json', or a Go template such as '{format_example}'")


def add_prune_options(parser: argparse.ArgumentParser, filter_example: str) -> None:
    """``-f/--force`` and ``--filter`` of a ``prune`` command."""
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="FILTER",
                        help=f"provide filter values (e.g. {filter_example})")


def confirm_prune(args: argparse.Namespace, context: Context, warning: str, command: str) -> None:
    """Without ``--force``, ask ``warning``; a no cancels ``command`` (``volume prune``, ...)."""
    if not args.force and not confirm(context, warning):
        raise CommandError(f"{command} has been cancelled")


def print_prune_report(context: Context, title: str, deleted: Sequence[str], space: Any) -> None:
    """Docker's prune output: ``title`` and one deleted item a line, then the space reclaimed."""
    from lamina.cli.formatting import human_size

    if deleted:
        context.print(f"{title}:\n" + "\n".join(deleted) + "\n")
    context.print(f"Total reclaimed space: {human_size(space or 0)}")


def print_rows(context: Context, args: argparse.Namespace, rows: Sequence[Record], *, key: str,
               headers: dict[str, str], default_table: str) -> None:
    """A listing's rows: with ``-q`` the ``key`` column only, else under ``--format``."""
    from lamina.cli.rows import format_rows

    if args.quiet:
        for row in rows:
            context.print(row[key])
        return
    context.out.write(format_rows(args.format, rows, headers=headers, default_table=default_table))
