"""The build service: ``docker build`` (the classic builder), ``builder prune`` and the build
cache's part of ``system df``.

:class:`BuildServiceImpl` opens the build context (a tar stream as ``POST /build`` receives
it, or -- lamina's in-process shortcut -- a local directory read in place), runs
:class:`lamina.build.builder.Builder` with adapters of the image, layer and container stores
(the protocols of :mod:`lamina.build.api`), and tags the result only once the whole build
succeeded, so nothing half-built is ever tagged.

Build cache: every image a build commits is marked ``builtLocally`` in the imagedb metadata
and recorded in the cache index (:mod:`lamina.build.cache`,
``<data-root>/image/<driver>/buildcache/``).  *Build cache items* are the images so marked
that no tag names; an item is *shared* when a kept image (tagged, or not made by a build)
descends from it, i.e. when its layers also serve that image.  ``prune`` removes the items
that are not shared (``all``: every item; the kept images then lose their parent link, not
their layers) and reports the space of the layers that went away.  Images committed since the
oldest build that is still running started are never pruned (they may be that build's parent
images); ``system df`` shows them ``InUse``.

Read-write layers the builder makes for COPY/ADD/WORKDIR are layer records named
``build-<build id>-<n>`` in ``layerdb/mounts``; the build holds ``<exec-root>/builds/<build
id>.lock`` (``flock``) while it runs.  A build that dies leaves such records behind: the next
build removes every ``build-*`` record whose lock is free or gone (the exec root is cleared
at reboot), logged at WARNING.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from lamina import __version__, errdefs, fsutil
from lamina.build.api import BuildOptions, Output, StepOutput
from lamina.build.cache import CacheIndex, cache_key
from lamina.config import EngineConfig
from lamina.digest import Digest, chain_ids
from lamina.image.config import ContainerConfig, ImageConfig, parse_time
from lamina.image.reference import Reference, parse_normalized_named, with_default_tag
from lamina.layer.mounts import MountStore
from lamina.log import get_logger
from lamina.services.api import ContainerLifecycle, ContainerStreams, ImagePulls, Progress
from lamina.services.buildcache import CacheSources
from lamina.services.filters import until_seconds
from lamina.services.images import ImageServiceImpl
from lamina.stdcopy import STDERR, STDOUT, FrameDecoder

if TYPE_CHECKING:
    import socket

    from lamina.build.context import BuildContext
    from lamina.distribution.registry.auth import Credentials

__all__ = ["BuildServiceImpl"]

log = get_logger("lamina.services")

_BUILD_LAYER_PREFIX = "build-"
_PRUNE_FILTERS = frozenset({"until"})


def tag_reference(text: str) -> Reference:
    """A ``-t`` value as the reference to tag (``name`` gets ``:latest``; digests refused)."""
    try:
        reference = with_default_tag(parse_normalized_named(text))
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"invalid reference format: {text!r}: {exc}") from exc
    if reference.digest is not None:
        raise errdefs.InvalidArgument(f"invalid reference format: {text!r}: a build cannot be tagged with a digest")
    return reference


# -- the protocols of lamina.build.api on the stores ----------------------------------------------


class _Images:
    """:class:`lamina.build.api.BuildImages` on the image service."""

    def __init__(self, service: ImageServiceImpl, mounts: MountStore, index: CacheIndex,
                 sources: CacheSources | None = None) -> None:
        self.service = service
        self.store = service.images
        self.mounts = mounts
        self.index = index
        self.sources = sources

    def resolve(self, name: str) -> str:
        return str(self.service.resolve(name))

    def config(self, image_id: str) -> ImageConfig:
        return self.store.get_config(image_id)

    def probe_cache(self, parent: str, container_config: ContainerConfig) -> str | None:
        key = cache_key(container_config)
        if key is None:
            return None
        if self.sources is not None:
            return self.sources.probe(parent, container_config, self._local_hit(parent, key))
        return self._local_hit(parent, key)

    def _local_hit(self, parent: str, key: str) -> str | None:
        candidate = self.index.lookup(parent, key)
        if candidate is None or not self.store.exists(candidate):
            return None
        try:
            recorded = self.store.get_parent(candidate)
            if (str(recorded) if recorded else "") != parent or not self.store.is_built_locally(candidate):
                return None
        except errdefs.NotFound:
            return None  # removed meanwhile
        return candidate

    def _has_changes(self, layer: str) -> bool:
        record = self.mounts.get(layer)
        upper = self.mounts.driver.diff_path(record.mount_id)
        try:
            with os.scandir(upper) as entries:
                return any(True for _ in entries)
        except FileNotFoundError:
            return True  # not a plain directory driver: let the diff tell

    def commit(self, parent: str, *, layer: str | None, config: ContainerConfig,
               container_config: ContainerConfig, author: str = "", container: str = "") -> str:
        if layer is not None and not self._has_changes(layer):
            layer = None
        key = cache_key(container_config)

        def record(image_id: Digest) -> None:
            if key is not None:
                self.index.record(parent, key, str(image_id))

        return str(self.service.commit(layer, parent=parent, config=config, container_config=container_config,
                                       author=author, container=container, docker_version=__version__,
                                       built_locally=True, stored=record))


class _Layers:
    """:class:`lamina.build.api.BuildLayers` on the read-write layer store."""

    def __init__(self, images: ImageServiceImpl, mounts: MountStore, build_id: str) -> None:
        self.images = images
        self.mounts = mounts
        self.build_id = build_id
        self.count = 0
        self.mounted: dict[str, int] = {}

    def create(self, image_id: str) -> str:
        top = self.images.images.get_config(image_id).chain_id() if image_id else None
        self.count += 1
        name = f"{_BUILD_LAYER_PREFIX}{self.build_id}-{self.count}"
        lock = self.images.layers.lock(shared=True)
        try:
            self.mounts.create(name, str(top) if top else None)
        finally:
            lock.release()
        return name

    def mount(self, layer: str) -> str:
        path = self.mounts.mount(layer)
        self.mounted[layer] = self.mounted.get(layer, 0) + 1
        return path

    def unmount(self, layer: str) -> None:
        self.mounts.unmount(layer)
        count = self.mounted.get(layer, 0) - 1
        if count > 0:
            self.mounted[layer] = count
        else:
            self.mounted.pop(layer, None)

    def remove(self, layer: str) -> None:
        while self.mounted.get(layer):
            self.unmount(layer)
        self.mounts.remove(layer)


class _Containers:
    """:class:`lamina.build.api.BuildContainers` on the container service."""

    def __init__(self, containers: ContainerLifecycle, container_streams: ContainerStreams) -> None:
        self.containers = containers
        self.container_streams = container_streams

    def create(self, body: dict[str, Any]) -> str:
        return str(self.containers.create(body)["Id"])

    def run(self, container_id: str, output: StepOutput) -> int:
        from lamina.container.monitor import StartError

        sock = self.container_streams.attach(container_id, stdin=False, stdout=True, stderr=True, stream=True)
        try:
            try:
                self.containers.start(container_id)
            except StartError as exc:
                output(2, f"{exc}\n".encode())
                return exc.exit_code
            _pump_frames(sock, output)
        finally:
            sock.close()
        return int(self.containers.wait(container_id)["StatusCode"])

    def remove(self, container_id: str) -> None:
        self.containers.remove(container_id, force=True)


def _pump_frames(sock: socket.socket, output: StepOutput) -> None:
    """Copy a multiplexed attach stream to ``output`` until the container closes it."""
    decoder = FrameDecoder()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        for stream, payload in decoder.feed(chunk):
            if payload:
                output(stream if stream in (STDOUT, STDERR) else STDERR, payload)


class _Pulls:
    """:class:`lamina.build.api.BuildPulls` on the distribution service, with the build
    request's credentials (by registry domain; none for a registry: an anonymous pull)."""

    def __init__(self, distribution: ImagePulls, credentials: Mapping[str, Credentials], platform: str) -> None:
        self.distribution = distribution
        self.credentials = credentials
        self.platform = platform

    def pull(self, name: str, output: Output) -> None:
        reference = with_default_tag(parse_normalized_named(name))
        self.distribution.pull(str(reference), platform=self.platform,
                               credentials=self.credentials.get(reference.domain), progress=output)


