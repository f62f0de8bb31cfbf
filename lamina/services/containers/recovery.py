"""After a crash, of a monitor or of the engine: what ``boot`` finds and mends.

:meth:`ContainerRecovery.boot` runs at an engine's (or the host's) restart (``lamina system
boot``, ``POST /lamina/system/boot``) and, with ``dead_monitors_only``, every second in
``lamina serve``'s supervisor: a run whose monitor died is recorded as exited (255) and what it
left released (:meth:`~.common.ContainerGroup._reconcile`); a container whose restart policy
asks for it is started again; an ``--rm`` container is removed when its monitor can no longer
do it: it died during the run, before its removal's commit point (the record says
``RemovalInProgress``: :meth:`ContainerRecovery._removal_interrupted`, which ``rm`` asks too),
or a reboot left it (:func:`~lamina.container.removal.left_by_a_reboot`).  A removal its
monitor began and died in after the commit point is finished by the start-up sweep
(:func:`lamina.container.removal.sweep`).
"""

from __future__ import annotations

from typing import Any

from lamina import errdefs
from lamina.container import joining
from lamina.container import spec as specs
from lamina.container.monitor import spawn
from lamina.container.removal import destroy, host_boot_time, left_by_a_reboot
from lamina.container.store import Container
from lamina.events.api import CONTAINER
from lamina.services.containers.common import MONITOR_GONE, ContainerGroup

__all__ = ["ContainerRecovery"]


def _monitor_died(state: dict[str, Any]) -> bool:
    """A run whose monitor died, recorded by whichever command noticed first."""
    return state.get("ExitCode") == 255 and state.get("Error") == MONITOR_GONE


class ContainerRecovery(ContainerGroup):
    """``boot`` and what it needs; the base of :class:`~.lifecycle.ContainerLifecycleImpl`."""

    def _removal_interrupted(self, container_id: str) -> bool:
        """A container marked ``RemovalInProgress`` whose remover died before the commit point
        (an ``--rm`` container's monitor, another ``rm``): no monitor lives and no removal holds
        the container's lock.  ``rm`` then finishes it, as dockerd does after its restart."""
        return (not self.monitors.alive(container_id)
                and not self.store.removal_in_progress(self.store.directory(container_id)))

    def boot(self, *, dead_monitors_only: bool = False) -> dict[str, Any]:
        """After an engine (or host) restart: record the runs whose monitor died, restart
        the containers whose policy says so, and remove the ``--rm`` containers the restart
        left behind (:func:`~lamina.container.removal.left_by_a_reboot`) or whose monitor died
        during their removal.  ``dead_monitors_only`` (the server's supervisor, while it runs):
        consider only containers recorded running whose monitor died and removals whose
        remover died, so that an ``always`` container stopped by hand stays stopped."""
        report: dict[str, Any] = {"Exited": [], "Restarted": [], "Removed": [], "Failed": []}
        for container in joining.start_order(self._boot_candidates(dead_monitors_only)):
            was_running = bool(container.state.get("Running"))
            monitor_died = _monitor_died(container.state)
            if container.state.get("RemovalInProgress") and not was_running:
                # an --rm container whose monitor died between its exit record and its removal
                if container.host_config.get("AutoRemove") and self._removal_interrupted(container.id):
                    self._remove_left(container, report)
                continue
            if dead_monitors_only and not (was_running or monitor_died):
                continue
            if was_running:
                if self.monitors.alive(container.id):
                    continue
                container = self._reconcile(container.id)
                report["Exited"].append(container.id)
                if container.host_config.get("AutoRemove"):
                    # its monitor would have removed it (a created one may be about to start:
                    # another process's `run --rm`; it is left alone)
                    self._remove_left(container, report)
                    continue
            name, _maximum = specs.restart_policy(container.host_config)
            manual = bool(container.data.get("HasBeenManuallyStopped"))
            if name == "always" or (name == "unless-stopped" and not manual) or \
                    (name == "on-failure" and (was_running or monitor_died) and not manual):
                if container.state.get("Running") or not container.data.get("HasBeenStartedBefore"):
                    continue
                try:
                    spawn(self.monitor_recipe, container.id, [],
                          runtime=str(container.host_config.get("Runtime") or self.default_runtime))
                    report["Restarted"].append(container.id)
                except errdefs.LaminaError as exc:
                    report["Failed"].append({"Id": container.id, "Error": str(exc)})
        if not dead_monitors_only:  # the --rm containers a reboot left: removed, as dockerd does
            for container_id in left_by_a_reboot(self.store, self.monitors.alive, host_boot_time()):
                self._remove_left(container_id, report)
        return report

    def _remove_left(self, container: Container | str, report: dict[str, Any]) -> None:
        """Remove an ``--rm`` container its monitor left (with its anonymous volumes), into
        ``report``'s ``Removed`` or ``Failed``."""
        container_id = container if isinstance(container, str) else container.id
        try:
            destroy(self.store, self.mounts, self.execs, self.exec_root, container_id, volumes=self.volumes,
                    remove_volumes=True)
        except errdefs.NotFound:
            return
        except errdefs.LaminaError as exc:
            report["Failed"].append({"Id": container_id, "Error": str(exc)})
            return
        if isinstance(container, str):
            self.events.emit(CONTAINER, "destroy", container_id, {})
        else:
            self._event(container, "destroy")
        report["Removed"].append(container_id)

    def _boot_candidates(self, dead_monitors_only: bool) -> list[Container]:
        """What :meth:`boot` looks at.  The server's supervisor asks every second: the listing
        (one index file, a ``stat`` per container) picks the containers recorded running, whose
        monitor died or being removed, and only those are read whole."""
        if not dead_monitors_only:
            return self.store.list()
        found = []
        for listed in self.store.listing():
            if listed.state.get("Running") or _monitor_died(listed.state) or listed.state.get("RemovalInProgress"):
                try:
                    found.append(self.store.get(listed.id))
                except (errdefs.NotFound, errdefs.DataLoss):
                    continue  # removed meanwhile, or damaged (skipped by listings too)
        return found
