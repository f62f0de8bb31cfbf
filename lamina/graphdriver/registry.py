"""Graph drivers by name, and the policy that chooses one for a data root.

Every driver lamina implements is in :data:`DRIVERS` (name -> class); a driver's directory is
``<data-root>/<name>``.  Drivers are registered by name, module and class name: a driver's
module is imported when its class is first looked up, so a command pays for the driver it
uses, and a driver whose directory is absent holds no layers without being imported to ask.
:data:`PRIORITY` is Docker's Linux order; names in it that lamina does not implement are
skipped with the reason.

Selection policy (:func:`select`), the first rule that applies wins:

1. an explicit name (``--storage-driver`` / ``LAMINA_STORAGE_DRIVER``): it must be known
   (else :class:`~lamina.errdefs.InvalidArgument`), implemented (else
   :class:`~lamina.errdefs.NotImplemented`) and pass its probe (else
   :class:`~lamina.errdefs.FailedPrecondition` with the probe's reason);
2. the driver whose directory in the data root already holds layers; when several do, or the
   one that does is unusable or not implemented, :class:`~lamina.errdefs.FailedPrecondition`
   asks for ``--storage-driver``;
3. the first driver of :data:`PRIORITY` whose probe passes.

Every driver passed over is logged at INFO on the ``lamina.graphdriver`` logger and listed in
:attr:`Selection.skipped` with the reason.

Probe cache: a probe that passed is recorded in the driver's directory as ``.probed.json``
(``{"Kernel": <uname release>, "Device": <st_dev>, "Inode": <st_ino>}`` of the driver
directory), and :func:`select` trusts it instead of probing again (overlay2's probe makes a
real test mount: ~10 ms on every command) while the kernel release and the directory (the
filesystem it lives on) are the same.  Anything else (no record, a damaged one, another
kernel, the directory on another filesystem or, when the inode number is not reused, made
anew) probes again.  Failed probes are not recorded.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Mapping

from lamina import errdefs
from lamina import fsutil
from lamina.graphdriver import common
from lamina.protocols import Protocol
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.graphdriver.api import GraphDriver

__all__ = ["DRIVERS", "PRIORITY", "NOT_IMPLEMENTED", "PROBE_RECORD", "Selection", "DriverClass", "select",
           "driver_home", "drivers_holding_layers", "skip_reason", "cached_skip_reason"]


class DriverClass(Protocol):
    """What the registry needs of a driver class."""

    name: str

    def probe(self, home: str) -> str | None: ...

    def holds_layers(self, home: str) -> bool: ...

    def __call__(self, home: str) -> GraphDriver: ...


# name -> (module, class): what DRIVERS imports on a driver's first lookup
_REGISTERED: Mapping[str, tuple[str, str]] = {
    "overlay2": ("lamina.graphdriver.overlay2", "Overlay2Driver"),
    "fuse-overlayfs": ("lamina.graphdriver.fuseoverlayfs", "FuseOverlayfsDriver"),
    "vfs": ("lamina.graphdriver.vfs", "VfsDriver"),
}


class _Drivers(Mapping[str, DriverClass]):
    """The registered drivers, read-only: name -> class, its module imported on first lookup."""

    def __getitem__(self, name: str) -> DriverClass:
        module, attribute = _REGISTERED[name]
        driver: DriverClass = getattr(importlib.import_module(module), attribute)
        return driver

    def __contains__(self, name: object) -> bool:
        return name in _REGISTERED  # without importing the driver (Mapping's would look it up)

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTERED)

    def __len__(self) -> int:
        return len(_REGISTERED)

    def __repr__(self) -> str:
        return f"DRIVERS({', '.join(_REGISTERED)})"


DRIVERS: Mapping[str, DriverClass] = _Drivers()

PRIORITY: tuple[str, ...] = ("overlay2", "fuse-overlayfs", "btrfs", "zfs", "vfs")

# Docker drivers lamina does not implement; their directories are still recognised in a data root
NOT_IMPLEMENTED: tuple[str, ...] = ("btrfs", "zfs", "aufs", "devicemapper", "overlay")

# drivers that only work on their own filesystem
_NATIVE_FILESYSTEM = {"btrfs": "btrfs", "zfs": "zfs"}

# a passed probe, recorded in the driver's directory (see the module docstring)
PROBE_RECORD = ".probed.json"


@dataclass(frozen=True)
class Selection:
    """The chosen driver and every driver passed over before it, as (name, reason)."""

    driver: GraphDriver
    skipped: tuple[tuple[str, str], ...] = ()


def driver_home(data_root: str, name: str) -> str:
    return os.path.join(data_root, name)


def _available() -> str:
    return ", ".join(DRIVERS)


def skip_reason(data_root: str, name: str) -> str | None:
    """Why driver ``name`` cannot be used on ``data_root`` (probing it), or None if it can."""
    if name in DRIVERS:
        return DRIVERS[name].probe(driver_home(data_root, name))
    filesystem = _NATIVE_FILESYSTEM.get(name)
    if filesystem is not None:
        backing = common.backing_filesystem(data_root)
        if backing != filesystem:
            return f"backing filesystem is {backing}, not {filesystem}"
    return "not implemented by lamina"


def _probe_identity(home: str) -> dict[str, object] | None:
    """What a recorded probe result is valid for: this kernel, this very directory."""
    try:
        status = os.stat(home)
    except OSError:
        return None
    return {"Kernel": os.uname().release, "Device": status.st_dev, "Inode": status.st_ino}


def cached_skip_reason(data_root: str, name: str) -> str | None:
    """:func:`skip_reason`, trusting a passed probe recorded for this kernel and directory."""
    if name not in DRIVERS:
        return skip_reason(data_root, name)
    home = driver_home(data_root, name)
    record = os.path.join(home, PROBE_RECORD)
    identity = _probe_identity(home)
    if identity is not None:
        try:
            with open(record, "rb") as handle:
                if json.load(handle) == identity:
                    return None
        except (OSError, ValueError):
            pass  # no record, or a damaged one: probe again
    reason = skip_reason(data_root, name)
    if reason is None:
        identity = _probe_identity(home)
        if identity is not None:
            try:
                fsutil.atomic_replace(record, json.dumps(identity), 0o600)
            except OSError as exc:
                common.logger.info("cannot record the %s probe in %s: %s", name, record, exc.strerror)
    return reason


def drivers_holding_layers(data_root: str) -> list[str]:
    """Names of the drivers whose directory in ``data_root`` holds layers (a driver without a
    directory holds none: its module is not imported to ask)."""
    names = []
    for name in dict.fromkeys(PRIORITY + NOT_IMPLEMENTED):
        home = driver_home(data_root, name)
        if name in DRIVERS:
            if not os.path.isdir(home):
                continue
            if DRIVERS[name].holds_layers(home):
                names.append(name)
        elif common.holds_entries(home, lambda entry: entry.startswith(".")):
            names.append(name)
    return names


def select(data_root: str, explicit: str | None = None) -> Selection:
    """Choose and construct the graph driver for ``data_root`` (see the module docstring)."""
    data_root = os.path.abspath(data_root)
    try:
        fsutil.make_dirs(data_root, 0o711)
    except OSError as exc:
        raise fsutil.system_error(f"create data root {data_root}", exc) from exc
    holding = drivers_holding_layers(data_root)

    if explicit:
        if explicit not in DRIVERS:
            if explicit in NOT_IMPLEMENTED:
                raise errdefs.NotImplemented(
                    f"storage driver '{explicit}' is not implemented by lamina (available: {_available()})")
            raise errdefs.InvalidArgument(f"unknown storage driver '{explicit}' (available: {_available()})")
        reason = cached_skip_reason(data_root, explicit)
        if reason is not None:
            raise errdefs.FailedPrecondition(f"storage driver '{explicit}' cannot be used in {data_root}: {reason}")
        others = [name for name in holding if name != explicit]
        if others:
            common.logger.info("data root %s also holds layers of %s; they are not visible with %s",
                               data_root, ", ".join(others), explicit)
        return Selection(driver=DRIVERS[explicit](driver_home(data_root, explicit)))

    if len(holding) > 1:
        raise errdefs.FailedPrecondition(
            f"data root {data_root} holds layers of several storage drivers ({', '.join(holding)}); "
            "pass --storage-driver to choose one")
    if holding:
        name = holding[0]
        if name not in DRIVERS:
            raise errdefs.FailedPrecondition(
                f"data root {data_root} holds layers of storage driver '{name}', which is not implemented "
                f"by lamina; pass --storage-driver to choose another ({_available()})")
        reason = cached_skip_reason(data_root, name)
        if reason is not None:
            raise errdefs.FailedPrecondition(
                f"data root {data_root} holds layers of storage driver '{name}', which cannot be used: "
                f"{reason}; pass --storage-driver to choose another")
        common.logger.info("using storage driver %s: data root %s holds its layers", name, data_root)
        return Selection(driver=DRIVERS[name](driver_home(data_root, name)))

    skipped: list[tuple[str, str]] = []
    for name in PRIORITY:
        reason = cached_skip_reason(data_root, name)
        if reason is None:
            common.logger.info("using storage driver %s", name)
            return Selection(driver=DRIVERS[name](driver_home(data_root, name)), skipped=tuple(skipped))
        common.logger.info("storage driver %s skipped: %s", name, reason)
        skipped.append((name, reason))
    raise errdefs.FailedPrecondition(
        f"no usable storage driver in {data_root}: "
        + "; ".join(f"{name}: {reason}" for name, reason in skipped))
