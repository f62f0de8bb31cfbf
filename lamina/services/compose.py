"""The one composition function: configuration in, wired services out.

:class:`EngineServices` holds the engine's services for one :class:`EngineConfig`.  Each is
built on first use (a command pays only for what its request touches: ``lamina images``
never imports the container, volume or build code), under one re-entrant lock so concurrent
requests of a server build each service once.  What building a piece does:

* the image service: creates the data root, selects the graph driver (explicit > what the
  data root holds > priority, each probed), opens the image and layer stores under
  ``<data-root>/image/<driver>/``, and sweeps what crashed operations left behind
  (interrupted layer registrations and removals, read-write layers whose creation or removal
  was interrupted);
* the volume service: opens ``<data-root>/volumes`` and sweeps it;
* the network service: opens ``<data-root>/network`` (networks, sandbox records) with netavark
  as the data plane (its run-time state under ``<exec-root>/network``, sandboxes under
  ``<exec-root>/netns``);
* the container service (its groups ``containers``, ``container_views``, ``container_files``,
  ``container_streams`` share one :class:`~lamina.services.containers.common.ContainerShared`):
  opens the container store under ``<data-root>/containers/`` and the run-time state under the
  exec root, and finishes interrupted container removals; it holds the volume service as a
  stand-in that builds it when a container's mounts first need it.

Every service receives its collaborators as constructor arguments, typed by what it uses; a
collaborator that is costly and often not needed is handed over as a stand-in that builds it
on first use (:func:`_on_first_use`: the build service's container groups, the container
service's volumes).  Nothing is assigned onto a service after it was built.

``build_services(config)`` builds every service at once (what a server wants at start-up, and
what tests of the sweeps expect); ``build_services(config, lazy=True)`` builds none yet (the
in-process CLI transport).
"""

from __future__ import annotations

import _thread  # threading's RLock itself: reading images or containers needs no threading module
import errno
import os
from collections.abc import Callable

from lamina import errdefs
from lamina.config import EngineConfig
from lamina.log import get_logger

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from lamina.container.execstore import ExecStore
    from lamina.events.api import EventSink
    from lamina.events.log import EventLog
    from lamina.graphdriver.registry import Selection
    from lamina.idmap import Remap
    from lamina.layer.mounts import MountStore
    from lamina.layer.store import LayerStore
    from lamina.services.api import ContainerLifecycle, ContainerStreams, ContainerUsage, ContainerVolumes
    from lamina.services.builds import BuildServiceImpl
    from lamina.services.containers.common import ContainerShared
    from lamina.services.containers.files import ContainerFilesImpl
    from lamina.services.containers.lifecycle import ContainerLifecycleImpl
    from lamina.services.containers.streams import ContainerStreamsImpl
    from lamina.services.containers.views import ContainerViewsImpl
    from lamina.services.distribution import DistributionServiceImpl
    from lamina.services.events import EventServiceImpl
    from lamina.services.execs import ExecServiceImpl
    from lamina.services.images import ImageServiceImpl
    from lamina.services.networks import NetworkServiceImpl
    from lamina.services.system import SystemServiceImpl
    from lamina.services.volumes import VolumeServiceImpl

__all__ = ["EngineServices", "build_services", "build_volumes", "build_networks"]

log = get_logger("lamina.services")

if TYPE_CHECKING:
    from functools import cached_property as _Built  # to a type checker: a cached property

    T = TypeVar("T")
else:
    class _Built:
        """A piece of :class:`EngineServices` built by ``method`` on first access, under the
        instance's lock, then stored in the instance's ``__dict__`` (later reads cost nothing).
        A type checker sees :class:`functools.cached_property`, whose typing it is; this one
        holds the engine's one lock (one lock per property, as 3.11's, could deadlock two
        requests building services that use each other) and does not import :mod:`typing`
        (its generic base cost every command 2.5 ms)."""

        def __init__(self, method):
            self.method = method
            self.name = method.__name__
            self.__doc__ = method.__doc__

        def __set_name__(self, owner, name):
            self.name = name

        def __get__(self, instance, owner=None):
            if instance is None:
                return self
            with instance._lock:
                values = instance.__dict__
                if self.name not in values:
                    values[self.name] = self.method(instance)
                return values[self.name]


