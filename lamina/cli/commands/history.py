"""``lamina history IMAGE``: the layers of an image, newest first, like ``docker history``.

``CREATED BY`` is cut to 45 characters (``…``) unless ``--no-trunc``; ``-H=false`` prints
RFC 3339 dates and sizes in bytes."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.formatting import ellipsis, human_size, rfc3339, since, truncate_id
from lamina.cli.options import print_rows
from lamina.cli.rows import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "history_rows", "HEADERS", "DEFAULT_TABLE"]

HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
           "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
DEFAULT_TABLE = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("-H", "--human", action="store_true", default=True,
                        help="print sizes and dates in human readable format (default true; "
                             "-H=false for raw values)")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("--format", metavar="FORMAT", help="'table', 'table TEMPLATE', 'json' or a Go template")


def history_rows(entries: list[dict[str, Any]], *, human: bool = True, no_trunc: bool = False,
                 now: float | None = None) -> list[Record]:
    rows = []
    for entry in entries:
        identifier = str(entry.get("Id") or "<missing>")
        created = entry.get("Created") or 0
        created_by = str(entry.get("CreatedBy") or "").replace("\t", " ")
        size = entry.get("Size") or 0
        rows.append(Record(
            ID=identifier if no_trunc or identifier == "<missing>" else truncate_id(identifier),
            CreatedSince=since(created, now) if human else rfc3339(created),
            CreatedAt=rfc3339(created),
            CreatedBy=created_by if no_trunc else ellipsis(created_by, 45),
            Size=human_size(size, 3) if human else str(size),
            Comment=str(entry.get("Comment") or ""),
        ))
    return rows


def run(args: argparse.Namespace, context: Context) -> int:
    rows = history_rows(context.client.history(args.image), human=args.human, no_trunc=args.no_trunc)
    print_rows(context, args, rows, key="ID", headers=HEADERS, default_table=DEFAULT_TABLE)
    return 0
