"""Resolving a container's mounts: volumes created and referenced, mount points stored, runtime mounts.

:func:`resolve_mounts` turns a container's configuration (parsed by :mod:`lamina.volume.parse`)
into :class:`ResolvedMount` values: volumes are created (or found) and referenced by the
container, each mount gets its :class:`~lamina.volume.parse.MountPoint` (Docker's
``config.v2.json`` ``MountPoints`` entry, and the ``Mounts`` of ``inspect``) and its
:class:`lamina.runtime.api.MountSpec` for the runtime.  Precedence is Docker's:
``--volumes-from`` first, then ``Binds`` and ``Mounts`` (which replace a volumes-from mount at
the same destination; between themselves a repeated destination is ``Duplicate mount point:
/x``), then anonymous volumes for ``Config.Volumes`` and the image's ``VOLUME``s at
destinations nothing else covers.  On failure every reference taken is released and every
anonymous volume created is removed again.

A stored container's ``MountPoints`` are read back by :func:`load_mount_points` and give its
runtime mounts (:func:`runtime_mounts`), its ``inspect`` ``Mounts``, the volumes it uses
(:func:`volume_names`) and, at removal, the references it drops (:func:`release_mounts`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lamina import errdefs
from lamina.log import get_logger
from lamina.records import dataclass, replace
from lamina.runtime.api import MountSpec
from lamina.volume.api import DEFAULT_DRIVER, VolumeProvider
from lamina.volume.local import validate_name
from lamina.volume.parse import (
    DEFAULT_PROPAGATION,
    MountPoint,
    clean_path,
    destination_problem,
    mount_point_from_spec,
    parse_volume_spec,
    parse_volumes_from,
    read_write,
    tmpfs_options,
    tmpfs_words,
)

__all__ = [
    "ResolvedMount", "VolumesFromLookup",
    "resolve_mounts", "runtime_mounts", "mount_points_json", "load_mount_points", "inspect_mounts",
    "volume_names", "release_mounts", "populate_volumes",
]

log = get_logger("lamina.volume")

_TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", DEFAULT_PROPAGATION)

# name or id -> the other container's MountPoints (config.v2.json shape, keyed by destination)
# name or id -> the other container's MountPoints (config.v2.json shape, keyed by destination)
VolumesFromLookup = Callable[[str], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class ResolvedMount:
    """A mount of a container: its runtime mount, and its MountPoint (``None`` for
    ``HostConfig.Tmpfs`` entries, which Docker keeps out of ``MountPoints``)."""

    destination: str
    spec: MountSpec
    mount_point: MountPoint | None
    copy_data: bool = False     # an empty volume gets the image's files at create time


# -- the resolver ----------------------------------------------------------------------------

def _duplicate(destination: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"Duplicate mount point: {destination}")


def _check_volume_name(point: MountPoint) -> None:
    if point.type != "volume" or not point.name or (point.driver or DEFAULT_DRIVER) != DEFAULT_DRIVER:
        return
    try:
        validate_name(point.name)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"create {point.name}: {exc}") from exc


def _anonymous_destinations(container_config: Mapping[str, Any], image_volumes: Mapping[str, Any] | None) -> list[str]:
    destinations: list[str] = []
    for source in ((container_config or {}).get("Volumes"), image_volumes):
        if source is None:
            continue
        if not isinstance(source, Mapping):
            raise errdefs.InvalidArgument(f"invalid Volumes {source!r}: expected an object of paths")
        for path in source:
            problem = destination_problem(path) if isinstance(path, str) else f"invalid volume path {path!r}"
            if problem:
                raise errdefs.InvalidArgument(f"invalid volume {path!r}: {problem}")
            cleaned = clean_path(path)
            if cleaned not in destinations:
                destinations.append(cleaned)
    return destinations


def resolve_mounts(container_config: Mapping[str, Any] | None, host_config: Mapping[str, Any] | None,
                   image_volumes: Mapping[str, Any] | None, volumes: VolumeProvider, container_id: str, *,
                   volumes_from: VolumesFromLookup | None = None) -> list[ResolvedMount]:
    """Every mount of a new container, volumes created and referenced by ``container_id``.

    ``container_config`` is the create request's Config (its ``Volumes``), ``host_config`` its
    HostConfig (``Binds``, ``Mounts``, ``Tmpfs``, ``VolumesFrom``, ``VolumeDriver``),
    ``image_volumes`` the image config's ``Volumes``.  ``volumes_from`` maps a container name
    or id to its stored ``MountPoints`` (raising ``errdefs.NotFound`` for unknown ones).
    Everything is parsed and checked before any volume is created.  The result is sorted so
    that a mount never hides one below it (fewer path components first).
    """
    host_config = host_config or {}
    volume_driver = host_config.get("VolumeDriver") or ""
    if not isinstance(volume_driver, str):
        raise errdefs.InvalidArgument("invalid HostConfig.VolumeDriver: expected a string")

    def entries(key: str, kind: type) -> Any:
        value = host_config.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise errdefs.InvalidArgument(f"invalid HostConfig.{key}: expected a JSON {kind.__name__}")
        return value

    sources = [parse_volumes_from(text) for text in entries("VolumesFrom", list)]
    if sources and volumes_from is None:
        raise errdefs.InvalidArgument("--volumes-from is not available here (no container lookup)")
    binds = [parse_volume_spec(text, volume_driver) for text in entries("Binds", list)]
    mounts = [mount_point_from_spec(item) for item in entries("Mounts", list)]
    tmpfs: dict[str, tuple[str, ...]] = {}
    for destination, data in entries("Tmpfs", dict).items():
        if not isinstance(data, str):
            raise errdefs.InvalidArgument(f"invalid tmpfs options for {destination}: expected a string")
        problem = destination_problem(destination)
        if problem:
            raise errdefs.InvalidArgument(problem)
        tmpfs[clean_path(destination)] = tmpfs_words(destination, data)
    anonymous = _anonymous_destinations(container_config or {}, image_volumes)

    explicit: set[str] = set()
    for point in binds:
        if point.destination in explicit or point.destination in tmpfs:
            raise _duplicate(point.destination)
        explicit.add(point.destination)
    for point in mounts:
        if point.destination in explicit or point.destination in tmpfs:
            raise _duplicate(point.spec.get("Target") or point.destination)
        explicit.add(point.destination)
    for point in [*binds, *mounts]:
        _check_volume_name(point)

    acquired: list[str] = []          # volume names referenced (once per take)
    created_anonymous: list[str] = []
    points: dict[str, MountPoint] = {}
    inherited: set[str] = set()       # destinations from --volumes-from (never copied into)

    def take_volume(point: MountPoint, *, driver_opts: Any = None, labels: Any = None) -> MountPoint:
        volume = volumes.create(point.name, driver=point.driver, driver_opts=driver_opts, labels=labels,
                                reference=container_id)
        acquired.append(volume["Name"])
        if not point.name:
            created_anonymous.append(volume["Name"])
        mode = point.mode or ("z" if volume["Driver"] == DEFAULT_DRIVER else "")
        return replace(point, name=volume["Name"], driver=volume["Driver"], source=volume["Mountpoint"], mode=mode)

    def place(point: MountPoint) -> None:
        previous = points.get(point.destination)
        if previous is not None and previous.type == "volume" and previous.name in acquired:
            acquired.remove(previous.name)
            if previous.name not in acquired:
                volumes.release(previous.name, container_id)
        points[point.destination] = point

    try:
        for name, mode in sources:
            try:
                others = volumes_from(name) if volumes_from is not None else {}
            except errdefs.NotFound as exc:
                raise errdefs.InvalidArgument(str(exc)) from exc
            for value in others.values():
                other = MountPoint.from_json(value)
                point = replace(other, rw=other.rw and read_write(mode), mode="")
                if point.type == "volume" and point.name:
                    volume = volumes.acquire(point.name, container_id)
                    acquired.append(point.name)
                    point = replace(point, source=volume["Mountpoint"], driver=volume["Driver"])
                place(point)
                inherited.add(point.destination)
        for point in binds:
            if point.type == "volume":
                point = take_volume(point)
            elif not os.path.exists(point.source):
                # -v creates a missing host directory (Docker's legacy behaviour; --mount does not)
                try:
                    os.makedirs(point.source, 0o755, exist_ok=True)
                except OSError as exc:
                    raise errdefs.InvalidArgument(
                        f"invalid volume specification: cannot create bind source {point.source}: "
                        f"{exc.strerror}") from exc
            place(point)
            inherited.discard(point.destination)
        for point in mounts:
            if point.type == "volume":
                options = point.spec.get("VolumeOptions") or {}
                driver_config = options.get("DriverConfig") or {}
                point = take_volume(point, driver_opts=driver_config.get("Options"), labels=options.get("Labels"))
            place(point)
            inherited.discard(point.destination)
        for destination in anonymous:
            if destination in points or destination in tmpfs:
                continue
            place(take_volume(MountPoint(type="volume", destination=destination)))
    except BaseException:
        _undo(volumes, container_id, acquired, created_anonymous)
        raise

    resolved = [ResolvedMount(point.destination, _runtime_mount(point), point,
                              copy_data=point.copy_data and point.destination not in inherited)
                for point in points.values()]
    resolved += [ResolvedMount(destination, _tmpfs_mount(destination, words), None)
                 for destination, words in tmpfs.items()]
    return sorted(resolved, key=lambda item: _depth(item.destination))


def _undo(volumes: VolumeProvider, container_id: str, acquired: list[str], created: list[str]) -> None:
    for name in dict.fromkeys(acquired):
        try:
            volumes.release(name, container_id)
        except errdefs.LaminaError as exc:
            log.warning("could not release volume %s after a failed create: %s", name, exc)
    for name in created:
        try:
            volumes.remove(name, force=True)
        except errdefs.LaminaError as exc:
            log.warning("could not remove anonymous volume %s after a failed create: %s", name, exc)


def _depth(destination: str) -> int:
    return clean_path(destination).rstrip("/").count("/")


# -- from stored mount points to the runtime ------------------------------------------------

def _runtime_mount(point: MountPoint) -> MountSpec:
    if point.type == "tmpfs":
        data = tmpfs_options(point.spec.get("TmpfsOptions"), not point.rw)
        return _tmpfs_mount(point.destination, tuple(word for word in data.split(",") if word))
    if point.type not in ("bind", "volume"):
        raise errdefs.InvalidArgument(f"cannot mount {point.destination}: mount type {point.type!r} unknown")
    if not point.source:
        raise errdefs.InvalidArgument(f"cannot mount {point.destination}: the mount point has no source")
    bind_options = point.spec.get("BindOptions") or {}
    options = ["bind" if bind_options.get("NonRecursive") else "rbind"]
    if not point.rw:
        options.append("ro")
    options.append(point.propagation or DEFAULT_PROPAGATION)
    return MountSpec(point.destination, "bind", point.source, tuple(options))


def _tmpfs_mount(destination: str, words: tuple[str, ...]) -> MountSpec:
    return MountSpec(destination, "tmpfs", "tmpfs", (*_TMPFS_DEFAULTS, *words))


def load_mount_points(stored: Mapping[str, Any] | None) -> list[MountPoint]:
    """``config.v2.json``'s ``MountPoints`` (destination -> record) as values."""
    if not stored:
        return []
    if not isinstance(stored, Mapping):
        raise errdefs.DataLoss("MountPoints is not a JSON object")
    return [MountPoint.from_json(value) for value in stored.values()]


