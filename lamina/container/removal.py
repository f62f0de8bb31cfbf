"""Removing a container's files: the record, its read-write layer, its run directory, its execs.

:func:`destroy` is used by ``rm`` (after the container stopped), by the monitor for ``--rm``
and by prune.  Given the volume service it then drops the container's references to its
volumes and, with ``remove_volumes`` (``rm -v``, ``--rm``), removes its anonymous volumes
that no other container uses.  Its commit point is the rename of ``containers/<id>`` to ``<id>-removing``;
everything after it is idempotent and :func:`finish_removal` completes it after a crash.  A
caller may be told as soon as the container is gone for every reader (``committed``: after the
read-write layer's own commit point, so that it no longer holds the image's layers, and after
the volumes were released), while the directories are still being deleted: the monitor of a
``--rm`` container wakes its waiters there (``run --rm`` returns without waiting for them).

The run directory (``<exec-root>/containers/<id>``, :mod:`lamina.container.rundir`) goes after
the commit point, once the runtime state its ``runtime.json`` still describes was released (a
run whose monitor died: processes left in its cgroup, the cgroups, the OCI runtime's state);
the monitor of an ``--rm`` container keeps it (``keep_run_directory``) until it released its
run's cgroups, after its waiters woke, and removes it then.  A run directory whose container
has no record and whose monitor is dead (the monitor was killed after the commit point) is
released and removed by the sweep.

A removal holds ``containers/.removal-<id>.lock`` (outside the tree it deletes) from before its
commit point to its end, then unlinks it.  The start-up sweep finishes an ``<id>-removing``
only when it can take that lock itself and the directory still exists: a removal in progress
in another process is never mistaken for an interrupted one (a lock file inside the tree would
be unlinked by the removal itself, and then look free).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from lamina import errdefs, fsutil
from lamina.container.names import is_container_id
from lamina.container.store import CONFIG_FILE, ContainerStore
from lamina.log import get_logger

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:  # the removal's own steps import what they use: a sweep that finds nothing needs none
    from typing import Any
    from lamina.container.execstore import ExecStore
    from lamina.layer.mounts import MountStore
    from lamina.volume.api import VolumeProvider

__all__ = ["destroy", "finish_removal", "release_mount", "remove_run_directory", "sweep", "host_boot_time", "left_by_a_reboot"]

log = get_logger("lamina.container")


def release_mount(mounts: MountStore, container_id: str) -> None:
    """Make sure the container's root filesystem is not mounted (whoever mounted it)."""
    from lamina import mount as lmount

    try:
        layer = mounts.get(container_id)
    except (errdefs.NotFound, errdefs.DataLoss):
        return  # none, or a record a crash left empty: nothing of it can be mounted
    try:
        merged = mounts.driver.metadata(layer.mount_id).get("MergedDir")
    except errdefs.LaminaError:
        merged = None
    try:
        mounts.unmount(container_id)
    except errdefs.LaminaError:
        pass  # not mounted by this process
    if merged and lmount.is_mountpoint(merged):
        lmount.unmount(merged, detach=True)


def remove_run_directory(exec_root: str, container_id: str) -> bool:
    """Remove the container's run directory, after releasing the run its ``runtime.json``
    still describes when no monitor lives (the runtime by its name, from the registry);
    whether there was such a run."""
    from lamina.container.rundir import RunDirectory

    run_dir = RunDirectory(exec_root, container_id)
    released = os.path.exists(run_dir.runtime_file) and not run_dir.monitor_alive()
    if released:
        from lamina.runtime.registry import Runtimes

        problem = run_dir.release_run(Runtimes(exec_root).get)
        if problem:
            log.warning("removing container %s: %s", container_id, problem)
    run_dir.remove()
    return released


