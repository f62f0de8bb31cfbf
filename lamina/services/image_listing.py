"""Docker's image list (``GET /images/json``), built once per version of the image store.

:class:`ImageListing` describes every stored image by what a listing shows of it
(:class:`lamina.image.listing.ListedImage`: id, parent, created, labels, references, chainIDs,
size) and keeps that description, with the JSON answers built from it, for as long as the
store's stamps stay the same: :meth:`lamina.image.store.ImageStore.stamp` (the image set and
parent links) and :meth:`lamina.image.refstore.ReferenceStore.stamp` (``repositories.json``).
Both are read *before* the records, so a change made while a listing is built gives the next
request another stamp; a stamp less than a second old is None, and nothing built under it is
kept.  Every change that shows in a listing commits through one of those two (tag, untag, rmi,
load, pull, import, build, commit, prune; also from another process on the same data root),
and an image config is immutable, so a kept listing is the listing of the records.  An image
whose config or parent record is damaged is left out, with a warning (``system check``
reports it).

The description is kept in memory (a long-lived ``lamina serve`` answers a repeated ``images``
without a system call but three ``stat``) and in the listing index
(:mod:`lamina.image.listing`, ``imagedb/listing.json``), so that a command in a new process
reads one file instead of every image's records; :meth:`ImageListing.check` compares a current
index with the records, for ``system check``.

Layer sizes are remembered by chainID (the chainID fixes a layer's content and so its size);
a missing layer counts 0 and is looked up again the next time.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from lamina import errdefs
from lamina.digest import Digest, chain_ids
from lamina.image.listing import ListedImage, ListingIndex
from lamina.image.reference import Reference, parse_normalized_named
from lamina.log import get_logger

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
# times, label and reference filters are imported when a listing is built from the records or
# filtered: a listing answered from its index needs none of them
if TYPE_CHECKING:
    from typing import Any
    from lamina.image.refstore import ReferenceStore
    from lamina.image.store import ImageStore
    from lamina.layer.store import LayerStore

__all__ = ["FILTERS", "ImageListing", "reference_matches", "summary"]

log = get_logger(__name__)

FILTERS = ("dangling", "reference", "label", "before", "since")
# answers kept (one per stamp and distinct query: all, digests, filters)
_ANSWERS_KEPT = 8

Resolve = Callable[[str], Digest]
_Stamp = tuple[tuple[int, ...], tuple[int, ...]]


def reference_matches(pattern: str, reference: str) -> bool:
    """Docker's reference filter: glob on the familiar name of a reference (familiar form:
    ``name:tag`` or ``name@digest``), or on the whole when the pattern has a tag."""
    import fnmatch

    if "@" in reference:
        name = reference.split("@", 1)[0]
    else:
        colon = reference.rfind(":")
        name = reference[:colon] if colon > reference.rfind("/") else reference
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(reference, pattern)


class ImageListing:
    def __init__(self, *, images: ImageStore, references: ReferenceStore, layers: LayerStore) -> None:
        self.images = images
        self.references = references
        self.layers = layers
        self.index = ListingIndex(images.root)
        self._parsed: dict[str, Reference] = {}  # repositories.json keys, parsed once
        self._sizes: dict[str, int] = {}  # chainID -> size of the layers found
        self._listed: tuple[_Stamp, list[ListedImage]] | None = None
        self._answers: dict[tuple[Any, ...], bytes] = {}  # (stamp, query) -> JSON

    # -- the description of every image -------------------------------------------------------

    def references_by_image(self) -> dict[str, list[Reference]]:
        """image id -> its references (those repositories.json holds that parse)."""
        out: dict[str, list[Reference]] = {}
        parsed = self._parsed
        current = self.references.all()
        if len(parsed) > 2 * len(current) + 64:
            parsed.clear()  # forget the references removed since
        for text, image_id in current.items():
            reference = parsed.get(text)
            if reference is None:
                try:
                    reference = parsed[text] = parse_normalized_named(text)
                except errdefs.InvalidArgument:
                    continue
            out.setdefault(image_id, []).append(reference)
        return out

    def _stamp(self) -> _Stamp | None:
        images, references = self.images.stamp(), self.references.stamp()
        return None if images is None or references is None else (images, references)

    def listed(self) -> tuple[_Stamp | None, list[ListedImage]]:
        """(the stamp they were built under or None, every image), newest first: from memory,
        else from the index, else from the records (then written to the index)."""
        stamp = self._stamp()
        if stamp is None:
            return None, self.from_records()
        if self._listed is not None and self._listed[0] == stamp:
            return self._listed
        entries, damage = self.index.load(stamp)
        if damage:
            log.warning("the image listing index %s %s; rebuilding it", self.index.path, damage)
        if entries is None:
            entries = self.from_records()
            try:
                self.index.write(stamp, entries)
            except errdefs.LaminaError as exc:
                log.warning("%s", exc)  # the next listing reads the records again
        self._listed = (stamp, entries)
        self._answers = {}
        return self._listed

    def check(self, *, repair: bool = False) -> tuple[list[str], list[str]]:
        """(problems, repairs) of the listing index: damaged, or current (its stamp is the
        stores') but describing the images otherwise than their records do; ``repair``
        rewrites it from the records.  An index of an older stamp is not a problem: the next
        listing rewrites it."""
        stamp = self._stamp()
        problems: list[str] = []
        if stamp is None:
            return problems, []  # changed less than a second ago: nothing is trusted yet
        entries, damage = self.index.load(stamp)
        if damage:
            problems.append(f"the image listing index {self.index.path} {damage}")
        elif entries is not None:
            records = {entry.image_id: entry for entry in self.from_records()}
            indexed = {entry.image_id: entry for entry in entries}
            for image_id in sorted(records.keys() | indexed.keys()):
                if records.get(image_id) != indexed.get(image_id):
                    problems.append(f"the image listing index {self.index.path} describes {image_id} "
                                    "otherwise than its records")
        if not problems or not repair:
            return problems, []
        self._listed = None
        self.index.write(stamp, self.from_records())
        return problems, [f"rewrote the image listing index {self.index.path}"]

    def from_records(self) -> list[ListedImage]:
        """Every image, newest first, read from the records (no index; only layer sizes kept)."""
        from lamina.image.rfc3339 import seconds_of

        refs_by_image = self.references_by_image()
        sizes: dict[str, int] = {}
        entries = []
        for image_id in self.images.ids():
            try:
                parent = self.images.get_parent(image_id)
                config = self.images.get_config(image_id, cached=True)
            except errdefs.NotFound:
                continue  # removed meanwhile
            except errdefs.DataLoss as exc:
                log.warning("image %s is not listed: %s (see lamina system check)", image_id, exc)
                continue
            references = refs_by_image.get(image_id, ())
            chains = tuple(str(chain) for chain in chain_ids(config.diff_ids))
            entries.append(ListedImage(
                image_id=str(image_id),
                parent=str(parent) if parent else None,
                created=seconds_of(config.created),
                labels=(config.config or {}).get("Labels") or {},
                tags=tuple(sorted(r.familiar_string() for r in references if r.tag)),
                repo_digests=tuple(sorted(r.familiar_string() for r in references if r.digest)),
                chains=chains,
                size=self._size(chains, sizes),
            ))
        self._sizes = sizes  # the layers of the images stored now
        entries.sort(key=lambda entry: (int(entry.created), entry.image_id), reverse=True)
        return entries

    def _size(self, chains: tuple[str, ...], sizes: dict[str, int]) -> int:
        total = 0
        for chain in chains:
            size = sizes.get(chain)
            if size is None:
                size = self._sizes.get(chain)
            if size is None:
                try:
                    size = self.layers.get(chain).size
                except errdefs.NotFound:
                    continue  # a missing layer counts 0, and is looked for again next time
            sizes[chain] = size
            total += size
        return total

    # -- answers ------------------------------------------------------------------------------

    def summaries(self, *, resolve: Resolve, all: bool = False, filters: dict[str, list[str]] | None = None,
                  digests: bool = False) -> list[dict[str, Any]]:
        """Docker's ImageSummary list, newest first (see :meth:`ImageService.list_images`);
        ``resolve`` names the images of the ``before`` and ``since`` filters."""
        return self._summaries(self.listed()[1], resolve, all, filters or {}, digests)

    def encoded(self, *, resolve: Resolve, all: bool = False, filters: dict[str, list[str]] | None = None,
                digests: bool = False) -> bytes:
        """:meth:`summaries` as the JSON body of ``GET /images/json``, kept while the stamp stays."""
        filters = filters or {}  # checked by _summaries before any answer is kept
        stamp, entries = self.listed()
        # the stamp is part of the key: a server's threads may build answers of two stamps at once
        query = (stamp, all, digests, tuple(sorted((key, tuple(values)) for key, values in filters.items())))
        answer = self._answers.get(query) if stamp is not None else None
        if answer is None:
            answer = json.dumps(self._summaries(entries, resolve, all, filters, digests),
                                ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            if stamp is not None:
                answers = self._answers
                if len(answers) >= _ANSWERS_KEPT:
                    answers.clear()
                answers[query] = answer
        return answer

    def _summaries(self, entries: list[ListedImage], resolve: Resolve, all: bool, filters: dict[str, list[str]],
                   digests: bool) -> list[dict[str, Any]]:
        _check_filters(filters)
        parents = {entry.parent for entry in entries} - {None}
        before = self._created(resolve(filters["before"][0]), entries) if filters.get("before") else None
        since = self._created(resolve(filters["since"][0]), entries) if filters.get("since") else None
        dangling_wanted = filters["dangling"][0].lower() in ("true", "1") if "dangling" in filters else None
        patterns = filters.get("reference")
        labels_wanted = filters.get("label")
        if labels_wanted:
            from lamina.services.filters import all_labels_match
        summaries = []
        for entry in entries:
            dangling = not entry.tags and not entry.repo_digests
            if not all and dangling and entry.image_id in parents:
                continue  # intermediate image
            if dangling_wanted is not None and dangling_wanted != dangling:
                continue
            if patterns and not any(reference_matches(pattern, reference) for pattern in patterns
                                    for reference in (*entry.tags, *entry.repo_digests)):
                continue
            if labels_wanted and not all_labels_match(entry.labels, labels_wanted):
                continue
            if before is not None and entry.created >= before:
                continue
            if since is not None and entry.created <= since:
                continue
            summaries.append(summary(entry, digests=digests))
        return summaries

    def _created(self, image_id: str, entries: list[ListedImage]) -> float:
        for entry in entries:
            if entry.image_id == image_id:
                return entry.created
        from lamina.image.rfc3339 import seconds_of

        return seconds_of(self.images.get_config(image_id).created)


def summary(entry: ListedImage, *, digests: bool = False) -> dict[str, Any]:
    """Docker's ImageSummary of one image (``digests``: a dangling image shows ``<none>@<none>``)."""
    dangling = not entry.tags and not entry.repo_digests
    return {
        "Containers": -1,
        "Created": int(entry.created),
        "Id": str(entry.image_id),
        "Labels": entry.labels or None,
        "ParentId": entry.parent or "",
        "RepoDigests": list(entry.repo_digests) if not dangling else (["<none>@<none>"] if digests else []),
        "RepoTags": list(entry.tags),
        "SharedSize": -1,
        "Size": entry.size,
        "VirtualSize": entry.size,
    }


def _check_filters(filters: dict[str, list[str]]) -> None:
    for key in filters:
        if key not in FILTERS:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
