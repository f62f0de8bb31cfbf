"""``lamina images`` / ``lamina image ls``: the image table, like ``docker images``.

One row per repository:tag of each image (``<none>`` for untagged ones); with ``--digests``
one row per tag and digest.  Columns ``REPOSITORY TAG [DIGEST] IMAGE ID CREATED SIZE``; sizes
have 3 significant digits (``4.26MB``) like docker's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from lamina.cli.context import Context
from lamina.cli.formatting import familiar_name, go_time, human_size, since, split_reference, truncate_id
from lamina.cli.options import add_listing_options, parse_filters, print_rows
from lamina.cli.rows import Record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "image_rows", "HEADERS", "DEFAULT_TABLE", "DIGESTS_TABLE"]

HEADERS = {
    "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
}
DEFAULT_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGESTS_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]",
                        help="only images matching this reference")
    parser.add_argument("-a", "--all", action="store_true",
                        help="show all images (default hides intermediate images)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    parser.add_argument("--digests", action="store_true", help="show digests")
    add_listing_options(parser, filter_help="filter output based on conditions provided (dangling=true, "
                                            "reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE)",
                        format_example="{{.Repository}}:{{.Tag}}")

def _size(value: Any, precision: int = 3) -> str:
    if not isinstance(value, (int, float)) or value < 0:
        return "N/A"
    return human_size(value, precision)


class _Rows:
    """Builds the rows of one listing; what rows share (an image's columns, the texts of a size
    or a time that recurs) is worked out once."""

    def __init__(self, no_trunc: bool, now: float | None) -> None:
        self.no_trunc = no_trunc
        self.now = time.time() if now is None else now
        self.sizes: dict[Any, str] = {}
        self.times: dict[Any, tuple[str, str]] = {}

    def size(self, value: Any) -> str:
        text = self.sizes.get(value)
        if text is None:
            text = self.sizes[value] = _size(value)
        return text

    def columns(self, image: dict[str, Any]) -> dict[str, str]:
        """The columns of ``image`` that do not depend on the reference a row shows."""
        identifier = str(image.get("Id", ""))
        created = image.get("Created") or 0
        size = image.get("Size", -1)
        shared = image.get("SharedSize", -1)
        containers = image.get("Containers", -1)
        unique = size - shared if isinstance(size, int) and isinstance(shared, int) and shared >= 0 else -1
        times = self.times.get(created)
        if times is None:
            times = self.times[created] = (since(created, self.now), go_time(created))
        return {
            "ID": identifier if self.no_trunc else truncate_id(identifier),
            "CreatedSince": times[0], "CreatedAt": times[1],
            "Size": self.size(size), "SharedSize": self.size(shared), "UniqueSize": self.size(unique),
            "VirtualSize": self.size(image.get("VirtualSize", size)),
            "Containers": "N/A" if not isinstance(containers, int) or containers < 0 else str(containers),
        }


def _row(columns: dict[str, str], repository: str, tag: str, digest: str) -> Record:
    return Record(columns, Repository=repository, Tag=tag, Digest=digest)


def image_rows(images: Sequence[dict[str, Any]], *, digests: bool = False, no_trunc: bool = False,
               now: float | None = None) -> list[Record]:
    """docker's image rows: per tag (and digest with ``digests``), ``<none>`` when untagged."""
    rows: list[Record] = []
    build = _Rows(no_trunc, now)
    for image in images:
        columns = build.columns(image)
        tags_by_repository: dict[str, list[str]] = {}
        for reference in image.get("RepoTags") or []:
            if reference == "<none>:<none>":
                continue
            repository, tag = split_reference(reference)
            if tag.startswith("@") or not tag:
                continue
            tags_by_repository.setdefault(familiar_name(repository), []).append(tag)
        digests_by_repository: dict[str, list[str]] = {}
        for reference in image.get("RepoDigests") or []:
            if reference == "<none>@<none>" or "@" not in reference:
                continue
            repository, digest = reference.split("@", 1)
            digests_by_repository.setdefault(familiar_name(repository), []).append(digest)
        image_rows_before = len(rows)
        for repository, tags in tags_by_repository.items():
            repository_digests = digests_by_repository.pop(repository, [])
            for tag in tags:
                for digest in (repository_digests if digests and repository_digests else ["<none>"]):
                    rows.append(_row(columns, repository, tag, digest))
        for repository, repository_digests in digests_by_repository.items():
            for digest in (repository_digests if digests else ["<none>"]):
                rows.append(_row(columns, repository, "<none>", digest))
        if len(rows) == image_rows_before:
            rows.append(_row(columns, "<none>", "<none>", "<none>"))
    return rows


def run(args: argparse.Namespace, context: Context) -> int:
    filters = parse_filters(args.filter)
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    images = context.client.images(all=args.all, filters=filters or None, digests=args.digests)
    rows = image_rows(images, digests=args.digests, no_trunc=args.no_trunc)
    print_rows(context, args, rows, key="ID", headers=HEADERS,
               default_table=DIGESTS_TABLE if args.digests else DEFAULT_TABLE)
    return 0
