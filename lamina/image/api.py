"""What the layers above need from the image stores: two small protocols.

Vocabulary:

- **image id**: ``sha256:<hex>`` of the exact bytes of an image config; a *short id* is a
  prefix of the hex (``3f5c``), resolved only when exactly one image has it.
- **image config**: the JSON document describing an image (:mod:`lamina.image.config`); its
  ``rootfs.diff_ids`` name the layers bottom first.
- **reference**: ``domain/path[:tag][@digest]`` (:mod:`lamina.image.reference`).  A *tag
  reference* moves between images; a *digest reference* (``name@sha256:...``, the digest of a
  registry manifest) never does.
- **familiar form**: what the Docker UI prints (``busybox:latest``), and the form
  repositories.json stores.

:class:`lamina.image.store.ImageStore` and :class:`lamina.image.refstore.ReferenceStore`
implement these; tests of higher layers may use fakes.
"""

from __future__ import annotations

from typing import Protocol

from lamina.digest import Digest
from lamina.image.config import ImageConfig
from lamina.image.reference import Reference

__all__ = ["ImageConfigs", "References"]


class ImageConfigs(Protocol):
    """Image configs by image id; reads verify the bytes against the id (DataLoss if not)."""

    def put(self, config: bytes) -> Digest: ...

    def get(self, image_id: str) -> bytes: ...

    def get_config(self, image_id: str, *, cached: bool = False) -> ImageConfig:
        """The parsed config; ``cached``: from memory while its file is unchanged (listings)."""

    def exists(self, image_id: str) -> bool: ...

    def delete(self, image_id: str) -> None: ...

    def ids(self) -> list[Digest]: ...

    def search(self, prefix: str) -> Digest: ...

    def get_parent(self, image_id: str) -> Digest | None: ...

    def set_parent(self, image_id: str, parent_id: str) -> None: ...

    def children(self, image_id: str) -> list[Digest]: ...


class References(Protocol):
    """Names of images: tag and digest references to image ids."""

    def add_tag(self, reference: Reference, image_id: str, *, force: bool = True) -> None: ...

    def add_digest(self, reference: Reference, image_id: str, *, force: bool = False) -> None: ...

    def delete(self, reference: Reference) -> bool: ...

    def get(self, reference: Reference) -> Digest: ...

    def references(self, image_id: str) -> list[Reference]: ...

    def all(self) -> dict[str, Digest]: ...

    def delete_image(self, image_id: str) -> list[Reference]: ...
