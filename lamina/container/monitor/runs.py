"""One run of a container, and what the :class:`~lamina.container.monitor.run.Runner` needs of
its monitor (:class:`RunHost`) and of the monitor's exec sessions and healthcheck probes.

Apart from the runner so that the monitor's parts that see a run (execs, health) do not load
the runner's start and exit code.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from lamina.container.execstore import ExecStore
from lamina.container.logs import JsonFileWriter
from lamina.container.monitor.api import MonitorContext
from lamina.container.monitor.io import Loop, Sink
from lamina.container.monitor.launch import SpareHelper
from lamina.container.rundir import RunDirectory, RunLock
from lamina.container.store import Container, ContainerStore
from lamina.events.api import EventSink
from lamina.layer.mounts import MountStore
from lamina.records import dataclass, field
from lamina.runtime.api import Runtime, RuntimeState

__all__ = ["DRAIN_SECONDS", "ExecFinisher", "HealthChecker", "Run", "RunHost", "exit_code"]

DRAIN_SECONDS = 2.0          # output still arriving after a process exited


def exit_code(status: int) -> int:
    """Docker's exit code of a wait status: 128 + n for signal n."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of the container (between a start and its exit)."""

    container: Container
    runtime: Runtime
    state: RuntimeState
    rootfs: str
    tty: bool
    master: int | None
    sink: Sink | None
    sources: dict[int, int] = field(default_factory=dict)   # fd -> STDOUT / STDERR
    started: float = field(default_factory=time.monotonic)
    status: int | None = None
    exited_at: float = 0.0


class ExecFinisher(Protocol):
    def __bool__(self) -> bool:
        """Whether execs are running."""

    def finish(self, *, force: bool) -> None:
        """Record the end of the execs that exited (all of them with ``force``)."""


class HealthChecker(Protocol):
    def begin(self, run: Run) -> None:
        """A run started: its healthcheck begins."""

    def timeout(self) -> float | None:
        """Seconds until a probe is due (None: none is)."""

    def tick(self) -> None:
        """Start or time out the probes that are due."""

    def end(self) -> None:
        """The run ended: no more probes."""


class RunHost(Protocol):
    """What :class:`Runner` needs of its monitor: its stores, the event loop and the clients,
    the answer to the starter, the exit record, the execs, the healthcheck."""

    id: str
    context: MonitorContext
    store: ContainerStore
    mounts: MountStore
    execs: ExecStore
    run_dir: RunDirectory
    run_lock: RunLock | None
    loop: Loop
    writer: JsonFileWriter | None
    events: EventSink
    sessions: ExecFinisher
    health: HealthChecker
    run: Run | None
    spare_helper: SpareHelper | None

    def event(self, container: Container, action: str, extra: dict[str, str] | None = None) -> None:
        """Emit a container event."""

    def answer(self, answer: dict[str, Any]) -> None:
        """Answer the starter (the first run started, or could not)."""

    def attach_pending(self) -> None:
        """Connect the attaches made before the first run started."""

    def deliver(self, stream_type: int, data: bytes) -> None:
        """The container's output, to the attached clients."""

    def reap(self) -> None:
        """Reap the exited children."""

    def dismiss_spare_helper(self) -> None:
        """A spare helper not used: it undoes what it prepared and exits (waited for)."""

    def close_clients(self) -> None:
        """The run ended: flush and close its clients."""

    def close_listeners(self) -> None:
        """No more runs: close the sockets."""