class EngineServices:
    """The services of one engine (``images``, ``system``, the container groups
    ``containers`` (lifecycle), ``container_views``, ``container_files`` and
    ``container_streams``, ``execs``, ``volumes``, ``builds``, ``events``), each built on first
    access."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._lock = _thread.RLock()

    def build_all(self) -> EngineServices:
        """Build every service now (in dependency order); returns ``self``."""
        for name in ("images", "remap", "volumes", "containers", "container_views", "container_files", "container_streams",
                     "system", "builds", "execs"):
            getattr(self, name)
        return self

    # -- storage ---------------------------------------------------------------------------------

    @_Built
    def selection(self) -> Selection:
        """The graph driver and the drivers passed over."""
        from lamina.graphdriver.registry import select

        _prepare_root(self.config.data_root)
        return select(self.config.data_root, self.config.storage_driver)

    @_Built
    def _image_parts(self) -> tuple[ImageServiceImpl, LayerStore, MountStore]:
        from lamina.image.refstore import ReferenceStore
        from lamina.image.store import ImageStore
        from lamina.layer.mounts import MountStore
        from lamina.layer.store import LayerStore
        from lamina.services.images import ImageServiceImpl

        driver = self.selection.driver
        image_root = os.path.join(self.config.data_root, "image", driver.name)
        os.makedirs(image_root, mode=0o700, exist_ok=True)
        images = ImageStore(image_root)
        references = ReferenceStore(os.path.join(image_root, "repositories.json"))
        service: ImageServiceImpl | None = None

        def referenced() -> set[str]:
            assert service is not None
            return service.referenced_layers()

        layers = LayerStore(os.path.join(image_root, "layerdb"), driver, referenced=referenced)
        mounts = MountStore(layers)
        # rmi's conflicts: which containers use an image (builds the container service then);
        # the event log when an image event is first emitted (listing and inspecting emit none)
        events: EventSink = _on_first_use(lambda: self.event_log)
        service = ImageServiceImpl(layers=layers, images=images, references=references, driver=driver,
                                   spool_dir=os.path.join(self.config.data_root, "tmp"), events=events,
                                   mounts=mounts,
                                   container_usage=lambda image_id: self.container_views.image_usage(image_id))
        # image writes run under the layer store lock and a lease: the image store's leftovers
        # (temporary files of a killed load, commit or build) are swept with a dead lease's
        layers.sweep(also=(lambda: images.sweep(min_age_seconds=0),))
        _sweep_mounts(layers, mounts)
        return service, layers, mounts

    @_Built
    def remap(self) -> Remap | None:
        """``--userns-remap``: resolved (user, ranges, idmapped mounts or chowned copies) or None."""
        if not self.config.userns_remap:
            return None
        if self.config.rootless_uid is not None:
            raise errdefs.InvalidArgument("--userns-remap is not supported in rootless mode: lamina already runs in "
                                          "a user namespace of the unprivileged user, which cannot map the "
                                          "--userns-remap ranges")
        from lamina.idmap import open_remap

        driver = self.selection.driver
        remap = open_remap(self.config.userns_remap, driver.home, self.config.exec_root, driver.name,
                           self.config.userns_remap_layers)
        if remap.layer_copies:
            log.info("--userns-remap: remapped containers see chowned copies of the layers (%s)", remap.copy_reason)
        return remap

    @property
    def mounts(self) -> MountStore:
        """The read-write layers (``layerdb/mounts``)."""
        return self._image_parts[2]

    @_Built
    def _exec_store(self) -> ExecStore:
        from lamina.container.execstore import ExecStore

        return ExecStore(self.config.exec_root)

    # -- the services ----------------------------------------------------------------------------

    @_Built
    def images(self) -> ImageServiceImpl:
        return self._image_parts[0]

    @_Built
    def volumes(self) -> VolumeServiceImpl:
        return build_volumes(self.config, events=self.event_log)

    @_Built
    def networks(self) -> NetworkServiceImpl:
        def container_name(term: str) -> tuple[str, str]:
            found = self.container_views.identify(term)
            return str(found["Id"]), str(found["Name"]).lstrip("/")

        def container_endpoints(container_id: str, change: Callable[[str, dict[str, Any]], None]) -> None:
            with self._container_shared.store.modify(container_id) as container:
                settings = container.data.setdefault("NetworkSettings", {})
                networks = settings.get("Networks") or {}
                change(str(container.host_config.get("NetworkMode") or "default"), networks)
                settings["Networks"] = networks

        return build_networks(self.config, events=self.event_log, container_name=container_name,
                              container_endpoints=container_endpoints)

    @_Built
    def _container_shared(self) -> ContainerShared:
        """What the container service's groups share (the container store, the runtimes)."""
        from lamina.container.store import ContainerStore
        from lamina.services.containers.common import ContainerShared

        mounts = self.mounts  # the sweep lists the read-write layers
        store = ContainerStore(os.path.join(self.config.data_root, "containers"))
        # built when first used: the image service (inspect, and a ps that lists nothing, do not
        # read it; the mount store is built with it for now), the volume service (a container
        # without volumes never calls it), the event log (reading containers emits no event)
        images: ImageServiceImpl = _on_first_use(lambda: self.images)
        volumes: ContainerVolumes = _on_first_use(lambda: self.volumes)
        events: EventLog = _on_first_use(lambda: self.event_log)
        shared = ContainerShared(config=self.config, images=images, mounts=mounts, store=store,
                                 execs=self._exec_store, volumes=volumes, events=events, remap=self.remap)
        shared.sweep()
        return shared

    @_Built
    def containers(self) -> ContainerLifecycleImpl:
        from lamina.services.containers.lifecycle import ContainerLifecycleImpl

        return ContainerLifecycleImpl(self._container_shared)

    @_Built
    def container_views(self) -> ContainerViewsImpl:
        from lamina.services.containers.views import ContainerViewsImpl

        return ContainerViewsImpl(self._container_shared)

    @_Built
    def container_files(self) -> ContainerFilesImpl:
        from lamina.services.containers.files import ContainerFilesImpl

        return ContainerFilesImpl(self._container_shared)

    @_Built
    def container_streams(self) -> ContainerStreamsImpl:
        from lamina.services.containers.streams import ContainerStreamsImpl

        return ContainerStreamsImpl(self._container_shared)

    @_Built
    def execs(self) -> ExecServiceImpl:
        from lamina.services.execs import ExecServiceImpl

        return ExecServiceImpl(containers=self.container_streams, execs=self._exec_store)

    @_Built
    def system(self) -> SystemServiceImpl:
        from lamina.services.system import SystemServiceImpl

        selection = self.selection
        # the container views (their store, the monitor client) only when info or df asks
        containers: ContainerUsage = _on_first_use(lambda: self.container_views)
        return SystemServiceImpl(config=self.config, driver=selection.driver, images=self.images,
                                 skipped_drivers=list(selection.skipped), volumes=self.volumes, builds=self.builds,
                                 containers=containers, remap=self.remap)

    @_Built
    def event_log(self) -> EventLog:
        """``<data-root>/events``: every service and container monitor appends its events."""
        from lamina.events.log import EventLog

        return EventLog(os.path.join(self.config.data_root, "events"))

    @_Built
    def events(self) -> EventServiceImpl:
        from lamina.services.events import EventServiceImpl

        return EventServiceImpl(self.event_log)

    @_Built
    def distribution(self) -> DistributionServiceImpl:
        from lamina.services.distribution import build_distribution

        return build_distribution(self.config, self.images, self.event_log)

    @_Built
    def builds(self) -> BuildServiceImpl:
        from lamina.services.builds import BuildServiceImpl

        # the container service (runtime, volumes, monitor) only when a RUN step runs: a
        # build answered from the cache never loads it
        containers: ContainerLifecycle = _on_first_use(lambda: self.containers)
        container_streams: ContainerStreams = _on_first_use(lambda: self.container_streams)
        return BuildServiceImpl(config=self.config, images=self.images, containers=containers,
                                container_streams=container_streams, mounts=self.mounts,
                                distribution=_on_first_use(lambda: self.distribution))


