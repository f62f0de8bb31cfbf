"""``lamina system boot``: after a host reboot or an engine crash, restart the containers whose
restart policy asks for it (``always``; ``unless-stopped`` unless the user stopped them) and
clean up after those that died with the engine.  Prints the ids of the restarted containers."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def run(args: argparse.Namespace, context: Context) -> int:
    answer = context.client.system_boot()
    if args.quiet:
        return 0
    for key, values in answer.items():
        if isinstance(values, list):
            for value in values:
                context.print(f"{key.lower()}: {value}" if key != "Restarted" else str(value))
    return 0
