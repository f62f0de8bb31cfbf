"""One run of the container after another: start, serve, exit record, restart policy.

:class:`Runner` drives the runs of one monitor (:class:`~lamina.container.monitor.server.Monitor`
owns the event loop, the sockets and the clients).  For each run it prepares stdio, then, in a
short-lived helper process (:mod:`~lamina.container.monitor.launch`), mounts the root
filesystem, writes ``containers/<id>/{hostname,hosts,resolv.conf}``, builds the spec, prepares
stdio (pipes, or with ``Tty`` one pty of a devpts instance mounted at ``<run dir>/pts`` and
bound onto the container's ``/dev/pts`` by the start, so PID 1's terminal is ``/dev/pts/0``
as in Docker; the run directory's mount is detached once ``runtime.start`` has returned),
calls ``runtime.start`` and records ``State``
(Running, Pid, StartedAt) and ``runtime.json``; at the exit it drains the output, records
ExitCode (128 + n for signal n), FinishedAt and OOMKilled, kills what is left in the cgroup,
``runtime.delete``, unmounts, then asks :func:`~lamina.container.monitor.policy.restart_decision` and removes an ``AutoRemove``
container.

The exit record (``running.lock``, :class:`~lamina.container.rundir.ExitInfo`) is bumped at
every exit, failed start or abandoned restart, each time under the turn lock of that exit,
which the monitor takes before it starts working towards it (see
:mod:`lamina.container.rundir`: waiters read the record without any lock).  The exit of a
``--rm`` container about to be removed is not synced: if a crash loses it, the start-up finds
a dead run and removes the container all the same.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container import health, joining, links
from lamina.container import spec as specs
from lamina.container.logs import STDERR, STDOUT
from lamina.container.monitor.api import MonitorNetwork
from lamina.container.monitor.attaching import Attaching
from lamina.container.monitor.io import Sink, devpts_instance, release_devpts, set_window
from lamina.container.monitor.etcfiles import write_files
from lamina.container.monitor.launch import in_helper
from lamina.container.monitor.policy import restart_decision
from lamina.container.monitor.protocol import error_answer, exit_code_of_start_error
from lamina.container.monitor.runs import DRAIN_SECONDS, Run, RunHost, exit_code
from lamina.container.removal import destroy, release_mount
from lamina.container.state import now
from lamina.container.store import Container
from lamina.events.api import VOLUME
from lamina.log import get_logger
from lamina.records import replace
from lamina.runtime.api import MountSpec, Runtime, Stdio
from lamina.volume.resolve import load_mount_points, volume_names
from lamina.volume.subpath import pin_subpaths, unpin_subpaths

__all__ = ["Runner"]

log = get_logger("lamina.monitor")

class Runner:
    """The runs of one container, one after another, until the policy says stop."""

    def __init__(self, monitor: RunHost) -> None:
        self.monitor = monitor
        self.id = monitor.id
        self.store = monitor.store
        self.mounts = monitor.mounts
        self.volumes = monitor.context.volumes
        self.restarts = 0
        self.backoff = 0.0

    # -- the sequence of runs --------------------------------------------------------------------

    def run_all(self) -> None:
        monitor = self.monitor
        run_lock = monitor.run_lock
        assert run_lock is not None
        first = True
        run_lock.hold_next()
        while True:
            try:
                monitor.run = self._start()
            except errdefs.LaminaError as exc:
                self._start_failed(exc, first)
                return
            except Exception as exc:  # noqa: BLE001 - a bug or an OS error: recorded like any failure
                log.exception("starting container %s", self.id)
                self._start_failed(errdefs.System(f"cannot start container {self.id}: {exc}"), first)
                return
            if first:
                monitor.attach_pending()
                monitor.answer({"ok": True})
                first = False
            status = self._serve_guarded()
            run = monitor.run
            assert run is not None
            ran = run.container
            code, oom, duration = self._outcome(run, status)
            restart, container = self._decide(code, duration)
            removing = not restart and container is not None and bool(container.host_config.get("AutoRemove"))
            # an --rm container with a pid namespace of its own has no process left (the kernel
            # ended them all with its PID 1): its cgroups go after its waiters woke, and its
            # root filesystem with its read-write layer
            deferred = removing and not str(ran.host_config.get("PidMode") or "")
            self._end_run(run, code, oom, release=not deferred)
            self._record_exit(code, oom, restarting=restart, removing=removing)
            self._exit_events(container if container is not None else ran, code, oom, duration)
            if monitor.context.network is not None and not removing:
                monitor.context.network.detach(self.id)  # after "die", as dockerd releases the network
            elif monitor.context.network is not None:
                monitor.context.network.begin_release(self.id)  # detached after the waiters are woken
            monitor.close_clients()
            if not restart:
                break
            run_lock.publish(exit_code=code, oom_killed=oom)
            run_lock.release()       # waiters for this exit wake up
            run_lock.hold_next()     # the other turn lock: the back-off and the next run
            if not self._wait_to_restart():
                self._update(lambda c: c.state.update(Running=False, Restarting=False))
                run_lock.publish(exit_code=code, oom_killed=oom)
                run_lock.release()
                return
        monitor.close_listeners()
        published = False

        def wake_waiters(removed: bool) -> None:
            nonlocal published
            published = True
            run_lock.publish(exit_code=code, oom_killed=oom, removed=removed)
            run_lock.release()

        # an --rm container's waiters (``run --rm``) wake up once it is gone for every reader:
        # the deletion of its directories is off their path
        removed = self._auto_remove(container, lambda: wake_waiters(True), keep_run_directory=deferred)
        if not published:
            wake_waiters(removed)
        if monitor.context.network is not None and removing:
            # an --rm run's teardown is off its waiters' path (``run --rm`` returns now): the
            # sandbox record, marked releasing, keeps the addresses and host ports leased until
            # it is done; runs that want them and ``network rm`` wait for it
            monitor.context.network.detach(self.id)
        if deferred:
            # the run directory, kept by the removal, names the run's cgroups in runtime.json
            # until they are released: the sweep releases them if this monitor dies first
            self._release_runtime(run)
            release_mount(self.mounts, self.id)  # the removal unmounted it, unless it failed
            # runtime.json first: a sweep that finds the directory while it is being deleted
            # (monitor.lock already gone) must find no run to release
            monitor.run_dir.clear_runtime_state()
            if removed:
                monitor.run_dir.remove()

    def _auto_remove(self, container: Container | None, gone: Callable[[], None] | None = None, *,
                     keep_run_directory: bool = False) -> bool:
        """Remove an ``AutoRemove`` container; True when it is gone.  ``gone`` is called once
        it is gone for every reader (after its ``destroy`` event), before its directories are
        deleted; ``keep_run_directory``: but the run directory, which the caller removes."""
        if container is None or not container.host_config.get("AutoRemove"):
            return False

        def committed() -> None:
            self.monitor.event(container, "destroy")
            if gone is not None:
                gone()

        try:
            # not synced: the whole life of a --rm container is disposable (lamina.container.store)
            destroy(self.store, self.mounts, self.monitor.execs, self.monitor.context.exec_root, self.id,
                    volumes=self.volumes, remove_volumes=True, committed=committed, durable=False,
                    keep_run_directory=keep_run_directory)
        except errdefs.NotFound:
            return True
        except errdefs.LaminaError as exc:
            log.error("cannot remove container %s (--rm): %s", self.id, exc)
            try:  # as Docker's removal error: no longer "removing" (``rm`` may try again), dead
                self._update(lambda c: c.state.update(RemovalInProgress=False, Dead=True,
                                                      Error=f"cannot remove: {exc}"), durable=False)
            except errdefs.LaminaError:
                pass
            return False
        return True

    def _update(self, change: Any, *, durable: bool = True) -> bool:
        """Read-modify-write the record; False when the container is gone."""
        try:
            with self.store.modify(self.id, durable=durable) as container:
                change(container)
            return True
        except errdefs.NotFound:
            return False

    def _exit_events(self, container: Container | None, code: int, oom: bool, duration: float) -> None:
        if container is None:
            return
        if oom:
            self.monitor.event(container, "oom")
        self.monitor.event(container, "die", {"exitCode": str(code), "execDuration": str(int(duration))})
        self._volume_events(container, "unmount")

    def _volume_events(self, container: Container, action: str) -> None:
        """``mount`` / ``unmount`` of each volume the run uses, with Docker's attributes."""
        for point in load_mount_points(container.data.get("MountPoints")):
            if point.type != "volume" or not point.name:
                continue
            attributes = {"driver": point.driver, "container": self.id}
            if action == "mount":
                attributes.update({"destination": point.destination, "read/write": "true" if point.rw else "false",
                                   "propagation": point.propagation})
            self.monitor.events.emit(VOLUME, action, point.name, attributes)

    def _start_failed(self, exc: errdefs.LaminaError, first: bool) -> None:
        run_lock = self.monitor.run_lock
        assert run_lock is not None
        code = exit_code_of_start_error(exc)
        message = str(exc)
        log.error("container %s failed to start: %s", self.id, message)

        def change(container: Container) -> None:
            state = container.state
            state.update(Running=False, Restarting=False, Paused=False, Pid=0, ExitCode=code, Error=message)
            if not first:
                state["FinishedAt"] = now()

        recorded = self._update(change)
        container = None
        if recorded and first:
            try:
                container = self.store.get(self.id)
            except errdefs.LaminaError:
                container = None
        self.monitor.close_listeners()
        removed = self._auto_remove(container)
        run_lock.publish(exit_code=code, error=message, removed=removed)
        run_lock.release()
        if first:
            answer = error_answer(exc)
            if code in (126, 127):
                answer["error"]["exit_code"] = code
            self.monitor.answer(answer)

    # -- starting a run --------------------------------------------------------------------------

    def _pts_path(self) -> str:
        return os.path.join(self.monitor.run_dir.path, "pts")

    def _stdio(self, config: dict[str, Any], host: dict[str, Any]) -> tuple[Stdio, list[int], int | None, Sink | None, dict[int, int]]:
        """(stdio for the runtime, child-side fds to close after start, pty master, stdin
        sink, output sources)."""
        loop = self.monitor.loop
        child: list[int] = []
        parent: list[int] = []
        try:
            if config.get("Tty"):
                master, slave = devpts_instance(self._pts_path())
                parent.append(master)
                child.append(slave)
                size = host.get("ConsoleSize") or [0, 0]
                if len(size) == 2 and size[0] and size[1]:
                    set_window(master, int(size[0]), int(size[1]))
                os.set_blocking(master, False)
                sink = Sink(loop, master, pty=True) if config.get("OpenStdin") else None
                return Stdio(slave, slave, slave), child, master, sink, {master: STDOUT}
            if config.get("OpenStdin"):
                stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
                child.append(stdin_read)
                parent.append(stdin_write)
                sink: Sink | None = Sink(loop, stdin_write, pty=False)
            else:
                stdin_read = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                child.append(stdin_read)
                sink = None
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            parent.append(out_read)
            child.append(out_write)
            err_read, err_write = os.pipe2(os.O_CLOEXEC)
            parent.append(err_read)
            child.append(err_write)
            for fd in (out_read, err_read):
                os.set_blocking(fd, False)
            return Stdio(stdin_read, out_write, err_write), child, None, sink, {out_read: STDOUT, err_read: STDERR}
        except BaseException:
            for fd in child + parent:
                os.close(fd)
            raise

    def _start(self) -> Run:
        """Start a run: stdio here, the rest in a helper process (:mod:`.launch`: what the
        start touches is not copied into the monitor for the container's life)."""
        monitor = self.monitor
        try:
            container = self.store.get(self.id)
            if container.state.get("RemovalInProgress"):
                raise errdefs.Conflict(f"container {self.id} is marked for removal and cannot be started")
            config, host = container.config, container.host_config
            runtime = monitor.context.runtime(str(host.get("Runtime") or "native"))
            stdio, child, master, sink, sources = self._stdio(config, host)
        except BaseException:
            monitor.dismiss_spare_helper()  # what it prepared is undone before the failure is told
            raise
        logged = monitor.writer is not None
        what = f"start container {self.id}"
        try:
            helper, monitor.spare_helper = monitor.spare_helper, None
            if helper is not None:  # forked ahead, and preparing this start since the set-up began
                launched = helper.launch({"logged": logged},
                                         [stdio.stdin, stdio.stdout, stdio.stderr, *([] if master is None else [master])],
                                         what)
            else:
                launched = in_helper(lambda: self._launch(container, runtime, lambda: (stdio, master, logged)), what)
        except BaseException:
            if sink is not None:
                sink.release()  # a pipe's write end; a pty master is among the sources
            for fd in sources:
                os.close(fd)
            if master is not None:
                release_devpts(self._pts_path())
            raise
        finally:
            for fd in child:
                os.close(fd)
        state = monitor.run_dir.read_runtime_state()
        if state is None:
            raise errdefs.System(f"container {self.id} started without a runtime state")
        run = Run(container=container, runtime=runtime, state=state, rootfs=str(launched["rootfs"]),
                  tty=bool(config.get("Tty")), master=master, sink=sink, sources=sources)
        for fd, stream_type in sources.items():
            monitor.loop.on_read(fd, lambda fd=fd, stream_type=stream_type: self._output(run, fd, stream_type))
        monitor.health.begin(run)
        return run

    def launch_requested(self, receive: Callable[[], tuple[dict[str, Any], list[int]]]) -> dict[str, Any]:
        """The start a spare helper was asked for (:meth:`Monitor.main` sent the id), in that
        helper: prepared at once, then run with what ``receive()`` brings once the monitor's
        :meth:`_start` got there (``"logged"``, and stdin, stdout, stderr and with a terminal
        its master as descriptors)."""
        container = self.store.get(self.id)
        runtime = self.monitor.context.runtime(str(container.host_config.get("Runtime") or "native"))

        def ready() -> tuple[Stdio, int | None, bool]:
            message, fds = receive()
            return Stdio(*fds[:3]), (fds[3] if len(fds) > 3 else None), bool(message.get("logged"))

        return self._launch(container, runtime, ready)

    def _launch(self, container: Container, runtime: Runtime,
                ready: Callable[[], tuple[Stdio, int | None, bool]]) -> dict[str, Any]:
        """The start, in the helper: mounts, files, spec, then with ``ready()``'s stdio, pty
        master and whether the monitor writes the container's log, ``runtime.start`` and the
        record.  What it prepared is undone when anything fails (``ready()`` included)."""
        monitor = self.monitor
        config, host = container.config, container.host_config
        joined = joining.join(self.id, host, self.store.lookup, self.store.directory)
        if joined.files:  # the network of another container: its names too, as Docker
            config = {**config, "Hostname": joined.hostname, "Domainname": joined.domainname}
        # a --rm container's files go with it: no sync of them, nor of the backing filesystem
        # when they are unmounted (if the host crashes, the start-up removes the container)
        endpoints = (container.data.get("NetworkSettings") or {}).get("Networks") or {}
        attaching = Attaching(monitor.context.network, self.id, container.name.lstrip("/"), config, host,
                              {"EndpointsConfig": endpoints})  # set up while the rest of the start goes on
        try:
            rootfs = self.mounts.mount(self.id, volatile=bool(host.get("AutoRemove")))
        except BaseException:
            attaching.discard()
            raise
        try:
            from lamina.runtime.user import resolve_user_in_root

            user = resolve_user_in_root(rootfs, str(config.get("User") or ""))
            mount_points = container.data.get("MountPoints")
            self._mount_volumes(mount_points)
            mount_points = pin_subpaths(mount_points, monitor.run_dir.path)
            sandbox = attaching.result()
            network = monitor.context.network  # None: no sandboxes, so no link resolves
            linked = links.resolve(host, container.name, self.store.lookup,
                                   network.sandbox if network is not None else lambda _: None)
            link_hosts = links.hosts_lines(linked)
            if network is not None and sandbox is not None:  # the links of user-defined networks
                link_hosts += links.user_network_hosts_lines(endpoints, sandbox, self.store.lookup, network.sandbox)
            files = dict(joined.files) or write_files(self.store.directory(self.id), container, sandbox, link_hosts)
            spec = specs.container_spec(container_id=self.id, config=config, host=host, rootfs=rootfs, user=user,
                                        files=files, mount_points=mount_points,
                                        linked_env=links.environment(linked))
            if sandbox is not None:
                spec = replace(spec, network_namespace=sandbox["SandboxKey"])
            spec, shm = joining.prepare(spec, joined, host, self.store.directory(self.id))
            mapping = self.mounts.get(self.id).idmap
            stdio, master, logged = ready()
            if mapping is not None:
                from lamina.container.monitor.remap import remapped_spec

                spec = remapped_spec(spec, mapping, files, mount_points, None if master is None else stdio.stdin)
            if master is not None:
                # the pty's own devpts instance is the container's /dev/pts: PID 1's terminal
                # is /dev/pts/0 there, as in Docker
                spec = replace(spec, mounts=(*spec.mounts, MountSpec("/dev/pts", "bind", self._pts_path(),
                                                                      ("bind", "nosuid", "noexec"))))
            try:
                state = runtime.start(spec, stdio)
            finally:
                if master is not None:
                    release_devpts(self._pts_path())
        except BaseException:
            release_mount(self.mounts, self.id)
            self._unmount_volumes(container)
            joining.release(host, self.store.directory(self.id))
            attaching.discard()
            raise
        probed = health.probe_of(config) is not None
        monitor.run_dir.write_runtime_state(state)
        started_at = now()

        def change(record: Container) -> None:
            record.state.update(Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
                                Pid=state.pid, ExitCode=0, Error="", StartedAt=started_at)
            record.data["HasBeenStartedBefore"] = True
            if joined.files:
                record.config.update(Hostname=joined.hostname, Domainname=joined.domainname)
            record.data["ShmPath"] = shm
            if probed:
                record.state["Health"] = health.start_of_run(record.state.get("Health"))
            record.data["LogPath"] = self.store.log_path(self.id) if logged else ""
            record.data["HostnamePath"] = files["/etc/hostname"]
            record.data["HostsPath"] = files["/etc/hosts"]
            record.data["ResolvConfPath"] = files["/etc/resolv.conf"]

        # a --rm container's run is not made durable (nor is its root filesystem): if the host
        # crashes while it runs, the record may still say "created"
        self._update(change, durable=not host.get("AutoRemove"))
        if sandbox is not None and network is not None:
            self._update_linkers(container, sandbox, network)
        log.debug("container %s started (pid %d, runtime %s)", self.id, state.pid, state.runtime)
        self._volume_events(container, "mount")
        monitor.event(container, "start")
        return {"rootfs": rootfs}

    def _update_linkers(self, container: Container, sandbox: dict[str, Any], network: MonitorNetwork) -> None:
        """The ``/etc/hosts`` lines naming this container in the running containers that link to
        it on a user-defined network: its address may be new."""
        try:
            links.update_linkers(self.id, container.name, sandbox, network.linkers(sandbox), self.store.directory)
        except (errdefs.LaminaError, OSError) as exc:
            log.warning("cannot update the links to %s: %s", self.id[:12], exc)

    def _mount_volumes(self, mount_points: Any) -> None:
        """Create missing ``-v`` host directories (as ``docker run -v`` does) and mount the
        volumes that have a filesystem of their own (``-o type=... device=...``)."""
        for point in load_mount_points(mount_points):
            if point.type == "bind" and not point.skip_mountpoint_creation and not os.path.exists(point.source):
                try:
                    os.makedirs(point.source, 0o755, exist_ok=True)
                except OSError as exc:
                    raise errdefs.System(f"error while creating mount source path '{point.source}': "
                                         f"{exc.strerror}") from exc
        volumes = self.volumes
        if volumes is None:
            return
        mounted: list[str] = []
        try:
            for name in volume_names(mount_points):
                volumes.mount(name, self.id)
                mounted.append(name)
        except BaseException:
            for name in mounted:
                try:
                    volumes.unmount(name, self.id)
                except errdefs.LaminaError as exc:
                    log.warning("unmounting volume %s of %s: %s", name, self.id, exc)
            raise

    def _unmount_volumes(self, container: Container | None) -> None:
        unpin_subpaths(self.monitor.run_dir.path)
        volumes = self.volumes
        if volumes is None or container is None:
            return
        for name in volume_names(container.data.get("MountPoints")):
            try:
                volumes.unmount(name, self.id)
            except errdefs.LaminaError as exc:
                log.warning("unmounting volume %s of %s: %s", name, self.id, exc)

    # -- while it runs ---------------------------------------------------------------------------

    def _output(self, run: Run, fd: int, stream_type: int) -> None:
        writer = self.monitor.writer
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a pty whose slave side is closed everywhere
                log.warning("reading the container's output: %s", exc)
            data = b""
        if not data:
            self.monitor.loop.forget(fd)
            run.sources.pop(fd, None)
            if run.sink is not None and run.sink.pty and run.sink.fd == fd:
                run.sink.release()
            os.close(fd)
            if writer is not None:
                writer.flush("stdout" if stream_type == STDOUT else "stderr")
            return
        if writer is not None:
            try:
                writer.write("stdout" if stream_type == STDOUT else "stderr", data)
            except errdefs.LaminaError as exc:
                log.error("cannot write the log: %s", exc)
        self.monitor.deliver(stream_type, data)

    def _serve_guarded(self) -> int:
        """:meth:`_serve`; if the monitor itself fails, the container is killed (a container
        nobody watches would leave its mounts and cgroups behind) and its end recorded."""
        try:
            return self._serve()
        except Exception:  # noqa: BLE001 - logged; the run still ends cleanly
            log.exception("monitor of %s failed while the container ran: killing it", self.id)
            self.monitor.health.end()
            run = self.monitor.run
            assert run is not None
            try:
                run.runtime.kill(run.state, signal.SIGKILL)
            except errdefs.LaminaError:
                pass
            deadline = time.monotonic() + 10
            while run.status is None and time.monotonic() < deadline:
                self.monitor.reap()
                time.sleep(0.01)
            for fd in list(run.sources):
                self.monitor.loop.forget(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
            run.sources.clear()
            return run.status if run.status is not None else signal.SIGKILL

    def _serve(self) -> int:
        monitor = self.monitor
        run = monitor.run
        assert run is not None
        monitor.reap()
        while True:
            if run.status is not None:
                if not run.sources or time.monotonic() - run.exited_at > DRAIN_SECONDS:
                    break
                timeout: float | None = max(0.0, DRAIN_SECONDS - (time.monotonic() - run.exited_at))
            else:
                timeout = None
            if monitor.sessions:
                timeout = 0.1 if timeout is None else min(timeout, 0.1)
            probe_due = monitor.health.timeout()
            if probe_due is not None:
                timeout = probe_due if timeout is None else min(timeout, probe_due)
            monitor.loop.poll(timeout)
            monitor.sessions.finish(force=False)
            monitor.health.tick()
        monitor.health.end()
        for fd in list(run.sources):
            monitor.loop.forget(fd)
            os.close(fd)
        run.sources.clear()
        if run.sink is not None:
            run.sink.release()
        if monitor.writer is not None:
            monitor.writer.flush()
        monitor.sessions.finish(force=True)
        assert run.status is not None
        return run.status

    # -- its end ---------------------------------------------------------------------------------

    def _outcome(self, run: Run, status: int) -> tuple[int, bool, float]:
        """(exit code, OOM killed, seconds it ran) of the run that ended with ``status``."""
        oom = False
        try:
            oom = run.runtime.oom_killed(run.state)  # read before its cgroups go
        except errdefs.LaminaError as exc:
            log.warning("cannot read the OOM state of %s: %s", self.id, exc)
        return exit_code(status), oom, time.monotonic() - run.started

    def _end_run(self, run: Run, code: int, oom: bool, *, release: bool = True) -> None:
        """Release what the run holds (``release=False``: but its runtime state (cgroups,
        still described by ``runtime.json``) and root filesystem, released by the caller later)."""
        monitor = self.monitor
        if release:
            self._release_runtime(run)
            release_mount(self.mounts, self.id)
            monitor.run_dir.clear_runtime_state()
        self._unmount_volumes(run.container)
        joining.release(run.container.host_config, self.store.directory(self.id))
        if run.master is not None:
            try:
                os.close(run.master)
            except OSError:
                pass
        monitor.execs.remove_for_container(self.id)
        monitor.run = None
        log.debug("container %s exited with %d%s", self.id, code, " (OOM killed)" if oom else "")

    def _release_runtime(self, run: Run) -> None:
        for _attempt in range(200):
            try:
                # forced: what the container left in its cgroup is killed; Conflict while
                # exited children of ours wait to be reaped
                run.runtime.delete(run.state, force=True)
                return
            except errdefs.Conflict:
                self.monitor.reap()
                time.sleep(0.01)
            except errdefs.LaminaError as exc:
                log.error("cannot release the runtime state of %s: %s", self.id, exc)
                return
        log.error("container %s: processes remain in its cgroup; giving up", self.id)

    def _decide(self, code: int, duration: float) -> tuple[bool, Container | None]:
        try:
            container = self.store.get(self.id)
        except errdefs.LaminaError:
            return False, None
        policy, maximum = specs.restart_policy(container.host_config)
        stopped = bool(container.data.get("HasBeenManuallyStopped") or container.state.get("RemovalInProgress"))
        decision = restart_decision(policy, maximum, exit_code=code, duration=duration, manually_stopped=stopped,
                                    restart_count=self.restarts, previous_delay=self.backoff)
        if decision.restart:
            self.backoff = decision.delay
        return decision.restart, container

    def _record_exit(self, code: int, oom: bool, *, restarting: bool, removing: bool = False) -> None:
        """The exit in the record; ``removing`` (an ``--rm`` container's last exit): not synced,
        and marked for removal in the same write (the removal then writes no record of its own
        before its commit point)."""
        finished = now()

        def change(container: Container) -> None:
            container.state.update(Running=restarting, Restarting=restarting, Paused=False, Pid=0,
                                   ExitCode=code, OOMKilled=oom, FinishedAt=finished, Error="")
            if removing:
                container.state["RemovalInProgress"] = True
            if container.state.get("Health") is not None:
                container.state["Health"] = health.end_of_run(container.state["Health"])
            if restarting:
                container.data["RestartCount"] = int(container.data.get("RestartCount") or 0) + 1

        self._update(change, durable=not removing)
        if restarting:
            self.restarts += 1

    def _wait_to_restart(self) -> bool:
        deadline = time.monotonic() + self.backoff
        while True:
            try:
                container = self.store.get(self.id)
            except errdefs.LaminaError:
                return False
            if container.data.get("HasBeenManuallyStopped") or container.state.get("RemovalInProgress"):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, 0.05))
