"""``docker save``: images to a Docker archive or an OCI image layout, streamed.

Docker format (as ``docker save`` of Docker 20.10 writes it, which skopeo's
``docker-archive:`` transport reads)::

    <v1-id>/VERSION  "1.0"         one directory per layer, named by its v1 id
    <v1-id>/json                   the legacy v1 layer config
    <v1-id>/layer.tar              the layer, reassembled byte for byte (sha256 = diff_id)
    <config-hex>.json              the image config, exact bytes (sha256 = image id)
    manifest.json                  [{"Config", "RepoTags", "Layers"}]
    repositories                   {"busybox": {"latest": "<top v1-id>"}}

OCI format: ``oci-layout``, ``index.json`` (one manifest descriptor per tag, annotated with
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``) and
``blobs/sha256/<hex>`` for configs, manifests and uncompressed layer tars.

Layer bytes come from the layer store's verified tar stream; a layer that no longer matches
its diff_id aborts the archive with :class:`errdefs.DataLoss`.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator

from lamina import errdefs
from lamina.archive import TarWriter
from lamina.digest import Digest, chain_ids, from_bytes
from lamina.image.config import ImageConfig
from lamina.image.reference import Reference
from lamina.layer.store import LayerStore
from lamina.records import dataclass, field

__all__ = ["SaveItem", "save_docker", "save_oci", "pump"]

_EPOCH = 0
_BATCH = 1 << 20


@dataclass
class SaveItem:
    image_id: Digest
    config_bytes: bytes
    references: list[Reference] = field(default_factory=list)


def _v1_ids(config_json: dict, diff_ids: list[Digest]) -> list[str]:
    """Stable legacy v1 ids for the layer directories (depend on the chain and the config)."""
    ids: list[str] = []
    parent = ""
    for index, chain in enumerate(chain_ids(diff_ids)):
        body = {"created": config_json.get("created", ""), "layer_id": str(chain)}
        if parent:
            body["parent"] = "sha256:" + parent
        if index == len(diff_ids) - 1:
            body["config"] = config_json.get("config")
        parent = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        ids.append(parent)
    return ids


_EMPTY_CONTAINER_CONFIG = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def _v1_json(config_json: dict, v1_id: str, parent: str | None, top: bool) -> bytes:
    body: dict = {"id": v1_id}
    if parent:
        body["parent"] = parent
    if top:
        for key in ("comment", "created", "container", "container_config", "docker_version", "author",
                    "config", "architecture", "variant", "os"):
            if key in config_json:
                body[key] = config_json[key]
    else:
        body["created"] = config_json.get("created", "1970-01-01T00:00:00Z")
        body["container_config"] = _EMPTY_CONTAINER_CONFIG
    return json.dumps(body, separators=(",", ":")).encode()


def pump(produce: Callable[[Callable[[bytes | memoryview], None]], None],
         depth: int = 4) -> Iterator[bytes]:
    """Turn a writer-style producer into an iterator of chunks.

    ``produce(write)`` runs in a thread; at most ``depth`` chunks wait in between, so memory
    stays bounded and reassembly (reads, hashing) overlaps with the consumer's writes.  What
    ``write`` gets must not change afterwards (large chunks are passed on without a copy).  If the
    consumer stops early the producer is cancelled at its next write.
    """
    chunks: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    cancelled = threading.Event()
    pending = bytearray()

    def flush() -> None:
        if pending:
            chunks.put(bytes(pending))
            pending.clear()

    def write(data: bytes | memoryview) -> None:
        # tar headers and small files arrive as many tiny writes: hand them over in
        # batches, so the queue's locking costs per megabyte rather than per entry; a large
        # chunk is handed over as it is (the producer never changes a chunk it wrote)
        if cancelled.is_set():
            raise errdefs.Cancelled("the reader of the archive went away")
        if len(data) >= _BATCH:
            flush()
            chunks.put(bytes(data) if isinstance(data, bytearray) else data)
            return
        pending.extend(data)
        if len(pending) >= _BATCH:
            flush()

    def run() -> None:
        try:
            produce(write)
            flush()
            chunks.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            chunks.put(exc)

    thread = threading.Thread(target=run, name="lamina-save", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        cancelled.set()
        while thread.is_alive():
            try:
                chunks.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def _add_dir_chain(writer: TarWriter, directories: set[str], name: str) -> None:
    parts = name.split("/")[:-1]
    path = ""
    for part in parts:
        path = f"{path}/{part}" if path else part
        if path not in directories:
            directories.add(path)
            writer.add_directory(path, mode=0o755, mtime=_EPOCH)


def save_docker(items: list[SaveItem], layers: LayerStore,
                write: Callable[[bytes | memoryview], None]) -> None:
    """Write a ``docker save`` archive of ``items`` through ``write``."""
    writer = TarWriter(write)
    directories: set[str] = set()
    written_layers: dict[str, str] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        config = ImageConfig.from_json(item.config_bytes)
        config_json = json.loads(item.config_bytes)
        diff_ids = config.diff_ids
        v1_ids = _v1_ids(config_json, diff_ids)
        layer_paths = []
        for index, (chain, v1_id) in enumerate(zip(chain_ids(diff_ids), v1_ids)):
            path = f"{v1_id}/layer.tar"
            layer_paths.append(path)
            if v1_id in written_layers:
                continue
            written_layers[v1_id] = path
            _add_dir_chain(writer, directories, path)
            writer.add_file(f"{v1_id}/VERSION", 3, [b"1.0"], mode=0o644, mtime=_EPOCH)
            body = _v1_json(config_json, v1_id, v1_ids[index - 1] if index else None, index == len(v1_ids) - 1)
            writer.add_file(f"{v1_id}/json", len(body), [body], mode=0o644, mtime=_EPOCH)
            size, stream = layers.tar(chain)
            writer.add_file(path, size, stream, mode=0o644, mtime=_EPOCH)
        config_name = f"{item.image_id.hex}.json"
        if config_name not in directories:
            directories.add(config_name)
            writer.add_file(config_name, len(item.config_bytes), [item.config_bytes], mode=0o644, mtime=_EPOCH)
        tags = [ref.familiar_string() for ref in item.references if ref.tag]
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_paths})
        for ref in item.references:
            if ref.tag and v1_ids:
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = v1_ids[-1]
    body = json.dumps(manifest, separators=(",", ":")).encode()
    writer.add_file("manifest.json", len(body), [body], mode=0o644, mtime=_EPOCH)
    if repositories:
        body = (json.dumps(repositories, separators=(",", ":")) + "\n").encode()
        writer.add_file("repositories", len(body), [body], mode=0o644, mtime=_EPOCH)
    writer.close()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def save_oci(items: list[SaveItem], layers: LayerStore,
             write: Callable[[bytes | memoryview], None]) -> None:
    """Write an OCI image layout (as a tar) of ``items`` through ``write``."""
    writer = TarWriter(write)
    writer.add_directory("blobs", mode=0o755, mtime=_EPOCH)
    writer.add_directory("blobs/sha256", mode=0o755, mtime=_EPOCH)
    layout = b'{"imageLayoutVersion":"1.0.0"}'
    writer.add_file("oci-layout", len(layout), [layout], mode=0o644, mtime=_EPOCH)
    written: set[str] = set()

    def blob(data: bytes) -> dict:
        digest = from_bytes(data)
        if digest not in written:
            written.add(digest)
            writer.add_file(f"blobs/sha256/{digest.hex}", len(data), [data], mode=0o644, mtime=_EPOCH)
        return {"digest": str(digest), "size": len(data)}

    index_manifests = []
    for item in items:
        config = ImageConfig.from_json(item.config_bytes)
        layer_descriptors = []
        for diff_id, chain in zip(config.diff_ids, chain_ids(config.diff_ids)):
            size, stream = layers.tar(chain)
            if diff_id not in written:
                written.add(diff_id)
                writer.add_file(f"blobs/sha256/{diff_id.hex}", size, stream, mode=0o644,
                                mtime=_EPOCH)
            layer_descriptors.append({"mediaType": OCI_LAYER, "digest": str(diff_id), "size": size})
        config_descriptor = {"mediaType": OCI_CONFIG, **blob(item.config_bytes)}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor,
                    "layers": layer_descriptors}
        manifest_descriptor = {"mediaType": OCI_MANIFEST,
                               **blob(json.dumps(manifest, separators=(",", ":")).encode())}
        tagged = [ref for ref in item.references if ref.tag]
        if not tagged:
            index_manifests.append(manifest_descriptor)
        for ref in tagged:
            index_manifests.append({**manifest_descriptor, "annotations": {
                "io.containerd.image.name": ref.string(),
                "org.opencontainers.image.ref.name": ref.tag}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": index_manifests}
    body = json.dumps(index, separators=(",", ":")).encode()
    writer.add_file("index.json", len(body), [body], mode=0o644, mtime=_EPOCH)
    writer.close()