# -- the service ------------------------------------------------------------------------------------


class BuildServiceImpl:
    def __init__(self, *, config: EngineConfig, images: ImageServiceImpl, containers: ContainerLifecycle,
                 container_streams: ContainerStreams, mounts: MountStore, distribution: ImagePulls) -> None:
        self.config = config
        self.distribution = distribution
        self.images = images
        self.containers = containers
        self.container_streams = container_streams
        self.mounts = mounts
        self.index = CacheIndex(os.path.join(images.images.root, "buildcache"))
        self.locks_dir = os.path.join(config.exec_root, "builds")

    # -- building ---------------------------------------------------------------------------

    def build(self, *, progress: Progress, stream: BinaryIO | None = None, directory: str | None = None,
              dockerfile: str = "", tags: list[str] | tuple[str, ...] = (),
              options: BuildOptions | None = None,
              registry_credentials: Mapping[str, Credentials] | None = None) -> str:
        """Build; report through ``progress``; tag with ``tags`` once it succeeded; return the
        image id.  The context is the tar ``stream``, or the local ``directory`` (then a
        relative ``dockerfile`` is relative to that directory).  A FROM image that is missing
        (every FROM image with ``options.pull``) is pulled with ``registry_credentials`` of its
        registry domain."""
        # the builder and the Dockerfile front end load only when a build runs: every other
        # command builds these services too
        from lamina.build.builder import Builder
        from lamina.build.history import short_id

        references = [tag_reference(tag) for tag in tags]
        options = options or BuildOptions()
        context = self._open_context(stream, directory, dockerfile)
        try:
            with self._session() as build_id:
                sources = CacheSources(self.images, options.cache_from) if options.cache_from else None
                builder = Builder(images=_Images(self.images, self.mounts, self.index, sources),
                                  layers=_Layers(self.images, self.mounts, build_id),
                                  containers=_Containers(self.containers, self.container_streams), context=context,
                                  options=options, output=progress,
                                  pulls=_Pulls(self.distribution, registry_credentials or {}, options.platform))
                image_id = builder.build()
        finally:
            context.close()
        progress({"stream": f"Successfully built {short_id(image_id)}\n"})
        if references:
            # under the store lock: a prune (exclusive) cannot take the untagged image meanwhile
            lock = self.images.layers.lock(shared=True)
            try:
                if not self.images.images.exists(image_id):
                    raise errdefs.NotFound(f"the built image {image_id} was removed before it could be tagged")
                for reference in references:
                    self.images.references.add_tag(reference, Digest(image_id), force=True)
                self.images.images.set_last_updated(image_id)
            finally:
                lock.release()
            for reference in references:
                progress({"stream": f"Successfully tagged {reference.familiar_string()}\n"})
        return image_id

    def _open_context(self, stream: BinaryIO | None, directory: str | None, dockerfile: str) -> BuildContext:
        from lamina.build.context import open_directory_context, open_tar_context

        if directory is not None:
            if dockerfile and not os.path.isabs(dockerfile):
                dockerfile = os.path.join(directory, dockerfile)
            return open_directory_context(directory, dockerfile or None)
        if stream is None:
            raise errdefs.InvalidArgument("no build context: send the context as a tar archive in the body")
        spool = self.images.spool_dir
        os.makedirs(spool, mode=0o700, exist_ok=True)
        return open_tar_context(stream, dockerfile or "Dockerfile", temp_root=spool)

    def _session(self) -> _Session:
        return _Session(self)

    def sweep(self) -> list[str]:
        """Remove the read-write layers of builds that died (see the module docstring)."""
        removed: list[str] = []
        try:
            names = [name for name in self.mounts.container_ids() if name.startswith(_BUILD_LAYER_PREFIX)]
        except FileNotFoundError:
            return removed
        for name in names:
            build_id = name[len(_BUILD_LAYER_PREFIX):].rsplit("-", 1)[0]
            if not _lock_is_free(os.path.join(self.locks_dir, build_id + ".lock")):
                continue
            try:
                self.mounts.remove(name)
            except errdefs.NotFound:
                continue
            log.warning("removed read-write layer %s left by a build that did not finish", name)
            removed.append(name)
        return removed

    # -- the cache --------------------------------------------------------------------------

    def _oldest_running_build(self) -> float | None:
        """When the oldest build still running started (its lock's time), or None: what it
        committed since must not be pruned under it."""
        try:
            names = os.listdir(self.locks_dir)
        except FileNotFoundError:
            return None
        oldest = None
        for name in names:
            if not name.endswith(".lock"):
                continue
            path = os.path.join(self.locks_dir, name)
            try:
                started = os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if not _lock_is_free(path, remove=False):
                oldest = started if oldest is None else min(oldest, started)
        return oldest

    def _cache_items(self) -> tuple[dict[str, ImageConfig], dict[str, str | None], set[str]]:
        """(configs of build cache images, parent of every image, images kept outside the cache)."""
        store = self.images.images
        parents: dict[str, str | None] = {}
        items: dict[str, ImageConfig] = {}
        kept: set[str] = set()
        # the image listing's ids, parents and references (kept while the image store is unchanged)
        for entry in self.images.listing.listed()[1]:
            key = str(entry.image_id)
            parents[key] = str(entry.parent) if entry.parent else None
            try:
                if entry.tags or entry.repo_digests or not store.is_built_locally(key):
                    kept.add(key)
                else:
                    items[key] = store.get_config(key)
            except errdefs.LaminaError:
                continue
        return items, parents, kept

    @staticmethod
    def _ancestors(images: set[str], parents: dict[str, str | None]) -> set[str]:
        out: set[str] = set()
        for image_id in images:
            current = parents.get(image_id)
            while current is not None and current not in out:
                out.add(current)
                current = parents.get(current)
        return out

    def cache_usage(self) -> list[dict[str, Any]]:
        """Docker's ``BuildCache`` items of ``system df`` (see the module docstring); ``InUse``:
        a container uses the image, or a build still running may have made it."""
        items, parents, kept = self._cache_items()
        shared = self._ancestors(kept, parents)
        running_since = self._oldest_running_build()
        layer_sizes = {str(layer.chain_id): layer.size for layer in self.images.layers.layers()}
        usage = []
        for image_id, config in sorted(items.items(), key=lambda item: item[1].created or ""):
            last = config.history[-1] if config.history else None
            size = 0
            if last is not None and not last.empty_layer and config.diff_ids:
                size = layer_sizes.get(str(chain_ids(config.diff_ids)[-1]), 0)
            parent = parents.get(image_id)
            usage.append({
                "ID": Digest(image_id).hex,
                "Parent": Digest(parent).hex if parent else "",
                "Parents": [Digest(parent).hex] if parent else None,
                "Type": "regular",
                "Description": last.created_by if last is not None else "",
                "InUse": bool(self.images.container_usage(image_id))
                or (running_since is not None and _created(config) >= running_since - 1),
                "Shared": image_id in shared,
                "Size": size,
                "CreatedAt": config.created or "",
                "LastUsedAt": None,
                "UsageCount": 0,
            })
        return usage

    def prune(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Remove build cache items: the ones no kept image descends from (``all``: every one
        not used by a container); ``{"CachesDeleted": [...], "SpaceReclaimed": n}``."""
        filters = dict(filters or {})
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        until = until_seconds(filters["until"][0]) if filters.get("until") else None
        service = self.images
        deleted: list[str] = []
        freed_before = service.freed_bytes
        lock = service.layers.lock(shared=False)
        try:
            with service.layers.lease():
                items, parents, kept = self._cache_items()
                shared = self._ancestors(kept, parents)
                running_since = self._oldest_running_build()
                if running_since is not None:
                    # a build still running: keep what it may have committed so far
                    until = min(until, running_since - 1) if until is not None else running_since - 1
                candidates = {image_id for image_id, config in items.items()
                              if (all or image_id not in shared) and not service.container_usage(image_id)
                              and (until is None or _created(config) < until)}
                children: dict[str, int] = {}
                for image_id, parent in parents.items():
                    if parent is not None:
                        children[parent] = children.get(parent, 0) + 1
                # leaves first, so that a parent goes after its last child
                pending = sorted(candidates)
                while pending:
                    progress_made = False
                    for image_id in list(pending):
                        if children.get(image_id, 0) and not all:
                            continue
                        pending.remove(image_id)
                        progress_made = True
                        if not service.images.exists(image_id):
                            continue
                        service._delete_image(Digest(image_id), prune=False)
                        deleted.append(Digest(image_id).hex)
                        parent = parents.get(image_id)
                        if parent is not None and parent in children:
                            children[parent] -= 1
                    if not progress_made:
                        break
                self.index.sweep(service.images.exists)
        finally:
            lock.release()
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": service.freed_bytes - freed_before}


class _Session:
    """One build's identity and lock; sweeps what dead builds left when it starts."""

    def __init__(self, service: BuildServiceImpl) -> None:
        self.service = service
        self.build_id = os.urandom(8).hex()  # secrets.token_hex(8), without its imports
        self.path = os.path.join(service.locks_dir, self.build_id + ".lock")
        self.fd = -1

    def __enter__(self) -> str:
        # locked before it is visible: a sweeper never sees a live build's lock free
        temporary = os.path.join(self.service.locks_dir, fsutil.temp_name())
        try:
            os.makedirs(self.service.locks_dir, mode=0o700, exist_ok=True)
            self.fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            os.rename(temporary, self.path)
        except OSError as exc:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            raise fsutil.system_error("creating the build's lock", exc) from exc
        try:
            self.service.sweep()
        except BaseException:
            self.__exit__()
            raise
        return self.build_id

    def __exit__(self, *_exc: object) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1


def _lock_is_free(path: str, *, remove: bool = True) -> bool:
    """Whether no live build holds the lock at ``path`` (a dead build's lock is removed)."""
    if fsutil.lock_is_held(path):
        return False
    if remove:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return True


def _created(config: ImageConfig) -> float:
    try:
        return parse_time(config.created) / 1e9 if config.created else 0.0
    except errdefs.InvalidArgument:
        return 0.0
