"""``lamina system boot``: after a host reboot or an engine crash, record the containers whose
monitor died as exited (code 255, like dockerd at start-up), and restart those whose restart
policy asks for it (``always``; ``unless-stopped`` unless stopped by hand).

Prints the id of each restarted container (``-q``: nothing); a container that could not be
restarted is reported on stderr and makes the exit code 1.  Run it from the host's boot
sequence (a systemd unit) when containers should come back without a ``lamina serve``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import EXIT_FAILURE

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the restarted containers")


def run(args: argparse.Namespace, context: Context) -> int:
    answer = context.client.system_boot()
    if not args.quiet:
        for identifier in answer.get("Restarted") or []:
            context.print(str(identifier))
    failed = answer.get("Failed") or []
    for failure in failed:
        if isinstance(failure, dict):
            context.error(f"Error: failed to restart {failure.get('Id')}: {failure.get('Error')}")
        else:
            context.error(f"Error: failed to restart {failure}")
    return EXIT_FAILURE if failed else 0
