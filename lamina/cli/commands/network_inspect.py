"""``lamina network inspect NETWORK...``: the networks' JSON as a JSON array indented like
docker's (4 spaces), or ``-f TEMPLATE`` once per network.  Unknown networks are reported
after the others (``Error: No such network: x``); the exit code is that of the last failure."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.inspecting import inspect_each, write_inspected

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Driver}}'")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output for diagnostics (no effect: lamina has no swarm services)")


def run(args: argparse.Namespace, context: Context) -> int:
    found, failures = inspect_each(args.names, context.client.inspect_network, "network")
    return write_inspected(context, args.format, found, failures)
