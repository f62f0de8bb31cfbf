"""A container's files: changes, export, ``docker cp``'s archive endpoints, and commit's
container half (the config with the user's changes, pausing the container, the event); the
image is stored by :meth:`lamina.services.images.ImageServiceImpl.commit`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from lamina import errdefs, fsutil
from lamina.container import spec as specs
from lamina.container.store import Container
from lamina.image.config import ContainerConfig
from lamina.layer.mounts import INIT_PATHS
from lamina.log import get_logger
from lamina.services.containers.common import ContainerGroup
from lamina.services.images import new_tag

__all__ = ["ContainerFilesImpl"]

log = get_logger("lamina.services")

_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}
# paths the runtime mounts over (their copy-ups are not the user's changes)
_MOUNT_TARGETS = {"/" + path for path, kind, _ in INIT_PATHS if kind == "file"}
_INIT_DIRECTORIES = {"/" + path for path, kind, _ in INIT_PATHS if kind == "dir"} | {"/"}


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

    def _archive_root(self, container: Container, path: str) -> tuple[int, str, Callable[[], None], bool | None]:
        """Where ``docker cp`` reads or writes ``path``: inside the volume or bind mounted at the
        longest matching destination (as Docker's cp sees mounts), else in the root filesystem.

        Returns (an O_PATH descriptor of that root, the path inside it, release, writable), where
        writable is None for the root filesystem itself."""
        import posixpath

        from lamina.volume.resolve import load_mount_points

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
            stat_result, chunks = archive_path(fd, inner, container.id, self.mounts.get(container.id).idmap)
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
                            copy_uid_gid=copy_uid_gid, owner=self.mounts.get(container.id).idmap)
        finally:
            release()

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
        paused_here = False
        state = None
        if pause and container.state.get("Running") and not container.state.get("Paused") \
                and not container.state.get("Restarting"):
            state = self._runtime_state(container)
            self.runtime(state.runtime).pause(state)
            paused_here = True
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
