"""``docker load``: images from a ``docker save`` archive or an OCI image layout.

Formats read:

- Docker's archive: ``manifest.json`` (``[{"Config": "<hex>.json", "RepoTags": [...],
  "Layers": ["<dir>/layer.tar", ...]}]``), each layer an uncompressed/gzip/zstd tar, the
  config naming the layers' diff_ids (``rootfs.diff_ids``).
- OCI image layout: ``oci-layout`` + ``index.json`` → manifests (nested indexes followed) →
  config and layer blobs under ``blobs/<algorithm>/<hex>``, every blob verified against its
  descriptor's digest and size; layer media types ``…layer.v1.tar[+gzip|+zstd]`` and Docker's
  ``…rootfs.diff.tar[.gzip]``.

Every layer's diff_id is verified while it is registered (one pass); an image is committed by
writing its config to the image store, then its tags.  A layer that is already stored is
not read again.  A layer the archive extracted while it arrived (an upload, see
:mod:`lamina.distribution.archive_index`) is committed on its parent instead of being read
again; its diff_id is checked against the config's all the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.digest import Digest, Hasher, chain_ids
from lamina.distribution.archive_index import ArchiveReader
from lamina.image.config import ImageConfig
from lamina.image.reference import Reference, parse_normalized_named, with_default_tag
from lamina.image.refstore import ReferenceStore
from lamina.image.store import ImageStore
from lamina.layer.store import LayerStore
from lamina.records import dataclass

__all__ = ["load_images", "LoadedImage", "LAYER_MEDIA_TYPES"]

Progress = Callable[[dict[str, Any]], None]

LAYER_MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
}
MANIFEST_MEDIA_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
INDEX_MEDIA_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
CONFIG_MEDIA_TYPES = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}


@dataclass
class LoadedImage:
    image_id: Digest
    references: list[Reference]
    new_layers: list[Digest]


class _VerifyingStream:
    """Hashes what passes through, to check a blob's digest after it was consumed."""

    def __init__(self, inner: Any, expected: str, size: int | None) -> None:
        self._inner = inner
        self._expected = Digest(expected)
        self._size = size
        self._hasher = Hasher()

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = self._inner.readinto(buffer)
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._hasher.update(data)
        return data

    def readable(self) -> bool:
        return True

    def verify(self) -> None:
        while self.read(1 << 20):
            pass
        if self._hasher.digest() != self._expected:
            raise errdefs.InvalidArgument(
                f"blob digest mismatch: expected {self._expected}, content hashes to {self._hasher.digest()}")
        if self._size is not None and self._hasher.size != self._size:
            raise errdefs.InvalidArgument(
                f"blob {self._expected} has {self._hasher.size} bytes, its descriptor says {self._size}")


