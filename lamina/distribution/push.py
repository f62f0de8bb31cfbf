"""Pushing an image to a registry: layer blobs, the config blob, a Docker schema 2 manifest
(or, when asked, an OCI image manifest).

For each layer (up to :data:`CONCURRENT_UPLOADS` at once), the first that applies:

1. the distribution metadata knows a blob of this diff_id in the *target* repository and the
   registry still has it (``HEAD``): ``Layer already exists``;
2. it knows a blob of this diff_id in *another repository of the same registry*: a
   cross-repository mount (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``):
   ``Mounted from <repo>``; a registry that declines opens an upload instead, which is dropped;
3. otherwise the layer tar (reassembled from the layer store) is gzip-compressed once, while it
   streams to the registry (``POST`` then one ``PATCH`` of the stream, then ``PUT
   ?digest=``), hashed on the way.  The gzip stream is reproducible: isal at level 1, mtime 0,
   no file name, so a second push of the same layer (with the same isal) yields the same blob.

Each blob pushed or found is recorded in the distribution metadata (blob digest <-> diff_id,
with the repository).  The manifest (media type
``application/vnd.docker.distribution.manifest.v2+json``, indented as Docker writes it) is
pushed by tag.  ``manifest_format="oci"`` pushes an OCI image manifest instead
(``application/vnd.oci.image.manifest.v1+json``, config ``application/vnd.oci.image.config.v1+json``,
layers ``application/vnd.oci.image.layer.v1.tar+gzip``): the same blobs, other media types,
so another digest.  The manifest's digest is recorded as the image's ``name@digest`` reference and reported
as Docker does: ``<tag>: digest: sha256:... size: N`` and an ``aux`` message
``{"Tag", "Digest", "Size"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from lamina import errdefs
from lamina.digest import Digest, Hasher, chain_ids, from_bytes
from lamina.distribution.metadata import MetadataStore
from lamina.distribution.registry.client import Registry
from lamina.image.config import ImageConfig
from lamina.image.reference import Reference
from lamina.image.refstore import ReferenceStore
from lamina.image.store import ImageStore
from lamina.layer.store import LayerStore
from lamina.records import dataclass

__all__ = ["push_image", "PushedImage", "MANIFEST_MEDIA_TYPE", "LAYER_MEDIA_TYPE", "CONFIG_MEDIA_TYPE",
           "GZIP_LEVEL", "CONCURRENT_UPLOADS", "MANIFEST_FORMATS"]

Progress = Callable[[dict[str, Any]], None]

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
UNCOMPRESSED_LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
#: The media types of each manifest format, Docker's schema 2 -> OCI's.
_OCI_MEDIA_TYPES = {
    MANIFEST_MEDIA_TYPE: "application/vnd.oci.image.manifest.v1+json",
    CONFIG_MEDIA_TYPE: "application/vnd.oci.image.config.v1+json",
    LAYER_MEDIA_TYPE: "application/vnd.oci.image.layer.v1.tar+gzip",
    UNCOMPRESSED_LAYER_MEDIA_TYPE: "application/vnd.oci.image.layer.v1.tar",
}
MANIFEST_FORMATS = ("docker", "oci")
GZIP_LEVEL = 1
CONCURRENT_UPLOADS = 3    # layers pushed at once (Docker's max-concurrent-uploads is 5)


@dataclass(frozen=True)
class PushedImage:
    digest: Digest
    size: int


class _Compressed:
    """The gzip stream of a layer tar, hashed and counted as it is produced."""

    def __init__(self, chunks: Iterator[bytes | memoryview], report: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._report = report
        self.hasher = Hasher()
        self.size = 0
        self.uncompressed = 0
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        from isal import isal_zlib

        compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)  # 31: gzip, mtime 0, no name
        pending: list[bytes] = []
        pending_size = 0
        for chunk in self._chunks:
            self.uncompressed += len(chunk)
            data = compressor.compress(chunk)
            if data:
                pending.append(data)
                pending_size += len(data)
            if pending_size >= 1 << 20:
                yield self._emit(pending)
                pending, pending_size = [], 0
        pending.append(compressor.flush())
        yield self._emit(pending)
        self.finished = True

    def _emit(self, parts: list[bytes]) -> bytes:
        data = b"".join(parts)
        self.hasher.update(data)
        self.size += len(data)
        self._report(self.uncompressed)
        return data

    def digest(self) -> str:
        if not self.finished:
            raise errdefs.Unavailable("the layer upload ended before the layer was sent")
        return self.hasher.digest()


def _same_registry(entry_repository: str, domain: str) -> str | None:
    """The repository path of a metadata entry of registry ``domain``, else None."""
    prefix = domain + "/"
    return entry_repository[len(prefix):] if entry_repository.startswith(prefix) else None


def _push_layer(registry: Registry, repository: str, name: str, diff_id: Digest, chain: Digest, *,
                layers: LayerStore, metadata: MetadataStore, progress: Progress) -> dict[str, Any]:
    short = diff_id.short()
    known = list(reversed(metadata.v2_metadata(diff_id)))
    for entry in known:  # 1. already in the target repository
        if _same_registry(entry.source_repository, registry.domain) != repository:
            continue
        size = registry.blob_size(repository, entry.digest, push=True)
        if size is not None:
            progress({"status": "Layer already exists", "progressDetail": {}, "id": short})
            return _descriptor(entry.digest, size, diff_id)
        metadata.remove(diff_id, entry.digest, entry.source_repository)
    for entry in known:  # 2. mount from another repository of this registry
        source = _same_registry(entry.source_repository, registry.domain)
        if source is None or source == repository:
            continue
        if registry.mount_blob(repository, entry.digest, source):
            size = registry.blob_size(repository, entry.digest, push=True)
            if size is not None:
                metadata.add(diff_id, entry.digest, name)
                progress({"status": f"Mounted from {source}", "progressDetail": {}, "id": short})
                return _descriptor(entry.digest, size, diff_id)
    # 3. compress and upload
    total = layers.get(chain).size
    state = {"last": 0}

    def report(current: int) -> None:
        if current - state["last"] >= (1 << 20) or current == 0:
            state["last"] = current
            progress({"status": "Pushing", "progressDetail": {"current": current, "total": total}, "id": short})

    progress({"status": "Pushing", "progressDetail": {}, "id": short})
    compressed: list[_Compressed] = []

    def body() -> Iterator[bytes]:
        stream = _Compressed(layers.tar_stream(chain), report)
        compressed.append(stream)
        return iter(stream)

    digest = Digest(registry.upload_blob(repository, body, lambda: compressed[-1].digest()))
    metadata.add(diff_id, digest, name)
    progress({"status": "Pushed", "progressDetail": {}, "id": short})
    return {"mediaType": LAYER_MEDIA_TYPE, "size": compressed[-1].size, "digest": digest}


def _descriptor(digest: Digest, size: int, diff_id: Digest) -> dict[str, Any]:
    media_type = UNCOMPRESSED_LAYER_MEDIA_TYPE if digest == diff_id else LAYER_MEDIA_TYPE
    return {"mediaType": media_type, "size": size, "digest": digest}


def push_image(registry: Registry, reference: Reference, image_id: Digest, *, layers: LayerStore,
               images: ImageStore, references: ReferenceStore, metadata: MetadataStore,
               progress: Progress, manifest_format: str = "docker") -> PushedImage:
    """Push the image ``image_id`` as ``reference`` (which has a tag), with a manifest of
    ``manifest_format`` (one of :data:`MANIFEST_FORMATS`)."""
    if reference.tag is None:
        raise errdefs.InvalidArgument("a push needs a tag")
    if manifest_format not in MANIFEST_FORMATS:
        raise errdefs.InvalidArgument(f"unknown manifest format {manifest_format!r}: docker or oci")
    media_type: Callable[[str], str] = (lambda docker: _OCI_MEDIA_TYPES[docker]) if manifest_format == "oci" \
        else (lambda docker: docker)
    repository = reference.path
    name = f"{registry.domain}/{repository}"
    config_bytes = images.get(image_id)
    config = ImageConfig.from_json(config_bytes)
    diff_ids = config.diff_ids
    chains = chain_ids(diff_ids)
    for diff_id in diff_ids:
        progress({"status": "Preparing", "progressDetail": {}, "id": diff_id.short()})
    from concurrent.futures import ThreadPoolExecutor

    # layers go up side by side (isal compresses without the GIL), the manifest lists them in order
    with ThreadPoolExecutor(max_workers=CONCURRENT_UPLOADS, thread_name_prefix="lamina-push") as pool:
        futures = [pool.submit(_push_layer, registry, repository, name, diff_id, chain, layers=layers,
                               metadata=metadata, progress=progress)
                   for diff_id, chain in zip(diff_ids, chains)]
        try:
            descriptors = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    config_digest = from_bytes(config_bytes)
    if registry.blob_size(repository, config_digest, push=True) is None:
        registry.upload_bytes(repository, config_bytes, config_digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type(MANIFEST_MEDIA_TYPE),
        "config": {"mediaType": media_type(CONFIG_MEDIA_TYPE), "size": len(config_bytes), "digest": config_digest},
        "layers": [{**descriptor, "mediaType": media_type(descriptor["mediaType"])} for descriptor in descriptors],
    }
    body = json.dumps(manifest, indent=3).encode()
    digest = from_bytes(body)
    answered = registry.put_manifest(repository, reference.tag, body, media_type(MANIFEST_MEDIA_TYPE))
    if answered and answered != digest:
        raise errdefs.DataLoss(f"registry {registry.domain}: the manifest of {name}:{reference.tag} was stored "
                               f"as {answered}, lamina sent {digest}")
    references.add_digest(Reference(domain=reference.domain, path=reference.path, digest=digest), image_id,
                          force=True)
    progress({"status": f"{reference.tag}: digest: {digest} size: {len(body)}"})
    progress({"progressDetail": {}, "aux": {"Tag": reference.tag, "Digest": str(digest), "Size": len(body)}})
    return PushedImage(digest, len(body))
