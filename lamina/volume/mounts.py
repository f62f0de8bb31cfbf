"""The names of :mod:`lamina.volume.parse` and :mod:`lamina.volume.resolve` under their old home.

``lamina.volume.mounts`` was split into parsing (``-v``, ``--mount``, ``--tmpfs``,
``--volumes-from``) and resolving (a container's mount points, volumes and runtime mounts).
Code being restructured on other branches still imports from here; new code imports from the
two modules.  Remove this module once nothing imports it.
"""

from __future__ import annotations

from lamina.volume.parse import (
    DEFAULT_PROPAGATION,
    PROPAGATION_MODES,
    MountPoint,
    mount_point_from_spec,
    parse_mount_spec,
    parse_tmpfs_spec,
    parse_volume_spec,
    parse_volumes_from,
    split_volume_flags,
    tmpfs_options,
    validate_tmpfs,
)
from lamina.volume.resolve import (
    ResolvedMount,
    VolumesFromLookup,
    inspect_mounts,
    load_mount_points,
    mount_points_json,
    populate_volumes,
    release_mounts,
    resolve_mounts,
    runtime_mounts,
    volume_names,
)

__all__ = [
    "MountPoint", "ResolvedMount", "VolumesFromLookup",
    "parse_volume_spec", "parse_mount_spec", "parse_tmpfs_spec", "parse_volumes_from", "validate_tmpfs",
    "mount_point_from_spec", "split_volume_flags", "tmpfs_options",
    "resolve_mounts", "runtime_mounts", "mount_points_json", "load_mount_points", "inspect_mounts",
    "volume_names", "release_mounts", "populate_volumes",
    "PROPAGATION_MODES", "DEFAULT_PROPAGATION",
]
