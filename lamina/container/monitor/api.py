"""What a monitor is handed by the code that starts it, and what it needs of its collaborators.

A monitor is forked by the monitor template (:mod:`lamina.container.monitor.template`), not by
its starter: the starter hands over a :class:`MonitorRecipe`, plain data, and the template
makes the :class:`MonitorContext` from it (``builder(arguments)``) and calls its ``stores()``,
once per recipe; each monitor it forks inherits both.  The template has one thread (no lock
is held at a fork); what ``stores()`` returns must hold no open descriptor (a monitor closes
the descriptors it inherits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from lamina.events.api import DISCARD, EventSink
from lamina.records import dataclass
from lamina.volume.api import VolumeProvider

if TYPE_CHECKING:  # what is only named here: a starter that builds a recipe loads none of it
    import socket

    from lamina.container.execstore import ExecStore
    from lamina.container.store import ContainerStore
    from lamina.layer.mounts import MountStore
    from lamina.runtime.api import Runtime

__all__ = ["MonitorContext", "MonitorNetwork", "MonitorRecipe", "MonitorStores", "MonitorVolumes", "PendingAttach"]


class MonitorVolumes(VolumeProvider, Protocol):
    """What a monitor calls on the volume service: the mounts of the volumes that have a
    filesystem of their own, around each run, and what removing a ``--rm`` container needs."""

    def mount(self, name: str, container_id: str) -> str:
        """Mount the volume for one more run of ``container_id``; its mountpoint."""

    def unmount(self, name: str, container_id: str) -> None:
        """The end of that run."""


@dataclass(frozen=True)
class MonitorStores:
    """The stores a monitor works with, opened in the monitor process."""

    store: ContainerStore
    mounts: MountStore
    execs: ExecStore


class MonitorNetwork(Protocol):
    """A run's network sandbox (:class:`lamina.network.run.RunNetwork`): set up before the
    runtime starts the container, torn down when the run ended."""

    def attach(self, container_id: str, name: str, config: dict[str, Any], host: dict[str, Any],
               networking: dict[str, Any]) -> dict[str, Any] | None:
        """The sandbox record (``SandboxKey``, ``Endpoints``...); None: no sandbox (host, none)."""

    def detach(self, container_id: str) -> None: ...

    def sandbox(self, container_id: str) -> dict[str, Any] | None:
        """Another container's sandbox record (its endpoints' addresses: legacy links)."""

    def linkers(self, sandbox: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
        """(container id, network name, its ``Links`` there) of the running containers with links
        on a user-defined network of the run whose sandbox record is ``sandbox``."""

    def begin_release(self, container_id: str) -> None:
        """Mark the sandbox as being torn down (its leases wait for the ``detach`` that follows
        in this process): an ``--rm`` run's teardown comes after its waiters are woken."""


@dataclass(frozen=True)
class MonitorContext:
    """What a monitor needs (paths and factories, no open descriptors), made in the template
    by a :class:`MonitorRecipe`'s builder and inherited by the monitors it forks."""

    exec_root: str
    stores: Callable[[], MonitorStores]   # opens the stores (in the template, once)
    runtime: Callable[[str], Runtime]     # a runtime by HostConfig.Runtime name
    volumes: MonitorVolumes | None = None  # None: containers get no volume mounts
    events: EventSink = DISCARD            # where the monitor's events go
    network: MonitorNetwork | None = None  # None: containers get no network sandbox


@dataclass(frozen=True)
class MonitorRecipe:
    """How the monitor template makes a :class:`MonitorContext`: ``builder`` is
    ``"module:function"``, called as ``function(arguments)`` in the template; ``arguments``
    is JSON data (it crosses the template's socket)."""

    exec_root: str
    builder: str
    arguments: dict[str, Any]


@dataclass
class PendingAttach:
    """An attach made before the container started: the monitor's end of a socket pair and
    the attach hello (:func:`~lamina.container.monitor.protocol.attach_hello`)."""

    sock: socket.socket
    options: dict[str, Any]