def _json(archive: ArchiveReader, name: str) -> Any:
    try:
        return json.loads(archive.read(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errdefs.InvalidArgument(f"{name} in the image archive is not valid JSON: {exc}") from exc


def load_images(archive: ArchiveReader, *, layers: LayerStore, images: ImageStore,
                references: ReferenceStore, progress: Progress,
                registered: list[Digest] | None = None) -> list[LoadedImage]:
    """Load every image of the archive.  Newly registered chainIDs are appended to
    ``registered`` as they commit (so a caller can release them if a later step fails)."""
    if registered is None:
        registered = []
    if archive.exists("manifest.json"):
        plan = _docker_plan(archive)
    elif archive.exists("index.json"):
        plan = _oci_plan(archive)
    else:
        raise errdefs.InvalidArgument(
            "not an image archive: it has neither manifest.json (docker save) nor index.json (OCI layout)")
    loaded: list[LoadedImage] = []
    for item in plan:
        config = ImageConfig.from_json(item.config_bytes)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(item.layers):
            raise errdefs.InvalidArgument(
                f"image config lists {len(diff_ids)} layers but the manifest names {len(item.layers)}")
        new_layers: list[Digest] = []
        parent: Digest | None = None
        for diff_id, chain, source in zip(diff_ids, chain_ids(diff_ids), item.layers):
            if not layers.exists(chain):
                new_layers.append(_register(layers, source, parent, diff_id, archive, progress, registered))
            else:
                progress({"status": "Loading layer", "id": diff_id.short(), "progressDetail": {},
                          "progress": "already exists"})
            parent = chain
        image_id = images.put(item.config_bytes)
        refs: list[Reference] = []
        for name in item.names:
            ref = with_default_tag(parse_normalized_named(name))
            references.add_tag(ref, image_id, force=True)
            refs.append(ref)
            progress({"stream": f"Loaded image: {ref.familiar_string()}\n"})
        if not refs:
            progress({"stream": f"Loaded image ID: {image_id}\n"})
        loaded.append(LoadedImage(image_id, refs, new_layers))
    return loaded


@dataclass
class _LayerSource:
    name: str
    digest: str | None = None        # blob digest to verify (OCI); None: verified by diff_id only
    size: int | None = None
    media_type: str | None = None


@dataclass
class _ImagePlan:
    config_bytes: bytes
    layers: list[_LayerSource]
    names: list[str]


def _register(layers: LayerStore, source: _LayerSource, parent: Digest | None, diff_id: Digest,
              archive: ArchiveReader, progress: Progress, registered: list[Digest]) -> Digest:
    total = archive.size(source.name)
    short = diff_id.short()
    state = {"last": -1}

    def report(current: int) -> None:
        # at most ~100 updates per layer
        step = max(total // 100, 1 << 16)
        if current - state["last"] >= step or current == total:
            state["last"] = current
            progress({"status": "Loading layer", "id": short,
                      "progressDetail": {"current": current, "total": total}})

    prepared = archive.take_prepared(source.name)
    if prepared is not None:
        # extracted while the archive arrived; a blob digest is verified only where it is the
        # diff_id (an uncompressed layer), else the member is registered from the archive
        if (source.digest is None or source.digest == prepared.diff_id) and source.size in (None, total):
            layer, _new = layers.commit_prepared(prepared, parent, expected_diff_id=diff_id)
            registered.append(layer.chain_id)
            report(total)
            return layer.chain_id
        layers.discard_prepared(prepared)
    stream: Any = archive.open(source.name)
    verifier = None
    if source.digest is not None:
        verifier = _VerifyingStream(stream, source.digest, source.size)
        stream = verifier
    layer, _new = layers.register(stream, parent, expected_diff_id=diff_id, progress=report)
    registered.append(layer.chain_id)
    if verifier is not None:
        verifier.verify()
    return layer.chain_id


def _docker_plan(archive: ArchiveReader) -> list[_ImagePlan]:
    manifest = _json(archive, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise errdefs.InvalidArgument("manifest.json must be a non-empty JSON array")
    plan = []
    for index, entry in enumerate(manifest):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise errdefs.InvalidArgument(f"manifest.json entry {index} lacks Config or Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise errdefs.InvalidArgument(f"manifest.json entry {index} has malformed RepoTags")
        for tag in tags:  # validate every name before anything is stored
            parse_normalized_named(tag)
        layers = [_LayerSource(name) for name in entry["Layers"]]
        for source in layers:
            if not isinstance(source.name, str) or not archive.exists(source.name):
                raise errdefs.InvalidArgument(f"image archive has no layer {source.name!r} named by manifest.json")
        plan.append(_ImagePlan(archive.read(entry["Config"]), layers, tags))
    return plan


def _blob_name(digest: str) -> str:
    value = Digest(digest)
    return f"blobs/{value.algorithm}/{value.hex}"


def _read_blob(archive: ArchiveReader, descriptor: dict[str, Any]) -> bytes:
    digest = descriptor.get("digest")
    if not isinstance(digest, str):
        raise errdefs.InvalidArgument("descriptor without a digest in the OCI layout")
    data = archive.read(_blob_name(digest))
    actual = Hasher()
    actual.update(data)
    if actual.digest() != digest:
        raise errdefs.InvalidArgument(f"blob digest mismatch: expected {digest}, content hashes to {actual.digest()}")
    size = descriptor.get("size")
    if isinstance(size, int) and size != len(data):
        raise errdefs.InvalidArgument(f"blob {digest} has {len(data)} bytes, its descriptor says {size}")
    return data


def _oci_name(annotations: dict[str, Any]) -> list[str]:
    name = annotations.get("io.containerd.image.name")
    if isinstance(name, str) and name:
        return [name]
    ref_name = annotations.get("org.opencontainers.image.ref.name")
    # a bare tag ("latest") names no repository: such an image loads untagged
    if isinstance(ref_name, str) and (":" in ref_name or "@" in ref_name):
        try:
            parse_normalized_named(ref_name)
            return [ref_name]
        except errdefs.InvalidArgument:
            return []
    return []


def _oci_plan(archive: ArchiveReader) -> list[_ImagePlan]:
    if archive.exists("oci-layout"):
        layout = _json(archive, "oci-layout")
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
            raise errdefs.InvalidArgument("oci-layout: unsupported imageLayoutVersion")
    index = _json(archive, "index.json")
    plans: dict[str, _ImagePlan] = {}

    def visit(descriptor: dict[str, Any], names: list[str], depth: int) -> None:
        if depth > 4:
            raise errdefs.InvalidArgument("OCI index nesting is too deep")
        media_type = descriptor.get("mediaType")
        body = json.loads(_read_blob(archive, descriptor))
        media_type = media_type or body.get("mediaType")
        if media_type in INDEX_MEDIA_TYPES or (media_type is None and "manifests" in body):
            for child in _platform_manifests(body):
                visit(child, names, depth + 1)
            return
        if media_type not in MANIFEST_MEDIA_TYPES and not (media_type is None and "layers" in body):
            raise errdefs.InvalidArgument(f"unknown manifest media type {media_type!r}")
        config_descriptor = body.get("config") or {}
        if config_descriptor.get("mediaType") not in CONFIG_MEDIA_TYPES:
            raise errdefs.InvalidArgument(f"unknown image config media type {config_descriptor.get('mediaType')!r}")
        layers = []
        for layer in body.get("layers") or []:
            if layer.get("mediaType") not in LAYER_MEDIA_TYPES:
                raise errdefs.InvalidArgument(f"unknown layer media type {layer.get('mediaType')!r}")
            layers.append(_LayerSource(_blob_name(layer["digest"]), layer["digest"], layer.get("size"),
                                       layer["mediaType"]))
            if not archive.exists(layers[-1].name):
                raise errdefs.InvalidArgument(f"OCI layout lacks layer blob {layer['digest']}")
        key = descriptor["digest"]
        if key in plans:
            plans[key].names.extend(n for n in names if n not in plans[key].names)
        else:
            plans[key] = _ImagePlan(_read_blob(archive, config_descriptor), layers, list(names))

    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise errdefs.InvalidArgument("index.json has no manifests list")
    for descriptor in index["manifests"]:
        names = _oci_name(descriptor.get("annotations") or {})
        for name in names:
            parse_normalized_named(name)
        visit(descriptor, names, 0)
    if not plans:
        raise errdefs.InvalidArgument("the OCI layout holds no image manifest")
    return list(plans.values())


def _platform_manifests(index: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifests of an index for this platform (linux/amd64), or all when unspecified."""
    import platform as _platform

    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())
    manifests = index.get("manifests") or []
    matching = [m for m in manifests
                if (m.get("platform") or {}).get("architecture") in (None, machine)
                and (m.get("platform") or {}).get("os") in (None, "linux")]
    return matching[:1] if matching else []
