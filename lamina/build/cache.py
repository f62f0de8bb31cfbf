"""The classic builder's cache: which image a step made from a parent image.

Docker's rule (moby ``image/cache``): a step is a cache hit when a child of the step's parent
image has a ``container_config`` equal to the config the step would commit, compared on
``Cmd``, ``Env``, ``Entrypoint`` (in order), ``Labels``, ``ExposedPorts``, ``Volumes`` (as
sets), ``User``, ``Tty``, ``AttachStdout`` and ``AttachStderr``; a config with ``OpenStdin``
never matches.  The step's ``Cmd`` describes the step (``#(nop) COPY file:<sha256> in /x``,
``|1 A=b /bin/sh -c make``), so the instruction and its inputs are part of the comparison.
Among several matches the newest wins.

Docker lists every child of the parent and reads each child's config for every probe; lamina
keeps an index instead, so that a probe is one small file read:

    <root>/<hex>      the image id ("sha256:<hex>\\n") of the newest image built for the step;
                      <hex> = sha256 of "<parent image id>\\n<cache key>" (the parent is ""
                      for FROM scratch)

where the *cache key* (:func:`cache_key`) is the sha256 of the compared fields in a canonical
JSON form, so two configs have the same key exactly when Docker's comparison says they are
equal.  ``<root>`` is ``<data-root>/image/<driver>/buildcache``.

Commit point: an entry is written (a temporary file renamed over it; not synced: the index
is a cache, a lost or empty entry is a miss) after its image was stored, so it never names an
image that was not committed.  Images go away without touching
the index (rmi, prune): an entry naming a missing image, or an image whose recorded parent is
not the entry's parent, is a miss, and :meth:`CacheIndex.sweep` removes such entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator

from lamina import fsutil
from lamina.image.config import ContainerConfig

__all__ = ["CacheIndex", "cache_key"]

_TEMPORARY_AGE = 60.0


def cache_key(config: ContainerConfig) -> str | None:
    """The hex key of ``config`` under Docker's cache comparison; None when the config can
    never match (``OpenStdin``)."""
    if config.open_stdin:
        return None
    fields = {
        "AttachStderr": config.attach_stderr,
        "AttachStdout": config.attach_stdout,
        "Cmd": list(config.cmd or ()),
        "Entrypoint": list(config.entrypoint or ()),
        "Env": list(config.env or ()),
        "ExposedPorts": sorted(config.exposed_ports or ()),
        "Labels": sorted((config.labels or {}).items()),
        "Tty": config.tty,
        "User": config.user,
        "Volumes": sorted(config.volumes or ()),
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CacheIndex:
    """The index of built steps under ``root`` (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root

    @staticmethod
    def _name(parent: str, key: str) -> str:
        return hashlib.sha256(f"{parent}\n{key}".encode()).hexdigest()

    def lookup(self, parent: str, key: str) -> str | None:
        """The image id recorded for (parent, key), or None (not checked against the store)."""
        try:
            with open(os.path.join(self.root, self._name(parent, key)), "rb") as handle:
                text = handle.read(200).decode("ascii", "replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise fsutil.system_error("reading the build cache index", exc) from exc
        if not text.startswith("sha256:") or len(text) != 71:
            return None
        return text

    def record(self, parent: str, key: str, image_id: str) -> None:
        """Remember that (parent, key) built ``image_id`` (the newest entry wins).

        Written to a temporary file and renamed, without fsync: an entry lost or emptied by a
        crash is only a cache miss, and a probe needs no durability."""
        path = os.path.join(self.root, self._name(parent, key))
        temporary = os.path.join(self.root, fsutil.temp_name())
        try:
            fsutil.make_dirs(self.root, 0o700)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (image_id + "\n").encode("ascii"))
            finally:
                os.close(fd)
            os.rename(temporary, path)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise fsutil.system_error("writing the build cache index", exc) from exc

    def entries(self) -> Iterator[tuple[str, str]]:
        """(entry name, image id) of every entry."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in sorted(names):
            if len(name) != 64:
                continue
            try:
                with open(os.path.join(self.root, name), "rb") as handle:
                    yield name, handle.read(200).decode("ascii", "replace").strip()
            except FileNotFoundError:
                continue

    def sweep(self, exists: Callable[[str], bool]) -> int:
        """Remove the entries whose image does not exist any more, and temporary files older
        than a minute (left by a crashed write); returns how many entries went."""
        removed = 0
        for name, image_id in list(self.entries()):
            if not exists(image_id):
                try:
                    os.unlink(os.path.join(self.root, name))
                    removed += 1
                except FileNotFoundError:
                    pass
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return removed
        now = time.time()
        for name in names:
            if not name.startswith(".tmp-"):
                continue
            path = os.path.join(self.root, name)
            try:
                # a young one may be another build's write in progress
                if now - os.lstat(path).st_mtime >= _TEMPORARY_AGE:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        return removed
