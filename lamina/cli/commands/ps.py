"""``lamina ps`` / ``container ls``: the container table, like ``docker ps``.

Columns ``CONTAINER ID IMAGE COMMAND CREATED STATUS PORTS NAMES`` (``-s`` adds ``SIZE`` as
``12B (virtual 4.26MB)``).  As docker truncates them: ids to 12 characters, the command to 20
characters (then quoted like Go's ``strconv.Quote``), image references without their digest
and an image id for images referenced by id; ``--no-trunc`` shows everything.  ``-a`` lists
stopped containers too, ``-n N`` the N newest (any state), ``-l`` the newest,
``--filter status=|name=|label=|ancestor=|id=|exited=``, ``--format`` as for ``images``
(``table``, ``table TEMPLATE``, ``json``, a Go template).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from lamina.cli.context import Context
from lamina.cli.formatting import (
    ellipsis,
    familiar_name,
    go_time,
    human_size,
    since,
    split_reference,
    truncate_id,
)
from lamina.cli.options import add_listing_options, parse_filters, print_rows
from lamina.cli.rows import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_TABLE", "HEADERS", "SIZE_TABLE", "configure", "container_rows", "run"]

HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
    "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}
DEFAULT_TABLE = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
SIZE_TABLE = DEFAULT_TABLE + "\t{{.Size}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    parser.add_argument("-n", "--last", type=int, default=-1, metavar="INT",
                        help="show n last created containers (includes all states)")
    parser.add_argument("-l", "--latest", action="store_true", help="show the latest created container (includes all states)")
    parser.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    add_listing_options(parser, filter_help="filter output based on conditions provided "
                                            "(status=, name=, label=, ancestor=, id=)",
                        format_example="{{.ID}} {{.Names}}")

def _quote(text: str) -> str:
    """Go's ``strconv.Quote`` for printable text (non-ASCII printable runes stay as they are)."""
    return json.dumps(text, ensure_ascii=False)


def _image(summary: dict[str, Any], trunc: bool) -> str:
    image = str(summary.get("Image") or "")
    if not image:
        return "<no image>"
    if not trunc:
        return image
    image_id = str(summary.get("ImageID") or "")
    if image_id and truncate_id(image_id) == truncate_id(image):
        return truncate_id(image)
    name = image.split("@", 1)[0]
    repository, tag = split_reference(name)
    return familiar_name(repository) + (f":{tag}" if tag else "")


def _ports(ports: Sequence[dict[str, Any]] | None) -> str:
    shown = []
    for port in ports or []:
        private = f"{port.get('PrivatePort')}/{port.get('Type') or 'tcp'}"
        if port.get("PublicPort"):
            host = port.get("IP") or "0.0.0.0"
            host = f"[{host}]" if ":" in host else host
            shown.append(f"{host}:{port.get('PublicPort')}->{private}")
        else:
            shown.append(private)
    return ", ".join(dict.fromkeys(shown))


def _size(summary: dict[str, Any]) -> str:
    size_rw = summary.get("SizeRw") or 0
    root = summary.get("SizeRootFs") or 0
    text = human_size(size_rw, 3)
    return f"{text} (virtual {human_size(root, 3)})" if root > 0 else text


def container_rows(containers: Sequence[dict[str, Any]], *, no_trunc: bool = False,
                   now: float | None = None) -> list[Record]:
    trunc = not no_trunc
    current = time.time() if now is None else now
    # texts that recur across rows (times, commands, images), worked out once per listing
    times: dict[Any, tuple[str, str]] = {}
    commands: dict[str, str] = {}
    images: dict[tuple[Any, Any], str] = {}
    rows = []
    for summary in containers:
        identifier = str(summary.get("Id") or "")
        names = [name.lstrip("/") for name in summary.get("Names") or []]
        if trunc:
            names = [name for name in names if "/" not in name][:1] or names[:1]
        command = str(summary.get("Command") or "")
        shown_command = commands.get(command)
        if shown_command is None:
            shown_command = commands[command] = _quote(ellipsis(command, 20) if trunc else command)
        created = summary.get("Created") or 0
        created_texts = times.get(created)
        if created_texts is None:
            created_texts = times[created] = (go_time(created), since(created, current))
        image_key = (summary.get("Image"), summary.get("ImageID"))
        image = images.get(image_key)
        if image is None:
            image = images[image_key] = _image(summary, trunc)
        labels = summary.get("Labels") or {}
        mounts = summary.get("Mounts") or []
        networks = ((summary.get("NetworkSettings") or {}).get("Networks") or {})
        ports = summary.get("Ports")
        rows.append(Record(
            ID=truncate_id(identifier) if trunc else identifier,
            Image=image,
            Command=shown_command,
            CreatedAt=created_texts[0],
            RunningFor=created_texts[1],
            Ports=_ports(ports) if ports else "",
            State=str(summary.get("State") or ""),
            Status=str(summary.get("Status") or ""),
            Size=_size(summary),
            Names=",".join(names),
            Labels=",".join(f"{key}={value}" for key, value in sorted(labels.items())) if labels else "",
            Mounts=",".join(ellipsis(str(m.get("Name") or m.get("Source") or ""), 15) if trunc
                            else str(m.get("Name") or m.get("Source") or "") for m in mounts) if mounts else "",
            Networks=",".join(sorted(networks)),
            LocalVolumes=str(sum(1 for m in mounts if m.get("Driver") == "local")) if mounts else "0",
        ))
    return rows


def run(args: argparse.Namespace, context: Context) -> int:
    limit = 1 if args.latest else args.last
    containers = context.client.containers(all=args.all, limit=limit, size=args.size,
                                           filters=parse_filters(args.filter) or None)
    rows = container_rows(containers, no_trunc=args.no_trunc)
    print_rows(context, args, rows, key="ID", headers=HEADERS, default_table=SIZE_TABLE if args.size else DEFAULT_TABLE)
    return 0
