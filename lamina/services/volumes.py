"""The volume service: Docker Engine API shapes over :class:`lamina.volume.store.VolumeStore`.

``create`` / ``list`` / ``inspect`` / ``remove`` / ``prune`` answer like dockerd's
``/volumes`` endpoints; ``acquire`` / ``release`` / ``users`` are the references containers
hold (a referenced volume is neither removed nor pruned); ``mount`` / ``unmount`` make a
volume's data available to a starting container (mounting its filesystem for volumes created
with ``-o type=... device=...``).

Filters, as dockerd: list accepts ``dangling`` (true: no container references it), ``name``
(a regular expression searched in the name), ``driver``, ``label`` (``key`` or
``key=value``); prune accepts ``label``, ``label!`` and ``all`` (without ``all=true`` only
anonymous volumes are pruned, as since Docker 23), and never touches volumes with driver
options (their data is not local: nothing to reclaim).

Events (Docker's, type ``volume``, actor the volume name): ``create`` when a volume is made
(not when an existing one is returned), ``destroy`` when one is removed (by ``remove``,
``prune`` or a container's removal), then ``prune`` with ``reclaimed``; attribute ``driver``.
``mount`` / ``unmount`` are the container monitor's (one per volume mount of a run).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from lamina import errdefs
from lamina.events.api import DISCARD, VOLUME, EventSink
from lamina.volume.api import ANONYMOUS_LABEL, DEFAULT_DRIVER, Volume
from lamina.volume.store import VolumeStore

__all__ = ["VolumeServiceImpl", "LIST_FILTERS", "PRUNE_FILTERS"]

LIST_FILTERS = frozenset({"dangling", "name", "driver", "label"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})

_TRUE = frozenset({"1", "t", "true"})
_FALSE = frozenset({"0", "f", "false"})


def _check_filters(filters: dict[str, list[str]] | None, accepted: frozenset[str]) -> dict[str, list[str]]:
    filters = dict(filters or {})
    for key, values in filters.items():
        if key not in accepted:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise errdefs.InvalidArgument(f"invalid filter '{key}': expected a list of strings")
    return filters


def _boolean_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise errdefs.InvalidArgument(f"invalid filter '{key}={','.join(values)}': only one value is expected")
    value = values[0].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errdefs.InvalidArgument(f"invalid filter '{key}={values[0]}'")


def _label_matches(labels: dict[str, str] | None, wanted: str) -> bool:
    key, equals, value = wanted.partition("=")
    labels = labels or {}
    if key not in labels:
        return False
    return not equals or labels[key] == value


def _name_matches(name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            if pattern in name:
                return True
    return False


def _string_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errdefs.InvalidArgument(f"invalid {what}: expected an object of strings")
    return dict(value)


class VolumeServiceImpl:
    def __init__(self, store: VolumeStore, *, events: EventSink = DISCARD) -> None:
        self.store = store
        self.events = events
        self._prune_running = threading.Lock()

    # -- Docker's /volumes -----------------------------------------------------------------

    def create(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, reference: str = "") -> dict[str, Any]:
        """Docker's ``POST /volumes/create``: the volume (the existing one when ``name`` exists
        with the same driver).  No name: an anonymous volume (64 hex, the anonymous label)."""
        if not isinstance(name, str) or not isinstance(driver, str) or not isinstance(reference, str):
            raise errdefs.InvalidArgument("invalid volume create request: Name and Driver must be strings")
        driver_opts = _string_map(driver_opts, "DriverOpts")
        labels = _string_map(labels, "Labels")
        if not name:
            name = os.urandom(32).hex()  # secrets.token_hex(32), without importing secrets
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        volume, created = self.store.create(name, driver=driver, options=driver_opts, labels=labels,
                                            reference=reference)
        if created:
            self.events.emit(VOLUME, "create", volume.name, {"driver": volume.driver})
        return volume.to_api()

    def list(self, *, filters: dict[str, list[str]] | None = None, usage: bool = False) -> dict[str, Any]:
        """``{"Volumes": [...], "Warnings": []}``, by name; ``usage`` adds ``UsageData``."""
        filters = _check_filters(filters, LIST_FILTERS)
        dangling = _boolean_filter(filters, "dangling")
        references = self.store.all_references()
        volumes = []
        for volume in self.store.list():
            if filters.get("driver") and volume.driver not in filters["driver"]:
                continue
            if filters.get("name") and not _name_matches(volume.name, filters["name"]):
                continue
            if not all(_label_matches(volume.labels, wanted) for wanted in filters.get("label", [])):
                continue
            if dangling is not None and bool(references.get(volume.name)) == dangling:
                continue
            volumes.append(self._describe(volume, usage, references))
        return {"Volumes": volumes, "Warnings": []}

    def inspect(self, name: str, *, usage: bool = False) -> dict[str, Any]:
        volume = self.store.get(name)
        return self._describe(volume, usage, {volume.name: self.store.references(volume.name)})

    def _describe(self, volume: Volume, usage: bool, references: dict[str, list[str]]) -> dict[str, Any]:
        answer = volume.to_api()
        if usage:
            answer["UsageData"] = {"Size": self.store.size(volume),
                                   "RefCount": len(references.get(volume.name, []))}
        return answer

    def remove(self, name: str, *, force: bool = False) -> None:
        """Docker's ``DELETE /volumes/{name}``: ``force`` ignores a missing volume only; a
        volume in use is a Conflict either way."""
        removed = self.store.remove(name, force=force)
        if removed is not None:
            self.events.emit(VOLUME, "destroy", removed.name, {"driver": removed.driver})

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        filters = _check_filters(filters, PRUNE_FILTERS)
        everything = _boolean_filter(filters, "all")
        if not self._prune_running.acquire(blocking=False):
            raise errdefs.Conflict("a prune operation is already running")
        try:
            def select(volume: Volume) -> bool:
                if volume.driver != DEFAULT_DRIVER or volume.options:
                    return False
                if not everything and not volume.anonymous:
                    return False
                if not all(_label_matches(volume.labels, wanted) for wanted in filters.get("label", [])):
                    return False
                return not any(_label_matches(volume.labels, unwanted) for unwanted in filters.get("label!", []))

            removed = self.store.remove_unused(select)
        finally:
            self._prune_running.release()
        for volume, _size in removed:
            self.events.emit(VOLUME, "destroy", volume.name, {"driver": volume.driver})
        self.events.emit(VOLUME, "prune", "", {"reclaimed": str(sum(size for _, size in removed))})
        return {"VolumesDeleted": [volume.name for volume, _ in removed],
                "SpaceReclaimed": sum(size for _, size in removed)}

    # -- what containers need -----------------------------------------------------------------

    def acquire(self, name: str, container_id: str) -> dict[str, Any]:
        return self.store.acquire(name, container_id).to_api()

    def release(self, name: str, container_id: str) -> None:
        self.store.release(name, container_id)

    def users(self, name: str) -> list[str]:
        """The ids of the containers that reference the volume."""
        self.store.get(name)
        return self.store.references(name)

    def mount(self, name: str, container_id: str) -> str:
        return self.store.mount(name, container_id)

    def unmount(self, name: str, container_id: str) -> None:
        self.store.unmount(name, container_id)