def finish_removal(mounts: MountStore, execs: ExecStore, exec_root: str, container_id: str, path: str,
                   committed: Callable[[], None] | None = None, *, durable: bool = True,
                   keep_run_directory: bool = False) -> None:
    """Everything after the commit point: exec records, layer, run directory, the directory;
    ``committed`` is called once the read-write layer was let go (its record renamed: it holds
    no image layer any more), before the run directory is removed and the layer's directories
    unmounted (the root filesystem, if still mounted: the driver's removal) and deleted;
    ``durable=False``: its commit point is not synced (see :func:`destroy`);
    ``keep_run_directory``: the caller (an ``--rm`` container's monitor) removes it later."""
    from lamina.container.joining import shm_path, unmount_shm

    execs.remove_for_container(container_id)
    called = False

    def let_go() -> None:
        nonlocal called
        called = True
        if committed is not None:
            committed()
        if not keep_run_directory:
            remove_run_directory(exec_root, container_id)

    try:
        mounts.remove(container_id, let_go, durable=durable)
    except errdefs.NotFound:
        pass
    if not called:
        let_go()
    unmount_shm(shm_path(path))  # a shareable /dev/shm that a crashed run left mounted
    fsutil.remove_tree(path)


def _removal_lock(store: ContainerStore, container_id: str) -> fsutil.FileLock:
    return fsutil.FileLock(os.path.join(store.root, f".removal-{container_id}.lock"))


def _drop_removal_lock(lock: fsutil.FileLock) -> None:
    """Unlink the held lock file (when the name still is the file we hold), then release it."""
    try:
        held = lock.stat()
        named = os.stat(lock.path)
        if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
            os.unlink(lock.path)
    except FileNotFoundError:
        pass
    finally:
        lock.release()


def destroy(store: ContainerStore, mounts: MountStore, execs: ExecStore, exec_root: str,
            container_id: str, *, volumes: VolumeProvider | None = None, remove_volumes: bool = False,
            committed: Callable[[], None] | None = None, durable: bool = True,
            keep_run_directory: bool = False) -> None:
    """Remove a stopped container for good; NotFound when it is gone already.  ``committed``
    is called once the container is gone for every reader (its volumes released too), before
    its directories are deleted.  ``durable=False`` (the monitor's removal of a ``--rm``
    container): the commit points are not synced; after a host crash the container may be
    back, in whatever state last reached the disk (see :mod:`lamina.container.store`).
    ``keep_run_directory``: see :func:`finish_removal`."""
    lock = store.lock(container_id)
    removal = _removal_lock(store, container_id)
    mount_points: Any = None
    released = False

    def release_volumes() -> None:
        nonlocal released
        released = True
        if volumes is not None:
            from lamina.volume.resolve import release_mounts

            for problem in release_mounts(mount_points, volumes, container_id, remove_anonymous=remove_volumes):
                log.warning("removing container %s: %s", container_id, problem)

    def gone() -> None:
        release_volumes()
        if committed is not None:
            committed()

    try:
        try:
            record = store.get(container_id)
        except errdefs.DataLoss as exc:
            # a damaged record (a --rm create a host crash cut short, see lamina.container.store)
            # is removed all the same; its volumes' references lapse (lamina.volume.store)
            log.warning("removing container %s: %s", container_id, exc)
        else:
            mount_points = record.data.get("MountPoints")
            if not record.state.get("RemovalInProgress"):  # a --rm container's exit record has it
                record.state["RemovalInProgress"] = True
                # for readers meanwhile; not synced: a crash before the commit point leaves the
                # container as it was, which is right
                store.save(record, durable=False)
        removal.acquire()  # held from before the commit point to the end: the sweep tests it
        path = store.begin_removal(container_id, durable=durable)  # the commit point
        finish_removal(mounts, execs, exec_root, container_id, path, gone if committed is not None else None,
                       durable=durable, keep_run_directory=keep_run_directory)
    finally:
        _drop_removal_lock(removal)
        lock.release()
    if not released:
        release_volumes()