class _OnFirstUse:
    """Stands for the service ``build()`` returns, built when one of its attributes is first
    read (``run`` of a container without volumes then never opens and sweeps the volume
    store)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build

    def __getattr__(self, name: str) -> Any:
        return getattr(self._build(), name)


def _on_first_use(build: Callable[[], T]) -> T:
    """What ``build()`` returns, built when first used (see :class:`_OnFirstUse`)."""
    return _OnFirstUse(build)  # type: ignore[return-value]


def _prepare_root(data_root: str) -> None:
    """Make the data root if missing; refuse one this process cannot write (asked of the
    kernel, ``faccessat`` with the effective ids: a read-only mount, permissions, an immutable
    directory; no file is created, each command would otherwise make and delete one)."""
    try:
        os.makedirs(data_root, mode=0o711, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise errdefs.System(f"data root {data_root} is not writable: {exc.strerror}") from exc
        raise errdefs.System(f"cannot use data root {data_root}: {exc.strerror}") from exc
    if not os.access(data_root, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        try:
            read_only = bool(os.statvfs(data_root).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise errdefs.System(f"data root {data_root} is not writable: {reason}")


def build_services(config: EngineConfig, *, lazy: bool = False) -> EngineServices:
    """The engine's services for ``config``: all built now, or (``lazy``) each on first use."""
    services = EngineServices(config)
    return services if lazy else services.build_all()


