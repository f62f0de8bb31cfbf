"""Rendering Docker JSON-message streams (load, import, later pull/push/build).

Messages: ``{"stream": text}`` is printed as is; ``{"status": s, "id": i, "progressDetail":
{"current": c, "total": t}}`` is a progress report for ``i``; ``{"error": m, "errorDetail":
{"message": m, "code": status}}`` ends the stream with a failure; ``aux`` is ignored.

* On a terminal (and not ``-q``): one rich progress bar per ``id`` that reports a total
  (rich is imported only here, only then); other messages are lines above the bars.
* Otherwise plain lines: ``stream`` text as is, ``id: status`` when an id's status changes
  (a progress update with the same status prints nothing), so logs stay short.

An ``error`` message is printed to stderr as ``Error response from daemon: <message>`` and
the return value is the exit code for its ``code`` (1 without one).
"""

from __future__ import annotations

from collections.abc import Iterable

from lamina.cli.errors import EXIT_FAILURE, EXIT_OK, exit_code_for_status

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["render_stream", "error_exit_code"]


def error_exit_code(message: dict[str, Any]) -> int:
    detail = message.get("errorDetail")
    code = detail.get("code") if isinstance(detail, dict) else None
    return exit_code_for_status(code) if isinstance(code, int) and code >= 400 else EXIT_FAILURE


def _error_text(message: dict[str, Any]) -> str:
    detail = message.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(message.get("error") or "unknown error")


def render_stream(messages: Iterable[dict[str, Any]], out: IO[str], err: IO[str], *,
                  terminal: bool = False) -> int:
    """Render ``messages``; returns 0, or the exit code of an in-band error."""
    if terminal:
        return _render_rich(messages, out, err)
    return _render_plain(messages, out, err)


def _render_plain(messages: Iterable[dict[str, Any]], out: IO[str], err: IO[str]) -> int:
    last_status: dict[str, str] = {}
    for message in messages:
        if "error" in message or "errorDetail" in message:
            out.flush()
            err.write(f"Error response from daemon: {_error_text(message)}\n")
            err.flush()
            return error_exit_code(message)
        if "stream" in message:
            out.write(str(message["stream"]))
        elif "status" in message:
            status = str(message["status"])
            identifier = str(message.get("id") or "")
            if identifier:
                if last_status.get(identifier) == status:
                    continue
                last_status[identifier] = status
                out.write(f"{identifier}: {status}\n")
            else:
                out.write(f"{status}\n")
        out.flush()
    return EXIT_OK


def _render_rich(messages: Iterable[dict[str, Any]], out: IO[str], err: IO[str]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(file=out, force_terminal=True, highlight=False)
    tasks: dict[str, Any] = {}
    last_line: dict[str, str] = {}
    result = EXIT_OK
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, transient=False) as progress:
        for message in messages:
            if "error" in message or "errorDetail" in message:
                result = error_exit_code(message)
                progress.stop()
                err.write(f"Error response from daemon: {_error_text(message)}\n")
                err.flush()
                break
            if "stream" in message:
                progress.console.print(str(message["stream"]), end="", markup=False, highlight=False)
                continue
            if "status" not in message:
                continue
            status = str(message["status"])
            identifier = str(message.get("id") or "")
            if not identifier:
                progress.console.print(status, markup=False, highlight=False)
                continue
            detail = message.get("progressDetail") or {}
            current = detail.get("current") if isinstance(detail, dict) else None
            total = detail.get("total") if isinstance(detail, dict) else None
            description = f"{identifier}: {status}"
            if identifier not in tasks:
                if not total:
                    # Nothing to measure (yet): a line, like docker, once per status change.
                    if last_line.get(identifier) != status:
                        last_line[identifier] = status
                        progress.console.print(description, markup=False, highlight=False)
                    continue
                tasks[identifier] = progress.add_task(description, total=total)
            update: dict[str, Any] = {"description": description}
            if total:
                update["total"] = total
            if isinstance(current, (int, float)):
                update["completed"] = current
            progress.update(tasks[identifier], **update)
    return result
