"""Containers' lifecycle: create, start, stop, kill, restart, remove, wait, pause, unpause,
update, rename, prune; ``boot`` (after an engine or host restart) comes from :mod:`.recovery`."""

from __future__ import annotations

import signal as signals
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lamina import errdefs
from lamina.container import joining, links
from lamina.container import spec as specs
from lamina.container.monitor import RunLock, spawn
from lamina.container.monitor.client import TemplateLease, warm_template
from lamina.container.health import validate_healthcheck
from lamina.container.names import random_name, validate_name
from lamina.container.removal import destroy
from lamina.container.state import new_state, now, seconds_of
from lamina.container.names import is_container_id
from lamina.container.store import Container, new_container_id
from lamina.events.api import CONTAINER
from lamina.events.message import container_attributes
from lamina.log import get_logger
from lamina.services.containers.common import network_settings
from lamina.services.containers.recovery import ContainerRecovery
from lamina.services.filters import all_labels_match, until_seconds
from lamina.volume.resolve import mount_points_json, populate_volumes, release_mounts, resolve_mounts

if TYPE_CHECKING:
    from lamina.idmap import IdentityMapping

__all__ = ["ContainerLifecycleImpl"]

log = get_logger("lamina.services")

_KILL_WAIT = 10.0
_AFTER_SIGKILL_WAIT = 30.0
# how often a wait for a container to stop looks for a restart that raced with the stop
_RECHECK_SECONDS = 0.5


_ROOTLESS_NETWORKS = ("default", "bridge", "none", "host")


def _check_rootless(config: dict[str, Any], host: dict[str, Any], networking: dict[str, Any]) -> None:
    """What rootless lamina cannot give a container is refused before anything is made: cgroup
    limits (all without a delegated cgroup, those of controllers it lacks with one:
    :mod:`lamina.runtime.delegation`), the OCI runtimes (crun and runc would make cgroups) and
    user-defined networks (they need a bridge, veths and rules in the host's network namespace,
    which an unprivileged user cannot make).  The ``bridge`` network (``default``) is a private
    namespace per container connected by pasta (:mod:`lamina.network.pasta`): a missing pasta,
    an ``/dev/net/tun`` the user cannot open and host ports below
    ``net.ipv4.ip_unprivileged_port_start`` are refused here too, so that a run that cannot get
    its network creates nothing, and so is ``--mac-address`` (pasta picks the MAC address of
    ``eth0``)."""
    from lamina.runtime.delegation import current
    from lamina.runtime.nocgroup import refuse_limits

    refuse_limits(specs.resources(host), current())
    runtime = str(host.get("Runtime") or "native")
    if runtime != "native":
        raise errdefs.FailedPrecondition(
            f"rootless lamina runs containers with its native runtime only, not {runtime!r} "
            "(the OCI runtimes would need cgroups delegated to this user)")
    mode = str(host.get("NetworkMode") or "default")
    endpoints = networking.get("EndpointsConfig") or {}
    others = [name for name in endpoints if name not in ("default", "bridge", mode)] if isinstance(endpoints, dict) else []
    if (mode not in _ROOTLESS_NETWORKS and not mode.startswith("container:")) or others:
        raise errdefs.FailedPrecondition(
            f"rootless lamina cannot connect a container to network {(others or [mode])[0]!r}: user-defined "
            "networks need a bridge and rules in the host's network namespace, which an unprivileged user "
            "cannot make; rootless containers get --network bridge (the default: a private network through "
            "pasta), none, host or container:<name>")
    if mode in ("default", "bridge"):
        given = [config.get("MacAddress")]
        if isinstance(endpoints, dict):
            given += [endpoint.get("MacAddress") for endpoint in endpoints.values() if isinstance(endpoint, dict)]
        if any(given):
            raise errdefs.FailedPrecondition("rootless lamina cannot set a container's MAC address (--mac-address): "
                                             "pasta gives eth0 of the bridge network a random one")
        from lamina.network.pasta import check_available, check_host_ports
        from lamina.network.run import port_mappings

        check_available()
        check_host_ports(port_mappings({}, host)[0])


