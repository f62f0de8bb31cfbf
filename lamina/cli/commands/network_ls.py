"""``lamina network ls``: the network table, like ``docker network ls``.

Columns ``NETWORK ID  NAME  DRIVER  SCOPE`` sorted by name, ids cut to 12 characters unless
``--no-trunc``; ``-q`` prints ids only; ``--filter`` takes ``name=``, ``id=``, ``driver=``,
``scope=``, ``type=builtin|custom``, ``label=``, ``dangling=``; ``--format`` takes ``table``,
``table TEMPLATE``, ``json`` or a Go template over ``ID``, ``Name``, ``Driver``, ``Scope``,
``IPv6``, ``Internal``, ``Labels``, ``CreatedAt``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.options import add_listing_options, parse_filters
from lamina.cli.rows import Record, format_rows

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_TABLE", "HEADERS", "configure", "network_rows", "run"]

HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
           "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}
DEFAULT_TABLE = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only display network IDs")
    add_listing_options(parser, filter_help="provide filter values (e.g. 'driver=bridge', 'name=NAME')",
                        format_example="{{.Name}}")

def network_rows(networks: list[dict[str, Any]], *, truncate: bool = True) -> list[Record]:
    rows = []
    for network in sorted(networks, key=lambda item: str(item.get("Name", ""))):
        labels = network.get("Labels") or {}
        identifier = str(network.get("Id", ""))
        rows.append(Record(
            ID=identifier[:12] if truncate else identifier, Name=str(network.get("Name", "")),
            Driver=str(network.get("Driver", "")), Scope=str(network.get("Scope", "")),
            IPv6="true" if network.get("EnableIPv6") else "false",
            Internal="true" if network.get("Internal") else "false",
            Labels=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
            CreatedAt=str(network.get("Created", ""))))
    return rows


def run(args: argparse.Namespace, context: Context) -> int:
    networks = context.client.networks(filters=parse_filters(args.filter) or None)
    rows = network_rows(networks, truncate=not args.no_trunc)
    if args.quiet:
        for row in rows:
            context.print(row["ID"])
        return 0
    context.out.write(format_rows(args.format, rows, headers=HEADERS, default_table=DEFAULT_TABLE))
    return 0
