"""``lamina network inspect NETWORK...``: the networks' JSON as a JSON array indented like
docker's (4 spaces), or ``-f TEMPLATE`` once per network.  Unknown networks are reported
after the others (``Error: No such network: x``); the exit code is that of the last failure."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status
from lamina.cli.templates import render_each
from lamina.client.client import ClientError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Driver}}'")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output for diagnostics (no effect)")


def run(args: argparse.Namespace, context: Context) -> int:
    found: list[dict[str, Any]] = []
    failures: list[ClientError] = []
    for name in args.names:
        try:
            found.append(context.client.inspect_network(name))
        except ClientError as exc:
            if exc.status != 404:
                raise
            failures.append(ClientError(exc.status, f"No such network: {name}"))
    if args.format:
        context.out.write(render_each(args.format, found))
    else:
        context.print(json.dumps(found, indent=4, ensure_ascii=False))
    for failure in failures:
        context.error(f"Error: {failure.message}")
    return exit_code_for_status(failures[-1].status) if failures else 0
