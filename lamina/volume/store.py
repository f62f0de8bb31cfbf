"""The volume store: drivers by name, references by container, one lock for the data root.

On-disk format::

    <data-root>/volumes/.lock               flock: every mutation holds it exclusively
    <data-root>/volumes/.references.json    {"<volume name>": {"<container id>": <unix time>}}

The drivers own everything else under ``<data-root>/volumes`` (see :mod:`lamina.volume.local`).
Commit points: a reference exists once ``.references.json`` is renamed into place
(:func:`lamina.fsutil.atomic_write_json`); a volume once its driver published it.  Creating a
volume *and* taking a reference (``reference=`` of :meth:`VolumeStore.create`) happens under
one lock hold, so a concurrent prune never sees the new volume unreferenced.

Errors follow Docker's volume store: ``get x: no such volume`` (NotFound), ``remove x: volume is
in use - [<ids>]`` (Conflict), ``create x: error looking up volume plugin d: plugin "d" not
found`` (NotFound), ``create x: driver 'local' already has volume 'x': volume name must be
unique`` (Conflict).

Stale references: a container that vanished without releasing (a crash between its removal
and the release) would pin its volumes forever.  When the store is given ``container_exists``,
references of containers that do not exist and are older than :data:`REFERENCE_GRACE` seconds
(a container being created has not published its record yet) do not count, and are dropped
at the next mutation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from lamina import errdefs, fsutil
from lamina.log import get_logger
from lamina.volume.api import DEFAULT_DRIVER, Volume, VolumeDriver
from lamina.volume.local import LocalDriver

__all__ = ["VolumeStore", "DRIVERS", "REFERENCE_GRACE", "open_drivers"]

log = get_logger("lamina.volume")

# Drivers by name: a factory taking the volumes directory.  Only "local" exists; plugins would
# register here.
DRIVERS: Mapping[str, Callable[[str], VolumeDriver]] = {DEFAULT_DRIVER: LocalDriver}

REFERENCE_GRACE = 600.0
_REFERENCES = ".references.json"
_LOCK = ".lock"


def open_drivers(root: str) -> dict[str, VolumeDriver]:
    return {name: factory(root) for name, factory in DRIVERS.items()}


class VolumeStore:
    def __init__(self, root: str, *, drivers: Mapping[str, VolumeDriver] | None = None,
                 container_exists: Callable[[str], bool] | None = None) -> None:
        self.root = root
        try:
            os.makedirs(root, mode=0o701, exist_ok=True)
        except OSError as exc:
            raise fsutil.system_error(f"create the volume directory {root}", exc) from exc
        self.drivers: dict[str, VolumeDriver] = dict(drivers) if drivers is not None else open_drivers(root)
        self.container_exists = container_exists

    # -- locking and references -----------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        with fsutil.file_lock(os.path.join(self.root, _LOCK)):
            yield

    def _read_references(self) -> dict[str, dict[str, float]]:
        try:
            raw = fsutil.read_json(os.path.join(self.root, _REFERENCES))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise errdefs.DataLoss(f"volume references {_REFERENCES} are unreadable: {exc}") from exc
        if not isinstance(raw, dict):
            raise errdefs.DataLoss(f"volume references {_REFERENCES} are not a JSON object")
        references: dict[str, dict[str, float]] = {}
        for name, users in raw.items():
            if isinstance(users, dict):
                references[str(name)] = {str(user): float(when) if isinstance(when, (int, float)) else 0.0
                                         for user, when in users.items()}
        return references

    def _write_references(self, references: dict[str, dict[str, float]]) -> None:
        clean = {name: users for name, users in sorted(references.items()) if users}
        fsutil.atomic_write_json(os.path.join(self.root, _REFERENCES), clean, mode=0o600)

    def _live(self, users: dict[str, float], now: float) -> list[str]:
        if self.container_exists is None:
            return sorted(users)
        return sorted(user for user, when in users.items()
                      if now - when < REFERENCE_GRACE or self.container_exists(user))

    def _pruned(self, references: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """``references`` without stale ones (logged)."""
        now = time.time()
        result = {}
        for name, users in references.items():
            live = set(self._live(users, now))
            for user in users.keys() - live:
                log.warning("dropping the reference of missing container %s to volume %s", user, name)
            result[name] = {user: when for user, when in users.items() if user in live}
        return result

    def references(self, name: str) -> list[str]:
        """Container ids that use the volume (stale ones excluded), sorted."""
        return self._live(self._read_references().get(name, {}), time.time())

    def all_references(self) -> dict[str, list[str]]:
        now = time.time()
        return {name: live for name, users in self._read_references().items()
                if (live := self._live(users, now))}

    # -- lookups --------------------------------------------------------------------------------

    def driver(self, name: str, *, volume: str = "", operation: str = "create") -> VolumeDriver:
        driver = self.drivers.get(name or DEFAULT_DRIVER)
        if driver is None:
            prefix = f"{operation} {volume}: " if volume else f"{operation}: "
            raise errdefs.NotFound(f'{prefix}error looking up volume plugin {name}: plugin "{name}" not found')
        return driver

    def _find(self, name: str) -> Volume | None:
        for driver in self.drivers.values():
            try:
                return driver.get(name)
            except errdefs.NotFound:
                continue
        return None

    def get(self, name: str, *, operation: str = "get") -> Volume:
        volume = self._find(name) if name else None
        if volume is None:
            raise errdefs.NotFound(f"{operation} {name}: no such volume")
        return volume

    def list(self) -> list[Volume]:
        volumes: list[Volume] = []
        for driver in self.drivers.values():
            volumes.extend(driver.list())
        return sorted(volumes, key=lambda volume: volume.name)

    def size(self, volume: Volume) -> int:
        try:
            return self.driver(volume.driver).size(volume.name)
        except (errdefs.NotFound, OSError):
            return -1

    # -- mutations ------------------------------------------------------------------------------

    def create(self, name: str, *, driver: str = "", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, reference: str = "") -> tuple[Volume, bool]:
        """The volume ``name`` (created unless it exists with the same driver); ``True`` when
        it was created.  With ``reference`` the reference is added under the same lock."""
        with self.locked():
            existing = self._find(name)
            if existing is not None:
                if driver and driver != existing.driver:
                    raise errdefs.Conflict(f"create {name}: driver '{existing.driver}' already has volume "
                                           f"'{name}': volume name must be unique")
                volume, created = existing, False
            else:
                chosen = self.driver(driver, volume=name)
                try:
                    chosen.validate(name, options or {})
                    volume, created = chosen.create(name, options, labels), True
                except errdefs.LaminaError as exc:
                    raise type(exc)(f"create {name}: {exc}") from exc
            if reference:
                self._add_reference(name, reference)
            return volume, created

    def _add_reference(self, name: str, reference: str) -> None:
        references = self._read_references()
        references.setdefault(name, {})[reference] = time.time()
        self._write_references(references)

    def acquire(self, name: str, reference: str) -> Volume:
        with self.locked():
            volume = self.get(name)
            self._add_reference(name, reference)
            return volume

    def release(self, name: str, reference: str) -> None:
        """Drop ``reference``; releasing what is not held (or a missing volume) is fine."""
        with self.locked():
            references = self._read_references()
            users = references.get(name)
            if users is None or reference not in users:
                return
            del users[reference]
            self._write_references(references)

    def remove(self, name: str, *, force: bool = False) -> Volume | None:
        """Remove an unreferenced volume; with ``force`` a missing volume is not an error.
        Returns the removed volume (``None`` when ``force`` skipped a missing one)."""
        with self.locked():
            return self._remove_locked(name, force=force)

    def _remove_locked(self, name: str, *, force: bool = False) -> Volume | None:
        try:
            volume = self.get(name)
        except errdefs.NotFound:
            if force:
                return None
            raise
        references = self._pruned(self._read_references())
        users = sorted(references.get(name, {}))
        if users:
            raise errdefs.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        try:
            self.driver(volume.driver, volume=name, operation="remove").remove(name)
        except errdefs.LaminaError as exc:
            raise type(exc)(f"remove {name}: {exc}") from exc
        if name in references:
            del references[name]
        self._write_references(references)
        return volume

    def remove_unused(self, select: Callable[[Volume], bool]) -> list[tuple[Volume, int]]:
        """Remove every unreferenced volume ``select`` accepts, under one lock hold (prune);
        returns the removed volumes with the bytes each held."""
        removed = []
        with self.locked():
            references = self._pruned(self._read_references())
            for volume in self.list():
                if references.get(volume.name) or not select(volume):
                    continue
                size = self.size(volume)
                try:
                    self._remove_locked(volume.name)
                except errdefs.LaminaError as exc:
                    log.warning("could not remove volume %s: %s", volume.name, exc)
                    continue
                removed.append((volume, max(size, 0)))
        return removed

    def mount(self, name: str, reference: str) -> str:
        with self.locked():
            volume = self.get(name)
            return self.driver(volume.driver, volume=name, operation="mount").mount(name, reference)

    def unmount(self, name: str, reference: str) -> None:
        with self.locked():
            volume = self._find(name)
            if volume is not None:
                self.driver(volume.driver, volume=name, operation="unmount").unmount(name, reference)

    def sweep(self) -> list[str]:
        """Remove leftovers of interrupted operations and stale references."""
        removed: list[str] = []
        with self.locked():
            for driver in self.drivers.values():
                removed.extend(driver.sweep())
            references = self._read_references()
            pruned = {name: users for name, users in self._pruned(references).items()
                      if self._find(name) is not None}
            if pruned != references:
                self._write_references(pruned)
        return removed
