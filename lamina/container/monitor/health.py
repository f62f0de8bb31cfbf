"""The monitor's healthcheck probes (the rules and the record: :mod:`lamina.container.health`).

While a run of a container with a healthcheck is up, :class:`HealthProbes` starts the probe's
command inside it (``runtime.exec``, as ``docker exec`` does; the monitor is its parent) one
interval after the start and one interval after each result, with stdout and stderr in one
pipe; it kills a probe that outlives its timeout (result ``-1``, Docker's "Health check
exceeded timeout" text).  Each result is written into ``State.Health`` of the container's
record (read-modify-write under the store's lock), and a change of status emits
``health_status: <status>``.  The monitor owns all of this: it goes on while ``lamina serve``
or the CLI that started the container restart.

A paused container's probe fails at once (``-1``, Docker's refusal of an exec), as its record
says ``Paused``.  Known gap: a probe whose start races with the freeze (between that check and
the exec joining the cgroup, a few ms) waits, with the monitor's loop, until the unpause.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable

from lamina import errdefs
from lamina.container import health as healthcheck
from lamina.container import spec as specs
from lamina.container.monitor.io import Loop
from lamina.container.monitor.launch import in_helper
from lamina.container.monitor.runs import Run, exit_code
from lamina.container.store import Container, ContainerStore
from lamina.log import get_logger
from lamina.records import dataclass, field
from lamina.runtime.api import Stdio

__all__ = ["HealthProbes"]

log = get_logger("lamina.monitor")


@dataclass
class _Running:
    """One probe process: its pid, output pipe, start (ns since the epoch) and deadline
    (monotonic)."""

    pid: int
    output_fd: int | None
    start: int
    deadline: float
    output: healthcheck.OutputBuffer = field(default_factory=healthcheck.OutputBuffer)
    status: int | None = None


class HealthProbes:
    """The healthcheck of the current run of one container.

    ``event(container, action)`` emits a container event."""

    def __init__(self, loop: Loop, store: ContainerStore, container_id: str,
                 event: Callable[[Container, str], None]) -> None:
        self.loop = loop
        self.store = store
        self.id = container_id
        self.event = event
        self.run: Run | None = None
        self.probe: healthcheck.Probe | None = None
        self.started_at = 0             # the run's start, ns since the epoch
        self.started = 0.0              # the same, monotonic
        self.due: float | None = None   # monotonic time of the next probe
        self.running: _Running | None = None
        self.status = ""

    # -- the run's side ---------------------------------------------------------------------------

    def begin(self, run: Run) -> None:
        """A run started: schedule its first probe (nothing without a healthcheck)."""
        self.run = run
        self.probe = healthcheck.probe_of(run.container.config)
        if self.probe is None:
            return
        self.started_at = time.time_ns()
        self.started = time.monotonic()
        self.status = healthcheck.STARTING
        self.due = self.started + healthcheck.next_interval(self.probe, {"Status": self.status}, 0) / 1e9

    def timeout(self) -> float | None:
        """Seconds until something is due (a probe to start or to time out); None: nothing."""
        moments = [moment for moment in (self.due, self.running.deadline if self.running else None)
                   if moment is not None]
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def tick(self) -> None:
        """Start the probe that is due, time out the one that outlived its timeout."""
        run = self.run
        if run is None or self.probe is None or run.status is not None:
            return
        current = time.monotonic()
        if self.running is not None and self.running.status is None and current >= self.running.deadline:
            self._timed_out(self.running)
        if self.running is None and self.due is not None and current >= self.due:
            self.due = None
            try:
                self._start(run, self.probe)
            except Exception:  # noqa: BLE001 - a probe's failure must never end the container's run
                log.exception("health check of %s failed", self.id)
                self.due = time.monotonic() + self.probe.interval / 1e9

    def reaped(self, pid: int, status: int) -> bool:
        """Record the wait status of ``pid``; False when it is no probe of ours."""
        probe = self.running
        if probe is None or probe.pid != pid:
            return False
        probe.status = status
        self._drain(probe)
        self._finish(probe, exit_code(status), probe.output.text())
        return True

    def end(self) -> None:
        """The run ended: stop probing (a probe still running is killed)."""
        probe = self.running
        if probe is not None:
            try:
                os.kill(probe.pid, signal.SIGKILL)
            except OSError:
                pass
            self._close_output(probe)
            self.running = None
        self.run = None
        self.probe = None
        self.due = None

    # -- one probe ---------------------------------------------------------------------------------

    def _start(self, run: Run, probe: healthcheck.Probe) -> None:
        start = time.time_ns()
        container = run.container
        try:
            paused = bool(self.store.get(self.id).state.get("Paused"))
        except errdefs.LaminaError:
            paused = False
        if paused:
            # as Docker's probe exec is refused: a frozen cgroup would hold the probe (and the
            # monitor's loop while it starts)
            self._record(healthcheck.ProbeResult(
                start=start, end=time.time_ns(), exit_code=-1,
                output=f"Container {self.id} is paused, unpause the container before exec"))
            return
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

        def start_probe() -> dict[str, int]:
            from lamina.runtime.user import resolve_user_in_root

            user = resolve_user_in_root(run.rootfs, str(container.config.get("User") or ""))
            process = specs.exec_process(container_id=self.id, config=container.config, host=container.host_config,
                                         exec_config={"Cmd": list(probe.command)}, user=user)
            return {"pid": run.runtime.exec(run.state, process, Stdio(null, write_end, write_end))}

        try:
            # in a helper, as a run's start (launch): the probe's process is handed to us
            pid = int(in_helper(start_probe, f"start the health check of {self.id}")["pid"])
        except (errdefs.LaminaError, OSError) as exc:
            os.close(read_end)
            log.warning("health check of %s could not start: %s", self.id, exc)
            self._record(healthcheck.ProbeResult(start=start, end=time.time_ns(), exit_code=-1, output=str(exc)))
            return
        finally:
            os.close(write_end)
            os.close(null)
        os.set_blocking(read_end, False)
        running = _Running(pid, read_end, start, time.monotonic() + probe.timeout / 1e9)
        self.running = running
        self.loop.on_read(read_end, lambda: self._output(running))

    def _output(self, probe: _Running) -> None:
        if probe.output_fd is None:
            return
        try:
            data = os.read(probe.output_fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("reading a health probe's output: %s", exc)
            data = b""
        if data:
            probe.output.write(data)
        else:
            self._close_output(probe)

    def _drain(self, probe: _Running) -> None:
        # what is in the pipe now; what a background child of the probe writes later is not waited for
        while probe.output_fd is not None and _readable(probe.output_fd):
            self._output(probe)
        self._close_output(probe)

    def _close_output(self, probe: _Running) -> None:
        if probe.output_fd is not None:
            self.loop.forget(probe.output_fd)
            os.close(probe.output_fd)
            probe.output_fd = None

    def _timed_out(self, probe: _Running) -> None:
        try:
            os.kill(probe.pid, signal.SIGKILL)
        except OSError:
            pass
        assert self.probe is not None
        self._drain(probe)
        self._finish(probe, -1, f"Health check exceeded timeout ({healthcheck.go_duration(self.probe.timeout)})")

    def _finish(self, probe: _Running, code: int, output: str) -> None:
        if self.running is not probe:
            return
        self.running = None  # one killed at its timeout is reaped by the monitor as any other child
        self._record(healthcheck.ProbeResult(start=probe.start, end=time.time_ns(), exit_code=code, output=output))

    def _record(self, result: healthcheck.ProbeResult) -> None:
        probe = self.probe
        if probe is None:
            return
        changed: list[Container] = []

        def change(container: Container) -> None:
            container.state["Health"] = healthcheck.record_result(container.state.get("Health"), result, probe,
                                                                 self.started_at)
            changed.append(container)

        try:
            with self.store.modify(self.id) as container:
                change(container)
        except errdefs.LaminaError as exc:
            log.warning("cannot record the health of %s: %s", self.id, exc)
            return
        health = changed[0].state["Health"]
        if health["Status"] != self.status:
            self.status = health["Status"]
            self.event(changed[0], f"health_status: {self.status}")
        since_start = time.time_ns() - self.started_at
        self.due = time.monotonic() + healthcheck.next_interval(probe, health, since_start) / 1e9


def _readable(fd: int) -> bool:
    import select

    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)
