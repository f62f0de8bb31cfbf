"""Removing a container's files: the record, its read-write layer, its run directory, its execs.

:func:`destroy` is used by ``rm`` (after the container stopped), by the monitor for ``--rm``
and by prune.  Given the volume service it then drops the container's references to its
volumes and, with ``remove_volumes`` (``rm -v``, ``--rm``), removes its anonymous volumes
that no other container uses.  Its commit point is the rename of ``containers/<id>`` to ``<id>-removing``
(done holding the record's lock, which moves with the directory, so that the start-up sweep
can tell a removal in progress from an interrupted one); everything after it is idempotent and
:func:`finish_removal` completes it after a crash.
"""

from __future__ import annotations

import os
import time

from lamina import errdefs, fsutil
from lamina import mount as lmount
from lamina.container.execstore import ExecStore
from lamina.container.rundir import RunDirectory
from lamina.container.store import ContainerStore
from lamina.layer.mounts import MountStore
from lamina.log import get_logger
from lamina.volume.api import VolumeProvider
from lamina.volume.resolve import release_mounts

__all__ = ["destroy", "finish_removal", "release_mount", "sweep"]

log = get_logger("lamina.container")


def release_mount(mounts: MountStore, container_id: str) -> None:
    """Make sure the container's root filesystem is not mounted (whoever mounted it)."""
    try:
        layer = mounts.get(container_id)
    except errdefs.NotFound:
        return
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


def finish_removal(mounts: MountStore, execs: ExecStore, exec_root: str, container_id: str, path: str) -> None:
    """Everything after the commit point: layer, exec records, run directory, the directory."""
    release_mount(mounts, container_id)
    try:
        mounts.remove(container_id)
    except errdefs.NotFound:
        pass
    execs.remove_for_container(container_id)
    RunDirectory(exec_root, container_id).remove()
    fsutil.remove_tree(path)


def destroy(store: ContainerStore, mounts: MountStore, execs: ExecStore, exec_root: str,
            container_id: str, *, volumes: VolumeProvider | None = None, remove_volumes: bool = False) -> None:
    """Remove a stopped container for good; NotFound when it is gone already."""
    lock = store.lock(container_id)
    try:
        record = store.get(container_id)
        mount_points = record.data.get("MountPoints")
        record.state["RemovalInProgress"] = True
        # for readers meanwhile; not synced: a crash before the commit point leaves the
        # container as it was, which is right
        store.save(record, durable=False)
        path = store.begin_removal(container_id)  # the commit point
        # the lock moved with the directory: holding it tells the sweep we are still at work
        finish_removal(mounts, execs, exec_root, container_id, path)
    finally:
        lock.release()
    if volumes is not None:
        for problem in release_mounts(mount_points, volumes, container_id, remove_anonymous=remove_volumes):
            log.warning("removing container %s: %s", container_id, problem)


def sweep(store: ContainerStore, mounts: MountStore, execs: ExecStore, exec_root: str,
          min_age_seconds: float = 60.0) -> list[str]:
    """Finish removals that a crash interrupted; drop creations that never committed: record
    directories, and read-write layers (named by a container id) whose record never came."""
    done = store.sweep_temporary(min_age_seconds)
    removing = store.removing()
    for container_id, path in removing:
        if store.removal_in_progress(path):
            continue
        finish_removal(mounts, execs, exec_root, container_id, path)
        log.warning("finished the interrupted removal of container %s", container_id)
        done.append(f"finished removal of container {container_id}")
    known = set(store.ids()) | {container_id for container_id, _ in removing}
    current = time.time()
    for container_id in mounts.container_ids():
        if container_id in known or len(container_id) != 64 or not all(c in "0123456789abcdef" for c in container_id):
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
    return done
