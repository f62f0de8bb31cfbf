"""``lamina volume ls``: the volume table, like ``docker volume ls``.

Columns ``DRIVER  VOLUME NAME``, sorted by name; ``-q`` prints names only; ``--filter``
takes ``dangling=true|false``, ``name=``, ``label=KEY[=VALUE]``, ``driver=``; ``--format``
takes ``table``, ``table TEMPLATE``, ``json`` or a Go template over the fields ``Name``,
``Driver``, ``Scope``, ``Mountpoint``, ``Labels``, ``CreatedAt``, ``Links``, ``Size``.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.options import parse_filters, print_rows
from lamina.cli.rows import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "volume_rows", "HEADERS", "DEFAULT_TABLE"]

HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
           "Labels": "LABELS", "CreatedAt": "CREATED", "Links": "LINKS", "Size": "SIZE"}
DEFAULT_TABLE = "{{.Driver}}\t{{.Name}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="FILTER",
                        help="provide filter values (e.g. 'dangling=true', 'name=NAME', 'label=KEY')")
    parser.add_argument("--format", metavar="FORMAT",
                        help="'table', 'table TEMPLATE', 'json', or a Go template such as '{{.Name}}'")


def volume_rows(volumes: list[dict[str, Any]]) -> list[Record]:
    rows = []
    for volume in sorted(volumes, key=lambda item: str(item.get("Name", ""))):
        labels = volume.get("Labels") or {}
        usage = volume.get("UsageData") or {}
        rows.append(Record(
            Name=str(volume.get("Name", "")), Driver=str(volume.get("Driver", "")),
            Scope=str(volume.get("Scope", "")), Mountpoint=str(volume.get("Mountpoint", "")),
            Labels=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
            CreatedAt=str(volume.get("CreatedAt", "")),
            Links=str(usage["RefCount"]) if "RefCount" in usage else "N/A",
            Size=str(usage["Size"]) if "Size" in usage else "N/A"))
    return rows


def run(args: argparse.Namespace, context: Context) -> int:
    answer = context.client.volumes(filters=parse_filters(args.filter) or None)
    rows = volume_rows(answer.get("Volumes") or [])
    for warning in answer.get("Warnings") or []:
        context.error(warning)
    print_rows(context, args, rows, key="Name", headers=HEADERS, default_table=DEFAULT_TABLE)
    return 0
