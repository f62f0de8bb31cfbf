"""What every ``inspect`` command shares: look each name up, keep going past names that are not
found, then write the objects' JSON as a JSON array indented like docker's (4 spaces) -- or
``-f TEMPLATE`` once per object -- and report the missing names after the others on stderr
(``Error: No such volume: x``).  The exit code is that of the last failure (0 when none)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status
from lamina.client.client import ClientError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["inspect_each", "write_inspected"]


def inspect_each(names: Iterable[str], inspect: Callable[[str], dict[str, Any]],
                 what: str) -> tuple[list[dict[str, Any]], list[ClientError]]:
    """``inspect`` every name; a 404 becomes ``No such <what>: <name>``, other errors raise."""
    found: list[dict[str, Any]] = []
    failures: list[ClientError] = []
    for name in names:
        try:
            found.append(inspect(name))
        except ClientError as exc:
            if exc.status != 404:
                raise
            failures.append(ClientError(exc.status, f"No such {what}: {name}"))
    return found, failures


def write_inspected(context: Context, template: str | None, found: list[dict[str, Any]],
                    failures: list[ClientError]) -> int:
    """Write ``found`` (JSON array or ``template`` per object), then the failures; the exit code."""
    if template:
        from lamina.cli.rows import render_each  # only for -f

        context.out.write(render_each(template, found))
    else:
        context.print(json.dumps(found, indent=4, ensure_ascii=False))
    for failure in failures:
        context.error(f"Error: {failure.message}")
    return exit_code_for_status(failures[-1].status) if failures else 0
