"""``lamina system df``: disk usage by images, containers, volumes and build cache, computed the
way ``docker system df`` computes it (reclaimable = not used by any container)."""

from __future__ import annotations

import argparse

from lamina.cli.commands.images import image_rows
from lamina.cli.context import Context
from lamina.cli.formatting import ellipsis, human_size, since, tabulate, truncate_id
from lamina.cli.rows import Record, format_rows

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "summary_rows", "HEADERS", "DEFAULT_TABLE"]

HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
           "Reclaimable": "RECLAIMABLE"}
DEFAULT_TABLE = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="show detailed information on space usage")
    parser.add_argument("--format", metavar="FORMAT", help="'table', 'table TEMPLATE', 'json' or a Go template")


def _number(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _reclaimable(reclaimable: int, total: int, percent: bool = True) -> str:
    if percent and total > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable)


def summary_rows(usage: dict[str, Any]) -> list[Record]:
    rows = []
    images = usage.get("Images") or []
    layers_size = _number(usage.get("LayersSize"))
    used = 0
    for image in images:
        if _number(image.get("Containers")):
            size, shared = image.get("Size", -1), image.get("SharedSize", -1)
            if isinstance(size, int) and isinstance(shared, int) and size >= 0 and shared >= 0:
                used += size - shared
    rows.append(Record(Type="Images", TotalCount=str(len(images)),
                       Active=str(sum(1 for image in images if _number(image.get("Containers")))),
                       Size=human_size(layers_size),
                       Reclaimable=_reclaimable(max(layers_size - used, 0), layers_size)))

    containers = usage.get("Containers") or []
    active = [c for c in containers if str(c.get("State", "")).lower() in ("running", "paused", "restarting")]
    container_size = sum(_number(c.get("SizeRw")) for c in containers)
    reclaimable = sum(_number(c.get("SizeRw")) for c in containers if c not in active)
    rows.append(Record(Type="Containers", TotalCount=str(len(containers)), Active=str(len(active)),
                       Size=human_size(container_size), Reclaimable=_reclaimable(reclaimable, container_size)))

    volumes = usage.get("Volumes") or []
    volume_size = 0
    volume_reclaimable = 0
    volume_active = 0
    for volume in volumes:
        data = volume.get("UsageData") or {}
        size = _number(data.get("Size"))
        volume_size += size
        if _number(data.get("RefCount")):
            volume_active += 1
        else:
            volume_reclaimable += size
    rows.append(Record(Type="Local Volumes", TotalCount=str(len(volumes)), Active=str(volume_active),
                       Size=human_size(volume_size), Reclaimable=_reclaimable(volume_reclaimable, volume_size)))

    cache = usage.get("BuildCache") or []
    cache_size = sum(_number(item.get("Size")) for item in cache if not item.get("Shared"))
    cache_reclaimable = sum(_number(item.get("Size")) for item in cache
                            if not item.get("Shared") and not item.get("InUse"))
    rows.append(Record(Type="Build Cache", TotalCount=str(len(cache)),
                       Active=str(sum(1 for item in cache if item.get("InUse"))),
                       Size=human_size(cache_size), Reclaimable=_reclaimable(cache_reclaimable, cache_size, False)))
    return rows


def _verbose(usage: dict[str, Any]) -> str:
    parts = ["Images space usage:\n\n"]
    image_lines: list[list[str]] = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
                                     "UNIQUE SIZE", "CONTAINERS"]]
    for row in image_rows(usage.get("Images") or []):
        image_lines.append([row["Repository"], row["Tag"], row["ID"], row["CreatedSince"], row["Size"],
                            row["SharedSize"], row["UniqueSize"], row["Containers"]])
    parts.append(tabulate(image_lines))
    parts.append("\nContainers space usage:\n\n")
    container_lines = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]]
    for container in usage.get("Containers") or []:
        names = ",".join(str(name).lstrip("/") for name in container.get("Names") or [])
        container_lines.append([
            truncate_id(str(container.get("Id", ""))), str(container.get("Image", "")),
            '"' + ellipsis(str(container.get("Command", "")), 20) + '"',
            str(sum(1 for mount in container.get("Mounts") or [] if mount.get("Type") == "volume")),
            human_size(_number(container.get("SizeRw"))), since(container.get("Created") or 0),
            str(container.get("Status", "")), names])
    parts.append(tabulate(container_lines))
    parts.append("\nLocal Volumes space usage:\n\n")
    volume_lines = [["VOLUME NAME", "LINKS", "SIZE"]]
    for volume in usage.get("Volumes") or []:
        data = volume.get("UsageData") or {}
        volume_lines.append([str(volume.get("Name", "")), str(data.get("RefCount", "N/A")),
                             human_size(_number(data.get("Size")))])
    parts.append(tabulate(volume_lines))
    cache = usage.get("BuildCache") or []
    total = sum(_number(item.get("Size")) for item in cache if not item.get("Shared"))
    parts.append(f"\nBuild cache usage: {human_size(total)}\n\n")
    cache_lines = [["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]]
    for item in cache:
        cache_lines.append([str(item.get("ID", "")), str(item.get("Type", "")),
                            human_size(_number(item.get("Size"))), str(item.get("CreatedAt", "")),
                            str(item.get("LastUsedAt", "")), str(item.get("UsageCount", "")),
                            "true" if item.get("Shared") else "false"])
    parts.append(tabulate(cache_lines))
    return "".join(parts)


def run(args: argparse.Namespace, context: Context) -> int:
    usage = context.client.system_df()
    if args.verbose and not args.format:
        context.out.write(_verbose(usage))
        return 0
    context.out.write(format_rows(args.format, summary_rows(usage), default_table=DEFAULT_TABLE,
                                  headers=HEADERS))
    return 0
