"""A remapped container's start (``--userns-remap``): the runtime spec gets the user namespace
and its maps, and what the container must be able to write on the host belongs to the
mapping's root, as Docker makes it: the ``hostname``, ``hosts`` and ``resolv.conf`` files
bind-mounted into it, its terminal, and the ``_data`` directory of each named volume that still belongs to
the host's root (a volume populated or written by a remapped container keeps its owners).
Bind mounts of host paths keep theirs: the container's root is an unprivileged user there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.idmap import IdentityMapping
from lamina.records import replace
from lamina.runtime.api import ContainerSpec
from lamina.volume.resolve import load_mount_points

__all__ = ["remapped_spec"]


def _triples(maps: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((item.container_id, item.host_id, item.size) for item in maps)


def remapped_spec(spec: ContainerSpec, mapping: IdentityMapping, files: Mapping[str, str],
                  mount_points: Any, terminal: int | None = None) -> ContainerSpec:
    """``spec`` in the user namespace of ``mapping``, after its files (and ``terminal``, the
    pty's slave side, as Docker's) were given to the mapping's root."""
    uid, gid = mapping.root_pair()
    try:
        if terminal is not None:
            os.fchown(terminal, uid, gid)
        for path in files.values():
            os.chown(path, uid, gid, follow_symlinks=False)
        for point in load_mount_points(mount_points):
            if point.type == "volume" and point.source and os.path.isdir(point.source):
                info = os.lstat(point.source)
                if (info.st_uid, info.st_gid) == (0, 0):
                    os.chown(point.source, uid, gid, follow_symlinks=False)
    except OSError as exc:
        raise errdefs.System(f"cannot give the remapped root its files: {exc}") from exc
    return replace(spec, namespaces=spec.namespaces | {"user"}, uid_mappings=_triples(mapping.uid_maps),
                   gid_mappings=_triples(mapping.gid_maps))
