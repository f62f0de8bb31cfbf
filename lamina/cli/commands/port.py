"""``lamina port CONTAINER [PRIVATE_PORT[/PROTO]]``: the container's published ports, like
``docker port``: one ``80/tcp -> 127.0.0.1:8080`` line per binding (sorted by port), or only the
``HOST:PORT`` bindings of the port asked for (an error when it is not published)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def _sort_key(key: str) -> tuple[int, str]:
    port, _, protocol = key.partition("/")
    return (int(port) if port.isdigit() else 0, protocol)


def run(args: argparse.Namespace, context: Context) -> int:
    container = context.client.inspect_container(args.container)
    ports = (container.get("NetworkSettings") or {}).get("Ports") or {}
    if args.private_port:
        port, _, protocol = args.private_port.partition("/")
        key = f"{port}/{protocol or 'tcp'}"
        bindings = ports.get(key)
        if not bindings:
            raise CommandError(f"No public port '{key}' published for {args.container}")
        for binding in bindings:
            context.print(f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}")
        return 0
    for key in sorted(ports, key=_sort_key):
        for binding in ports[key] or []:
            context.print(f"{key} -> {binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}")
    return 0
