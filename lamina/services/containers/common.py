"""What the container service's groups share: :class:`ContainerShared` (one per engine: the
stores and collaborators, the runtimes, the attaches waiting for a start) and
:class:`ContainerGroup`, the base of each group, with the plumbing they all use (looking a
container up, recording the run of a dead monitor, the run-time state, waiting for an exit)."""

from __future__ import annotations

import _thread
from collections.abc import Callable
from functools import cached_property

from lamina import errdefs
from lamina.config import EngineConfig
from lamina.container.store import Container, ContainerStore
from lamina.events.api import CONTAINER, DISCARD, EventSink
from lamina.log import get_logger
from lamina.network.run import RunNetwork
from lamina.records import asdict

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:  # the run machinery is imported where it is used: listing and inspecting need none of it
    from typing import Any
    from lamina.container.execstore import ExecStore
    from lamina.container.monitor.api import MonitorContext, MonitorRecipe, MonitorStores, PendingAttach
    from lamina.container.monitor.client import MonitorClient
    from lamina.container.rundir import ExitInfo, RunLock
    from lamina.idmap import Remap
    from lamina.layer.mounts import MountStore
    from lamina.runtime.api import Runtime, RuntimeState
    from lamina.runtime.registry import Runtimes
    from lamina.services.api import ContainerVolumes
    from lamina.services.images import ImageServiceImpl

__all__ = ["MONITOR_GONE", "ContainerGroup", "ContainerShared", "network_settings"]

# State.Error of a run whose monitor died (whoever noticed first recorded it)
MONITOR_GONE = "the container's monitor exited unexpectedly"

log = get_logger("lamina.services")


def network_settings(mode: str, requested: dict[str, Any] | None = None) -> dict[str, Any]:
    """NetworkSettings of a created container: per network, what create was given (Aliases,
    IPAMConfig, MacAddress), as Docker keeps it; the monitor's run reads it back."""
    network = "bridge" if mode in ("default", "bridge") else mode
    networks = {}
    names = [network, *(name for name in (requested or {}) if name not in (network, "default"))]
    if mode.startswith("container:"):
        names = []  # no network of its own: no entry, as Docker
    for name in names:
        given = (requested or {}).get(name) or {}
        networks[name] = {"IPAMConfig": given.get("IPAMConfig") or None, "Links": given.get("Links") or None,
                          "Aliases": given.get("Aliases") or None, "MacAddress": given.get("MacAddress") or "",
                          "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                          "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None,
                          "DNSNames": None}
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks}


def _store_opener(store: ContainerStore, mounts: MountStore, exec_root: str) -> Callable[[], MonitorStores]:
    """Stores on the same roots, opened in a monitor after its fork."""
    container_root, layer_root = store.root, mounts.layers.root
    driver_name, driver_home = mounts.driver.name, mounts.driver.home

    def reopen() -> MonitorStores:
        from lamina.container.execstore import ExecStore
        from lamina.container.monitor.api import MonitorStores
        from lamina.graphdriver.registry import DRIVERS
        from lamina.layer.mounts import MountStore
        from lamina.layer.store import LayerStore

        driver = DRIVERS[driver_name](driver_home)
        return MonitorStores(store=ContainerStore(container_root), mounts=MountStore(LayerStore(layer_root, driver)),
                             execs=ExecStore(exec_root))

    return reopen


