"""The distribution service: pull, push, login, distribution inspect and search (registries).

``docker.io`` pulls try the configured mirrors first (``registry-mirrors``, in order,
anonymously); a mirror that fails or lacks the image is logged at WARNING and the next source
is tried, docker.io last.  The registry client (httpx) is imported by these methods only:
``lamina run`` of a local image never loads it.  Locking follows the image service: a pull holds the layer store lock shared
and a lease for its whole run; if it fails, the layers it registered and no image uses are
released at once (nothing half pulled stays: a layer commits only after its blob verified, the
image only after every layer).  Credentials arrive per request (``X-Registry-Auth``) and are
never logged, put in events or in error messages.

Events (Docker's, type ``image``): ``pull`` and ``push``, actor the reference
(``busybox:latest``), attribute ``name`` the repository (``busybox``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from lamina import errdefs
from lamina.digest import Digest
from lamina.events.api import DISCARD, IMAGE, EventSink
from lamina.log import get_logger
from lamina.image.reference import (Reference, parse_normalized_named, registry_domain, trim_name, with_default_tag,
                                    with_tag)
from lamina.services.api import Progress

if TYPE_CHECKING:
    from lamina.config import EngineConfig
    from lamina.distribution.metadata import MetadataStore
    from lamina.distribution.registry.auth import Credentials
    from lamina.distribution.registry.client import Registry, RegistryOptions
    from lamina.image.refstore import ReferenceStore
    from lamina.image.store import ImageStore
    from lamina.layer.store import LayerStore

log = get_logger("lamina.distribution")

__all__ = ["DistributionServiceImpl", "ImageStores", "resolve_pull_reference", "build_distribution"]


class ImageStores(Protocol):
    """What the distribution service needs of the image service."""

    layers: LayerStore
    images: ImageStore
    references: ReferenceStore

    def resolve(self, name: str) -> Digest: ...

    def referenced_layers(self) -> set[str]: ...


def resolve_pull_reference(from_image: str, tag: str) -> Reference:
    """Docker's combination of ``fromImage`` and ``tag`` (a tag or a digest); no tag: all tags
    are pulled (the reference is returned bare)."""
    reference = parse_normalized_named(from_image)
    if tag:
        if reference.tag is not None or reference.digest is not None:
            raise errdefs.InvalidArgument(f"{from_image} names a tag or digest already; tag {tag!r} is extra")
        if ":" in tag:
            reference = parse_normalized_named(f"{reference.name}@{tag}")
        else:
            reference = with_tag(reference, tag)
    return reference


class DistributionServiceImpl:
    def __init__(self, *, images: ImageStores, metadata: MetadataStore, options: RegistryOptions,
                 events: EventSink = DISCARD, mirrors: tuple[str, ...] = ()) -> None:
        self.images = images
        self.mirrors = mirrors
        self.metadata = metadata
        self.options = options
        self.events = events

    def _registry(self, domain: str, credentials: Credentials | None, endpoint: str | None = None) -> Registry:
        from lamina.distribution.registry.auth import ANONYMOUS
        from lamina.distribution.registry.client import Registry

        return Registry(domain, credentials=credentials or ANONYMOUS, options=self.options, endpoint=endpoint)

    @staticmethod
    def _get_manifest(registry: Registry, reference: Reference) -> tuple[bytes, str]:
        """(body, media type) of the manifest or index ``reference`` names, by digest or tag."""
        from lamina.distribution.pull import MANIFEST_ACCEPT

        return registry.get_manifest(reference.path, str(reference.digest or reference.tag), MANIFEST_ACCEPT)

    def _release_after_failure(self, registered: list[Digest]) -> None:
        if not registered:
            return
        layers = self.images.layers
        lock = layers.lock(shared=False)
        try:
            layers.release_unreferenced(list(reversed(registered)), self.images.referenced_layers())
        finally:
            lock.release()

    # -- pull ------------------------------------------------------------------------------------

    def pull(self, from_image: str, *, tag: str = "", platform: str = "", credentials: Credentials | None = None,
             progress: Progress) -> list[str]:
        """Pull ``from_image`` (+ ``tag``; none: every tag); the pulled references."""
        from lamina.distribution.pull import parse_platform

        reference = resolve_pull_reference(from_image, tag)
        wanted = parse_platform(platform) if platform else None
        with _naming_failures("pulling", reference):
            return self._pull(reference, wanted, credentials, progress)

    def _pull(self, reference: Reference, wanted: Any, credentials: Credentials | None,
              progress: Progress) -> list[str]:
        if reference.domain == "docker.io":
            for mirror in self.mirrors:  # in order; any failure falls through to the next, then docker.io
                try:
                    with self._registry(reference.domain, None, endpoint=mirror) as registry:
                        return self._pull_from(registry, reference, wanted, progress)
                except (errdefs.Unavailable, errdefs.NotFound, errdefs.Unauthorized, errdefs.Forbidden,
                        errdefs.DataLoss) as exc:
                    log.warning("registry mirror %s: %s; trying the next source", mirror, exc)
        with self._registry(reference.domain, credentials) as registry:
            return self._pull_from(registry, reference, wanted, progress)

    def _pull_from(self, registry: Registry, reference: Reference, wanted: Any, progress: Progress) -> list[str]:
        if reference.tag is None and reference.digest is None:
            return [self._pull_one(registry, with_tag(reference, name), wanted, progress)
                    for name in self._tags(registry, reference)]
        return [self._pull_one(registry, reference, wanted, progress)]

    def _tags(self, registry: Registry, reference: Reference) -> list[str]:
        what = f"listing the tags of {reference.name}"
        response = registry.request("GET", f"/v2/{reference.path}/tags/list", scope=f"repository:{reference.path}:pull",
                                    what=what)
        if response.status_code != 200:
            raise registry.fail(response, what, not_found=f"repository {reference.name} not found")
        try:
            tags = response.json().get("tags") or []
        except (ValueError, AttributeError):
            raise errdefs.Unavailable(f"registry {registry.domain}: {what}: the answer is not JSON") from None
        if not tags:
            raise errdefs.NotFound(f"repository {reference.name} has no tags")
        return sorted(str(tag) for tag in tags)

    def _pull_one(self, registry: Registry, reference: Reference, platform: Any, progress: Progress) -> str:
        from lamina.distribution.pull import pull_image

        stores = self.images
        registered: list[Digest] = []
        try:
            lock = stores.layers.lock(shared=True)
            try:
                with stores.layers.lease():
                    pull_image(registry, reference, platform=platform, layers=stores.layers, images=stores.images,
                               references=stores.references, metadata=self.metadata, progress=progress,
                               registered=registered)
            finally:
                lock.release()
        except BaseException:
            self._release_after_failure(registered)
            raise
        shown = reference.familiar_string()
        self.events.emit(IMAGE, "pull", shown, {"name": reference.familiar_name})
        return shown

    # -- push ------------------------------------------------------------------------------------

    def push(self, name: str, *, tag: str = "", credentials: Credentials | None = None,
             progress: Progress, manifest_format: str = "docker") -> list[str]:
        """Push ``name`` (+ ``tag``; none: every tag of the repository) with manifests of
        ``manifest_format`` (``docker``: schema 2, the default; ``oci``); the pushed references."""
        from lamina.distribution.push import MANIFEST_FORMATS

        if manifest_format not in MANIFEST_FORMATS:
            raise errdefs.InvalidArgument(f"unknown manifest format {manifest_format!r}: docker or oci")
        reference = parse_normalized_named(name)
        if reference.digest is not None:
            raise errdefs.InvalidArgument(f"cannot push a digest reference ({name}): push a tag")
        if tag:
            reference = with_tag(reference, tag)
        stores = self.images
        if reference.tag is None:
            targets = [ref for ref, _ in stores.references.references_by_name(reference) if ref.tag]
            if not targets:
                raise errdefs.NotFound(f"An image does not exist locally with the tag: {reference.familiar_name}")
        else:
            targets = [reference]
        for target in targets:  # refused before anything is sent
            try:
                stores.references.get(target)
            except errdefs.NotFound:
                raise errdefs.NotFound(
                    f"An image does not exist locally with the tag: {target.familiar_string()}") from None
        progress({"status": f"The push refers to repository [{trim_name(reference).string()}]"})
        with _naming_failures("pushing", reference):
            return self._push(reference, targets, credentials, progress, manifest_format)

    def _push(self, reference: Reference, targets: list[Reference], credentials: Credentials | None,
              progress: Progress, manifest_format: str) -> list[str]:
        from lamina.distribution.push import push_image

        stores = self.images
        pushed = []
        with self._registry(reference.domain, credentials) as registry:
            for target in targets:
                image_id = stores.references.get(target)
                lock = stores.layers.lock(shared=True)
                try:
                    push_image(registry, target, image_id, layers=stores.layers, images=stores.images,
                               references=stores.references, metadata=self.metadata, progress=progress,
                               manifest_format=manifest_format)
                finally:
                    lock.release()
                shown = target.familiar_string()
                self.events.emit(IMAGE, "push", shown, {"name": target.familiar_name})
                pushed.append(shown)
        return pushed

    # -- login, inspect, search ----------------------------------------------------------------

    def login(self, server: str, credentials: Credentials) -> dict[str, str]:
        """Check ``credentials`` against the registry ``server`` (``POST /auth``)."""
        domain = registry_domain(server)
        with self._registry(domain, credentials) as registry:
            registry.ping()
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    def inspect_distribution(self, name: str, *, credentials: Credentials | None = None) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the manifest's descriptor and its platforms."""
        from lamina.digest import from_bytes
        from lamina.distribution.load import INDEX_MEDIA_TYPES

        reference = with_default_tag(parse_normalized_named(name))
        with self._registry(reference.domain, credentials) as registry:
            body, media_type = self._get_manifest(registry, reference)
            document = json.loads(body)
            media_type = document.get("mediaType") or media_type
            platforms = []
            if media_type in INDEX_MEDIA_TYPES:
                for entry in document.get("manifests") or []:
                    platform = entry.get("platform") or {}
                    platforms.append({key: value for key, value in (
                        ("architecture", platform.get("architecture", "")), ("os", platform.get("os", "")),
                        ("variant", platform.get("variant", ""))) if value})
            else:
                config_digest = (document.get("config") or {}).get("digest")
                config = json.loads(registry.read_blob(reference.path, str(config_digest)))
                platforms.append({key: config.get(key) for key in ("architecture", "os", "variant")
                                  if config.get(key)})
        return {"Descriptor": {"mediaType": media_type, "digest": str(from_bytes(body)), "size": len(body)},
                "Platforms": platforms}

    def manifest(self, name: str, *, credentials: Credentials | None = None) -> dict[str, Any]:
        """The manifest or index of ``name`` as the registry serves it (``manifest inspect``)."""
        reference = with_default_tag(parse_normalized_named(name))
        with self._registry(reference.domain, credentials) as registry:
            body, _ = self._get_manifest(registry, reference)
        document = json.loads(body)
        if not isinstance(document, dict):
            raise errdefs.InvalidArgument(f"the manifest of {name} is not a JSON object")
        return document

    def search(self, term: str, *, limit: int = 25, credentials: Credentials | None = None) -> list[dict[str, Any]]:
        """Repositories of the registry named by ``term`` (``host[:port]/text``) whose name
        contains the text, from the registry's ``/v2/_catalog`` (the v2 API has no search)."""
        domain, _, text = term.partition("/")
        if "." not in domain and ":" not in domain and domain != "localhost":
            raise errdefs.NotImplemented(
                "lamina searches a registry's catalog (/v2/_catalog): name the registry, e.g. "
                "'localhost:5000/busybox'; Docker Hub's search API is not supported")
        with self._registry(domain, credentials) as registry:
            names = registry.catalog()
        found = [name for name in names if text in name][: max(limit, 1)]
        return [{"name": f"{domain}/{name}", "description": "", "star_count": 0, "is_official": False,
                 "is_automated": False} for name in found]


@contextlib.contextmanager
def _naming_failures(doing: str, reference: Reference) -> Iterator[None]:
    """A registry's failure (unreachable, credentials refused) that does not name the
    repository gets ``"<doing> <reference>: "`` in front: a ping's failure knows only the registry."""
    try:
        yield
    except (errdefs.Unavailable, errdefs.Unauthorized, errdefs.Forbidden) as exc:
        if reference.path in str(exc):
            raise
        raise type(exc)(f"{doing} {reference.familiar_string()}: {exc}") from exc


def build_distribution(config: EngineConfig, images: ImageStores, events: EventSink = DISCARD) -> DistributionServiceImpl:
    """The service on ``<data-root>/image/<driver>/distribution`` (the image stores' driver)."""
    import os

    from lamina.distribution.metadata import MetadataStore
    from lamina.distribution.registry.client import RegistryOptions

    image_root = os.path.dirname(images.layers.root)  # <data-root>/image/<driver>
    options = RegistryOptions(insecure_registries=tuple(config.insecure_registries),
                              certs_directories=tuple(config.certs_directories))
    return DistributionServiceImpl(images=images, metadata=MetadataStore(os.path.join(image_root, "distribution")),
                                   options=options, events=events, mirrors=tuple(config.registry_mirrors))
