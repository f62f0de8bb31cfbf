"""Helpers shared by commands: ``--filter`` parsing and the yes/no confirmation prompt."""

from __future__ import annotations

from collections.abc import Iterable

from lamina.cli.context import Context
from lamina.cli.errors import UsageError

__all__ = ["parse_filters", "confirm"]


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
