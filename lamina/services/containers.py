"""The container service: Docker's container endpoints on top of the container store, the
read-write layers, the per-container monitors and the runtimes.

State lives in three places (see each module's docstring): the record in
``<data-root>/containers/<id>/`` (:mod:`lamina.container.store`), the read-write layer in
``layerdb/mounts/<id>`` (:mod:`lamina.layer.mounts`), and the run-time state under
``<exec-root>/containers/<id>/`` (:mod:`lamina.container.rundir`), which the container's monitor
(:mod:`lamina.container.monitor`) owns while it lives.  This service never waits for a
container by polling its record: it takes the monitor's ``running.lock`` (see
:class:`~lamina.container.rundir.RunLock`).

A record that says Running while no monitor holds ``monitor.lock`` belongs to a monitor that
died (a crash, a reboot, ``kill -9``): the first operation that meets it releases what the run
left (processes in its cgroup, the rootfs mount, the cgroups) and records the container as
exited with code 255, as Docker does for containers it finds dead at start-up.  :meth:`boot`
does this for every container and restarts those with the restart policy ``always`` (and
``unless-stopped`` when not stopped by hand).

Events (Docker's, type ``container``, see :mod:`lamina.events.message` for the attributes):
this service emits ``create``, ``attach``, ``kill`` (``signal``, for every signal sent),
``stop``, ``restart``, ``pause``, ``unpause``, ``rename`` (``oldName``), ``resize``,
``update``, ``commit``, ``destroy``, ``prune``, and ``die`` (255) for a run whose monitor
died; the monitor emits ``start``, ``oom``, ``die`` and the ``destroy`` of ``--rm``.
"""

from __future__ import annotations

import json
import os
import re
import signal as signals
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from lamina import errdefs, fsutil
from lamina.config import EngineConfig
from lamina.container import spec as specs
from lamina.container.execstore import ExecStore
from lamina.container.logs import read_logs
from lamina.container.monitor import MonitorContext, PendingAttach, spawn
from lamina.container.names import random_name, validate_name
from lamina.container.removal import destroy, release_mount, sweep
from lamina.container.rundir import ExitInfo, RunDirectory, RunLock, connect_unix
from lamina.container.state import (
    ZERO_TIME,
    new_state,
    now,
    seconds_of,
    status,
    status_text,
)
from lamina.container.store import Container, ContainerStore, new_container_id
from lamina.digest import Digest
from lamina.events.api import CONTAINER, DISCARD, EventSink
from lamina.events.message import container_attributes
from lamina.image.config import (
    EMPTY_LAYER_DIFF_ID,
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    new_child_config,
)
from lamina.image.reference import parse_normalized_named, with_default_tag
from lamina.layer.mounts import INIT_PATHS, MountStore
from lamina.log import get_logger
from lamina.network.run import RunNetwork
from lamina.runtime.api import Runtime, RuntimeState
from lamina.runtime.registry import Runtimes
from lamina.services.images import ImageServiceImpl, all_labels_match
from lamina.volume.mounts import (
    inspect_mounts,
    mount_points_json,
    populate_volumes,
    release_mounts,
    resolve_mounts,
    volume_names,
)

__all__ = ["ContainerServiceImpl"]

log = get_logger("lamina.services")

_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "before", "since", "health",
                 "network", "volume", "publish", "expose", "isolation", "is-task")
_KILL_WAIT = 10.0
_AFTER_SIGKILL_WAIT = 30.0
# how often a wait for a container to stop looks for a restart that raced with the stop
_RECHECK_SECONDS = 0.5
_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}
# paths the runtime mounts over (their copy-ups are not the user's changes)
_MOUNT_TARGETS = {"/" + path for path, kind, _ in INIT_PATHS if kind == "file"}
_INIT_DIRECTORIES = {"/" + path for path, kind, _ in INIT_PATHS if kind == "dir"} | {"/"}


def _network_settings(mode: str, requested: dict[str, Any] | None = None) -> dict[str, Any]:
    """NetworkSettings of a created container: per network, what create was given (Aliases,
    IPAMConfig, MacAddress), as Docker keeps it; the monitor's run reads it back."""
    network = "bridge" if mode in ("default", "bridge") else mode
    networks = {}
    for name in [network, *(name for name in (requested or {}) if name not in (network, "default"))]:
        given = (requested or {}).get(name) or {}
        networks[name] = {"IPAMConfig": given.get("IPAMConfig") or None, "Links": None,
                          "Aliases": given.get("Aliases") or None, "MacAddress": given.get("MacAddress") or "",
                          "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                          "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None,
                          "DNSNames": None}
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks}


def _short(identifier: str) -> str:
    return identifier.split(":", 1)[-1][:12]


