"""The image service: load, save, import, commit, list, inspect, history, tag, remove, prune.

Locking: operations that add layers (load, import, commit) hold the layer store lock *shared*
and a lease for their whole run (:meth:`ImageServiceImpl._adding_layers`); operations that
remove layers (rmi, prune, check --repair) hold it *exclusive*, so a layer cannot vanish
between a load finding it and the load's image committing.  If a load fails, the layers it
registered and no image uses are released at once; if its process dies, its dead lease makes
the next start-up collect them.

:meth:`ImageServiceImpl.commit` stores the image of a read-write layer's changes (Docker's
``CommitImage``): ``docker commit`` and every step of the classic builder go through it.

Events (Docker's, type ``image``, actor the image id, attribute ``name`` and the image's
labels): ``load``, ``import``, ``save`` (per image, once its archive is written), ``tag``
(``name`` the new reference), ``untag`` and ``delete`` (``name`` the image id, as Docker),
then ``prune`` (no actor, ``reclaimed``) after a prune.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

from lamina import __version__, errdefs
from lamina.digest import Digest, chain_ids
from lamina.events.api import DISCARD, IMAGE, EventSink
from lamina.image.reference import (
    Reference,
    parse_any_reference,
    parse_normalized_named,
    with_default_tag,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
# the image config code (parsing, new configs, --change), times and filters are imported by
# the operations that use them: a listing answered from its index needs none of them
if TYPE_CHECKING:
    from typing import Any, BinaryIO
    from lamina.distribution.save import SaveItem
    from lamina.graphdriver.api import GraphDriver
    from lamina.image.config import ContainerConfig, ImageConfig
    from lamina.image.refstore import ReferenceStore
    from lamina.image.store import ImageStore
    from lamina.layer.mounts import MountStore
    from lamina.layer.store import LayerStore
    from lamina.services.api import Progress
    from lamina.services.image_listing import ImageListing

__all__ = ["ContainerUsage", "ImageServiceImpl", "new_tag"]

# (container id, running) of every container created from an image id
ContainerUsage = Callable[[str], list[tuple[str, bool]]]


class ImageServiceImpl:
    def __init__(self, *, layers: LayerStore, images: ImageStore, references: ReferenceStore,
                 driver: GraphDriver, spool_dir: str, events: EventSink = DISCARD,
                 mounts: MountStore | None = None, container_usage: ContainerUsage | None = None) -> None:
        """``mounts``: the read-write layers (their parents stay referenced; commit diffs
        them); ``container_usage``: which containers use an image, for rmi's conflicts."""
        self.layers = layers
        self.events = events
        self.images = images
        self.references = references
        self.driver = driver
        self.spool_dir = spool_dir
        self.freed_bytes = 0
        self.mounts = mounts
        self.container_usage: ContainerUsage = container_usage or (lambda image_id: [])
        self._listing: ImageListing | None = None

    @property
    def listing(self) -> ImageListing:
        """The image list kept by store version (:mod:`lamina.services.image_listing`), made on
        first use: a ``run`` resolves its image without it."""
        if self._listing is None:
            from lamina.services.image_listing import ImageListing

            self._listing = ImageListing(images=self.images, references=self.references, layers=self.layers)
        return self._listing

    def _event(self, action: str, image_id: Digest | str, name: str = "") -> None:
        """An image event; the image's labels are attributes while it still exists."""
        attributes: dict[str, str] = {}
        if action != "delete":
            try:
                labels = (self.images.get_config(Digest(str(image_id))).config or {}).get("Labels") or {}
                attributes.update((str(key), str(value)) for key, value in labels.items())
            except errdefs.LaminaError:
                pass
        attributes["name"] = name or str(image_id)
        self.events.emit(IMAGE, action, str(image_id), attributes)

    # -- lookups ---------------------------------------------------------------------------

    def resolve(self, name: str) -> Digest:
        """The image id that ``name`` (reference, id, short id or digest id) designates."""
        if not name:
            raise errdefs.InvalidArgument("image name is empty")
        try:
            parsed = parse_any_reference(name)
        except errdefs.InvalidArgument:
            parsed = None
        if isinstance(parsed, str) and not isinstance(parsed, Reference):
            digest = Digest(parsed if ":" in parsed else "sha256:" + parsed)
            if self.images.exists(digest):
                return digest
            raise errdefs.NotFound(f"No such image: {name}")
        if isinstance(parsed, Reference):
            ref = parsed if parsed.digest or parsed.tag else with_default_tag(parsed)
            try:
                image_id = self.references.get(ref)
                if self.images.exists(image_id):
                    return image_id
            except errdefs.NotFound:
                pass
        candidate = name[len("sha256:"):] if name.startswith("sha256:") else name
        if candidate and all(c in "0123456789abcdef" for c in candidate):
            try:
                return self.images.search(candidate)
            except errdefs.NotFound:
                pass
        if parsed is None:
            raise errdefs.InvalidArgument(f"invalid reference format: {name!r}")
        raise errdefs.NotFound(f"No such image: {name}")

    def referenced_layers(self) -> set[str]:
        """Every prefix chainID of every stored image (what layer GC must keep)."""
        out: set[str] = set()
        for image_id in self.images.ids():
            try:
                config = self.images.get_config(image_id)
            except errdefs.LaminaError:
                continue
            out.update(chain_ids(config.diff_ids))
        if self.mounts is not None:
            out.update(self.mounts.parents())
        return out

    def _image_size(self, config: ImageConfig, sizes: dict[str, int] | None = None) -> int:
        """The sum of the image's layer sizes (a missing layer counts 0); ``sizes`` remembers
        layers' sizes over one listing (images share their base layers)."""
        known = sizes if sizes is not None else {}
        total = 0
        for chain in chain_ids(config.diff_ids):
            size = known.get(chain)
            if size is None:
                try:
                    size = self.layers.get(chain).size
                except errdefs.NotFound:
                    size = 0
                known[chain] = size
            total += size
        return total

    # -- load / save / import ---------------------------------------------------------------

    def _release_layers(self, registered: list[Digest]) -> None:
        """Release the layers an operation registered that no image uses (after it failed)."""
        if not registered:
            return
        lock = self.layers.lock(shared=False)
        try:
            self.layers.release_unreferenced(list(reversed(registered)), self.referenced_layers())
        finally:
            lock.release()

    @contextlib.contextmanager
    def _adding_layers(self) -> Iterator[list[Digest]]:
        """Hold the layer store lock (shared) and a lease while the block registers layers and
        stores images; the chainIDs of the layers it registered go into the list it is given,
        and are released if the block fails."""
        registered: list[Digest] = []
        try:
            lock = self.layers.lock(shared=True)
            try:
                with self.layers.lease():
                    yield registered
            finally:
                lock.release()
        except BaseException:
            self._release_layers(registered)
            raise

    def load(self, stream: BinaryIO, *, progress: Progress, quiet: bool = False) -> list[str]:
        names: list[str] = []
        messages: list[str] = []

        def forward(message: dict[str, Any]) -> None:
            if "stream" in message:
                messages.append(message["stream"].strip())
                progress(message)
            elif not quiet:
                progress(message)

        # the archive readers: imported by the commands that move archives, not by every one
        from lamina.distribution.archive_index import open_archive
        from lamina.distribution.load import load_images

        with self._adding_layers() as registered:
            archive = open_archive(stream, self.spool_dir, layers=self.layers)
            try:
                for loaded in load_images(archive, layers=self.layers, images=self.images,
                                          references=self.references, progress=forward, registered=registered):
                    names.extend(r.familiar_string() for r in loaded.references)
                    if not loaded.references:
                        names.append(str(loaded.image_id))
                    self._event("load", loaded.image_id)
            finally:
                archive.close()
        return names

    def _save_items(self, names: list[str]) -> list[SaveItem]:
        from lamina.distribution.save import SaveItem

        if not names:
            raise errdefs.InvalidArgument("no images to save")
        items: dict[str, SaveItem] = {}
        for name in names:
            refs: list[Reference] = []
            try:
                parsed = parse_any_reference(name)
            except errdefs.InvalidArgument:
                parsed = None
            if isinstance(parsed, Reference) and parsed.tag is None and parsed.digest is None:
                # a bare repository name saves every tag of it, like docker save
                refs = [r for r in self._all_references() if r.name == parsed.name and r.tag]
                if not refs:
                    raise errdefs.NotFound(f"No such image: {name}")
                for ref in refs:
                    image_id = self.references.get(ref)
                    item = items.setdefault(image_id, SaveItem(image_id, self.images.get(image_id)))
                    if ref not in item.references:
                        item.references.append(ref)
                continue
            image_id = self.resolve(name)
            item = items.setdefault(image_id, SaveItem(image_id, self.images.get(image_id)))
            if isinstance(parsed, Reference) and parsed.tag:
                if parsed not in item.references:
                    item.references.append(parsed)
        return list(items.values())

    def _all_references(self) -> list[Reference]:
        out = []
        for text in self.references.all():
            try:
                parsed = parse_normalized_named(text)
            except errdefs.InvalidArgument:
                continue
            out.append(parsed)
        return out

    def save(self, names: list[str], *, format: str = "docker") -> Iterator[bytes]:
        if format not in ("docker", "oci"):
            raise errdefs.InvalidArgument(f"unknown archive format {format!r} (docker or oci)")
        from lamina.distribution.save import pump, save_docker, save_oci

        items = self._save_items(names)
        writer = save_docker if format == "docker" else save_oci

        def produce(write: Any) -> None:
            lock = self.layers.lock(shared=True)
            try:
                writer(items, self.layers, write)
            finally:
                lock.release()
            for item in items:
                self._event("save", item.image_id)

        return pump(produce)

    def import_image(self, stream: BinaryIO, *, repository: str = "", tag: str = "",
                     changes: list[str] | None = None, message: str = "", progress: Progress,
                     source: str = "-") -> str:
        from lamina.image.config import ContainerConfig, HistoryEntry, format_time, new_config

        ref = new_tag(repository, tag, digest_error="cannot import to a digest reference")
        ContainerConfig().apply_changes(changes or [])  # validate before reading the stream
        with self._adding_layers() as registered:
            state = {"last": 0}

            def report(current: int) -> None:
                if current - state["last"] >= (1 << 20):
                    state["last"] = current
                    progress({"status": "Importing", "progressDetail": {"current": current}})

            layer, new = self.layers.register(stream, None, progress=report)
            if new:
                registered.append(layer.chain_id)
            comment = message or f"Imported from {source}"
            created = format_time()
            config_bytes = new_config(
                diff_ids=[layer.diff_id],
                history=[HistoryEntry(created=created, comment=comment)],
                config=ContainerConfig().apply_changes(changes or []),
                created=created,
                comment=comment,
                docker_version=__version__,
            ).to_json()
            image_id = self.images.put(config_bytes)
            if ref is not None:
                self._tag_new(ref, image_id)
        self._event("import", image_id)
        progress({"status": str(image_id)})
        return str(image_id)

    def _tag_new(self, reference: Reference, image_id: Digest) -> None:
        self.references.add_tag(reference, image_id, force=True)
        self.images.set_last_updated(image_id)

    def commit(self, layer: str | None, *, parent: str, config: ContainerConfig, container_config: ContainerConfig,
               author: str = "", comment: str = "", container: str = "", docker_version: str = "",
               reference: Reference | None = None, built_locally: bool = False,
               stored: Callable[[Digest], None] | None = None) -> Digest:
        """Store the image of the changes in the read-write ``layer`` (None: no layer, an empty
        history entry) on top of the image ``parent`` (``""``: none), as Docker's
        ``NewChildImage``; returns its id.

        A ``parent`` removed meanwhile is stood for by the layers ``layer`` stands on.
        ``reference`` is tagged, ``built_locally`` marked, and ``stored`` called with the id,
        all before the layer store lock is released; an empty diff adds no layer."""
        from lamina.archive.tarstream import ChunkReader
        from lamina.image.config import EMPTY_LAYER_DIFF_ID, new_child_config
        from lamina.records import replace

        diff_id: Digest | None = None
        with self._adding_layers() as registered:
            parent_config = self._parent_config(parent, layer)
            if layer is not None:
                assert self.mounts is not None, "commit needs the read-write layers"
                record = self.mounts.get(layer)
                stored_layer, new = self.layers.register(ChunkReader(self.mounts.diff(layer)),
                                                         str(record.parent) if record.parent else None)
                if new:
                    registered.append(stored_layer.chain_id)
                diff_id = stored_layer.diff_id
            child = new_child_config(parent_config, diff_id=str(diff_id) if diff_id is not None else None,
                                     config=config, container_config=container_config, author=author,
                                     comment=comment, container=container)
            if docker_version:
                child = replace(child, docker_version=docker_version)
            image_id = self.images.put(child.to_json())
            if parent and self.images.exists(parent):
                self.images.set_parent(image_id, parent)
            if built_locally:
                self.images.set_built_locally(image_id)
            if reference is not None:
                self._tag_new(reference, image_id)
            if stored is not None:
                stored(image_id)
        if diff_id == EMPTY_LAYER_DIFF_ID:
            self._release_layers(registered)  # an empty diff adds no layer to the image
        return image_id

    def _parent_config(self, parent: str, layer: str | None) -> ImageConfig | None:
        """The config of the image ``parent``; when it was removed meanwhile, a config holding
        the diff_ids of the layers the read-write ``layer`` stands on."""
        if parent and self.images.exists(parent):
            return self.images.get_config(parent)
        if not parent or layer is None or self.mounts is None:
            return None
        from lamina.container.state import ZERO_TIME
        from lamina.image.config import HistoryEntry, ImageConfig

        record = self.mounts.get(layer)
        diff_ids = [item.diff_id for item in self.layers.chain(record.parent)] if record.parent else []
        return ImageConfig(os="linux", rootfs_diff_ids=tuple(diff_ids),
                           history=tuple(HistoryEntry(created=ZERO_TIME) for _ in diff_ids))

    # -- listing and inspecting ------------------------------------------------------------

    def _references_by_image(self) -> dict[str, list[Reference]]:
        return self.listing.references_by_image()

    def list_images(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                    digests: bool = False) -> list[dict[str, Any]]:
        return self.listing.summaries(resolve=self.resolve, all=all, filters=filters, digests=digests)

    def list_images_json(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                         digests: bool = False) -> bytes:
        return self.listing.encoded(resolve=self.resolve, all=all, filters=filters, digests=digests)

    def inspect_image(self, name: str) -> dict[str, Any]:
        image_id = self.resolve(name)
        config = self.images.get_config(image_id)
        raw = json.loads(self.images.get(image_id))
        refs = self.references.references(image_id)
        graph_data = None
        if config.diff_ids:
            top = self.layers.get(chain_ids(config.diff_ids)[-1])
            graph_data = self.driver.metadata(top.cache_id)
        last_tag = self.images.get_last_updated(image_id)
        size = self._image_size(config)
        return {
            "Id": str(image_id),
            "RepoTags": [r.familiar_string() for r in refs if r.tag],
            "RepoDigests": [r.familiar_string() for r in refs if r.digest],
            "Parent": self.images.get_parent(image_id) or "",
            "Comment": raw.get("comment", ""),
            "Created": raw.get("created", ""),
            "Container": raw.get("container", ""),
            "ContainerConfig": raw.get("container_config") or _empty_container_config(),
            "DockerVersion": raw.get("docker_version", ""),
            "Author": raw.get("author", ""),
            "Config": raw.get("config"),
            "Architecture": raw.get("architecture", ""),
            **({"Variant": raw["variant"]} if raw.get("variant") else {}),
            "Os": raw.get("os", ""),
            **({"OsVersion": raw["os.version"]} if raw.get("os.version") else {}),
            "Size": size,
            "VirtualSize": size,
            "GraphDriver": {"Data": graph_data, "Name": self.driver.name},
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
            "Metadata": {"LastTagTime": last_tag or "0001-01-01T00:00:00Z"},
        }

    def image_history(self, name: str) -> list[dict[str, Any]]:
        from lamina.image.rfc3339 import seconds_of

        image_id = self.resolve(name)
        config = self.images.get_config(image_id)
        raw = json.loads(self.images.get(image_id))
        history = raw.get("history") or []
        chains = chain_ids(config.diff_ids)
        sizes = []
        for chain in chains:
            try:
                sizes.append(self.layers.get(chain).size)
            except errdefs.NotFound:
                sizes.append(0)
        entries: list[dict[str, Any]] = []
        layer_index = 0
        if not history:
            history = [{"created": raw.get("created", "")} for _ in chains]
        for item in history:
            size = 0
            if not item.get("empty_layer") and layer_index < len(sizes):
                size = sizes[layer_index]
                layer_index += 1
            entries.append({
                "Comment": item.get("comment", ""),
                "Created": int(seconds_of(item.get("created"))),
                "CreatedBy": item.get("created_by", ""),
                "Id": "<missing>",
                "Size": size,
                "Tags": None,
            })
        # Like Docker: the newest entry of each image in the parent chain (builds and commits
        # record parents) carries that image's id and tags; older entries of pulled or loaded
        # images have no image of their own: "<missing>"
        current: str | None = str(image_id)
        seen: set[str] = set()
        while current and current not in seen and self.images.exists(current):
            seen.add(current)
            length = len(json.loads(self.images.get(current)).get("history") or []) or len(entries)
            if 0 < length <= len(entries):
                entry = entries[length - 1]
                entry["Id"] = current
                tags = [r.familiar_string() for r in self.references.references(Digest(current)) if r.tag]
                entry["Tags"] = tags or None
            parent = self.images.get_parent(current)
            current = str(parent) if parent else None
        entries.reverse()
        return entries

    def tag_image(self, name: str, repository: str, tag: str) -> None:
        image_id = self.resolve(name)
        ref = parse_normalized_named(repository)
        if ref.digest is not None or ref.tag is not None:
            if tag:
                raise errdefs.InvalidArgument(f"invalid reference format: {repository}:{tag}")
        elif tag:
            ref = parse_normalized_named(f"{ref.name}:{tag}")
        ref = with_default_tag(ref)
        if ref.digest is not None:
            raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
        self.references.add_tag(ref, image_id, force=True)
        self.images.set_last_updated(image_id)
        self._event("tag", image_id, ref.familiar_string())

    # -- removing --------------------------------------------------------------------------

    def remove_image(self, name: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        lock = self.layers.lock(shared=False)
        try:
            with self.layers.lease():
                return self._remove_locked(name, force=force, prune=prune)
        finally:
            lock.release()

    def _remove_locked(self, name: str, *, force: bool, prune: bool) -> list[dict[str, str]]:
        image_id = self.resolve(name)
        refs = self.references.references(image_id)
        report: list[dict[str, str]] = []
        named: Reference | None = None
        try:
            parsed = parse_any_reference(name)
            if isinstance(parsed, Reference):
                candidate = parsed if parsed.tag or parsed.digest else with_default_tag(parsed)
                if candidate in refs:
                    named = candidate
        except errdefs.InvalidArgument:
            pass
        using = self.container_usage(str(image_id))
        if named is not None and not force and len(refs) == 1 and using:
            # untagging would leave the image dangling under a container: Docker wants force
            raise errdefs.Conflict(
                f'conflict: unable to remove repository reference "{name}" (must force) - container '
                f"{using[0][0][:12]} is using its referenced image {image_id.short()}")
        if named is not None:
            self.references.delete(named)
            report.append({"Untagged": named.familiar_string()})
            self._event("untag", image_id)
            remaining = [r for r in refs if r != named]
            if named.digest is None and not any(r.digest is None and r.name == named.name for r in remaining):
                # the repository's last tag: its digest references (from a pull) go with it, as in Docker
                for ref in [r for r in remaining if r.digest is not None and r.name == named.name]:
                    self.references.delete(ref)
                    report.append({"Untagged": ref.familiar_string()})
                    remaining.remove(ref)
            if remaining:
                return report
        else:
            distinct_repositories = {r.name for r in refs}
            if len(distinct_repositories) > 1 and not force:
                raise errdefs.Conflict(
                    f"conflict: unable to delete {image_id.short()} (must be forced) - image is referenced "
                    f"in multiple repositories")
        if self.images.children(image_id):
            if named is not None:
                return report
            raise errdefs.Conflict(
                f"conflict: unable to delete {image_id.short()} (cannot be forced) - image has dependent child images")
        running = [container_id for container_id, is_running in using if is_running]
        if running or (using and not force):
            if named is not None:
                return report  # the untag was all that could be done
            if running:
                raise errdefs.Conflict(
                    f"conflict: unable to delete {image_id.short()} (cannot be forced) - image is being used by "
                    f"running container {running[0][:12]}")
            raise errdefs.Conflict(
                f"conflict: unable to delete {image_id.short()} (must be forced) - image is being used by "
                f"stopped container {using[0][0][:12]}")
        for ref in self.references.references(image_id):
            self.references.delete(ref)
            report.append({"Untagged": ref.familiar_string()})
            self._event("untag", image_id)
        report.extend(self._delete_image(image_id, prune=prune))
        return report

    def _delete_image(self, image_id: Digest, *, prune: bool) -> list[dict[str, str]]:
        """Delete an image record and release its layers; entries for the report.

        Sizes of layers removed are added to ``self.freed_bytes`` (prune reports them)."""
        config = self.images.get_config(image_id)
        parent = self.images.get_parent(image_id)
        self.images.delete(image_id)
        self._event("delete", image_id)
        report = [{"Deleted": str(image_id)}]
        chains = chain_ids(config.diff_ids)
        if chains:
            released = self.layers.release_unreferenced([chains[-1]], self.referenced_layers())
            for layer in released:
                report.append({"Deleted": str(layer.chain_id)})
                self.freed_bytes += layer.size
            if released and self.mounts is not None:
                self.mounts.drop_stale_ready()  # the emptied read-write layers kept on them
        if prune and parent and self.images.exists(parent) and not self.references.references(parent) \
                and not self.images.children(parent):
            report.extend(self._delete_image(Digest(parent), prune=True))
        return report

    def prune_images(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        from lamina.image.rfc3339 import seconds_of
        from lamina.services.filters import all_labels_match, until_seconds

        filters = dict(filters or {})
        dangling_only = True
        if "dangling" in filters:
            dangling_only = filters.pop("dangling")[0].lower() in ("true", "1")
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        deleted: list[dict[str, str]] = []
        freed_before = self.freed_bytes
        lock = self.layers.lock(shared=False)
        try:
            with self.layers.lease():
                refs_by_image = self._references_by_image()
                for image_id in self.images.ids():
                    if not self.images.exists(image_id):
                        continue
                    refs = refs_by_image.get(image_id, [])
                    if dangling_only and refs:
                        continue
                    if self.images.children(image_id):
                        continue
                    if self.container_usage(str(image_id)):
                        continue
                    config = self.images.get_config(image_id)
                    labels = (config.config or {}).get("Labels") or {}
                    if filters.get("label") and not all_labels_match(labels, filters["label"]):
                        continue
                    if filters.get("label!") and all_labels_match(labels, filters["label!"]):
                        continue
                    if filters.get("until") and seconds_of(config.created) >= until_seconds(filters["until"][0]):
                        continue
                    for ref in refs:
                        self.references.delete(ref)
                        deleted.append({"Untagged": ref.familiar_string()})
                        self._event("untag", image_id)
                    deleted.extend(self._delete_image(image_id, prune=True))
        finally:
            lock.release()
        reclaimed = self.freed_bytes - freed_before
        self.events.emit(IMAGE, "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _empty_container_config() -> dict[str, Any]:
    """Docker's ``ContainerConfig`` of an image whose config has none (all fields empty)."""
    from lamina.image.config import ContainerConfig

    return ContainerConfig().to_dict()


def new_tag(repository: str, tag: str, *, digest_error: str) -> Reference | None:
    """The reference ``repository[:tag]`` (``:latest`` by default) a new image is tagged with, as
    ``docker import`` and ``docker commit`` take it; None without a repository.  A digest
    reference is refused with ``digest_error``."""
    if not repository:
        return None
    reference = parse_normalized_named(repository)
    if tag:
        reference = parse_normalized_named(f"{reference.name}:{tag}")
    reference = with_default_tag(reference)
    if reference.digest is not None:
        raise errdefs.InvalidArgument(digest_error)
    return reference