def mount_points_json(resolved: Iterable[ResolvedMount]) -> dict[str, dict[str, Any]]:
    """The ``MountPoints`` object of ``config.v2.json`` for ``resolved``."""
    return {item.destination: item.mount_point.to_json() for item in resolved if item.mount_point is not None}


def runtime_mounts(stored: Mapping[str, Any] | None, tmpfs: Mapping[str, str] | None = None) -> tuple[MountSpec, ...]:
    """The runtime's mounts for a container from its stored ``MountPoints`` and
    ``HostConfig.Tmpfs``, parents before children."""
    items = [(point.destination, _runtime_mount(point)) for point in load_mount_points(stored)]
    for destination, data in (tmpfs or {}).items():
        items.append((clean_path(destination), _tmpfs_mount(clean_path(destination), tmpfs_words(destination, data))))
    return tuple(spec for _, spec in sorted(items, key=lambda item: _depth(item[0])))


def inspect_mounts(stored: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``inspect``'s ``Mounts``: one item per stored mount point, by destination."""
    return [point.to_inspect() for point in sorted(load_mount_points(stored), key=lambda p: p.destination)]


def volume_names(stored: Mapping[str, Any] | None) -> list[str]:
    """The volumes a container uses (to mount before it starts and unmount after)."""
    return list(dict.fromkeys(point.name for point in load_mount_points(stored)
                              if point.type == "volume" and point.name))


def release_mounts(stored: Mapping[str, Any] | None, volumes: VolumeProvider, container_id: str, *,
                   remove_anonymous: bool = False) -> list[str]:
    """Drop a removed container's references; with ``remove_anonymous`` (``rm -v``,
    ``--rm``) also remove its anonymous volumes that no other container uses.  Returns the
    error messages of what could not be done (Docker logs and reports them, and goes on)."""
    problems = []
    for point in load_mount_points(stored):
        if point.type != "volume" or not point.name:
            continue
        try:
            volumes.release(point.name, container_id)
        except errdefs.LaminaError as exc:
            problems.append(str(exc))
            continue
        if not remove_anonymous or not point.anonymous:
            continue
        try:
            volumes.remove(point.name)
        except errdefs.NotFound:
            pass
        except errdefs.Conflict:
            pass  # another container uses it (--volumes-from): not an error, Docker says
        except errdefs.LaminaError as exc:
            problems.append(str(exc))
    return problems


def populate_volumes(resolved: Iterable[ResolvedMount], rootfs: str, volumes: Any, container_id: str) -> list[str]:
    """Copy the image's files into each empty volume that asks for it (Docker's copy-up at
    create time; not for ``nocopy`` nor for volumes inherited with ``--volumes-from``);
    ``rootfs`` is the container's mounted root.  ``volumes`` needs ``mount`` and ``unmount``
    (a volume with a filesystem is mounted for the copy).  Returns the names of the volumes
    that were populated."""
    from lamina.volume.populate import populate_from_image

    populated = []
    for item in resolved:
        point = item.mount_point
        if point is None or not item.copy_data or not point.name:
            continue
        path = volumes.mount(point.name, container_id)
        try:
            if populate_from_image(path, rootfs, point.destination):
                populated.append(point.name)
        finally:
            volumes.unmount(point.name, container_id)
    return populated
