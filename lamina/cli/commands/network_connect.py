"""``lamina network connect [--alias A] [--ip IP] NETWORK CONTAINER``: add an endpoint on
NETWORK to a running container (``--ip6`` on networks with IPv6; ``--link``, ``--driver-opt``
are refused by the engine)."""

from __future__ import annotations

import argparse

from lamina.cli.commands.volume_create import parse_pairs
from lamina.cli.context import Context

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--alias", action="append", default=[], help="network-scoped alias for the container")
    parser.add_argument("--ip", default="", help="IPv4 address")
    parser.add_argument("--ip6", default="", help="IPv6 address")
    parser.add_argument("--link", action="append", default=[], help="add link to another container")
    parser.add_argument("--driver-opt", action="append", default=[], help="driver options for the network")


def run(args: argparse.Namespace, context: Context) -> int:
    config: dict[str, Any] = {"Aliases": args.alias or None,
                              "IPAMConfig": {"IPv4Address": args.ip, "IPv6Address": args.ip6}}
    if args.link:
        config["Links"] = args.link
    if args.driver_opt:
        config["DriverOpts"] = parse_pairs(args.driver_opt, "--driver-opt", require_equals=True)
    context.client.connect_network(args.network, args.container, config)
    return 0
