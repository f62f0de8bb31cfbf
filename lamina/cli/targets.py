"""Commands that act on several containers (``stop a b c``): each one is tried, the name is
printed as given on success (like docker), each failure prints ``Error response from daemon:
...`` and the exit code is that of the last failure (:mod:`lamina.cli.errors`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status

__all__ = ["for_each", "remove_each"]


def for_each(context: Context, names: Iterable[str], action: Callable[[str], object], *,
             print_names: bool = True) -> int:
    from lamina.client.client import ClientError

    last_failure: ClientError | None = None
    for name in names:
        try:
            action(name)
        except ClientError as exc:
            context.error(f"Error response from daemon: {exc.message}")
            last_failure = exc
            continue
        if print_names:
            context.print(name)
            context.out.flush()
    return exit_code_for_status(last_failure.status) if last_failure is not None else 0


def remove_each(context: Context, names: Iterable[str], remove: Callable[[str], object], *, kind: str,
                missing_ok: bool = False) -> int:
    """``volume rm`` / ``network rm``: each name removed in turn and printed; a missing one is
    ``Error: No such <kind>: <name>`` (or skipped with ``missing_ok``)."""
    from lamina.client.client import ClientError

    status = 0
    for name in names:
        try:
            remove(name)
        except ClientError as exc:
            if exc.status == 404 and missing_ok:
                continue
            context.error(f"Error: No such {kind}: {name}" if exc.status == 404
                          else f"Error response from daemon: {exc.message}")
            status = exit_code_for_status(exc.status)
            continue
        context.print(name)
    return status
