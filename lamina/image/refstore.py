"""repositories.json: which names point at which image ids (Docker's reference store).

Format, exactly what moby's ``reference/store.go`` writes (Go's ``json.Marshal`` of the store:
no whitespace, map keys sorted, file mode 0600)::

    {"Repositories":{"busybox":{"busybox:latest":"sha256:<id>",
                                "busybox@sha256:<manifest digest>":"sha256:<id>"},
                     "localhost:5000/app":{"localhost:5000/app:1":"sha256:<id>"}}}

The outer keys are familiar names (``reference.FamiliarName``), the inner keys familiar
strings (``reference.FamiliarString``) of either a tag reference or a digest reference,
never both: a reference with a tag and a digest is stored by its digest.

Concurrency and commit point: every change is a read-modify-write of the whole file under an
exclusive :class:`lamina.fsutil.FileLock` on ``<path>.lock``; the new content is published by
the rename inside :func:`lamina.fsutil.atomic_write` (the commit point).  Readers take no lock:
they see the file before or after a rename, never a mix.  Parsed content is cached per
(device, inode, size, mtime, ctime) of the file, only once the file is a second old: a rename
makes a new inode, but a later one may reuse it within one timestamp tick (the "racily clean"
case of git's index).  :meth:`ReferenceStore.stamp` is that key, for listings built from the
references.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from lamina import errdefs, fsutil
from lamina.digest import Digest
from lamina.image.reference import (
    Reference,
    parse_normalized_named,
    trim_name,
    with_default_tag,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import TypeVar

    _Result = TypeVar("_Result")

__all__ = ["ReferenceStore", "Stamp"]

_Repositories = dict[str, dict[str, str]]
Stamp = tuple[int, int, int, int, int]
_MISSING: Stamp = (0, 0, 0, 0, 0)


def _settled_key(stat: os.stat_result) -> Stamp | None:
    """The cache key of the file ``stat`` describes, or None while it is less than a second old."""
    if not fsutil.settled(stat):
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _storage_reference(reference: Reference) -> Reference:
    """The form a reference is stored under: a digest wins over a tag; a bare name gets
    ``:latest`` (Docker's favorDigest + TagNameOnly)."""
    if reference.digest is not None:
        return Reference(domain=reference.domain, path=reference.path, digest=reference.digest)
    return with_default_tag(reference)


def _image_id(value: str) -> Digest:
    try:
        return Digest(value)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"invalid image id {value!r}: {exc}") from exc


