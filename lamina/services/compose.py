"""The one composition function: configuration in, wired services out.

``build_services(config)`` creates the data root, selects the graph driver (explicit >
what the data root holds > priority, each probed), opens the image and layer stores under
``<data-root>/image/<driver>/``, the container store under ``<data-root>/containers/`` and
the run-time state under the exec root, and sweeps what crashed operations left behind
(interrupted layer registrations and removals, read-write layers whose creation or removal was
interrupted, container removals).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from dataclasses import dataclass

from lamina import errdefs
from lamina.config import EngineConfig
from lamina.container.execstore import ExecStore
from lamina.container.store import ContainerStore
from lamina.graphdriver.registry import select
from lamina.image.refstore import ReferenceStore
from lamina.image.store import ImageStore
from lamina.layer.mounts import MountStore
from lamina.layer.store import LayerStore
from lamina.services.builds import BuildServiceImpl
from lamina.services.containers import ContainerServiceImpl
from lamina.services.execs import ExecServiceImpl
from lamina.services.images import ImageServiceImpl
from lamina.services.system import SystemServiceImpl
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.store import VolumeStore

__all__ = ["EngineServices", "build_services", "build_volumes"]

log = logging.getLogger("lamina.services")


@dataclass(frozen=True)
class EngineServices:
    images: ImageServiceImpl
    system: SystemServiceImpl
    containers: ContainerServiceImpl
    execs: ExecServiceImpl
    volumes: VolumeServiceImpl
    builds: BuildServiceImpl


def _prepare_root(data_root: str) -> None:
    try:
        os.makedirs(data_root, mode=0o711, exist_ok=True)
        probe = os.path.join(data_root, f".write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise errdefs.System(f"data root {data_root} is not writable: {exc.strerror}") from exc
        raise errdefs.System(f"cannot use data root {data_root}: {exc.strerror}") from exc


def build_services(config: EngineConfig) -> EngineServices:
    _prepare_root(config.data_root)
    selection = select(config.data_root, config.storage_driver)
    driver = selection.driver
    image_root = os.path.join(config.data_root, "image", driver.name)
    os.makedirs(image_root, mode=0o700, exist_ok=True)
    images = ImageStore(image_root)
    references = ReferenceStore(os.path.join(image_root, "repositories.json"))
    service: ImageServiceImpl | None = None

    def referenced() -> set[str]:
        assert service is not None
        return service.referenced_layers()

    layers = LayerStore(os.path.join(image_root, "layerdb"), driver, referenced=referenced)
    service = ImageServiceImpl(layers=layers, images=images, references=references, driver=driver,
                               spool_dir=os.path.join(config.data_root, "tmp"))
    mounts = MountStore(layers)
    service.mounts = mounts
    layers.sweep()
    _sweep_mounts(layers, mounts)
    volumes = build_volumes(config)
    store = ContainerStore(os.path.join(config.data_root, "containers"))
    execs = ExecStore(config.exec_root)
    containers = ContainerServiceImpl(config=config, images=service, mounts=mounts, store=store, execs=execs,
                                      volumes=volumes)
    service.container_usage = containers.image_usage
    containers.sweep()
    system = SystemServiceImpl(config=config, driver=driver, images=service,
                               skipped_drivers=list(selection.skipped), volumes=volumes)
    builds = BuildServiceImpl(config=config, images=service, containers=containers, mounts=mounts)
    system.builds = builds
    return EngineServices(images=service, system=system, containers=containers,
                          execs=ExecServiceImpl(containers=containers, execs=execs), volumes=volumes,
                          builds=builds)


def _sweep_mounts(layers: LayerStore, mounts: MountStore) -> None:
    """Sweep interrupted read-write layer creations and removals, when nobody creates one now
    (creations hold the layer store lock shared)."""
    directory = os.path.join(layers.root, "mounts")
    try:
        if not any(name.startswith((".tmp-", ".removing-")) for name in os.listdir(directory)):
            return
    except FileNotFoundError:
        return
    fd = os.open(os.path.join(layers.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        for message in mounts.sweep():
            log.warning("%s", message)
    finally:
        os.close(fd)


def build_volumes(config: EngineConfig) -> VolumeServiceImpl:
    """The volume service on ``<data-root>/volumes``; a reference held by a container whose
    directory is gone (``<data-root>/containers/<id>``) stops counting after a grace period."""
    containers = os.path.join(config.data_root, "containers")

    def container_exists(container_id: str) -> bool:
        return os.path.isdir(os.path.join(containers, container_id))

    store = VolumeStore(os.path.join(config.data_root, "volumes"), container_exists=container_exists)
    store.sweep()
    return VolumeServiceImpl(store)
