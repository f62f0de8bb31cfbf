"""Pulling an image from a registry into the layer, image and reference stores.

Steps, each verified before anything depends on it:

1. the manifest by tag or digest (Docker schema 2, OCI manifest, Docker manifest list or OCI
   index; schema 1 is refused).  Its digest is the sha256 of the bytes received, checked
   against a ``@sha256:`` reference.  An index is resolved to one manifest for the requested
   platform (default: the host's linux/<arch>[/<variant>]); none matching is a NotFound that
   lists the platforms the index has;
2. the config blob (digest and size checked; its ``rootfs.diff_ids`` must match the manifest's
   layer count);
3. each layer whose chainID is not stored yet: its blob is streamed from the registry straight
   into :meth:`lamina.layer.store.LayerStore.register` (decompression gzip/zstd/none detected
   from the content, diff_id checked, and the blob's digest and size checked in
   ``before_commit``, so a corrupt blob never becomes a layer).  Up to :data:`CONCURRENT_DOWNLOADS`
   blobs are fetched at once, each ahead of its registration by at most
   :data:`READ_AHEAD` bytes (layers are registered in order: a layer needs its parent);
4. the config is stored (the image's commit point), then ``name:tag`` and ``name@<manifest
   digest>`` (the ``RepoDigests``) in repositories.json, and every layer's blob (but zstd ones,
   which a push would mislabel) is recorded in the distribution metadata.

Progress messages are Docker's: ``Pulling from <path>`` (id the tag), per layer (id the blob's
short digest) ``Already exists`` or ``Pulling fs layer`` / ``Downloading`` (with
progressDetail) / ``Verifying Checksum`` / ``Download complete`` / ``Pull complete``, then
``Digest: sha256:...`` and ``Status: Downloaded newer image for <ref>`` (or ``Status: Image is
up to date for <ref>``).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.digest import Digest, Hasher, chain_ids, from_bytes
from lamina.distribution.load import CONFIG_MEDIA_TYPES, INDEX_MEDIA_TYPES, LAYER_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from lamina.distribution.metadata import MetadataStore
from lamina.distribution.registry.client import BlobReader, ChunkReader, Registry
from lamina.image.config import ImageConfig, host_architecture
from lamina.image.reference import Reference
from lamina.image.refstore import ReferenceStore
from lamina.image.store import ImageStore
from lamina.jsonobject import load_object
from lamina.layer.store import LayerStore
from lamina.records import dataclass

__all__ = ["pull_image", "PulledImage", "Platform", "parse_platform", "host_platform", "MANIFEST_ACCEPT",
           "CONCURRENT_DOWNLOADS", "READ_AHEAD"]

Progress = Callable[[dict[str, Any]], None]

CONCURRENT_DOWNLOADS = 3          # Docker's max-concurrent-downloads default
READ_AHEAD = 8 << 20              # bytes a download may run ahead of its registration
_CHUNK = 1 << 20

MANIFEST_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
_SCHEMA1 = {"application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws"}
_FOREIGN = {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


def host_platform() -> Platform:
    architecture = host_architecture()
    return Platform("linux", architecture, "v8" if architecture == "arm64" else "")


_KNOWN_OS = frozenset("aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd "
                      "plan9 solaris wasip1 windows zos".split())
_KNOWN_ARCHITECTURES = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 "
    "mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split())
_ARCHITECTURE_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                         "armel": "arm", "i386": "386"}
_COMPONENT = re.compile(r"[a-z0-9_-]+")


def parse_platform(text: str) -> Platform:
    """``os[/arch[/variant]]`` or ``arch`` alone, normalised (``x86_64`` -> ``amd64``).  Like
    containerd's ``platforms.Parse``: each component is ``[A-Za-z0-9_-]+``, and a single
    component must be an operating system or an architecture Go knows (``bogus`` is refused)."""
    parts = [part.strip().lower() for part in text.split("/")]
    if not text or len(parts) > 3 or not all(_COMPONENT.fullmatch(part) for part in parts):
        raise errdefs.InvalidArgument(f"invalid platform {text!r}: use os[/arch[/variant]], e.g. linux/arm64")
    aliases = _ARCHITECTURE_ALIASES
    if len(parts) == 1 and parts[0] not in _KNOWN_OS:
        if aliases.get(parts[0], parts[0]) not in _KNOWN_ARCHITECTURES:
            raise errdefs.InvalidArgument(f"{text!r}: unknown operating system or architecture: invalid argument")
        parts = ["linux", parts[0]]
    os_name = parts[0]
    architecture = aliases.get(parts[1], parts[1]) if len(parts) > 1 else host_architecture()
    variant = parts[2] if len(parts) > 2 else ("v8" if architecture == "arm64" else "")
    return Platform(os_name, architecture, variant)


def _platform_of(descriptor: dict[str, Any]) -> Platform:
    platform = descriptor.get("platform") or {}
    return Platform(str(platform.get("os") or ""), str(platform.get("architecture") or ""),
                    str(platform.get("variant") or ""))


def _select(index: dict[str, Any], wanted: Platform, name: str) -> dict[str, Any]:
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    candidates = [m for m in manifests if _platform_of(m).os == wanted.os
                  and _platform_of(m).architecture == wanted.architecture]
    exact = [m for m in candidates if _platform_of(m).variant == wanted.variant]
    # arm64 images often omit the v8 variant; an unspecified variant matches as a fallback
    loose = [m for m in candidates if not _platform_of(m).variant]
    chosen = exact or loose
    if not chosen:
        available = sorted({str(_platform_of(m)) for m in manifests if _platform_of(m).os})
        raise errdefs.NotFound(f"no matching manifest for {wanted} in the manifest list entries of {name} "
                               f"(available: {', '.join(available) or 'none'})")
    return chosen[0]


@dataclass(frozen=True)
class PulledImage:
    image_id: Digest
    manifest_digest: Digest
    new: bool


def _verify_manifest(body: bytes, expected: str | None, what: str) -> Digest:
    actual = from_bytes(body)
    if expected is not None and actual != expected:
        raise errdefs.DataLoss(f"{what}: manifest verification failed: expected {expected}, "
                               f"the content hashes to {actual}")
    return actual


class _VerifiedBlob(ChunkReader):
    """Reads a layer blob (from a read-ahead queue), hashing it and reporting progress; ``verify``
    drains what the tar reader left and checks digest and size."""

    def __init__(self, chunks: "queue.Queue[bytes | BaseException | None]", digest: Digest, size: int | None,
                 report: Callable[[int], None], what: str) -> None:
        self._chunks = chunks
        self._digest = digest
        self._size = size
        self._report = report
        self._what = what
        self._hasher = Hasher()
        self._buffer = memoryview(b"")
        self._eof = False
        self.count = 0

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._chunks.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            self._eof = True
            return False
        self._hasher.update(item)
        self.count += len(item)
        if self._size is not None and self.count > self._size:
            raise errdefs.DataLoss(f"{self._what}: the registry sent more than the {self._size} bytes "
                                   "the manifest declares")
        self._report(self.count)
        self._buffer = memoryview(item)
        return True

    def verify(self) -> None:
        self._buffer = memoryview(b"")
        while self._fill():
            pass
        actual = self._hasher.digest()
        if actual != self._digest:
            raise errdefs.DataLoss(f"{self._what}: digest mismatch: the manifest names {self._digest}, "
                                   f"the content hashes to {actual}")
        if self._size is not None and self.count != self._size:
            raise errdefs.DataLoss(f"{self._what}: {self.count} bytes received, the manifest declares {self._size}")


class _Downloads:
    """Bounded parallel fetching: at most :data:`CONCURRENT_DOWNLOADS` blobs in flight, each at
    most :data:`READ_AHEAD` bytes ahead of the reader of its queue."""

    def __init__(self, registry: Registry, repository: str, digests: list[Digest]) -> None:
        self._registry = registry
        self._repository = repository
        self._pending = list(digests)
        self._slots = threading.Semaphore(CONCURRENT_DOWNLOADS)
        self._cancelled = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # one queue per position: an image may hold the same blob twice (on different parents)
        self._queues: list[queue.Queue[bytes | BaseException | None]] = [
            queue.Queue(maxsize=max(READ_AHEAD // _CHUNK, 1)) for _ in digests]
        self._starter = threading.Thread(target=self._start_all, name="lamina-pull-start", daemon=True)
        self._starter.start()

    def _start_all(self) -> None:
        for position, digest in enumerate(self._pending):
            self._slots.acquire()
            if self._cancelled.is_set():
                self._slots.release()
                return
            thread = threading.Thread(target=self._fetch, args=(position, digest), name="lamina-pull-blob", daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _put(self, chunks: "queue.Queue[bytes | BaseException | None]", item: bytes | BaseException | None) -> bool:
        while not self._cancelled.is_set():
            try:
                chunks.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fetch(self, position: int, digest: str) -> None:
        chunks = self._queues[position]
        reader: BlobReader | None = None
        try:
            reader = self._registry.open_blob(self._repository, digest)
            for data in reader.batches(_CHUNK):
                if not self._put(chunks, data):
                    return
            self._put(chunks, None)
        except BaseException as exc:  # handed to the reader of the queue, which raises it
            self._put(chunks, exc)
        finally:
            if reader is not None:
                reader.close()
            self._slots.release()

    def chunks(self, position: int) -> "queue.Queue[bytes | BaseException | None]":
        return self._queues[position]

    def close(self) -> None:
        self._cancelled.set()
        for _ in range(CONCURRENT_DOWNLOADS):
            self._slots.release()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)


def pull_image(registry: Registry, reference: Reference, *, platform: Platform | None, layers: LayerStore,
               images: ImageStore, references: ReferenceStore, metadata: MetadataStore, progress: Progress,
               registered: list[Digest]) -> PulledImage:
    """Pull ``reference`` (with a tag or a digest); see the module docstring.  Newly registered
    chainIDs are appended to ``registered`` as they commit (the caller releases them on failure)."""
    repository = reference.path
    name = f"{registry.domain}/{repository}"
    target = str(reference.digest) if reference.digest else (reference.tag or "latest")
    # the manifest first, as Docker: a missing image fails before any output (an HTTP 404)
    body, media_type = registry.get_manifest(repository, target, MANIFEST_ACCEPT)
    progress({"status": f"Pulling from {repository}", "id": target})
    manifest_digest = _verify_manifest(body, reference.digest, f"registry {registry.domain}: {name}@{target}")
    document = load_object(body, f"the manifest of {name}:{target}")
    media_type = document.get("mediaType") or media_type
    if media_type in INDEX_MEDIA_TYPES or (not document.get("layers") and "manifests" in document):
        chosen = _select(document, platform or host_platform(), reference.familiar_string())
        child = str(chosen.get("digest") or "")
        body, media_type = registry.get_manifest(repository, child, MANIFEST_ACCEPT)
        _verify_manifest(body, child, f"registry {registry.domain}: {name}@{child}")
        document = load_object(body, f"the manifest {name}@{child}")
        media_type = document.get("mediaType") or chosen.get("mediaType") or media_type
    if media_type in _SCHEMA1 or document.get("schemaVersion") == 1:
        raise errdefs.NotImplemented(f"{name}:{target} has a Docker schema 1 manifest, which lamina does not pull "
                                     "(it is deprecated; push the image again with a current client)")
    if media_type not in MANIFEST_MEDIA_TYPES and not (not media_type and "layers" in document):
        raise errdefs.InvalidArgument(f"registry {registry.domain}: {name}:{target} has the unknown manifest "
                                      f"media type {media_type!r}")
    config_descriptor = document.get("config") or {}
    if config_descriptor.get("mediaType") not in CONFIG_MEDIA_TYPES:
        raise errdefs.InvalidArgument(f"{name}:{target}: unknown image config media type "
                                      f"{config_descriptor.get('mediaType')!r}")
    layer_descriptors = document.get("layers") or []
    for layer in layer_descriptors:
        if layer.get("mediaType") in _FOREIGN:
            raise errdefs.NotImplemented(f"{name}:{target} has a foreign (non-distributable) layer, "
                                         "which lamina does not fetch")
        if layer.get("mediaType") not in LAYER_MEDIA_TYPES:
            raise errdefs.InvalidArgument(f"{name}:{target}: unknown layer media type {layer.get('mediaType')!r}")
    config_digest = Digest(str(config_descriptor.get("digest")))
    config_bytes = registry.read_blob(repository, config_digest)
    if from_bytes(config_bytes) != config_digest:
        raise errdefs.DataLoss(f"registry {registry.domain}: the config blob {config_digest} of {name} "
                               f"hashes to {from_bytes(config_bytes)}")
    config = ImageConfig.from_json(config_bytes)
    diff_ids = config.diff_ids
    if len(diff_ids) != len(layer_descriptors):
        raise errdefs.InvalidArgument(f"{name}:{target}: the config lists {len(diff_ids)} layers, "
                                      f"the manifest {len(layer_descriptors)}")
    image_id = from_bytes(config_bytes)
    chains = chain_ids(diff_ids)
    missing: list[int] = []
    for index, (descriptor, chain) in enumerate(zip(layer_descriptors, chains)):
        blob = Digest(str(descriptor["digest"]))
        if layers.exists(chain):
            progress({"status": "Already exists", "progressDetail": {}, "id": blob.short()})
        else:
            progress({"status": "Pulling fs layer", "progressDetail": {}, "id": blob.short()})
            missing.append(index)
    had_image = images.exists(image_id)
    if missing:
        _fetch_layers(registry, repository, layer_descriptors, diff_ids, chains, missing, layers=layers,
                      progress=progress, registered=registered)
    for descriptor, diff_id in zip(layer_descriptors, diff_ids):
        # the metadata has no media type and a push describes a known blob as gzip (or as a
        # plain tar when its digest is the diff_id): a zstd blob is not offered for reuse
        if not str(descriptor.get("mediaType", "")).endswith("zstd"):
            metadata.add(diff_id, str(descriptor["digest"]), name)
    images.put(config_bytes)
    if reference.tag is not None and reference.digest is None:
        old = _current(references, reference)
        references.add_tag(reference, image_id, force=True)
        new = old != image_id or not had_image
    else:
        new = not had_image
    digest_reference = Reference(domain=reference.domain, path=reference.path, digest=manifest_digest)
    try:
        references.add_digest(digest_reference, image_id, force=True)
    except errdefs.Conflict:
        # an index's digest names one image per platform: it follows the platform pulled last
        references.delete(digest_reference)
        references.add_digest(digest_reference, image_id, force=True)
    progress({"status": f"Digest: {manifest_digest}"})
    shown = reference.familiar_string()
    if new:
        progress({"status": f"Status: Downloaded newer image for {shown}"})
    else:
        progress({"status": f"Status: Image is up to date for {shown}"})
    return PulledImage(image_id, manifest_digest, new)


def _current(references: ReferenceStore, reference: Reference) -> Digest | None:
    try:
        return references.get(reference)
    except errdefs.NotFound:
        return None


def _fetch_layers(registry: Registry, repository: str, descriptors: list[dict[str, Any]], diff_ids: list[Digest],
                  chains: list[Digest], missing: list[int], *, layers: LayerStore, progress: Progress,
                  registered: list[Digest]) -> None:
    """Register the layers at the positions ``missing`` (in order), each from its streamed blob."""
    downloads = _Downloads(registry, repository, [Digest(str(descriptors[i]["digest"])) for i in missing])
    try:
        for position, index in enumerate(missing):
            descriptor, diff_id = descriptors[index], diff_ids[index]
            parent = chains[index - 1] if index else None
            blob = Digest(str(descriptor["digest"]))
            size = descriptor.get("size") if isinstance(descriptor.get("size"), int) else None
            short = blob.short()
            step = max((size or 0) // 100, 1 << 19)
            state = {"last": -step}

            def report(current: int, short: str = short, size: int | None = size, step: int = step,
                       state: dict[str, int] = state) -> None:
                if current - state["last"] >= step or current == size:
                    state["last"] = current
                    detail = {"current": current, "total": size} if size else {"current": current}
                    progress({"status": "Downloading", "progressDetail": detail, "id": short})

            what = f"registry {registry.domain}: layer {blob} of {repository}"
            stream = _VerifiedBlob(downloads.chunks(position), blob, size, report, what)

            def verify(stream: _VerifiedBlob = stream, short: str = short) -> None:
                progress({"status": "Verifying Checksum", "progressDetail": {}, "id": short})
                stream.verify()
                progress({"status": "Download complete", "progressDetail": {}, "id": short})

            try:
                layer, new = layers.register(stream, parent, expected_diff_id=diff_id,  # type: ignore[arg-type]
                                             before_commit=verify)
            except errdefs.LaminaError as exc:
                if str(exc).startswith(f"registry {registry.domain}"):
                    raise
                raise type(exc)(f"{what}: {exc}") from exc
            if new:
                registered.append(layer.chain_id)
            progress({"status": "Pull complete", "progressDetail": {}, "id": short})
    finally:
        downloads.close()