class ReferenceStore:
    """Tags and digest references of images, persisted in Docker's repositories.json."""

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self.lock_path = self.path + ".lock"
        self._cache_key: Stamp | None = None
        self._cache: _Repositories = {}
        self._all: dict[str, Digest] | None = None  # all() of the cached content

    # ---- file access

    def stamp(self) -> Stamp | None:
        """The key of the file's current version (a missing file has one too), or None while
        it changed less than a second ago: while it stays the same, so do the references."""
        try:
            return _settled_key(os.stat(self.path))
        except FileNotFoundError:
            return _MISSING
        except OSError as exc:
            raise fsutil.system_error(f"reading {self.path}", exc) from exc

    def _load(self) -> _Repositories:
        """The current content (no lock; the file is replaced atomically)."""
        try:
            with open(self.path, "rb") as handle:
                key = _settled_key(os.fstat(handle.fileno()))
                if key is not None and key == self._cache_key:
                    return self._cache
                data = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise fsutil.system_error(f"reading {self.path}", exc) from exc
        repositories = self._parse(data)
        self._cache_key, self._cache, self._all = key, repositories, None
        return repositories

    def _parse(self, data: bytes) -> _Repositories:
        try:
            document = json.loads(data) if data.strip() else {}
        except ValueError as exc:
            raise errdefs.DataLoss(f"{self.path} is damaged: {exc}") from exc
        if not isinstance(document, dict):
            raise errdefs.DataLoss(f"{self.path} is damaged: not a JSON object")
        repositories = document.get("Repositories") or {}
        if not isinstance(repositories, dict):
            raise errdefs.DataLoss(f"{self.path} is damaged: Repositories is not an object")
        result: _Repositories = {}
        for name, entries in repositories.items():
            if entries is None:
                continue
            if not isinstance(entries, dict) or not all(isinstance(value, str) for value in entries.values()):
                raise errdefs.DataLoss(f"{self.path} is damaged: repository {name!r} is not a map of strings")
            result[name] = dict(entries)
        return result

    def _save(self, repositories: _Repositories) -> None:
        from lamina.image import gojson

        document = {"Repositories": gojson.sorted_map(
            {name: gojson.sorted_map(entries) for name, entries in repositories.items()})}
        directory = os.path.dirname(self.path) or "."
        try:
            fsutil.make_dirs(directory, 0o700)
            fsutil.atomic_write(self.path, gojson.dumps(document), mode=0o600)
        except OSError as exc:
            raise fsutil.system_error(f"writing {self.path}", exc) from exc

    def _update(self, change: Callable[[_Repositories], _Result]) -> _Result:
        """Run ``change`` on a fresh copy under the lock and save it if it changed."""
        directory = os.path.dirname(self.path) or "."
        try:
            fsutil.make_dirs(directory, 0o700)
            lock = fsutil.FileLock(self.lock_path)
            lock.acquire()
        except OSError as exc:
            raise fsutil.system_error(f"locking {self.lock_path}", exc) from exc
        try:
            current = self._load()
            working = {name: dict(entries) for name, entries in current.items()}
            result = change(working)
            if working != current:
                self._save(working)
            return result
        finally:
            lock.release()

    # ---- changes

    def add_tag(self, reference: Reference, image_id: str, *, force: bool = True) -> None:
        """Point ``name:tag`` (``:latest`` when no tag) at ``image_id``.  An existing tag moves
        when ``force``; otherwise Conflict (unless it already points there)."""
        if reference.digest is not None:
            raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
        self._add(with_default_tag(reference), _image_id(image_id), force=force)

    def add_digest(self, reference: Reference, image_id: str, *, force: bool = False) -> None:
        """Record ``name@digest`` for ``image_id``; a digest reference never moves (Conflict),
        recording the same pair again is a no-op."""
        if reference.digest is None:
            raise errdefs.InvalidArgument(f"{reference.familiar_string()} is not a digest reference")
        self._add(_storage_reference(reference), _image_id(image_id), force=force)

    def _add(self, reference: Reference, image_id: Digest, *, force: bool) -> None:
        name = reference.familiar_name
        key = reference.familiar_string()
        if name == "sha256":
            raise errdefs.InvalidArgument("refusing to create an ambiguous tag using digest algorithm as name")

        def change(repositories: _Repositories) -> None:
            entries = repositories.setdefault(name, {})
            old = entries.get(key)
            if old is not None and old != image_id:
                if reference.digest is not None:
                    raise errdefs.Conflict(f"Cannot overwrite digest {reference.digest}")
                if not force:
                    raise errdefs.Conflict(
                        f"Conflict: Tag {key} is already set to image {old}, "
                        "if you want to replace it, please use the force option")
            entries[key] = str(image_id)

        self._update(change)

    def delete(self, reference: Reference) -> bool:
        """Remove one reference (a bare name means ``:latest``); False when it was not there."""
        stored = _storage_reference(reference)
        name, key = stored.familiar_name, stored.familiar_string()

        def change(repositories: _Repositories) -> bool:
            entries = repositories.get(name)
            if entries is None or key not in entries:
                return False
            del entries[key]
            if not entries:
                del repositories[name]
            return True

        return self._update(change)

    def delete_image(self, image_id: str) -> list[Reference]:
        """Remove every reference to ``image_id``; returns them, sorted."""
        wanted = str(_image_id(image_id))

        def change(repositories: _Repositories) -> list[Reference]:
            removed: list[Reference] = []
            for name in list(repositories):
                entries = repositories[name]
                for key in [key for key, value in entries.items() if value == wanted]:
                    del entries[key]
                    parsed = self._parse_key(key)
                    if parsed is not None:
                        removed.append(parsed)
                if not entries:
                    del repositories[name]
            return sorted(removed, key=Reference.string)

        return self._update(change)

    # ---- queries

    @staticmethod
    def _parse_key(key: str) -> Reference | None:
        try:
            return parse_normalized_named(key)
        except errdefs.InvalidArgument:
            return None  # Docker skips entries it cannot parse, and so do we

    def get(self, reference: Reference) -> Digest:
        """The image id a reference points at (a tag+digest reference is looked up by digest)."""
        stored = _storage_reference(reference)
        entries = self._load().get(stored.familiar_name) or {}
        value = entries.get(stored.familiar_string())
        if value is None:
            raise errdefs.NotFound(f"No such image: {stored.familiar_string()}")
        try:
            return Digest(value)
        except errdefs.InvalidArgument as exc:
            raise errdefs.DataLoss(f"{self.path}: {stored.familiar_string()} points at {value!r}") from exc

    def references(self, image_id: str) -> list[Reference]:
        """Every reference to ``image_id``, sorted by full string (so a repository's tags come
        before its digests, as in Docker)."""
        wanted = str(_image_id(image_id))
        found = []
        for entries in self._load().values():
            for key, value in entries.items():
                if value == wanted:
                    parsed = self._parse_key(key)
                    if parsed is not None:
                        found.append(parsed)
        return sorted(found, key=Reference.string)

    def references_by_name(self, reference: Reference) -> list[tuple[Reference, Digest]]:
        """All references in the repository of ``reference``, sorted, with their image ids."""
        entries = self._load().get(trim_name(reference).familiar_name) or {}
        found = []
        for key, value in entries.items():
            parsed = self._parse_key(key)
            if parsed is not None:
                try:
                    found.append((parsed, Digest(value)))
                except errdefs.InvalidArgument:
                    continue
        return sorted(found, key=lambda pair: pair[0].string())

    def all(self) -> dict[str, Digest]:
        """Full reference string -> image id, for every reference."""
        repositories = self._load()
        if self._all is not None and repositories is self._cache:
            return dict(self._all)
        result: dict[str, Digest] = {}
        for entries in repositories.values():
            for key, value in entries.items():
                parsed = self._parse_key(key)
                if parsed is None:
                    continue
                try:
                    result[parsed.string()] = Digest(value)
                except errdefs.InvalidArgument:
                    continue
        if repositories is self._cache and self._cache_key is not None:
            self._all = dict(result)
        return result

    def check(self) -> list[str]:
        """Problems: unparsable file, keys that are not references, values that are not ids,
        entries filed under the wrong repository."""
        try:
            repositories = self._load()
        except errdefs.DataLoss as exc:
            return [str(exc)]
        problems: list[str] = []
        for name, entries in sorted(repositories.items()):
            for key, value in sorted(entries.items()):
                parsed = self._parse_key(key)
                if parsed is None:
                    problems.append(f"{self.path}: {key!r} is not a valid reference")
                    continue
                if parsed.familiar_name != name:
                    problems.append(f"{self.path}: {key!r} is filed under repository {name!r}")
                try:
                    Digest(value)
                except errdefs.InvalidArgument:
                    problems.append(f"{self.path}: {key!r} points at {value!r}, not an image id")
        return problems
