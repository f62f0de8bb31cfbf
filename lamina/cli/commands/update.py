"""``lamina update [resource flags] [--restart POLICY] CONTAINER...``: change the resource limits
(``-m``, ``--memory-swap``, ``--memory-reservation``, ``--cpus``, ``--cpu-shares``,
``--cpu-period``, ``--cpu-quota``, ``--cpuset-cpus``, ``--cpuset-mems``, ``--pids-limit``,
``--blkio-weight``) or the restart policy of containers, running or not; prints their names."""

from __future__ import annotations

import argparse

from lamina.cli.container_flags import configure_resources, resources_body
from lamina.cli.context import Context
from lamina.cli.errors import UsageError
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    configure_resources(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    body = resources_body(args)
    if not body:
        raise UsageError("you must provide one or more flags when using this command")
    client = context.client

    def update(name: str) -> None:
        for warning in client.update(name, body).get("Warnings") or []:
            context.error(f"WARNING: {warning}")

    return for_each(context, args.containers, update)