def monitor_context(arguments: dict[str, Any]) -> MonitorContext:
    """The monitors' context, made in the monitor template (the builder of
    :meth:`ContainerShared.monitor_recipe`): the engine's stores, runtimes, volumes (built
    when a monitor first needs them), event log and network sandboxes."""
    import os

    from lamina.container.monitor.api import MonitorContext
    from lamina.events.log import EventLog
    from lamina.graphdriver.registry import DRIVERS
    from lamina.layer.mounts import MountStore
    from lamina.layer.store import LayerStore
    from lamina.records import fields
    from lamina.runtime.registry import Runtimes
    from lamina.services.compose import _on_first_use, build_volumes

    given = arguments["config"]
    config = EngineConfig(**{item.name: tuple(given[item.name]) if isinstance(given[item.name], list)
                             else given[item.name] for item in fields(EngineConfig) if item.name in given})
    driver = DRIVERS[arguments["driver"]](arguments["driver_home"])
    store, mounts = ContainerStore(arguments["container_root"]), MountStore(LayerStore(arguments["layer_root"], driver))
    events = EventLog(os.path.join(config.data_root, "events"))
    volumes: ContainerVolumes = _on_first_use(lambda: build_volumes(config, events=events))
    runtimes = Runtimes(config.exec_root)
    # imported once here, in the monitor template, rather than by every start helper forked
    # from it: overlay2's mount options (~1 ms, every start) and, but rootless, what sets up a
    # bridge endpoint (~10 ms); nothing is opened or created
    import importlib

    modules = ["lamina.graphdriver.overlay2_kernel"] if arguments["driver"] == "overlay2" else []
    if config.rootless_uid is None:
        modules += ["lamina.network.cni", "lamina.network.netavark", "lamina.network.sandbox"]
    for module in modules:
        importlib.import_module(module)
    return MonitorContext(exec_root=config.exec_root, stores=_store_opener(store, mounts, config.exec_root),
                          runtime=runtimes.get, volumes=volumes, events=events,
                          network=RunNetwork(config.data_root, config.exec_root, events=events,
                                             rootless=config.rootless_uid is not None))


class ContainerShared:
    """The state the groups of one engine share.  What only running containers need (the
    monitors' client and recipe, the runtimes) is made on first use: ``ps`` and ``inspect``
    of stopped containers load none of the run machinery."""

    def __init__(self, *, config: EngineConfig, images: ImageServiceImpl, mounts: MountStore,
                 store: ContainerStore, execs: ExecStore, default_runtime: str = "native",
                 volumes: ContainerVolumes | None = None, events: EventSink = DISCARD,
                 remap: Remap | None = None) -> None:
        self.config = config
        self.remap = remap  # --userns-remap (None: off): what created containers are mapped with
        self.images = images
        self.mounts = mounts
        self.volumes = volumes  # None: containers get no volumes or binds
        self.store = store
        self.execs = execs
        self.exec_root = config.exec_root
        self.default_runtime = default_runtime
        self.events = events
        self._pending: dict[str, list[PendingAttach]] = {}
        self._pending_lock = _thread.allocate_lock()
        self.network = RunNetwork(config.data_root, self.exec_root, events=events,
                                  rootless=config.rootless_uid is not None)

    @cached_property
    def monitors(self) -> MonitorClient:
        """The client of the monitors under the exec root."""
        from lamina.container.monitor.client import MonitorClient

        return MonitorClient(self.exec_root)

    @cached_property
    def monitor_recipe(self) -> MonitorRecipe:
        """What the monitor template makes the monitors' context from (:func:`monitor_context`)."""
        from lamina.container.monitor.api import MonitorRecipe

        mounts = self.mounts
        return MonitorRecipe(
            exec_root=self.exec_root, builder=f"{__name__}:monitor_context",
            arguments={"config": asdict(self.config), "driver": mounts.driver.name, "driver_home": mounts.driver.home,
                       "container_root": self.store.root, "layer_root": mounts.layers.root})

    @cached_property
    def _runtimes(self) -> Runtimes:
        from lamina.runtime.registry import Runtimes

        return Runtimes(self.exec_root)

    def runtime(self, name: str) -> Runtime:
        """The runtime called ``name`` (:mod:`lamina.runtime.registry`), opened once."""
        return self._runtimes.get(name)

    def runtime_names(self) -> tuple[str, ...]:
        return self._runtimes.names()

    def sweep(self) -> list[str]:
        """Finish interrupted removals (called by :func:`build_services`)."""
        from lamina.container.removal import sweep

        return sweep(self.store, self.mounts, self.execs, self.exec_root) + self.network.sweep()