class ContainerLifecycleImpl(ContainerRecovery):
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
        # rootless: only the bridge network, never stored (_check_rootless refused the others)
        needs_store = (needs_store or bool(endpoints)) and self.config.rootless_uid is None
        check(config, host, networking, find_network=self.network.sandboxes.store.get if needs_store else None)
        return dict(endpoints)

    def create(self, body: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        config_in, host_in, networking = specs.split_create_body(body)
        image_name = str(config_in.get("Image") or "")
        if not image_name:
            raise errdefs.InvalidArgument("No image specified: Config.Image is empty")
        config = specs.normalize_config(config_in)
        validate_healthcheck(config.get("Healthcheck"))
        if name:
            validate_name(name)
        image_id = self.images.resolve(image_name)
        image_config = self.images.images.get_config(image_id)
        merged = specs.merge_image_config(config, image_config.config.to_dict() if image_config.config else None)
        specs.validate_config(merged)
        host, warnings = specs.normalize_host_config(host_in, default_runtime=self.default_runtime,
                                                     runtimes=self._runtime_names())
        if self.config.rootless_uid is not None:
            _check_rootless(merged, host, networking)
        joining.check_network_conflicts(config, host, networking.get("EndpointsConfig") or None)
        joining.resolve_modes(host, config, self.store.lookup)
        networking = links.on_user_network(host, networking)
        linked = links.check(host, self.store.lookup)
        mode = host.get("NetworkMode") or "default"
        endpoints = self._check_networks(merged, host, networking)
        idmap = self._identity_mapping(host, image_config.chain_id())
        # the request is valid: the monitor template starts now, beside the rest of the create,
        # so that the start finds it ready (nothing when it runs)
        warm_template(self.monitor_recipe, str(host.get("Runtime") or self.default_runtime))
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
            "NetworkSettings": network_settings(mode, endpoints),
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
        # a --rm container is disposable from its create, as its run is: nothing of it is
        # synced; a host crash may lose it or leave it with empty files, which the start-up
        # sweep and `system check --repair` remove (lamina.container.store)
        durable = not host.get("AutoRemove")
        lock = self.images.layers.lock(shared=True)
        try:
            self.mounts.create(container_id, str(top) if top else None, idmap,
                               layer_copies=self.remap is not None and self.remap.layer_copies, durable=durable)
            try:
                data["MountPoints"] = self._mount_volumes(container_id, merged, host)
            except BaseException:
                self.mounts.remove(container_id)
                raise
            try:
                for attempt in range(10):
                    data["Name"] = validate_name(name) if name else "/" + random_name(attempt)
                    if linked:
                        host["Links"] = links.stored(linked, data["Name"])
                    try:
                        self.store.create(Container(data, host), durable=durable)
                        break
                    except errdefs.Conflict:
                        if name or attempt == 9:
                            raise
            except BaseException:
                # past the record's commit point (a failure in the name index's write after
                # it) the container exists, whole: nothing of it is undone
                if not self.store.exists(container_id):
                    self.mounts.remove(container_id)
                    if self.volumes is not None:
                        release_mounts(data["MountPoints"], self.volumes, container_id, remove_anonymous=True)
                raise
        finally:
            lock.release()
        self.events.emit(CONTAINER, "create", container_id, container_attributes(merged, data["Name"]))
        return {"Id": container_id, "Warnings": warnings}

    def _identity_mapping(self, host: dict[str, Any], top: Any) -> IdentityMapping | None:
        """The mapping of a container of a ``--userns-remap`` engine (None: the host's user
        namespace), after Docker's checks; an image layer owning a file by an id beyond the
        ranges is refused, naming the file and the range."""
        from lamina.container.options import check_userns

        if not check_userns(host, remapped_engine=self.remap is not None):
            return None
        assert self.remap is not None
        mapping = self.remap.mapping
        if top:
            outside = self.images.layers.ids_outside(str(top), mapping.size())
            if outside is not None:
                path, uid, gid = outside
                uids, gids = mapping.size()
                owner = f"uid {uid}" if uid >= 0 else f"gid {gid}"
                raise errdefs.InvalidArgument(
                    f"the image's file /{path} is owned by {owner}, outside the --userns-remap range of "
                    f"{uids} uids and {gids} gids of {self.remap.user}:{self.remap.group} "
                    f"(/etc/subuid, /etc/subgid)")
        return mapping

    def _runtime_names(self) -> tuple[str, ...]:
        return self.shared.runtime_names()

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

    def monitor_template_lease(self, *, start: bool = True) -> TemplateLease:
        """A lease on the monitor template (started when there is none; with ``start``
        false, NotFound then): it does not leave while the lease is open (``lamina serve``
        and the engine cache hold one)."""
        return TemplateLease(self.monitor_recipe, self.default_runtime, start=start)

    def start(self, id: str) -> None:
        container = self._get(id)
        state = container.state
        if state.get("Running"):
            if state.get("Paused"):
                raise errdefs.Conflict("cannot start a paused container, try unpause instead")
            return
        if state.get("RemovalInProgress"):
            raise errdefs.Conflict("container is marked for removal and cannot be started")
        if container.data.get("HasBeenManuallyStopped") or container.data.get("RestartCount"):
            # a first start has nothing to reset (no record written on the path of ``run``)
            with self.store.modify(container.id) as record:
                record.data["HasBeenManuallyStopped"] = False
                record.data["RestartCount"] = 0
        # an unknown runtime is refused here; an unusable one by the monitor template, which
        # opens it (once: not here too, which would load the runtime into every ``run``)
        runtime = str(container.host_config.get("Runtime") or self.default_runtime)
        if runtime not in self._runtime_names():
            raise errdefs.InvalidArgument(f"unknown or invalid runtime name: {runtime}")
        with self._pending_lock:
            pending = self._pending.pop(container.id, [])
        spawn(self.monitor_recipe, container.id, pending, runtime=runtime)

    def _signal(self, container: Container, number: int) -> None:
        """Send ``number`` to the container's process, if it still has one.

        ``container`` was read as running a moment ago.  Its process may have exited since:
        the monitor clears ``runtime.json`` before it records the exit (an ``--rm`` run's once
        its cgroups are released, after its removal), so a missing runtime state, like a
        runtime that no longer knows the process, means the run is ending and there is nothing
        to signal (as Docker, which ignores "no such process" here)."""
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
            state = self.monitors.runtime_state(container.id)
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
        try:
            container = self._get(id)
        except errdefs.DataLoss:
            if not is_container_id(id):
                raise
            # a record a host crash left damaged (a --rm create is not synced:
            # lamina.container.store): nothing of it can run; removed by its full id
            destroy(self.store, self.mounts, self.execs, self.exec_root, id, volumes=self.volumes,
                    remove_volumes=volumes)
            self.events.emit(CONTAINER, "destroy", id, {})
            return
        state = container.state
        if state.get("RemovalInProgress") and not self._removal_interrupted(container.id):
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
        return self.begin_wait(id, condition=condition)()

    def begin_wait(self, id: str, *, condition: str = "not-running") -> Callable[[], dict[str, Any]]:
        if condition not in ("not-running", "next-exit", "removed"):
            raise errdefs.InvalidArgument(f"invalid condition: {condition!r}")
        container = self._get(id)
        container_id = container.id
        if condition == "not-running" and not container.state.get("Running"):
            answer = self._wait_answer(container.state.get("ExitCode", 0), container.state.get("Error"))
            return lambda: answer
        run_lock, after = self._last_sequence(container_id)
        return lambda: self._finish_wait(container, condition, run_lock, after)

    def _finish_wait(self, container: Container, condition: str, run_lock: RunLock, after: int) -> dict[str, Any]:
        container_id = container.id
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
        if container.state.get("Running") and not self.monitors.alive(container_id):
            self._reconcile(container_id)
            return True
        return False

    @staticmethod
    def _wait_answer(exit_code: Any, error: Any) -> dict[str, Any]:
        return {"StatusCode": int(exit_code or 0), "Error": {"Message": str(error)} if error else None}

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
        if self.config.rootless_uid is not None:
            from lamina.runtime.delegation import current
            from lamina.runtime.nocgroup import refuse_limits

            refuse_limits(specs.resources(host), current())
        if container.state.get("Running") and not container.state.get("Restarting"):
            state = self.monitors.runtime_state(container.id)
            if state is not None:
                try:
                    self.runtime(state.runtime).update(state, specs.resources(host))
                except errdefs.LaminaError as exc:
                    raise errdefs.System(f"Cannot update container {container.id}: {exc}") from exc
        with self.store.modify(container.id, host_config=True) as record:
            record.host_config = host
        self._event(container, "update")
        return {"Warnings": warnings}

    def remove_link(self, name: str) -> None:
        full_name = "/" + name.strip("/")
        parent, _, _ = full_name.rpartition("/")
        if not parent:
            raise errdefs.Conflict("Conflict, cannot remove the default link name of the container")
        try:
            container = self.store.lookup(parent)
        except errdefs.NotFound:
            raise errdefs.NotFound(f"No such container: {name}") from None
        kept = [spec for spec in container.host_config.get("Links") or []
                if str(spec).partition(":")[2] != f"{container.name}/{full_name.rpartition('/')[2]}"]
        if len(kept) == len(container.host_config.get("Links") or []):
            raise errdefs.NotFound(f"No such container: {name}")
        with self.store.modify(container.id, host_config=True) as record:
            record.host_config = {**record.host_config, "Links": kept or None}

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
            until = until_seconds(filters["until"][0])
        deleted: list[str] = []
        reclaimed = 0
        for container in self.store.list():
            if container.state.get("Running") and self.monitors.alive(container.id):
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
