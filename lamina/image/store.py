"""imagedb: image configs stored by image id, Docker's layout.

On disk (``root`` is ``<data-root>/image/<driver>``)::

    imagedb/content/sha256/<hex>                 the exact config bytes; <hex> = sha256 of them
    imagedb/metadata/sha256/<hex>/parent         "sha256:<parent id>" (commit/build set it)
    imagedb/metadata/sha256/<hex>/lastUpdated    RFC 3339 time (nanoseconds) of the last tag
    imagedb/metadata/sha256/<hex>/builtLocally   "\\x01" when the image may seed the build cache

Directories are 0700, files 0600, as Docker makes them.

Commit points:

- **put**: the rename of the content file (:func:`lamina.fsutil.atomic_write`); before it
  only a ``.tmp-*`` file exists, which :meth:`ImageStore.check` reports and
  :meth:`ImageStore.sweep` removes.  Writing the same config twice is harmless (same bytes).
- **delete**: the unlink of the content file.  The metadata directory goes afterwards; one
  left behind by a crash is an orphan that ``check`` reports and ``sweep`` removes.
- metadata files are each written with ``atomic_write``; a metadata write for an image that
  does not exist is refused.

Every read of a config re-hashes it: a mismatch is :class:`lamina.errdefs.DataLoss`.  Several
processes may use one store at once: content is immutable and every write is an atomic
rename, so no lock is needed; lookups read the directory.

Listing (``get_config(..., cached=True)``, ``get_parent``) is served from memory for what has
not changed since it was read and hashed: a config or parent record is kept with the key of its
file (inode, size, times), and used again only while a ``stat`` gives the same key and the file
was already a second old when it was read (a rewrite within one timestamp tick would keep the
key: the "racily clean" case of git's index).  Inspect, save and check read and re-hash.

The listing stamp (:meth:`ImageStore.stamp`): the inode and times of ``imagedb/content/sha256``
change with every image stored or deleted (a name renamed into it or unlinked), and a parent
record's change (``set_parent``, the parent links a delete drops) touches them too, before and
after it (``utime``).  A listing built while the stamp stayed the same describes the store
(configs are immutable), so a long-lived process may answer from it while the stamp is
unchanged; like the records above, a stamp less than a second old is not trusted (None).
"""

from __future__ import annotations

import os
import time

from lamina import errdefs, fsutil
from lamina.digest import Digest, is_hex_id, sha256_hex
from lamina.log import get_logger

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.image.config import ImageConfig

__all__ = ["ImageStore", "Stamp"]

log = get_logger(__name__)

_METADATA_KEYS = ("parent", "lastUpdated", "builtLocally")
# a file changed more recently than this is not cached (see the module docstring)

_FileKey = tuple[int, int, int, int]
Stamp = tuple[int, int, int, int]