def _sweep_mounts(layers: LayerStore, mounts: MountStore) -> None:
    """Sweep interrupted read-write layer creations and removals, when nobody creates or
    removes one now (both hold the layer store lock shared)."""
    if not mounts.interrupted():
        return
    lock = layers.lock_nowait()
    if lock is None:
        return
    try:
        for message in mounts.sweep():
            log.warning("%s", message)
    finally:
        lock.release()


def build_volumes(config: EngineConfig, *, events: EventLog | None = None) -> VolumeServiceImpl:
    """The volume service on ``<data-root>/volumes``; a reference held by a container whose
    directory is gone (``<data-root>/containers/<id>``) stops counting after a grace period."""
    from lamina.events.api import DISCARD
    from lamina.services.volumes import VolumeServiceImpl
    from lamina.volume.store import VolumeStore

    containers = os.path.join(config.data_root, "containers")

    def container_exists(container_id: str) -> bool:
        return os.path.isdir(os.path.join(containers, container_id))

    store = VolumeStore(os.path.join(config.data_root, "volumes"), container_exists=container_exists)
    store.sweep()
    return VolumeServiceImpl(store, events=events if events is not None else DISCARD)


def build_networks(config: EngineConfig, *, events: EventLog | None = None,
                   container_name: Callable[[str], tuple[str, str]] | None = None,
                   container_endpoints: Callable[[str, Callable[[str, dict[str, Any]], None]], None] | None = None
                   ) -> NetworkServiceImpl:
    """The network service on ``<data-root>/network``, netavark as its data plane."""
    from lamina.events.api import DISCARD
    from lamina.network.run import open_sandboxes
    from lamina.services.networks import NetworkServiceImpl

    sandboxes = open_sandboxes(config.data_root, config.exec_root)
    return NetworkServiceImpl(sandboxes, events=events if events is not None else DISCARD,
                              container_name=container_name, container_endpoints=container_endpoints)
