"""``lamina wait CONTAINER...``: block until each container stops, print its exit code."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    # Every wait is sent first (docker does the same): they all watch from now on.
    pending = []
    code = 0
    for name in args.containers:
        try:
            pending.append(context.client.wait_later(name))
        except ClientError as exc:
            context.error(f"Error response from daemon: {exc.message}")
            code = exit_code_for_status(exc.status)
            pending.append(None)
    for waiting in pending:
        if waiting is None:
            continue
        try:
            result = waiting.result()
        except ClientError as exc:
            context.error(f"Error response from daemon: {exc.message}")
            code = exit_code_for_status(exc.status)
            continue
        error = result.get("Error")
        if error:
            context.error(f"Error response from daemon: {error.get('Message') if isinstance(error, dict) else error}")
            code = 1
            continue
        context.print(str(result.get("StatusCode")))
        context.out.flush()
    return code