class ContainerGroup:
    """The base of each group: the shared state under the names the groups' methods use."""

    def __init__(self, shared: ContainerShared) -> None:
        self.shared = shared
        self.config = shared.config
        self.images = shared.images
        self.mounts = shared.mounts
        self.volumes = shared.volumes
        self.store = shared.store
        self.remap = shared.remap
        self.execs = shared.execs
        self.exec_root = shared.exec_root
        self.default_runtime = shared.default_runtime
        self.events = shared.events
        self.network = shared.network
        self._pending = shared._pending
        self._pending_lock = shared._pending_lock

    @property
    def monitors(self) -> MonitorClient:
        return self.shared.monitors

    @property
    def monitor_recipe(self) -> MonitorRecipe:
        return self.shared.monitor_recipe

    def runtime(self, name: str) -> Runtime:
        return self.shared.runtime(name)

    def _event(self, container: Container, action: str, extra: dict[str, str] | None = None) -> None:
        from lamina.events.message import container_attributes

        self.events.emit(CONTAINER, action, container.id, container_attributes(container.config, container.name, extra))

    def _get(self, reference: str) -> Container:
        """The container, with a dead monitor's run recorded as ended."""
        container = self.store.lookup(reference)
        if container.state.get("Running") and not self.monitors.alive(container.id):
            container = self._reconcile(container.id)
        return container

    def _reconcile(self, container_id: str) -> Container:
        """Record the end of a run whose monitor died, releasing what it left."""
        from lamina.container import joining
        from lamina.container.removal import release_mount
        from lamina.container.state import now

        with self.store.modify(container_id) as container:
            if not container.state.get("Running") or self.monitors.alive(container_id):
                return container
            error = self.monitors.release_dead_run(container_id, self.runtime)
            release_mount(self.mounts, container_id)
            self._unmount_volumes(container)
            joining.release(container.host_config, self.store.directory(container_id))
            self.network.detach(container_id)
            container.state.update(Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=255,
                                   FinishedAt=now(), Error=error or MONITOR_GONE,
                                   Dead=bool(error))
            self.execs.remove_for_container(container_id)
            log.warning("container %s: its monitor is gone; recorded it as exited (255)", container_id)
        self._event(container, "die", {"exitCode": "255"})
        self.monitors.publish_exit(container_id, exit_code=255, error=container.state["Error"])
        return container

    def _unmount_volumes(self, container: Container) -> None:
        """Drop the volume mounts a run held (volumes with driver options)."""
        if self.volumes is None:
            return
        from lamina.volume.resolve import volume_names

        for name in volume_names(container.data.get("MountPoints")):
            try:
                self.volumes.unmount(name, container.id)
            except errdefs.LaminaError as exc:
                log.warning("unmounting volume %s of %s: %s", name, container.id, exc)

    def _runtime_state(self, container: Container) -> RuntimeState:
        if not container.state.get("Running") or container.state.get("Restarting"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        state = self.monitors.runtime_state(container.id)
        if state is None:
            raise errdefs.Conflict(f"Container {container.id} is not running")
        return state

    def _last_sequence(self, container_id: str) -> tuple[RunLock, int]:
        return self.monitors.exits(container_id)

    def _wait_exit(self, container_id: str, run_lock: RunLock, after: int, timeout: float | None) -> ExitInfo | None:
        def give_up() -> bool:
            try:
                container = self.store.get(container_id)
            except errdefs.NotFound:
                return True
            if not container.state.get("Running"):
                return True
            if not self.monitors.alive(container_id):
                self._reconcile(container_id)
                return True
            return False

        return run_lock.wait_exit(after, timeout=timeout, give_up=give_up)
