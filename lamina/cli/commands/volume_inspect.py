"""``lamina volume inspect VOLUME...``: the volumes' JSON as a JSON array indented like docker's
(4 spaces), or ``-f TEMPLATE`` once per volume.  Unknown names are reported after the others
(``Error: No such volume: x``); the exit code is that of the last failure."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.inspecting import inspect_each, write_inspected

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Mountpoint}}'")


def run(args: argparse.Namespace, context: Context) -> int:
    found, failures = inspect_each(args.names, context.client.inspect_volume, "volume")
    return write_inspected(context, args.format, found, failures)
