"""Distribution metadata: which registry blobs hold which layers (Docker's ``distribution/``).

On-disk format, under ``<data-root>/image/<driver>/distribution/`` (what moby's
``distribution/metadata`` package writes, byte for byte)::

    diffid-by-digest/sha256/<blob digest hex>      "sha256:<diff_id>"
    v2metadata-by-diffid/sha256/<diff_id hex>      [{"Digest":"sha256:<blob>",
                                                     "SourceRepository":"docker.io/library/busybox",
                                                     "HMAC":""}, ...]
    .lock                                           serialises read-modify-writes (lamina's)

A *blob digest* is the digest of a layer as a registry stores it (usually gzip-compressed);
the *diff_id* the digest of its uncompressed tar.  A pull records both directions for every
layer it fetched or found present; a push records the blob it uploaded or found.  A pull then
skips a layer whose blob maps to a diff_id already stored under another repository's chain, and
a push skips compressing a layer the target registry already has (HEAD) or can mount from
another repository of the same registry.  ``HMAC`` is empty: lamina does not tie entries to
credentials (Docker fills it only for entries found with an auth config).

Commit point: each file is written by :func:`lamina.fsutil.atomic_write` (tmp, fsync, rename,
fsync of the directory).  The records are hints: a missing or damaged file is treated as
empty, and a blob named here is always checked against the registry before it is used.
"""

from __future__ import annotations

import json
import os

from lamina import errdefs, fsutil
from lamina.digest import Digest
from lamina.records import dataclass

__all__ = ["V2Metadata", "MetadataStore"]


@dataclass(frozen=True)
class V2Metadata:
    digest: Digest                # the blob's digest in the registry
    source_repository: str        # full repository name, e.g. localhost:5000/app
    hmac: str = ""


class MetadataStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self._by_digest = os.path.join(root, "diffid-by-digest", "sha256")
        self._by_diff_id = os.path.join(root, "v2metadata-by-diffid", "sha256")

    def _lock(self) -> fsutil.FileLock:
        fsutil.make_dirs(self._by_digest)
        fsutil.make_dirs(self._by_diff_id)
        lock = fsutil.FileLock(os.path.join(self.root, ".lock"))
        lock.acquire()
        return lock

    def diff_id(self, blob_digest: str) -> Digest | None:
        """The diff_id recorded for a blob, or None."""
        try:
            with open(os.path.join(self._by_digest, Digest(blob_digest).hex), "rb") as handle:
                return Digest(handle.read().decode().strip())
        except (OSError, UnicodeDecodeError, errdefs.InvalidArgument):
            return None

    def v2_metadata(self, diff_id: str) -> list[V2Metadata]:
        """Every blob recorded for a diff_id, oldest first."""
        try:
            with open(os.path.join(self._by_diff_id, Digest(diff_id).hex), "rb") as handle:
                document = json.loads(handle.read())
        except (OSError, ValueError, errdefs.InvalidArgument):
            return []
        found = []
        for entry in document if isinstance(document, list) else []:
            try:
                found.append(V2Metadata(Digest(entry["Digest"]), str(entry["SourceRepository"]),
                                        str(entry.get("HMAC") or "")))
            except (KeyError, TypeError, errdefs.InvalidArgument):
                continue
        return found

    def add(self, diff_id: str, blob_digest: str, source_repository: str) -> None:
        """Record that ``blob_digest`` in ``source_repository`` holds the layer ``diff_id``."""
        diff_id, blob_digest = Digest(diff_id), Digest(blob_digest)
        lock = self._lock()
        try:
            if self.diff_id(blob_digest) != diff_id:
                fsutil.atomic_write(os.path.join(self._by_digest, blob_digest.hex), str(diff_id))
            entries = self.v2_metadata(diff_id)
            entry = V2Metadata(blob_digest, source_repository)
            if entries and entries[-1] == entry:
                return
            # newest last, one entry per (digest, repository), like moby's Add
            entries = [e for e in entries if (e.digest, e.source_repository) != (blob_digest, source_repository)]
            entries.append(entry)
            document = [{"Digest": e.digest, "SourceRepository": e.source_repository, "HMAC": e.hmac}
                        for e in entries]
            fsutil.atomic_write(os.path.join(self._by_diff_id, diff_id.hex),
                                json.dumps(document, separators=(",", ":")))
        finally:
            lock.release()

    def remove(self, diff_id: str, blob_digest: str, source_repository: str) -> None:
        """Forget one entry (a registry said it lacks the blob after all)."""
        diff_id = Digest(diff_id)
        lock = self._lock()
        try:
            entries = [e for e in self.v2_metadata(diff_id)
                       if (e.digest, e.source_repository) != (blob_digest, source_repository)]
            document = [{"Digest": e.digest, "SourceRepository": e.source_repository, "HMAC": e.hmac}
                        for e in entries]
            fsutil.atomic_write(os.path.join(self._by_diff_id, diff_id.hex),
                                json.dumps(document, separators=(",", ":")))
        finally:
            lock.release()