def sweep(store: ContainerStore, mounts: MountStore, execs: ExecStore, exec_root: str,
          min_age_seconds: float = 60.0) -> list[str]:
    """Finish removals that a crash interrupted; drop creations that never committed: record
    directories, and read-write layers (named by a container id) whose record never came."""
    done = store.sweep_temporary(min_age_seconds)
    removing = store.removing()
    for container_id, path in removing:
        removal = _removal_lock(store, container_id)
        if not removal.try_acquire():
            continue  # another process is removing it
        try:
            if not os.path.isdir(path):
                continue  # finished meanwhile
            finish_removal(mounts, execs, exec_root, container_id, path)
        finally:
            _drop_removal_lock(removal)
        log.warning("finished the interrupted removal of container %s", container_id)
        done.append(f"finished removal of container {container_id}")
    for name in os.listdir(store.root):
        # a removal killed before its commit point or after its last step left its lock file
        if name.startswith(".removal-") and name.endswith(".lock"):
            container_id = name[len(".removal-"):-len(".lock")]
            removal = _removal_lock(store, container_id)
            if removal.try_acquire():
                if os.path.isdir(os.path.join(store.root, container_id + "-removing")):
                    removal.release()  # the loop above found it held: a removal runs
                else:
                    _drop_removal_lock(removal)
    known = set(store.ids()) | {container_id for container_id, _ in removing}
    current = time.time()
    for container_id in mounts.container_ids():
        if container_id in known or not is_container_id(container_id):
            continue  # a container's, or not a container's at all (build steps name theirs)
        try:
            age = current - os.lstat(os.path.join(mounts.layers.root, "mounts", container_id)).st_mtime
        except FileNotFoundError:
            continue
        if age < min_age_seconds or store.exists(container_id):
            continue  # a create in progress publishes its record right after the layer
        try:
            mounts.remove(container_id)
        except errdefs.NotFound:
            continue
        log.warning("removed the read-write layer of container %s, whose creation was interrupted", container_id)
        done.append(f"removed orphan read-write layer {container_id}")
    return done + _sweep_run_directories(store, exec_root, known)


def _sweep_run_directories(store: ContainerStore, exec_root: str, known: set[str]) -> list[str]:
    """Release and remove the run directories of containers that have no record and no live
    monitor: an ``--rm`` container's monitor killed after its removal's commit point, before
    it released the run's cgroups.  One ``listdir`` when there are none; the run directory's
    module is loaded only for one to remove (``ps`` loads no run machinery)."""
    runs = os.path.join(exec_root, "containers")
    try:
        names = os.listdir(runs)
    except FileNotFoundError:
        return []
    done = []
    for container_id in names:
        if container_id in known or not is_container_id(container_id):
            continue
        if fsutil.lock_is_held(os.path.join(runs, container_id, "monitor.lock")):
            continue  # an --rm container's monitor releasing its run after the removal
        removal = _removal_lock(store, container_id)
        if not removal.try_acquire():
            continue  # a removal runs: it removes the run directory itself
        try:
            # looked at again under the lock: a container created since ``known`` was listed
            # (its waiters make its run directory before its monitor starts)
            if any(os.path.isdir(os.path.join(store.root, name)) for name in (container_id, container_id + "-removing")):
                continue
            released = remove_run_directory(exec_root, container_id)
        finally:
            _drop_removal_lock(removal)
        if released:  # else a waiter's run directory, made after the removal
            log.warning("released the run of removed container %s, whose monitor died", container_id)
            done.append(f"released the run of removed container {container_id}")
    return done


def host_boot_time() -> float:
    """When the host booted (``btime`` of ``/proc/stat``, seconds since the epoch)."""
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise errdefs.System("/proc/stat has no btime line")


def left_by_a_reboot(store: ContainerStore, alive: Callable[[str], bool], booted: float) -> list[str]:
    """The ``--rm`` containers a host crash or reboot left behind, as dockerd removes them at
    its start: not running, and either run before (exited, its monitor gone: it never
    finished its removal) or created before the host booted (so no ``run --rm`` of this boot
    is about to start it); and the records a crash left with empty files (a ``--rm`` create
    is not synced: see :mod:`lamina.container.store`) written before the boot."""
    from lamina.container.state import seconds_of

    out = []
    for container in store.list():
        if not container.host_config.get("AutoRemove") or container.state.get("Running"):
            continue
        if container.data.get("HasBeenStartedBefore"):
            if not alive(container.id):
                out.append(container.id)
        elif seconds_of(container.data.get("Created")) < booted:
            out.append(container.id)
    for container_id in store.cut_short():
        try:
            written = os.lstat(os.path.join(store.directory(container_id), CONFIG_FILE)).st_mtime
        except FileNotFoundError:
            continue
        if written < booted:
            out.append(container_id)
    return out
