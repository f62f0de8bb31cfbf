"""The classic builder's cache with ``--cache-from`` sources (moby ``image/cache``'s
``ImageCache``, which the daemon makes when a build names ``cachefrom`` images).

Without sources the cache is the local one (:mod:`lamina.build.cache`: a child of the step's
parent with the same container config).  With sources it only answers from them:

- a local hit counts only when it is an ancestor of a source (the source image was built
  here, through that very step);
- otherwise the *history* of a source matches: a source whose history and layers start with
  the parent's history and layers (``isValidParent``) and whose next history entry was made by
  the step (its ``created_by`` is the step's container-config ``Cmd`` joined by spaces,
  ``isValidConfig``).  When that entry is the source's last, the source itself is the step's
  image (and gets the parent as its parent); else an image is *restored* for the entry: the
  parent's history and layers plus that entry and its layer (if it made one), with the step's
  config, stored with the parent as its parent.  The first source that matched is then the
  only source for the rest of the build, as in Docker (no jumping between sources).

Sources that do not resolve to a local image are left out (Docker logs and skips them too);
when none resolves, nothing is a cache hit.

Storage: restored images are ordinary images in the imagedb (content by id, ``parent``
metadata), written under the layer store lock (shared), so that an image removal (exclusive)
cannot take their layers meanwhile; they reference only layers of the source image, which
exist.  They are not ``builtLocally``: a later build without sources does not match them
(Docker's local cache would, through the parent link; lamina's index records only built
images).
"""

from __future__ import annotations

from lamina import errdefs
from lamina.digest import Digest
from lamina.image.config import ContainerConfig, ImageConfig, new_config
from lamina.log import get_logger
from lamina.services.images import ImageServiceImpl

__all__ = ["CacheSources"]

log = get_logger("lamina.services")


class CacheSources:
    """The ``--cache-from`` images of one build (see the module docstring)."""

    def __init__(self, images: ImageServiceImpl, names: tuple[str, ...]) -> None:
        self.images = images
        self.store = images.images
        self.sources: list[str] = []
        for name in names:
            try:
                self.sources.append(str(images.resolve(name)))
            except errdefs.NotFound:
                log.info("cache source %s is not a local image: skipped", name)

    def probe(self, parent: str, container_config: ContainerConfig, local: str | None) -> str | None:
        """The image of the step made on ``parent`` with ``container_config``, or None;
        ``local`` is the local cache's answer, accepted only when a source descends from it."""
        if local is not None and any(self._descends_from(source, local) for source in self.sources):
            return local
        parent_config = self.store.get_config(parent) if parent else None
        created_by = " ".join(container_config.cmd or ())
        for source in list(self.sources):
            try:
                target = self.store.get_config(source)
            except errdefs.NotFound:
                continue
            position = len(parent_config.history) if parent_config is not None else 0
            if not _is_valid_parent(target, parent_config) or target.history[position].created_by != created_by:
                continue
            lock = self.images.layers.lock(shared=True)
            try:
                if not self.store.exists(source):
                    continue
                if position == len(target.history) - 1:
                    if parent:
                        self.store.set_parent(source, parent)
                    found = source
                else:
                    found = self._restore(parent, parent_config, target, container_config)
            finally:
                lock.release()
            self.sources = [source]
            return found
        return None

    def _descends_from(self, image_id: str, ancestor: str) -> bool:
        seen = set()
        current = self.store.get_parent(image_id) if self.store.exists(image_id) else None
        while current is not None and str(current) not in seen:
            if str(current) == ancestor:
                return True
            seen.add(str(current))
            current = self.store.get_parent(current) if self.store.exists(current) else None
        return False

    def _restore(self, parent: str, parent_config: ImageConfig | None, target: ImageConfig,
                 container_config: ContainerConfig) -> str:
        """Store the image of the source's history entry after the parent's (moby's
        ``restoreCachedImage``); its id."""
        position = len(parent_config.history) if parent_config is not None else 0
        history = [*(parent_config.history if parent_config is not None else ()), target.history[position]]
        diff_ids = list(parent_config.rootfs_diff_ids if parent_config is not None else ())
        layer = _layer_of_history_entry(target, position)
        if layer is not None:
            diff_ids.append(layer)
        image = new_config(diff_ids=diff_ids, history=history, config=container_config,
                           architecture=target.architecture, os=target.os, variant=target.variant,
                           created=history[-1].created, author=target.author, os_version=target.os_version,
                           os_features=target.os_features)
        image_id = self.store.put(image.to_json())
        if parent:
            self.store.set_parent(image_id, parent)
        return str(image_id)


def _is_valid_parent(image: ImageConfig, parent: ImageConfig | None) -> bool:
    """Whether ``image``'s history and layers start with all of ``parent``'s (moby's
    ``isValidParent``), leaving at least one more history entry."""
    if not image.history:
        return False
    if parent is None or (not parent.history and not parent.rootfs_diff_ids):
        return True
    if len(parent.history) >= len(image.history) or len(parent.rootfs_diff_ids) > len(image.rootfs_diff_ids):
        return False
    if any(entry != image.history[index] for index, entry in enumerate(parent.history)):
        return False
    return all(diff_id == image.rootfs_diff_ids[index] for index, diff_id in enumerate(parent.rootfs_diff_ids))


def _layer_of_history_entry(image: ImageConfig, position: int) -> Digest | None:
    """The diff_id of the layer the history entry at ``position`` made (None: an empty layer)."""
    if image.history[position].empty_layer:
        return None
    index = sum(1 for entry in image.history[:position] if not entry.empty_layer)
    if index >= len(image.rootfs_diff_ids):
        raise errdefs.DataLoss("the history of a cache source names more layers than its rootfs holds")
    return image.rootfs_diff_ids[index]