def _file_key(path: str) -> tuple[_FileKey, bool] | None:
    """(inode, size, mtime, ctime) of ``path`` and whether it is settled; None when missing."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns), fsutil.settled(stat)


class ImageStore:
    """Image configs by image id (``sha256:<hex>``); see the module docstring for the layout."""

    def __init__(self, root: str) -> None:
        self.root = os.fspath(root)
        self.content_dir = os.path.join(self.root, "imagedb", "content", "sha256")
        self.metadata_dir = os.path.join(self.root, "imagedb", "metadata", "sha256")
        try:
            fsutil.make_dirs(self.content_dir, 0o700)
            fsutil.make_dirs(self.metadata_dir, 0o700)
        except OSError as exc:
            raise fsutil.system_error(f"creating image store in {self.root}", exc) from exc
        self._configs: dict[str, tuple[_FileKey, ImageConfig]] = {}
        self._parents: dict[str, tuple[_FileKey, Digest | None]] = {}

    # ---- ids

    @staticmethod
    def _id(image_id: str) -> Digest:
        """Accept ``sha256:<hex>`` or a bare 64-hex id."""
        if is_hex_id(image_id):
            return Digest("sha256:" + image_id)
        digest = Digest(image_id)
        if digest.algorithm != "sha256":
            raise errdefs.InvalidArgument(f"invalid image id {image_id!r}: image ids are sha256 digests")
        return digest

    def _content_path(self, image_id: Digest) -> str:
        return os.path.join(self.content_dir, image_id.hex)

    def _metadata_path(self, image_id: Digest, key: str | None = None) -> str:
        directory = os.path.join(self.metadata_dir, image_id.hex)
        return directory if key is None else os.path.join(directory, key)

    # ---- the listing stamp

    def stamp(self) -> Stamp | None:
        """(device, inode, mtime, ctime) of the content directory, or None while it changed
        less than a second ago (see the module docstring)."""
        try:
            stat = os.stat(self.content_dir)
        except FileNotFoundError:
            return None
        if not fsutil.settled(stat):
            return None
        return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns

    def _touch(self) -> None:
        """Change the stamp: a parent record is about to change, or just did."""
        try:
            os.utime(self.content_dir)
        except OSError as exc:
            raise fsutil.system_error(f"touching {self.content_dir}", exc) from exc

    # ---- content

    def put(self, config: bytes) -> Digest:
        """Store config bytes (validated as an image config) and return the image id."""
        if not isinstance(config, (bytes, bytearray, memoryview)):
            raise errdefs.InvalidArgument("image config must be bytes")
        from lamina.image.config import ImageConfig

        config = bytes(config)
        if not config:
            raise errdefs.InvalidArgument("invalid image config: empty")
        parsed = ImageConfig.from_json(config)
        parsed.non_empty_history()  # more non-empty history entries than layers is refused
        image_id = Digest("sha256:" + sha256_hex(config))
        path = self._content_path(image_id)
        try:
            with open(path, "rb") as handle:
                if handle.read() == config:
                    return image_id
            log.warning("image %s: stored config does not verify; rewriting it", image_id)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fsutil.system_error(f"reading image {image_id}", exc) from exc
        try:
            fsutil.atomic_write(path, config, mode=0o600)
        except OSError as exc:
            raise fsutil.system_error(f"writing image {image_id}", exc) from exc
        return image_id

    def get(self, image_id: str) -> bytes:
        """The verified config bytes; NotFound, or DataLoss when they do not hash to the id."""
        digest = self._id(image_id)
        path = self._content_path(digest)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise errdefs.NotFound(f"No such image: {digest}") from None
        except OSError as exc:
            raise fsutil.system_error(f"reading image {digest}", exc) from exc
        actual = "sha256:" + sha256_hex(data)
        if actual != digest:
            raise errdefs.DataLoss(f"image {digest} is damaged: its config hashes to {actual}")
        return data

    def get_config(self, image_id: str, *, cached: bool = False) -> ImageConfig:
        """The parsed config; ``cached``: from memory when its file did not change since it
        was read and hashed (for listings, see the module docstring)."""
        if not cached:
            return self._parse_config(image_id, self.get(image_id))
        digest = self._id(image_id)
        key = _file_key(self._content_path(digest))
        if key is None:
            raise errdefs.NotFound(f"No such image: {digest}")
        known = self._configs.get(digest)
        if known is not None and known[0] == key[0]:
            return known[1]
        config = self._parse_config(digest, self.get(digest))
        if key[1]:
            self._configs[digest] = (key[0], config)
        return config

    def _parse_config(self, image_id: str, data: bytes) -> ImageConfig:
        from lamina.image.config import ImageConfig  # a listing from its index parses no config

        try:
            return ImageConfig.from_json(data)
        except errdefs.InvalidArgument as exc:
            raise errdefs.DataLoss(f"image {self._id(image_id)}: stored config does not parse: {exc}") from exc

    def exists(self, image_id: str) -> bool:
        try:
            digest = self._id(image_id)
        except errdefs.InvalidArgument:
            return False
        return os.path.isfile(self._content_path(digest))

    def delete(self, image_id: str) -> None:
        """Remove an image's config and metadata; children lose their ``parent`` link."""
        digest = self._id(image_id)
        path = self._content_path(digest)
        if not os.path.isfile(path):
            raise errdefs.NotFound(f"No such image: {digest}")
        children = self.children(digest)
        self._configs.pop(digest, None)
        self._parents.pop(digest, None)
        try:
            os.unlink(path)  # the commit point
            fsutil.fsync_dir(self.content_dir)
        except FileNotFoundError:
            raise errdefs.NotFound(f"No such image: {digest}") from None
        except OSError as exc:
            raise fsutil.system_error(f"deleting image {digest}", exc) from exc
        if children:
            for child in children:
                self._remove_quietly(self._metadata_path(child, "parent"))
                self._parents.pop(child, None)
            self._touch()
        fsutil.remove_tree(self._metadata_path(digest))

    def ids(self) -> list[Digest]:
        """Every stored image id (names that are not 64-hex, e.g. temp files, are skipped)."""
        try:
            names = os.listdir(self.content_dir)
        except FileNotFoundError:
            return []
        return sorted(Digest("sha256:" + name) for name in names if is_hex_id(name))

    def search(self, prefix: str) -> Digest:
        """Resolve a full or short id (``3f5``, ``sha256:3f5``) to one image id, like Docker.

        NotFound ``No such image: <prefix>`` when nothing matches; InvalidArgument when the
        prefix matches more than one image."""
        text = prefix[len("sha256:"):] if prefix.startswith("sha256:") else prefix
        if not is_hex_id(text, shortest=1):
            raise errdefs.NotFound(f"No such image: {prefix}")
        if len(text) == 64:
            if self.exists(text):
                return Digest("sha256:" + text)
            raise errdefs.NotFound(f"No such image: {prefix}")
        matches = [image_id for image_id in self.ids() if image_id.hex.startswith(text)]
        if not matches:
            raise errdefs.NotFound(f"No such image: {prefix}")
        if len(matches) > 1:
            raise errdefs.InvalidArgument(
                f"ambiguous image id {prefix!r}: it is the prefix of {len(matches)} images")
        return matches[0]

    # ---- metadata

    def _set_metadata(self, image_id: Digest, key: str, data: bytes) -> None:
        if not self.exists(image_id):
            raise errdefs.NotFound(f"No such image: {image_id}")
        directory = self._metadata_path(image_id)
        try:
            fsutil.make_dirs(directory, 0o700)
            fsutil.atomic_write(os.path.join(directory, key), data, mode=0o600)
        except OSError as exc:
            raise fsutil.system_error(f"writing {key} of image {image_id}", exc) from exc

    def _get_metadata(self, image_id: Digest, key: str) -> bytes | None:
        if not self.exists(image_id):
            raise errdefs.NotFound(f"No such image: {image_id}")
        try:
            with open(self._metadata_path(image_id, key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise fsutil.system_error(f"reading {key} of image {image_id}", exc) from exc

    @staticmethod
    def _remove_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def set_parent(self, image_id: str, parent_id: str) -> None:
        digest, parent = self._id(image_id), self._id(parent_id)
        if not self.exists(parent):
            raise errdefs.NotFound(f"unknown parent image ID {parent}")
        if digest == parent:
            raise errdefs.InvalidArgument(f"image {digest} cannot be its own parent")
        self._touch()
        try:
            self._set_metadata(digest, "parent", str(parent).encode())
        finally:
            self._touch()

    def get_parent(self, image_id: str) -> Digest | None:
        """The parent recorded by commit/build, or None (from memory while its record did not
        change, see the module docstring)."""
        digest = self._id(image_id)
        if not self.exists(digest):
            raise errdefs.NotFound(f"No such image: {digest}")
        key = _file_key(self._metadata_path(digest, "parent"))
        if key is None:
            return None
        known = self._parents.get(digest)
        if known is not None and known[0] == key[0]:
            return known[1]
        parent = self._read_parent(digest)
        if key[1]:
            self._parents[digest] = (key[0], parent)
        return parent

    def _read_parent(self, digest: Digest) -> Digest | None:
        data = self._get_metadata(digest, "parent")
        if not data:
            return None
        try:
            return Digest(data.decode("ascii").strip())
        except (UnicodeDecodeError, errdefs.InvalidArgument) as exc:
            raise errdefs.DataLoss(f"image {digest}: damaged parent record {data[:80]!r}") from exc

    def set_last_updated(self, image_id: str, nanoseconds: int | None = None) -> None:
        """Record when the image was last tagged (default: now)."""
        from lamina.image.rfc3339 import format_time

        self._set_metadata(self._id(image_id), "lastUpdated", format_time(nanoseconds).encode())

    def get_last_updated(self, image_id: str) -> str | None:
        """The RFC 3339 time of the last tag, or None when never tagged."""
        digest = self._id(image_id)
        data = self._get_metadata(digest, "lastUpdated")
        if not data:
            return None
        text = data.decode("utf-8", "replace").strip()
        from lamina.image.rfc3339 import parse_time

        try:
            parse_time(text)
        except errdefs.InvalidArgument as exc:
            raise errdefs.DataLoss(f"image {digest}: damaged lastUpdated record {text[:80]!r}") from exc
        return text

    def set_built_locally(self, image_id: str) -> None:
        self._set_metadata(self._id(image_id), "builtLocally", b"\x01")

    def is_built_locally(self, image_id: str) -> bool:
        digest = self._id(image_id)
        if not os.path.exists(self._metadata_path(digest, "builtLocally")) and self.exists(digest):
            return False  # one stat for the images that were not built here (most of them)
        data = self._get_metadata(digest, "builtLocally")
        return bool(data) and data[:1] == b"\x01"

    def children(self, image_id: str) -> list[Digest]:
        """Images whose recorded parent is ``image_id``."""
        digest = self._id(image_id)
        wanted = str(digest).encode()
        found = []
        for child in self.ids():
            try:
                with open(self._metadata_path(child, "parent"), "rb") as handle:
                    if handle.read().strip() == wanted:
                        found.append(child)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    # ---- consistency

    def check(self) -> list[str]:
        """Problems found in the store, one sentence each (nothing is changed)."""
        problems: list[str] = []
        try:
            content_names = sorted(os.listdir(self.content_dir))
        except FileNotFoundError:
            content_names = []
        present = set()
        for name in content_names:
            path = os.path.join(self.content_dir, name)
            if name.startswith(".tmp-"):
                problems.append(f"stray temporary file {path} (an interrupted write)")
                continue
            if not is_hex_id(name):
                problems.append(f"unexpected file {path} in the image store")
                continue
            present.add(name)
            try:
                self.get_config(name)
            except errdefs.DataLoss as exc:
                problems.append(str(exc))
            except errdefs.LaminaError as exc:
                problems.append(f"image sha256:{name}: {exc}")
        imagedb = os.path.dirname(os.path.dirname(self.content_dir))
        for name in sorted(os.listdir(imagedb)) if os.path.isdir(imagedb) else ():
            if name.startswith(".tmp-"):
                problems.append(f"stray temporary file {os.path.join(imagedb, name)} (an interrupted write)")
        try:
            metadata_names = sorted(os.listdir(self.metadata_dir))
        except FileNotFoundError:
            metadata_names = []
        for name in metadata_names:
            path = os.path.join(self.metadata_dir, name)
            if name not in present:
                problems.append(f"metadata {path} belongs to no image")
                continue
            for entry in sorted(os.listdir(path)) if os.path.isdir(path) else ():
                if entry.startswith(".tmp-"):
                    problems.append(f"stray temporary file {os.path.join(path, entry)} (an interrupted write)")
                elif entry not in _METADATA_KEYS:
                    problems.append(f"unexpected metadata file {os.path.join(path, entry)}")
            try:
                parent = self.get_parent(name)
                if parent is not None and parent.hex not in present:
                    problems.append(f"image sha256:{name}: parent {parent} does not exist")
                self.get_last_updated(name)
            except errdefs.DataLoss as exc:
                problems.append(str(exc))
        return problems

    def sweep(self, *, min_age_seconds: float = 60.0) -> list[str]:
        """Remove leftovers of interrupted operations: temporary files older than
        ``min_age_seconds`` (younger ones may belong to a writer in another process) and
        metadata of deleted images.  Returns the removed paths; each is logged at WARNING."""
        removed: list[str] = []
        now = time.time()
        # the imagedb directory holds lamina's listing index, written through temporary files too
        for directory in (self.content_dir, os.path.dirname(os.path.dirname(self.content_dir)), *self._metadata_dirs()):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if not name.startswith(".tmp-"):
                    continue
                path = os.path.join(directory, name)
                if not fsutil.modified_before(path, now - min_age_seconds):
                    continue
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                log.warning("removed %s, left by an interrupted write", path)
                removed.append(path)
        present = {image_id.hex for image_id in self.ids()}
        try:
            metadata_names = os.listdir(self.metadata_dir)
        except FileNotFoundError:
            metadata_names = []
        for name in metadata_names:
            path = os.path.join(self.metadata_dir, name)
            if name in present or not fsutil.modified_before(path, now - min_age_seconds):
                continue
            fsutil.remove_tree(path)
            log.warning("removed %s, metadata of a deleted image", path)
            removed.append(path)
        return removed

    def _metadata_dirs(self) -> list[str]:
        try:
            return [os.path.join(self.metadata_dir, name) for name in os.listdir(self.metadata_dir)]
        except FileNotFoundError:
            return []
