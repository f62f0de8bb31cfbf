"""The image listing index: what ``images`` shows of every image, in one file (lamina's own).

On disk, beside Docker's ``imagedb/content`` and ``imagedb/metadata``::

    imagedb/listing.json   {"Version": 1,
                            "Stamp": [[dev, ino, mtime_ns, ctime_ns] of imagedb/content/sha256,
                                      [dev, ino, size, mtime_ns, ctime_ns] of repositories.json],
                            "Images": [{"Id": "sha256:...", "Parent": "sha256:..." or "",
                                        "Created": seconds, "Labels": {...},
                                        "RepoTags": ["busybox:latest"], "RepoDigests": ["busybox@sha256:..."],
                                        "Chains": [chainID, ...], "Size": bytes}, ...]}

The records stay the source of truth: the index describes them as they were under its
``Stamp``, the stamps of the image store and of the reference store
(:meth:`lamina.image.store.ImageStore.stamp`, :meth:`lamina.image.refstore.ReferenceStore.stamp`),
which every change that shows in a listing changes.  It is used only while both stamps are
what it says (and settled: a stamp less than a second old is never written nor trusted), so it
needs no commit point of its own: it is written whole (tmp -> rename, not synced: a lost or
stale index is rebuilt) by whichever process built a listing under a settled stamp the index
did not have, and writers race harmlessly (each writes a true description of its stamp).
Missing, damaged, of another version or of another stamp, it is ignored and rewritten by the
next listing; ``system check`` compares a current index with the records and ``--repair``
rewrites it.
"""

from __future__ import annotations

import json
import os

from lamina import errdefs, fsutil
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["INDEX_FILE", "ListedImage", "ListingIndex"]

INDEX_FILE = "listing.json"
_VERSION = 1

Stamp = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class ListedImage:
    """What a listing shows of one image: ``tags`` and ``repo_digests`` in familiar form,
    sorted; ``chains`` the chainIDs of its layers, bottom first; ``size`` their sum."""

    image_id: str
    parent: str | None
    created: float
    labels: dict[str, str]
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    chains: tuple[str, ...]
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"Id": self.image_id, "Parent": self.parent or "", "Created": self.created,
                "Labels": self.labels, "RepoTags": list(self.tags), "RepoDigests": list(self.repo_digests),
                "Chains": list(self.chains), "Size": self.size}

    @classmethod
    def from_json(cls, value: Any) -> ListedImage:
        """An entry as the index holds it; InvalidArgument when it is not of that shape."""
        try:
            labels = value["Labels"]
            fields = (value["Id"], value["Parent"], value["Created"], value["Size"])
            lists = (value["RepoTags"], value["RepoDigests"], value["Chains"])
        except (KeyError, TypeError) as exc:
            raise errdefs.InvalidArgument(f"an entry lacks {exc}") from exc
        image_id, parent, created, size = fields
        if not (isinstance(image_id, str) and image_id.startswith("sha256:") and isinstance(parent, str)
                and isinstance(created, (int, float)) and isinstance(size, int) and isinstance(labels, dict)
                and all(isinstance(item, list) and all(isinstance(text, str) for text in item) for item in lists)
                and all(isinstance(text, str) for pair in labels.items() for text in pair)):
            raise errdefs.InvalidArgument(f"an entry is not of the index's shape: {str(value)[:120]}")
        return cls(image_id=image_id, parent=parent or None, created=float(created), labels=labels,
                   tags=tuple(lists[0]), repo_digests=tuple(lists[1]), chains=tuple(lists[2]), size=size)


class ListingIndex:
    """``imagedb/listing.json`` (see the module docstring); ``root`` is ``<data-root>/image/<driver>``."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(os.fspath(root), "imagedb", INDEX_FILE)

    def load(self, stamp: Stamp) -> tuple[list[ListedImage] | None, str]:
        """(the entries when the index describes ``stamp``, else None; what is wrong with the
        file, "" when nothing: missing and outdated are not wrong)."""
        document, damage = self._read()
        if document is None or damage or [list(part) for part in stamp] != document.get("Stamp"):
            return None, damage
        try:
            return [ListedImage.from_json(entry) for entry in document["Images"]], ""
        except errdefs.InvalidArgument as exc:
            return None, f"is damaged: {exc}"

    def _read(self) -> tuple[dict[str, Any] | None, str]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None, ""
        except OSError as exc:
            return None, f"cannot be read: {exc}"
        try:
            document = json.loads(data)
        except ValueError as exc:
            return None, f"is damaged: {exc}"
        if not isinstance(document, dict) or not isinstance(document.get("Images"), list) \
                or not isinstance(document.get("Stamp"), list):
            return None, "is damaged: not an index document"
        if document.get("Version") != _VERSION:
            return None, f"has version {document.get('Version')!r}, not {_VERSION}"
        return document, ""

    def stamp_of_file(self) -> Any:
        """The stamp the index says it describes (None when missing or unreadable)."""
        document, _ = self._read()
        return document.get("Stamp") if document is not None else None

    def write(self, stamp: Stamp, entries: list[ListedImage]) -> None:
        document = {"Version": _VERSION, "Stamp": [list(part) for part in stamp],
                    "Images": [entry.to_json() for entry in entries]}
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            fsutil.atomic_replace(self.path, data, 0o600)
        except OSError as exc:
            raise fsutil.system_error(f"writing the image listing index {self.path}", exc) from exc

    def remove(self) -> bool:
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return False
