"""A container's files: changes, export, ``docker cp``'s archive endpoints, and commit's
container half (the config with the user's changes, pausing the container, the event); the
image is stored by :meth:`lamina.services.images.ImageServiceImpl.commit`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from lamina import errdefs, fsutil
from lamina.config import EngineConfig
from lamina.container import spec as specs
from lamina.container.store import Container
from lamina.image.config import ContainerConfig
from lamina.layer.mounts import INIT_PATHS
from lamina.log import get_logger
from lamina.records import dataclass
from lamina.runtime.api import RuntimeState
from lamina.services.containers.common import ContainerGroup
from lamina.services.images import new_tag

__all__ = ["ContainerFilesImpl"]

log = get_logger("lamina.services")

# how long commit waits for a container whose pause failed to be recorded as exited
_EXIT_WAIT = 5.0
_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}
# paths the runtime mounts over (their copy-ups are not the user's changes)
_MOUNT_TARGETS = {"/" + path for path, kind, _ in INIT_PATHS if kind == "file"}
_INIT_DIRECTORIES = {"/" + path for path, kind, _ in INIT_PATHS if kind == "dir"} | {"/"}


# the files the runtime mounts from the container's directory: (destination, the record's key, name)
_CONTAINER_FILES = (("/etc/hosts", "HostsPath", "hosts"), ("/etc/hostname", "HostnamePath", "hostname"),
                    ("/etc/resolv.conf", "ResolvConfPath", "resolv.conf"))


def _absolute(path: str) -> str:
    """``path`` as a normalized absolute path (one leading slash: POSIX keeps ``//x``)."""
    import posixpath

    return "/" + posixpath.normpath("/" + path).lstrip("/")


def _has_freezer(config: EngineConfig) -> bool:
    """Root, or rootless in a delegated cgroup (:mod:`lamina.runtime.delegation`)."""
    if config.rootless_uid is None:
        return True
    from lamina.runtime.delegation import current

    return current() is not None


@dataclass(frozen=True)
class _CopyRoot:
    """Where a ``docker cp`` path lives: an O_PATH descriptor of a root, the path inside it,
    the release function, whether it is writable (None: the root filesystem) and the archive
    name of a file mounted under another name."""

    fd: int
    inner: str
    release: Callable[[], None]
    writable: bool | None
    name: str | None = None


class ContainerFilesImpl(ContainerGroup):
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

        mapping = self.mounts.get(container.id).idmap

        def generate() -> Iterator[bytes]:
            try:
                yield from export_tree(f"/proc/self/fd/{fd}", overlay_whiteouts=False,
                                       owner=None if mapping is None else mapping.to_container)
            finally:
                release()

        return generate()

    def _copy_mounts(self, container: Container) -> list[tuple[str, str, bool]]:
        """(destination, host source, writable) of what ``docker cp`` sees mounted over the root
        filesystem, as Docker's cp mounts them: the volumes and binds of ``MountPoints``, and,
        where no user mount replaces them, the ``hostname``, ``hosts`` and ``resolv.conf`` the
        runtime mounts from the container's directory once it has started (read-only with a
        read-only root filesystem, as Docker mounts them)."""
        from lamina.volume.resolve import load_mount_points

        out = []
        for point in load_mount_points(container.data.get("MountPoints")):
            if point.source and point.type in ("volume", "bind"):
                out.append((_absolute(point.destination), point.source, point.rw))
        taken = {destination for destination, _, _ in out}
        directory = self.store.directory(container.id)
        writable = not container.host_config.get("ReadonlyRootfs")
        for destination, key, name in _CONTAINER_FILES:
            if destination not in taken and container.data.get(key):
                source = os.path.join(directory, name)
                if os.path.isfile(source):
                    out.append((destination, source, writable))
        return out

    def _archive_root(self, container: Container, path: str) -> _CopyRoot:
        """Where ``docker cp`` reads or writes ``path``: inside the mount at the longest matching
        destination (a volume, a bind, one of the container's own files), else in the root
        filesystem.  A file mounted on its own is reached through its host directory."""
        import posixpath

        clean = _absolute(path)
        best = None
        for destination, source, writable in self._copy_mounts(container):
            if clean == destination or clean.startswith(destination.rstrip("/") + "/"):
                if best is None or len(destination) > len(best[0]):
                    best = (destination, source, writable)
        if best is None:
            fd, release = self._with_rootfs(container.id)
            return _CopyRoot(fd, path, release, None)
        destination, source, writable = best
        try:
            fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            if clean != destination:
                raise errdefs.NotFound(f"Could not find the file {path} in container {container.id}") from None
            parent, name = os.path.split(source)
            try:
                fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise fsutil.system_error(f"open the mount source of {destination}", exc) from exc
            return _CopyRoot(fd, "/" + name, lambda: os.close(fd), writable, posixpath.basename(destination))
        except OSError as exc:
            raise fsutil.system_error(f"open the mount source of {destination}", exc) from exc
        inner = "/" + clean[len(destination):].lstrip("/")
        if path.endswith("/") and not inner.endswith("/"):
            inner += "/"
        return _CopyRoot(fd, inner, lambda: os.close(fd), writable)

    def _file_mounts_below(self, container: Container, path: str) -> dict[str, tuple[str, bool]]:
        """The files mounted on their own below the directory ``path``, by their path relative
        to it, with whether they are writable (an extraction into ``/etc`` writes ``hosts``
        into the container's hosts file)."""
        clean = _absolute(path)
        prefix = clean.rstrip("/") + "/"
        return {destination[len(prefix):]: (source, writable)
                for destination, source, writable in self._copy_mounts(container)
                if destination.startswith(prefix) and os.path.isfile(source)}

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        from lamina.container.archive import path_stat

        container = self._get(id)
        root = self._archive_root(container, path)
        try:
            result = path_stat(root.fd, root.inner, container.id)
            result["name"] = os.path.basename(path.rstrip("/")) or result.get("name", "/")
            return result
        finally:
            root.release()

    def archive_get(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        from lamina.container.archive import archive_path

        container = self._get(id)
        root = self._archive_root(container, path)
        try:
            stat_result, chunks = archive_path(root.fd, root.inner, container.id, self.mounts.get(container.id).idmap,
                                               name=root.name)
            if root.name is not None:
                stat_result["name"] = root.name
        except BaseException:
            root.release()
            raise

        def generate() -> Iterator[bytes]:
            try:
                yield from chunks
            finally:
                chunks.close()  # type: ignore[attr-defined]
                root.release()

        return stat_result, generate()

    def archive_put(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        from lamina.container.archive import extract_archive

        container = self._get(id)
        root = self._archive_root(container, path)
        try:
            if root.writable is False:
                raise errdefs.Conflict("mounted volume is marked read-only")
            if root.writable is None and container.host_config.get("ReadonlyRootfs"):
                raise errdefs.Conflict("container rootfs is marked read-only")
            extract_archive(root.fd, root.inner, stream, container.id,
                            no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, copy_uid_gid=copy_uid_gid,
                            owner=self.mounts.get(container.id).idmap,
                            file_mounts=self._file_mounts_below(container, path))
        finally:
            root.release()

    def _pause_for_commit(self, container: Container) -> RuntimeState | None:
        """Freeze a running container for its commit; the runtime state to resume, or None when
        there is nothing to pause.  A container that exits at that moment (its cgroup gone, its
        monitor done) is committed as exited, as Docker does, instead of failing the commit."""
        if not container.state.get("Running") or container.state.get("Paused") \
                or container.state.get("Restarting"):
            return None
        run_lock, after = self._last_sequence(container.id)
        try:
            state = self._runtime_state(container)
            self.runtime(state.runtime).pause(state)
        except (errdefs.Conflict, errdefs.FailedPrecondition, errdefs.NotFound):
            # the pause fails when the container's cgroup went away with its last process: the
            # monitor is recording the exit, which comes within moments
            self._wait_exit(container.id, run_lock, after, timeout=_EXIT_WAIT)
            if self.store.get(container.id).state.get("Running"):
                raise
            log.info("container %s stopped while being paused for commit; committing it as exited", container.id)
            return None
        return state

    def commit(self, id: str, *, repository: str = "", tag: str = "", comment: str = "", author: str = "",
               pause: bool = True, changes: list[str] | None = None,
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        container = self._get(id)
        if tag and not repository:
            raise errdefs.InvalidArgument("tag is not allowed without a repository")
        reference = new_tag(repository, tag, digest_error="refusing to create a tag with a digest reference")
        base = ContainerConfig.from_dict(config if config else container.config, "config.")
        new_config = base.apply_changes(changes or [])
        merged = specs.merge_image_config(new_config.to_dict(), container.config)
        image_config = ContainerConfig.from_dict(merged, "config.")
        container_config = ContainerConfig.from_dict(container.config, "Config.")
        parent_id = str(container.data.get("Image") or "")
        # rootless without delegated cgroups there is no freezer: commit as Podman does, unpaused
        state = self._pause_for_commit(container) if pause and _has_freezer(self.config) else None
        paused_here = state is not None
        try:
            image_id = self.images.commit(container.id, parent=parent_id, config=image_config,
                                          container_config=container_config, author=author, comment=comment,
                                          container=container.id, reference=reference)
        finally:
            if paused_here and state is not None:
                try:
                    self.runtime(state.runtime).resume(state)
                except errdefs.LaminaError as exc:
                    log.error("container %s stays paused after commit: %s", container.id, exc)
        self._event(container, "commit", {"comment": comment, "imageID": str(image_id),
                                          "imageRef": reference.familiar_string() if reference is not None else ""})
        return {"Id": str(image_id)}
