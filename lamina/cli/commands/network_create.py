"""``lamina network create [OPTIONS] NETWORK``: create a network and print its id, like
``docker network create``.

``-d/--driver`` (``bridge``), ``--subnet``, ``--gateway``, ``--ip-range``, ``--aux-address
NAME=IP``, ``--internal``, ``--attachable``, ``-o/--opt KEY=VALUE`` (driver options),
``--ipam-driver`` (``default``), ``--ipam-opt``, ``--label``, ``--ipv6``.  One IPv4 and one IPv6
``--subnet`` at most; a ``--gateway`` goes with the subnet of its address family, ``--ip-range``
and ``--aux-address`` with the IPv4 one.
"""

from __future__ import annotations

import argparse

from lamina.cli.commands.volume_create import parse_pairs
from lamina.cli.context import Context
from lamina.cli.errors import UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network_name", metavar="NETWORK")
    parser.add_argument("-d", "--driver", default="bridge", help="driver to manage the network (default bridge)")
    parser.add_argument("--subnet", action="append", default=[], help="subnet in CIDR format")
    parser.add_argument("--gateway", action="append", default=[], help="IPv4 gateway for the subnet")
    parser.add_argument("--ip-range", action="append", default=[], help="allocate container IPs from a sub-range")
    parser.add_argument("--aux-address", action="append", default=[], metavar="NAME=IP",
                        help="auxiliary IPv4 addresses used by the network driver")
    parser.add_argument("--internal", action="store_true", help="restrict external access to the network")
    parser.add_argument("--attachable", action="store_true", help="enable manual container attachment")
    parser.add_argument("--ipv6", action="store_true", help="enable IPv6 networking")
    parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver options")
    parser.add_argument("--ipam-driver", default="default", help="IP address management driver")
    parser.add_argument("--ipam-opt", action="append", default=[], metavar="KEY=VALUE", help="IPAM driver options")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="network metadata")
    parser.add_argument("--scope", default="", help="network scope (local)")


def run(args: argparse.Namespace, context: Context) -> int:
    subnets = {("6" if ":" in subnet else "4"): subnet for subnet in args.subnet}
    gateways = {("6" if ":" in gateway else "4"): gateway for gateway in args.gateway}
    if len(subnets) != len(args.subnet) or len(gateways) != len(args.gateway):
        raise UsageError("lamina supports one IPv4 and one IPv6 --subnet (and --gateway) per network")
    if any(family not in subnets for family in gateways) or ((args.ip_range or args.aux_address)
                                                             and "4" not in subnets):
        raise UsageError("--gateway, --ip-range and --aux-address need a --subnet (of their address family)")
    if len(args.ip_range) > 1:
        raise UsageError("one --ip-range per --subnet")
    configs: list[dict[str, Any]] = []
    for family, subnet in sorted(subnets.items()):
        config: dict[str, Any] = {"Subnet": subnet}
        if family in gateways:
            config["Gateway"] = gateways[family]
        if family == "4" and args.ip_range:
            config["IPRange"] = args.ip_range[0]
        if family == "4" and args.aux_address:
            config["AuxiliaryAddresses"] = parse_pairs(args.aux_address, "--aux-address", require_equals=True)
        configs.append(config)
    body = {
        "Name": args.network_name, "CheckDuplicate": True, "Driver": args.driver, "Internal": args.internal,
        "Attachable": args.attachable, "EnableIPv6": args.ipv6, "Scope": args.scope,
        "IPAM": {"Driver": args.ipam_driver, "Config": configs,
                 "Options": parse_pairs(args.ipam_opt, "--ipam-opt", require_equals=True)},
        "Options": parse_pairs(args.opt, "-o, --opt", require_equals=True),
        "Labels": parse_pairs(args.label, "--label", require_equals=False),
    }
    answer = context.client.create_network(body)
    context.print(str(answer.get("Id", "")))
    return 0
