"""Volumes: the driver contract, the volume record, and what the mount resolver needs.

Vocabulary (used the same way in code, logs, JSON and tests):

- **volume**: a directory tree that lives outside every container's union filesystem, named
  by its **name** (Docker's rule ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, at least two characters).
  Writes to it bypass the storage driver and are seen at once by every container mounting it.
- **anonymous volume**: a volume created without a name (``-v /data``, an image's ``VOLUME``):
  its name is 64 random hex digits and it carries the label ``com.docker.volume.anonymous=""``.
  ``rm -v`` / ``run --rm`` remove it with its container; a default ``volume prune`` removes only
  these.
- **driver**: the code that stores volumes (only ``local`` exists; drivers register by name in
  :data:`lamina.volume.store.DRIVERS`).  **mountpoint**: the host directory a container bind-mounts
  (``<data-root>/volumes/<name>/_data`` for the local driver).
- **driver options** (``-o``): for the local driver ``type``, ``device``, ``o`` (and ``size``,
  refused: no quota support), as ``mount -t <type> -o <o> <device> _data``.  A volume with
  ``type``/``device`` *needs a mount*: its filesystem is mounted on ``_data`` while at least one
  container uses it (refcounted by container id), and unmounted after the last one.
- **reference**: a container id that uses a volume.  A container takes a reference when it is
  created and drops it when it is removed; a referenced volume cannot be removed or pruned
  (``remove x: volume is in use - [<ids>]``).  References are not mounts: a stopped container
  still references its volumes.

:class:`VolumeDriver` is what a driver implements; :class:`VolumeProvider` is what
:func:`lamina.volume.resolve.resolve_mounts` needs from the volume service (its Docker-shaped
dicts), so the resolver does not depend on the services layer.
"""

from __future__ import annotations

import re
from lamina.records import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Volume", "VolumeDriver", "VolumeProvider",
    "ANONYMOUS_LABEL", "DEFAULT_DRIVER", "LOCAL_SCOPE", "NAME_PATTERN", "NAME_CHARACTERS",
]

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DEFAULT_DRIVER = "local"
LOCAL_SCOPE = "local"
# Docker's names.RestrictedNameChars / RestrictedNamePattern
NAME_CHARACTERS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # use fullmatch (no "$": it allows a newline)


@dataclass(frozen=True)
class Volume:
    """One volume as its driver knows it.

    ``created_at`` is Docker's RFC 3339 text (seconds, local offset); ``options`` are the driver
    options it was created with (``None`` when none were given, like Docker's ``null``);
    ``labels`` likewise.
    """

    name: str
    driver: str
    mountpoint: str
    created_at: str
    labels: dict[str, str] | None = field(default=None, compare=False)
    options: dict[str, str] | None = field(default=None, compare=False)
    scope: str = LOCAL_SCOPE

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})

    def to_api(self) -> dict[str, Any]:
        """Docker's ``Volume`` JSON (without ``UsageData``)."""
        return {
            "CreatedAt": self.created_at,
            "Driver": self.driver,
            "Labels": dict(self.labels) if self.labels is not None else None,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": dict(self.options) if self.options is not None else None,
            "Scope": self.scope,
        }


class VolumeDriver(Protocol):
    """Stores volumes.  Callers serialise mutations (the store holds its lock around them)."""

    name: str

    def validate(self, name: str, options: dict[str, str]) -> None:
        """Raise ``errdefs.InvalidArgument`` for a name or options this driver cannot create."""

    def create(self, name: str, options: dict[str, str] | None, labels: dict[str, str] | None) -> Volume:
        """Create the volume (published whole: it exists completely or not at all)."""

    def get(self, name: str) -> Volume:
        """The volume; ``errdefs.NotFound`` when the driver has none of that name."""

    def list(self) -> list[Volume]: ...

    def remove(self, name: str) -> None:
        """Remove the volume and its data (unmounting its filesystem first)."""

    def mount(self, name: str, reference: str) -> str:
        """Make the volume's data available for ``reference`` (a container id); returns the
        mountpoint.  Volumes that need a mount are mounted by the first reference."""

    def unmount(self, name: str, reference: str) -> None:
        """Drop ``reference``'s mount; the last one unmounts the volume's filesystem."""

    def size(self, name: str) -> int:
        """Bytes used by the volume's data (-1 when it cannot be known without mounting)."""

    def sweep(self) -> list[str]:
        """Remove what interrupted creations and removals left; returns what was removed."""


class VolumeProvider(Protocol):
    """What the mount resolver needs from the volume service (Docker-shaped dicts)."""

    def create(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, reference: str = "") -> dict[str, Any]:
        """Create (or find) a volume; with ``reference`` the reference is taken atomically."""

    def acquire(self, name: str, container_id: str) -> dict[str, Any]:
        """Add ``container_id`` to the volume's references; returns the volume."""

    def release(self, name: str, container_id: str) -> None: ...

    def remove(self, name: str, *, force: bool = False) -> None: ...