class ContainerServiceImpl:
    def __init__(self, *, config: EngineConfig, images: ImageServiceImpl, mounts: MountStore,
                 store: ContainerStore, execs: ExecStore, default_runtime: str = "native",
                 volumes: Any = None, events: EventSink = DISCARD) -> None:
        self.config = config
        self.images = images
        self.mounts = mounts
        self.volumes = volumes  # the VolumeService (None: containers get no volumes or binds)
        self.store = store
        self.execs = execs
        self.exec_root = config.exec_root
        self.default_runtime = default_runtime
        self.events = events
        self._pending: dict[str, list[PendingAttach]] = {}
        self._pending_lock = threading.Lock()
        self._runtimes = Runtimes(self.exec_root)
        self.network = RunNetwork(config.data_root, self.exec_root, events=events)
        self.context = MonitorContext(store=store, mounts=mounts, execs=execs, exec_root=self.exec_root,
                                      runtime=self.runtime, volumes=volumes, events=events, network=self.network)

    # -- plumbing ------------------------------------------------------------------------------

    def _check_networks(self, config: dict[str, Any], host: dict[str, Any],
                        networking: dict[str, Any]) -> dict[str, Any]:
        """The requested endpoints by network name, checked (unknown networks, bad ports,
        aliases or addresses are refused before anything is created)."""
        from lamina.network.run import check

        endpoints = networking.get("EndpointsConfig") or {}
        if not isinstance(endpoints, dict):
            raise errdefs.InvalidArgument("NetworkingConfig.EndpointsConfig must be an object")
        mode = str(host.get("NetworkMode") or "default")
        needs_store = mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")
        needs_store = needs_store or any(name not in ("default", "bridge", mode) for name in endpoints)
        check(config, host, networking,
              find_network=self.network.sandboxes.store.get if needs_store or endpoints else None)
        return dict(endpoints)

    def runtime(self, name: str) -> Runtime:
        """The runtime called ``name`` (:mod:`lamina.runtime.registry`), opened once."""
        return self._runtimes.get(name)

    def _event(self, container: Container, action: str, extra: dict[str, str] | None = None) -> None:
        self.events.emit(CONTAINER, action, container.id, container_attributes(container.config, container.name, extra))

    def _run_dir(self, container_id: str) -> RunDirectory:
        return RunDirectory(self.exec_root, container_id)

    def _get(self, reference: str) -> Container:
        """The container, with a dead monitor's run recorded as ended."""
        container = self.store.lookup(reference)
        if container.state.get("Running") and not self._run_dir(container.id).monitor_alive():
            container = self._reconcile(container.id)
        return container

    def _reconcile(self, container_id: str) -> Container:
        """Record the end of a run whose monitor died, releasing what it left."""
        run_dir = self._run_dir(container_id)
        with self.store.modify(container_id) as container:
            if not container.state.get("Running") or run_dir.monitor_alive():
                return container
            state = run_dir.read_runtime_state()
            error = ""
            if state is not None:
                error = self._release_dead_run(state)
            release_mount(self.mounts, container_id)
            self._unmount_volumes(container)
            self.network.detach(container_id)
            run_dir.clear_runtime_state()
            container.state.update(Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=255,
                                   FinishedAt=now(), Error=error or "the container's monitor exited unexpectedly",
                                   Dead=bool(error))
            self.execs.remove_for_container(container_id)
            log.warning("container %s: its monitor is gone; recorded it as exited (255)", container_id)
        self._event(container, "die", {"exitCode": "255"})
        try:
            run_lock = run_dir.run_lock()
        except errdefs.LaminaError:
            return container
        try:
            previous = run_lock.read()
            run_lock.write(ExitInfo(sequence=previous.sequence + 1, exit_code=255, error=container.state["Error"]))
        finally:
            run_lock.close()
        return container

    def _unmount_volumes(self, container: Container) -> None:
        """Drop the volume mounts a run held (volumes with driver options)."""
        if self.volumes is None:
            return
        for name in volume_names(container.data.get("MountPoints")):
            try:
                self.volumes.unmount(name, container.id)
            except errdefs.LaminaError as exc:
                log.warning("unmounting volume %s of %s: %s", name, container.id, exc)

    def _volumes_from(self, reference: str) -> dict[str, Any]:
        """The MountPoints of the container named by ``--volumes-from``."""
        return dict(self.store.lookup(reference).data.get("MountPoints") or {})

    def _mount_volumes(self, container_id: str, merged: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
        """Resolve the container's mounts (volumes created and referenced), copy the image's
        files into empty volumes, and return the MountPoints for config.v2.json."""
        if self.volumes is None:
            if host.get("Binds") or host.get("Mounts") or host.get("VolumesFrom") or merged.get("Volumes"):
                raise errdefs.NotImplemented("volumes and bind mounts need the volume service")
            return {}
        resolved = resolve_mounts(merged, host, None, self.volumes, container_id, volumes_from=self._volumes_from)
        mount_points = mount_points_json(resolved)
        try:
            if any(item.copy_data for item in resolved):
                rootfs = self.mounts.mount(container_id)
                try:
                    populate_volumes(resolved, rootfs, self.volumes, container_id)
                finally:
                    self.mounts.unmount(container_id)
        except BaseException:
            release_mounts(mount_points, self.volumes, container_id, remove_anonymous=True)
            raise
        return mount_points

    def _release_dead_run(self, state: RuntimeState) -> str:
        try:
            for _attempt in range(100):
                try:
                    self.runtime(state.runtime).delete(state, force=True)
                    return ""
                except errdefs.Conflict:
                    time.sleep(0.02)
            return "processes of the container remain in its cgroup"
        except errdefs.LaminaError as exc:
            return f"cannot release the container's runtime state: {exc}"

    def _runtime_state(self, container: Container) -> RuntimeState:
        if not container.state.get("Running") or container.state.get("Restarting"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        state = self._run_dir(container.id).read_runtime_state()
        if state is None:
            raise errdefs.Conflict(f"Container {container.id} is not running")
        return state

    def _last_sequence(self, container_id: str) -> tuple[RunLock, int]:
        run_lock = self._run_dir(container_id).run_lock()
        return run_lock, run_lock.read().sequence

    def _wait_exit(self, container_id: str, run_lock: RunLock, after: int, timeout: float | None) -> ExitInfo | None:
        run_dir = self._run_dir(container_id)

        def give_up() -> bool:
            try:
                container = self.store.get(container_id)
            except errdefs.NotFound:
                return True
            if not container.state.get("Running"):
                return True
            if not run_dir.monitor_alive():
                self._reconcile(container_id)
                return True
            return False

        return run_lock.wait_exit(after, timeout=timeout, give_up=give_up)

    def image_usage(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of every container created from ``image_id``."""
        return [(c.id, bool(c.state.get("Running"))) for c in self.store.list() if c.data.get("Image") == image_id]

    # -- create --------------------------------------------------------------------------------

    def create(self, body: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        config_in, host_in, networking = specs.split_create_body(body)
        image_name = str(config_in.get("Image") or "")
        if not image_name:
            raise errdefs.InvalidArgument("No image specified: Config.Image is empty")
        config = specs.normalize_config(config_in)
        if name:
            validate_name(name)
        image_id = self.images.resolve(image_name)
        image_config = self.images.images.get_config(image_id)
        merged = specs.merge_image_config(config, image_config.config.to_dict() if image_config.config else None)
        specs.validate_config(merged)
        host, warnings = specs.normalize_host_config(host_in, default_runtime=self.default_runtime,
                                                     runtimes=self._runtime_names())
        mode = host.get("NetworkMode") or "default"
        endpoints = self._check_networks(merged, host, networking)
        container_id = new_container_id()
        if not merged.get("Hostname"):
            merged["Hostname"] = socket.gethostname() if specs.network_mode(host) == "host" else container_id[:12]
        path, args = specs.entrypoint_and_args(merged)
        data: dict[str, Any] = {
            "StreamConfig": {},
            "State": new_state(),
            "ID": container_id,
            "Created": now(),
            "Managed": False,
            "Path": path,
            "Args": args,
            "Config": merged,
            "Image": str(image_id),
            "ImageManifest": None,
            "NetworkSettings": _network_settings(mode, endpoints),
            "LogPath": "",
            "Name": "",
            "Driver": self.mounts.driver.name,
            "OS": "linux",
            "RestartCount": 0,
            "HasBeenStartedBefore": False,
            "HasBeenManuallyStopped": False,
            "MountPoints": {},
            "SecretReferences": None,
            "ConfigReferences": None,
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "SeccompProfile": "",
            "NoNewPrivileges": False,
            "HostnamePath": "",
            "HostsPath": "",
            "ShmPath": "",
            "ResolvConfPath": "",
            "LocalLogCacheMeta": {"HaveNotifyEnabled": False},
        }
        top = image_config.chain_id()
        lock = self.images.layers.lock(shared=True)
        try:
            self.mounts.create(container_id, str(top) if top else None)
            try:
                data["MountPoints"] = self._mount_volumes(container_id, merged, host)
            except BaseException:
                self.mounts.remove(container_id)
                raise
            try:
                for attempt in range(10):
                    data["Name"] = validate_name(name) if name else "/" + random_name(attempt)
                    try:
                        self.store.create(Container(data, host))
                        break
                    except errdefs.Conflict:
                        if name or attempt == 9:
                            raise
            except BaseException:
                self.mounts.remove(container_id)
                if self.volumes is not None:
                    release_mounts(data["MountPoints"], self.volumes, container_id, remove_anonymous=True)
                raise
        finally:
            lock.release()
        self.events.emit(CONTAINER, "create", container_id, container_attributes(merged, data["Name"]))
        return {"Id": container_id, "Warnings": warnings}

    def _runtime_names(self) -> tuple[str, ...]:
        return self._runtimes.names()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, id: str) -> None:
        container = self._get(id)
        state = container.state
        if state.get("Running"):
            if state.get("Paused"):
                raise errdefs.Conflict("cannot start a paused container, try unpause instead")
            return
        if state.get("RemovalInProgress"):
            raise errdefs.Conflict("container is marked for removal and cannot be started")
        with self.store.modify(container.id) as record:
            record.data["HasBeenManuallyStopped"] = False
            record.data["RestartCount"] = 0
        # loaded here, the runtime (its modules, cached profiles) is inherited by the monitor:
        # a long-running server pays for it once
        self.runtime(str(container.host_config.get("Runtime") or self.default_runtime))
        with self._pending_lock:
            pending = self._pending.pop(container.id, [])
        spawn(self.context, container.id, pending)

    def _signal(self, container: Container, number: int) -> None:
        """Send ``number`` to the container's process, if it still has one.

        ``container`` was read as running a moment ago.  Its process may have exited since:
        the monitor clears ``runtime.json`` before it records the exit, so a missing runtime
        state, like a runtime that no longer knows the process, means the run is ending and
        there is nothing to signal (as Docker, which ignores "no such process" here)."""
        try:
            state = self._runtime_state(container)
        except errdefs.Conflict:
            if not container.state.get("Running") or container.state.get("Restarting"):
                raise
            return  # it exited meanwhile
        try:
            self.runtime(state.runtime).kill(state, number)
        except errdefs.Conflict:
            return  # it exited meanwhile
        except errdefs.NotFound:
            return
        self._event(container, "kill", {"signal": str(number)})

    def _set_manually_stopped(self, container_id: str) -> None:
        with self.store.modify(container_id) as record:
            record.data["HasBeenManuallyStopped"] = True

    def _resume_if_paused(self, container: Container) -> None:
        if container.state.get("Paused"):
            state = self._run_dir(container.id).read_runtime_state()
            if state is not None:
                try:
                    self.runtime(state.runtime).resume(state)
                except errdefs.LaminaError as exc:
                    log.warning("container %s: cannot resume: %s", container.id, exc)
            with self.store.modify(container.id) as record:
                record.state["Paused"] = False

    def _stop(self, container: Container, *, timeout: int | None, signal: str | None) -> None:
        run_lock, after = self._last_sequence(container.id)
        try:
            self._set_manually_stopped(container.id)
            if container.state.get("Restarting"):
                restarted, after = self._wait_restart_abandoned(container.id, run_lock, after)
                if restarted is None:
                    return
                container = restarted
            number = specs.parse_signal(signal) if signal else specs.stop_signal(container.config)
            wait = timeout if timeout is not None else specs.stop_timeout(container.config)
            self._signal(container, number)
            self._resume_if_paused(container)
            if number != signals.SIGKILL and wait != 0:
                if self._wait_exit(container.id, run_lock, after, timeout=None if wait < 0 else wait) is not None:
                    return
                log.info("container %s did not stop within %d s: killing it", container.id, wait)
            self._kill_until_exited(container.id, run_lock, after)
        finally:
            run_lock.close()

    def _wait_restart_abandoned(self, container_id: str, run_lock: RunLock,
                                after: int) -> tuple[Container | None, int]:
        """Wait until the monitor of a restarting container, now marked as manually stopped,
        gives up restarting it: (None, ...) once the end of the run is published; (the
        container's record, the Sequence of the last exit) if the monitor restarted it all
        the same (it was starting the next run when the mark came)."""
        deadline = time.monotonic() + _AFTER_SIGKILL_WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errdefs.System(f"container {container_id} did not stop restarting")
            info = self._wait_exit(container_id, run_lock, after, timeout=min(remaining, _RECHECK_SECONDS))
            if info is not None:
                after = info.sequence
            try:
                container = self.store.get(container_id)
            except errdefs.NotFound:
                return None, after
            if not container.state.get("Running"):
                # recorded; wait for the monitor to publish it (at once if it did)
                self._wait_exit(container_id, run_lock, after, timeout=max(0.0, deadline - time.monotonic()))
                return None, after
            if not container.state.get("Restarting"):
                return container, after

    def _kill_until_exited(self, container_id: str, run_lock: RunLock, after: int) -> None:
        """SIGKILL the container's process if it still runs and wait for the monitor to
        record the end of the run.

        The container is marked as manually stopped, so its monitor restarts it no more;
        but a run that ended just before the mark may be being restarted: while it waits,
        this kills each new run it sees and waits for the monitor to give up restarting."""
        killed_run: Any = None  # the StartedAt of the run this signalled
        deadline = time.monotonic() + _AFTER_SIGKILL_WAIT
        while True:
            try:
                container = self.store.get(container_id)
            except errdefs.NotFound:
                return  # removed meanwhile (--rm)
            state = container.state
            if not state.get("Running"):
                # recorded; wait for the monitor to publish it (at once if it did)
                self._wait_exit(container_id, run_lock, after, timeout=max(0.0, deadline - time.monotonic()))
                return
            if not state.get("Restarting") and state.get("StartedAt") != killed_run:
                self._signal(container, signals.SIGKILL)
                killed_run = state.get("StartedAt")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errdefs.System(f"container {container_id} did not exit after SIGKILL")
            info = self._wait_exit(container_id, run_lock, after, timeout=min(remaining, _RECHECK_SECONDS))
            if info is not None:
                after = info.sequence

    def _still_running(self, container_id: str) -> bool:
        try:
            return bool(self.store.get(container_id).state.get("Running"))
        except errdefs.NotFound:
            return False

    def stop(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._get(id)
        if not container.state.get("Running"):
            return  # Docker answers 304: nothing to do
        self._stop(container, timeout=timeout, signal=signal)
        self._event(container, "stop")

    def restart(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._get(id)
        if container.state.get("Running"):
            self._stop(container, timeout=timeout, signal=signal)
            self._event(container, "stop")
        self.start(container.id)
        self._event(container, "restart")

    def kill(self, id: str, *, signal: str = "SIGKILL") -> None:
        number = specs.parse_signal(signal or "SIGKILL")
        container = self._get(id)
        if not container.state.get("Running"):
            raise errdefs.Conflict(f"Cannot kill container: {id}: Container {container.id} is not running")
        stop_number = specs.stop_signal(container.config)
        if number in (signals.SIGKILL, stop_number):
            self._set_manually_stopped(container.id)
        if container.state.get("Restarting"):
            return  # no process: the manual stop ends the restarts
        if number != signals.SIGKILL:
            self._signal(container, number)
            return
        run_lock, after = self._last_sequence(container.id)
        try:
            self._signal(container, number)
            self._resume_if_paused(container)
            self._wait_exit(container.id, run_lock, after, timeout=_KILL_WAIT)
        finally:
            run_lock.close()

    def remove(self, id: str, *, force: bool = False, volumes: bool = False) -> None:
        container = self._get(id)
        state = container.state
        if state.get("RemovalInProgress"):
            raise errdefs.Conflict(f"removal of container {container.id} is already in progress")
        if state.get("Running"):
            if not force:
                if state.get("Paused"):
                    raise errdefs.Conflict(
                        f"You cannot remove a paused container {container.id}. Unpause and then stop the container "
                        f"before attempting removal or force remove")
                raise errdefs.Conflict(
                    f"You cannot remove a running container {container.id}. Stop the container before attempting "
                    f"removal or force remove")
            try:
                # a process that exits meanwhile is not an error: the container is removed
                self._stop(container, timeout=0, signal="SIGKILL")
            except errdefs.NotFound:
                return  # removed meanwhile (--rm): its remover reported it
        with self._pending_lock:
            for item in self._pending.pop(container.id, []):
                item.sock.close()
        try:
            destroy(self.store, self.mounts, self.execs, self.exec_root, container.id, volumes=self.volumes,
                    remove_volumes=volumes)
        except errdefs.NotFound:
            return  # removed meanwhile (--rm): its remover reported it
        self._event(container, "destroy")

    def wait(self, id: str, *, condition: str = "not-running") -> dict[str, Any]:
        if condition not in ("not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f"invalid condition: {condition!r}")
        container = self._get(id)
        container_id = container.id
        if condition == "not-running" and not container.state.get("Running"):
            return self._wait_answer(container.state.get("ExitCode", 0), container.state.get("Error"))
        run_lock, after = self._last_sequence(container_id)
        try:
            if condition == "not-running":
                info = self._wait_exit(container_id, run_lock, after, timeout=None)
            else:
                info = run_lock.wait_exit(after, give_up=lambda: self._gone_or_dead(container_id))
        finally:
            run_lock.close()
        exit_code = info.exit_code if info is not None else None
        error = info.error if info is not None else ""
        if condition == "removed" and not (info is not None and info.removed):
            while self.store.exists(container_id):
                time.sleep(0.05)
        if exit_code is None:
            try:
                record = self.store.get(container_id)
                exit_code, error = record.state.get("ExitCode", 0), record.state.get("Error")
            except errdefs.NotFound:
                exit_code = container.state.get("ExitCode", 0)
        return self._wait_answer(exit_code, error)

    def _gone_or_dead(self, container_id: str) -> bool:
        try:
            container = self.store.get(container_id)
        except errdefs.NotFound:
            return True
        if container.state.get("Running") and not self._run_dir(container_id).monitor_alive():
            self._reconcile(container_id)
            return True
        return False

    @staticmethod
    def _wait_answer(exit_code: Any, error: Any) -> dict[str, Any]:
        return {"StatusCode": int(exit_code or 0), "Error": {"Message": str(error)} if error else None}

    # -- reading -------------------------------------------------------------------------------

    def _image_name(self, container: Container, resolved: dict[str, str] | None = None) -> str:
        """What ``ps`` shows in IMAGE: the name used at create while it still names the image
        (``resolved`` caches name lookups over one listing)."""
        name = str(container.config.get("Image") or "")
        image_id = str(container.data.get("Image") or "")
        cache = resolved if resolved is not None else {}
        if name and name not in cache:
            try:
                cache[name] = str(self.images.resolve(name))
            except errdefs.LaminaError:
                cache[name] = ""
        if name and cache[name] == image_id:
            return name
        return _short(image_id)

    def _command(self, container: Container) -> str:
        parts = [str(container.data.get("Path") or ""), *(str(a) for a in container.data.get("Args") or [])]
        return " ".join(part for part in parts if part != "" or len(parts) == 1)

    def _sizes(self, container: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs); cached for stopped containers (their layer does not change)."""
        cache_path = os.path.join(self.store.directory(container.id), "sizes.json")
        key = f"{container.state.get('FinishedAt')}|{container.state.get('StartedAt')}"
        running = bool(container.state.get("Running"))
        if not running:
            try:
                from lamina.fsutil import read_json

                cached = read_json(cache_path)
                if cached.get("Key") == key:
                    return int(cached["SizeRw"]), int(cached["SizeRootFs"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        try:
            size_rw = self.mounts.size(container.id)
        except errdefs.LaminaError:
            size_rw = 0
        image_size = 0
        try:
            layer = self.mounts.get(container.id)
            if layer.parent is not None:
                image_size = sum(item.size for item in self.images.layers.chain(layer.parent))
        except errdefs.LaminaError:
            pass
        if not running:
            try:
                from lamina.fsutil import atomic_write_json

                atomic_write_json(cache_path, {"Key": key, "SizeRw": size_rw, "SizeRootFs": size_rw + image_size},
                                  mode=0o600)
            except OSError:
                pass
        return size_rw, size_rw + image_size

    def _summary(self, container: Container, *, size: bool, resolved: dict[str, str] | None = None) -> dict[str, Any]:
        state = container.state
        summary: dict[str, Any] = {
            "Id": container.id,
            "Names": [container.name],
            "Image": self._image_name(container, resolved),
            "ImageID": container.data.get("Image") or "",
            "Command": self._command(container),
            "Created": int(seconds_of(container.data.get("Created"))),
            "Ports": [],
            "Labels": container.config.get("Labels") or {},
            "State": status(state),
            "Status": status_text(state),
            "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": (container.data.get("NetworkSettings") or {}).get("Networks") or {}},
            "Mounts": self._mounts_view(container),
        }
        if size:
            summary["SizeRw"], summary["SizeRootFs"] = self._sizes(container)
        return summary

    def _mounts_view(self, container: Container) -> list[dict[str, Any]]:
        """Docker's ``Mounts``: one entry per mount point (``--tmpfs`` ones are not listed)."""
        return inspect_mounts(container.data.get("MountPoints"))

    def _matches(self, container: Container, filters: dict[str, list[str]],
                 before: float | None, since: float | None, ancestors: set[str] | None) -> bool:
        state = container.state
        if filters.get("id") and not any(container.id.startswith(value) for value in filters["id"]):
            return False
        if filters.get("name"):
            names = (container.name, container.name.lstrip("/"))
            if not any(re.search(pattern, name) for pattern in filters["name"] for name in names):
                return False
        if filters.get("label") and not all_labels_match(container.config.get("Labels") or {}, filters["label"]):
            return False
        if filters.get("status") and status(state) not in filters["status"]:
            return False
        if filters.get("exited"):
            if status(state) != "exited" or str(state.get("ExitCode")) not in filters["exited"]:
                return False
        if ancestors is not None and container.data.get("Image") not in ancestors:
            return False
        created = seconds_of(container.data.get("Created"))
        if before is not None and created >= before:
            return False
        if since is not None and created <= since:
            return False
        if filters.get("health"):
            health = (state.get("Health") or {}).get("Status") or "none"
            if health not in filters["health"]:
                return False
        if filters.get("network"):
            networks = set((container.data.get("NetworkSettings") or {}).get("Networks") or {})
            if not networks & set(filters["network"]):
                return False
        if filters.get("volume") or filters.get("publish") or filters.get("expose"):
            return False  # no volumes or published ports yet
        return True

    def _ancestors(self, names: list[str]) -> set[str]:
        """Image ids whose containers match ``ancestor=``: the named images and their children."""
        wanted: set[str] = set()
        for name in names:
            try:
                wanted.add(str(self.images.resolve(name)))
            except errdefs.NotFound:
                continue
        result = set(wanted)
        for image_id in self.images.images.ids():
            current: str | None = str(image_id)
            seen = 0
            while current is not None and seen < 256:
                if current in wanted:
                    result.add(str(image_id))
                    break
                parent = self.images.images.get_parent(current)
                current = str(parent) if parent else None
                seen += 1
        return result

    def list_containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                        filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = {key: list(values) for key, values in (filters or {}).items()}
        for key in filters:
            if key not in _LIST_FILTERS:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        for value in filters.get("status", []):
            if value not in _STATUSES:
                raise errdefs.InvalidArgument(f"invalid filter 'status={value}'")
        for value in filters.get("exited", []):
            if not value.lstrip("-").isdigit():
                raise errdefs.InvalidArgument(f"invalid filter 'exited={value}'")
        show_all = all or bool(filters.get("status")) or bool(filters.get("exited")) or limit > 0
        before = since = None
        if filters.get("before"):
            before = seconds_of(self._get(filters["before"][0]).data.get("Created"))
        if filters.get("since"):
            since = seconds_of(self._get(filters["since"][0]).data.get("Created"))
        ancestors = self._ancestors(filters["ancestor"]) if filters.get("ancestor") else None
        containers = []
        for container in self.store.list():
            if container.state.get("Running") and not self._run_dir(container.id).monitor_alive():
                try:
                    container = self._reconcile(container.id)
                except errdefs.NotFound:
                    continue
            if not show_all and not container.state.get("Running"):
                continue
            if self._matches(container, filters, before, since, ancestors):
                containers.append(container)
        containers.sort(key=lambda c: (c.data.get("Created") or "", c.id), reverse=True)
        if limit > 0:
            containers = containers[:limit]
        resolved: dict[str, str] = {}
        return [self._summary(container, size=size, resolved=resolved) for container in containers]

    def inspect(self, id: str, *, size: bool = False) -> dict[str, Any]:
        container = self._get(id)
        data = container.data
        state = container.state
        state_view = {"Status": status(state), "Running": bool(state.get("Running")),
                      "Paused": bool(state.get("Paused")), "Restarting": bool(state.get("Restarting")),
                      "OOMKilled": bool(state.get("OOMKilled")), "Dead": bool(state.get("Dead")),
                      "Pid": int(state.get("Pid") or 0), "ExitCode": int(state.get("ExitCode") or 0),
                      "Error": str(state.get("Error") or ""), "StartedAt": state.get("StartedAt") or ZERO_TIME,
                      "FinishedAt": state.get("FinishedAt") or ZERO_TIME}
        if state.get("Health"):
            state_view["Health"] = state["Health"]
        graph_data: dict[str, str] | None = None
        try:
            layer = self.mounts.get(container.id)
            graph_data = dict(self.mounts.driver.metadata(layer.mount_id))
        except errdefs.LaminaError:
            graph_data = None
        exec_ids = [record["ID"] for record in self.execs.for_container(container.id)]
        result: dict[str, Any] = {
            "Id": container.id,
            "Created": data.get("Created"),
            "Path": data.get("Path"),
            "Args": data.get("Args") or [],
            "State": state_view,
            "Image": data.get("Image"),
            "ResolvConfPath": data.get("ResolvConfPath") or "",
            "HostnamePath": data.get("HostnamePath") or "",
            "HostsPath": data.get("HostsPath") or "",
            "LogPath": data.get("LogPath") or "",
            "Name": container.name,
            "RestartCount": int(data.get("RestartCount") or 0),
            "Driver": data.get("Driver") or self.mounts.driver.name,
            "Platform": data.get("OS") or "linux",
            "MountLabel": data.get("MountLabel") or "",
            "ProcessLabel": data.get("ProcessLabel") or "",
            "AppArmorProfile": data.get("AppArmorProfile") or "",
            "ExecIDs": exec_ids or None,
            "HostConfig": container.host_config,
            "GraphDriver": {"Data": graph_data, "Name": self.mounts.driver.name},
        }
        if size:
            result["SizeRw"], result["SizeRootFs"] = self._sizes(container)
        result["Mounts"] = self._mounts_view(container)
        result["Config"] = container.config
        settings = dict(data.get("NetworkSettings") or _network_settings("default"))
        if state.get("Running") and state.get("Pid"):
            settings["SandboxKey"] = f"/proc/{state['Pid']}/ns/net"
            record = self.network.sandboxes.store.sandbox(container.id) if self.network.has_sandboxes() else None
            if record is not None:
                from lamina.network.sandbox import network_settings

                settings.update(network_settings(record))
        result["NetworkSettings"] = settings
        return result

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float = 0, until: float = 0, timestamps: bool = False,
             tail: str = "all") -> Iterator[tuple[int, bytes]]:
        container = self._get(id)
        log_type, _options = specs.log_options(container.host_config)
        if log_type != "json-file":
            raise errdefs.InvalidArgument(
                f'configured logging driver does not support reading: "{log_type}" logging driver')
        if not (stdout or stderr):
            raise errdefs.InvalidArgument("You must choose at least one stream")
        tail_text = str(tail if tail is not None else "all").strip()
        if tail_text in ("", "all"):
            tail_count = None
        else:
            try:
                tail_count = int(tail_text)
            except ValueError:
                tail_count = None  # Docker treats an unparsable tail as "all"
        path = self.store.log_path(container.id)
        container_id = container.id

        def stopped() -> bool:
            return not self._still_running(container_id) or not self._run_dir(container_id).monitor_alive()

        def generate() -> Iterator[tuple[int, bytes]]:
            for stream, payload, _time in read_logs(path, stdout=stdout, stderr=stderr, tail=tail_count,
                                                    since=since or None, until=until or None,
                                                    timestamps=timestamps, follow=follow, stop=stopped):
                yield (1 if stream == "stdout" else 2), payload

        return generate()

    # -- streams -------------------------------------------------------------------------------

    def attach(self, id: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool = True,
               logs: bool = False) -> socket.socket:
        container = self._get(id)
        options = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs, "stream": stream}
        self._event(container, "attach")
        state = container.state
        if state.get("Running") and not state.get("Restarting"):
            try:
                sock = connect_unix(self._run_dir(container.id).attach_socket)
            except errdefs.Conflict:
                sock = None
            if sock is not None:
                sock.sendall(json_line(options))
                return sock
        if not stream:
            return self._logs_only(container, options)
        # not running yet: the next start from this process hands the other end to the monitor
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._pending_lock:
            self._pending.setdefault(container.id, []).append(PendingAttach(theirs, options))
        return ours

    def _logs_only(self, container: Container, options: dict[str, bool]) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        raw = bool(container.config.get("Tty"))
        path = self.store.log_path(container.id)

        def feed() -> None:
            from lamina.container.logs import frame

            try:
                if options.get("logs") and os.path.exists(path):
                    for name, payload, _time in read_logs(path, stdout=bool(options.get("stdout")),
                                                          stderr=bool(options.get("stderr"))):
                        theirs.sendall(payload if raw else frame(1 if name == "stdout" else 2, payload))
            except OSError:
                pass
            finally:
                theirs.close()

        threading.Thread(target=feed, name=f"lamina-attach-logs-{container.id[:12]}", daemon=True).start()
        return ours

    def _control(self, container: Container, request: dict[str, Any]) -> dict[str, Any]:
        if not container.state.get("Running") or container.state.get("Restarting"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        sock = connect_unix(self._run_dir(container.id).control_socket)
        try:
            sock.sendall(json_line(request))
            answer = read_answer(sock)
        finally:
            sock.close()
        raise_error(answer)
        return answer

    def resize(self, id: str, *, height: int, width: int) -> None:
        container = self._get(id)
        self._control(container, {"resize": [int(height), int(width)]})
        self._event(container, "resize", {"height": str(int(height)), "width": str(int(width))})

    # -- processes and resources ---------------------------------------------------------------

    def top(self, id: str, *, ps_args: str = "-ef") -> dict[str, Any]:
        from lamina.container.processes import list_processes

        container = self._get(id)
        state = self._runtime_state(container)
        pids = self.runtime(state.runtime).processes(state)
        return list_processes(pids, ps_args or "-ef")

    def _stats_document(self, container: Container, state: RuntimeState | None,
                        previous: dict[str, Any] | None) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        if state is not None:
            try:
                raw = dict(self.runtime(state.runtime).stats(state))
            except errdefs.LaminaError as exc:
                log.debug("stats of %s: %s", container.id, exc)
        empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                     "system_cpu_usage": 0, "online_cpus": 0,
                     "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        document: dict[str, Any] = {
            "name": container.name,
            "id": container.id,
            "read": now() if state is not None else ZERO_TIME,
            "preread": previous["read"] if previous else ZERO_TIME,
            "pids_stats": raw.get("pids_stats") or {},
            "blkio_stats": raw.get("blkio_stats") or {"io_service_bytes_recursive": None,
                                                      "io_serviced_recursive": None},
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": raw.get("cpu_stats") or empty_cpu,
            "precpu_stats": previous["cpu_stats"] if previous else empty_cpu,
            "memory_stats": raw.get("memory_stats") or {},
        }
        networks = _network_counters(state.pid) if state is not None else {}
        if networks:
            document["networks"] = networks
        return document

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]:
        container = self._get(id)
        container_id = container.id

        def generate() -> Iterator[dict[str, Any]]:
            previous: dict[str, Any] | None = None
            while True:
                try:
                    current = self._get(container_id)
                except errdefs.NotFound:
                    return
                state = None
                if current.state.get("Running") and not current.state.get("Restarting"):
                    state = self._run_dir(container_id).read_runtime_state()
                document = self._stats_document(current, state, previous)
                if state is None:
                    yield document
                    return
                if not stream and not one_shot and previous is None:
                    previous = document
                    time.sleep(1.0)  # a second sample fills precpu_stats, as Docker does
                    continue
                yield document
                if not stream:
                    return
                previous = document
                time.sleep(1.0)

        return generate()

    def pause(self, id: str) -> None:
        container = self._get(id)
        state = self._runtime_state(container)
        if container.state.get("Paused"):
            raise errdefs.Conflict(f"Container {container.id} is already paused")
        self.runtime(state.runtime).pause(state)
        with self.store.modify(container.id) as record:
            record.state["Paused"] = True
        self._event(container, "pause")

    def unpause(self, id: str) -> None:
        container = self._get(id)
        state = self._runtime_state(container)
        if not container.state.get("Paused"):
            raise errdefs.Conflict(f"Container {container.id} is not paused")
        self.runtime(state.runtime).resume(state)
        with self.store.modify(container.id) as record:
            record.state["Paused"] = False
        self._event(container, "unpause")

    def update(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        container = self._get(id)
        host, warnings = specs.normalize_update(container.host_config, body)
        if container.state.get("Running") and not container.state.get("Restarting"):
            state = self._run_dir(container.id).read_runtime_state()
            if state is not None:
                try:
                    self.runtime(state.runtime).update(state, specs.resources(host))
                except errdefs.LaminaError as exc:
                    raise errdefs.System(f"Cannot update container {container.id}: {exc}") from exc
        with self.store.modify(container.id, host_config=True) as record:
            record.host_config = host
        self._event(container, "update")
        return {"Warnings": warnings}

    def rename(self, id: str, new_name: str) -> None:
        container = self._get(id)
        if not new_name:
            raise errdefs.InvalidArgument("Neither old nor new names may be empty")
        self.store.rename(container.id, new_name)
        self.events.emit(CONTAINER, "rename", container.id, container_attributes(
            container.config, new_name, {"oldName": container.name}))

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        filters = dict(filters or {})
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        until = None
        if filters.get("until"):
            text = filters["until"][0]
            until = float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else seconds_of(text)
        deleted: list[str] = []
        reclaimed = 0
        for container in self.store.list():
            if container.state.get("Running") and self._run_dir(container.id).monitor_alive():
                continue
            if container.state.get("Running"):
                container = self._reconcile(container.id)
            labels = container.config.get("Labels") or {}
            if filters.get("label") and not all_labels_match(labels, filters["label"]):
                continue
            if filters.get("label!") and all_labels_match(labels, filters["label!"]):
                continue
            if until is not None and seconds_of(container.data.get("Created")) >= until:
                continue
            try:
                size = self.mounts.size(container.id)
            except errdefs.LaminaError:
                size = 0
            try:
                destroy(self.store, self.mounts, self.execs, self.exec_root, container.id, volumes=self.volumes)
            except errdefs.NotFound:
                continue
            self._event(container, "destroy")
            deleted.append(container.id)
            reclaimed += size
        self.events.emit(CONTAINER, "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- filesystem ----------------------------------------------------------------------------

    def changes(self, id: str) -> list[dict[str, Any]]:
        container = self._get(id)
        changes = self.mounts.changes(container.id)
        paths = [change.path for change in changes]
        result = []
        for change in changes:
            if change.path in _MOUNT_TARGETS:
                continue
            if change.path in _INIT_DIRECTORIES and change.kind.value == "C":
                # a parent changed only by the copy-up of a mount target is not a change either
                prefix = change.path.rstrip("/") + "/"
                below = [p for p in paths if p.startswith(prefix)]
                if below and all(p in _MOUNT_TARGETS for p in below):
                    continue
            result.append({"Path": change.path, "Kind": _CHANGE_KINDS[change.kind.value]})
        result.sort(key=lambda item: item["Path"])
        return result

    def _with_rootfs(self, container_id: str) -> tuple[int, Callable[[], None]]:
        """(an O_PATH descriptor of the mounted root filesystem, its release function)."""
        root = self.mounts.mount(container_id)
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.mounts.unmount(container_id)
            raise

        def release() -> None:
            os.close(fd)
            try:
                self.mounts.unmount(container_id)
            except errdefs.LaminaError as exc:
                log.warning("unmounting the root filesystem of %s: %s", container_id, exc)

        return fd, release

    def export(self, id: str) -> Iterator[bytes]:
        from lamina.archive import export_tree

        container = self._get(id)
        fd, release = self._with_rootfs(container.id)

        def generate() -> Iterator[bytes]:
            try:
                yield from export_tree(f"/proc/self/fd/{fd}", overlay_whiteouts=False)
            finally:
                release()

        return generate()

    def _archive_root(self, container: Any, path: str) -> tuple[int, str, Callable[[], None], bool | None]:
        """Where ``docker cp`` reads or writes ``path``: inside the volume or bind mounted at the
        longest matching destination (as Docker's cp sees mounts), else in the root filesystem.

        Returns (an O_PATH descriptor of that root, the path inside it, release, writable), where
        writable is None for the root filesystem itself."""
        import posixpath

        from lamina.volume.mounts import load_mount_points

        clean = posixpath.normpath("/" + path)
        best = None
        for point in load_mount_points(container.data.get("MountPoints")):
            destination = posixpath.normpath("/" + point.destination)
            if not point.source or point.type not in ("volume", "bind"):
                continue
            if clean == destination or clean.startswith(destination.rstrip("/") + "/"):
                if best is None or len(destination) > len(best[0]):
                    best = (destination, point)
        if best is None:
            fd, release = self._with_rootfs(container.id)
            return fd, path, release, None
        destination, point = best
        try:
            fd = os.open(point.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise fsutil.system_error(f"open the mount source of {destination}", exc) from exc
        inner = "/" + clean[len(destination):].lstrip("/")
        if path.endswith("/") and not inner.endswith("/"):
            inner += "/"
        return fd, inner, lambda: os.close(fd), point.rw

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        from lamina.container.archive import path_stat

        container = self._get(id)
        fd, inner, release, _ = self._archive_root(container, path)
        try:
            result = path_stat(fd, inner, container.id)
            result["name"] = os.path.basename(path.rstrip("/")) or result.get("name", "/")
            return result
        finally:
            release()

    def archive_get(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        from lamina.container.archive import archive_path

        container = self._get(id)
        fd, inner, release, _ = self._archive_root(container, path)
        try:
            stat_result, chunks = archive_path(fd, inner, container.id)
        except BaseException:
            release()
            raise

        def generate() -> Iterator[bytes]:
            try:
                yield from chunks
            finally:
                chunks.close()  # type: ignore[attr-defined]
                release()

        return stat_result, generate()

    def archive_put(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        from lamina.container.archive import extract_archive

        container = self._get(id)
        fd, inner, release, writable = self._archive_root(container, path)
        try:
            if writable is False:
                raise errdefs.Conflict("mounted volume is marked read-only")
            if writable is None and container.host_config.get("ReadonlyRootfs"):
                raise errdefs.Conflict("container rootfs is marked read-only")
            extract_archive(fd, inner, stream, container.id, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                            copy_uid_gid=copy_uid_gid)
        finally:
            release()

    # -- commit --------------------------------------------------------------------------------

    def commit(self, id: str, *, repository: str = "", tag: str = "", comment: str = "", author: str = "",
               pause: bool = True, changes: list[str] | None = None,
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        container = self._get(id)
        reference = None
        if repository:
            reference = parse_normalized_named(repository)
            if tag:
                reference = parse_normalized_named(f"{reference.name}:{tag}")
            reference = with_default_tag(reference)
            if reference.digest is not None:
                raise errdefs.InvalidArgument("refusing to create a tag with a digest reference")
        elif tag:
            raise errdefs.InvalidArgument("tag is not allowed without a repository")
        base = ContainerConfig.from_dict(config if config else container.config, "config.")
        new_config = base.apply_changes(changes or [])
        merged = specs.merge_image_config(new_config.to_dict(), container.config)
        image_config = ContainerConfig.from_dict(merged, "config.")
        container_config = ContainerConfig.from_dict(container.config, "Config.")
        parent_id = str(container.data.get("Image") or "")
        parent_config = self._parent_image_config(container, parent_id)
        paused_here = False
        state = None
        if pause and container.state.get("Running") and not container.state.get("Paused") \
                and not container.state.get("Restarting"):
            state = self._runtime_state(container)
            self.runtime(state.runtime).pause(state)
            paused_here = True
        from lamina.archive.tarstream import ChunkReader

        registered: list[Digest] = []
        layers = self.images.layers
        try:
            lock = layers.lock(shared=True)
            try:
                with layers.lease():
                    rw_layer = self.mounts.get(container.id)
                    parent_chain = str(rw_layer.parent) if rw_layer.parent else None
                    layer, new = layers.register(ChunkReader(self.mounts.diff(container.id)), parent_chain)
                    if new:
                        registered.append(layer.chain_id)
                    child = new_child_config(parent_config, diff_id=str(layer.diff_id), config=image_config,
                                             container_config=container_config, author=author, comment=comment,
                                             container=container.id)
                    image_id = self.images.images.put(child.to_json())
                    if parent_id and self.images.images.exists(parent_id):
                        self.images.images.set_parent(image_id, parent_id)
                    if reference is not None:
                        self.images.references.add_tag(reference, image_id, force=True)
                        self.images.images.set_last_updated(image_id)
            finally:
                lock.release()
        except BaseException:
            self._release_layers(registered)
            raise
        finally:
            if paused_here and state is not None:
                try:
                    self.runtime(state.runtime).resume(state)
                except errdefs.LaminaError as exc:
                    log.error("container %s stays paused after commit: %s", container.id, exc)
        if layer.diff_id == EMPTY_LAYER_DIFF_ID and registered:
            self._release_layers(registered)  # an empty diff adds no layer to the image
        self._event(container, "commit", {"comment": comment, "imageID": str(image_id),
                                          "imageRef": reference.familiar_string() if reference is not None else ""})
        return {"Id": str(image_id)}

    def _release_layers(self, registered: list[Digest]) -> None:
        if not registered:
            return
        lock = self.images.layers.lock(shared=False)
        try:
            self.images.layers.release_unreferenced(list(reversed(registered)), self.images.referenced_layers())
        finally:
            lock.release()

    def _parent_image_config(self, container: Container, parent_id: str) -> ImageConfig:
        """The image the container was created from; when it was removed meanwhile, a config
        holding the diff_ids of the layers the container still stands on."""
        if parent_id and self.images.images.exists(parent_id):
            return self.images.images.get_config(parent_id)
        layer = self.mounts.get(container.id)
        diff_ids = [item.diff_id for item in self.images.layers.chain(layer.parent)] if layer.parent else []
        return ImageConfig(os="linux", rootfs_diff_ids=tuple(diff_ids),
                           history=tuple(HistoryEntry(created=ZERO_TIME) for _ in diff_ids))

    # -- start-up ------------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Finish interrupted removals (called by :func:`build_services`)."""
        return sweep(self.store, self.mounts, self.execs, self.exec_root) + self.network.sweep()

    def boot(self) -> dict[str, Any]:
        """After an engine (or host) restart: record the runs whose monitor died and restart
        the containers whose policy says so."""
        exited: list[str] = []
        restarted: list[str] = []
        removed: list[str] = []
        failed: list[dict[str, str]] = []
        for container in self.store.list():
            was_running = bool(container.state.get("Running"))
            if was_running:
                if self._run_dir(container.id).monitor_alive():
                    continue
                container = self._reconcile(container.id)
                exited.append(container.id)
                if container.host_config.get("AutoRemove"):
                    # its monitor would have removed it (a created one may be about to start:
                    # another process's `run --rm`; it is left alone)
                    try:
                        destroy(self.store, self.mounts, self.execs, self.exec_root, container.id,
                                volumes=self.volumes, remove_volumes=True)
                        self._event(container, "destroy")
                        removed.append(container.id)
                    except errdefs.NotFound:
                        pass
                    except errdefs.LaminaError as exc:
                        failed.append({"Id": container.id, "Error": str(exc)})
                    continue
            name, _maximum = specs.restart_policy(container.host_config)
            manual = bool(container.data.get("HasBeenManuallyStopped"))
            if name == "always" or (name == "unless-stopped" and not manual) or \
                    (name == "on-failure" and was_running and not manual):
                if container.state.get("Running") or not container.data.get("HasBeenStartedBefore"):
                    continue
                try:
                    spawn(self.context, container.id, [])
                    restarted.append(container.id)
                except errdefs.LaminaError as exc:
                    failed.append({"Id": container.id, "Error": str(exc)})
        return {"Exited": exited, "Restarted": restarted, "Removed": removed, "Failed": failed}


# ------------------------------------------------------------------------------------------------
# small helpers shared with the exec service


def json_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


def read_answer(sock: socket.socket, timeout: float = 120.0) -> dict[str, Any]:
    """One JSON line from the monitor, read byte by byte (what follows it is a stream)."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise errdefs.Unavailable(f"the container's monitor did not answer: {exc}") from exc
    finally:
        sock.settimeout(None)
    if not data:
        raise errdefs.Unavailable("the container's monitor closed the connection without answering")
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise errdefs.System(f"the container's monitor answered {bytes(data)!r}") from exc
    if not isinstance(answer, dict):
        raise errdefs.System(f"the container's monitor answered {answer!r}")
    return answer


def raise_error(answer: dict[str, Any]) -> None:
    from lamina.container.monitor import ERROR_KINDS, StartError

    error = answer.get("error")
    if not error:
        return
    message = str(error.get("message") or "the monitor refused the request")
    if "exit_code" in error and error.get("kind") == "invalid_argument":
        raise StartError(message, int(error["exit_code"]))
    raise ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)


def _network_counters(pid: int) -> dict[str, dict[str, int]]:
    """Docker's ``networks`` stats from the container's /proc/<pid>/net/dev (loopback left out)."""
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as handle:
            lines = handle.read().splitlines()[2:]
    except OSError:
        return {}
    result = {}
    for line in lines:
        name, _, values = line.partition(":")
        name = name.strip()
        fields = values.split()
        if name == "lo" or len(fields) < 16:
            continue
        numbers = [int(value) for value in fields]
        result[name] = {"rx_bytes": numbers[0], "rx_packets": numbers[1], "rx_errors": numbers[2],
                        "rx_dropped": numbers[3], "tx_bytes": numbers[8], "tx_packets": numbers[9],
                        "tx_errors": numbers[10], "tx_dropped": numbers[11]}
    return result

