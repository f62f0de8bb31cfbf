"""Volume subpaths: API 1.45's ``Mounts[].VolumeOptions.Subpath`` (``--mount
type=volume,src=v,dst=/x,volume-subpath=sub``) mounts one directory or file of a named volume
instead of the whole volume.

Two checks, as Docker makes them:

- at create, lexically (:func:`check_subpath`): the subpath is relative and stays below the
  volume (Go's ``filepath.IsLocal``), and the volume is named (an anonymous volume is new and
  empty: it has no subpaths);
- at each start, on the filesystem (:func:`pin_subpaths`): the subpath is resolved beneath the
  volume's directory (``openat2`` with ``RESOLVE_BENEATH``: a symlink that leads out of the
  volume, absolute or by ``..``, is refused; one that stays inside is followed), and the object
  found is *pinned*: its descriptor is bind-mounted on ``<run dir>/subpaths/<n>``, which becomes
  the mount's source for the runtime.  A symlink swapped in after the check (the container
  itself can write the volume) therefore changes nothing: the runtime binds the pinned inode,
  not a path.  A missing subpath is Docker's NotFound ``cannot access path ...``, an escaping
  one Docker's InvalidArgument ``path concatenation escapes the base directory ...``.

The pins live in the container's run directory under the exec root and are unmounted when the
run ends (:func:`unpin_subpaths`, also called before the run directory is removed).
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina import mount as lmount
from lamina import sys as lsys

__all__ = ["check_subpath", "pin_subpaths", "subpath_of", "unpin_subpaths"]

_PINS = "subpaths"


def is_local(path: str) -> bool:
    """Go's ``filepath.IsLocal`` on Linux: not empty, not absolute, not leaving its base."""
    if not path or path.startswith("/"):
        return False
    cleaned = posixpath.normpath(path)
    return cleaned != ".." and not cleaned.startswith("../")


def check_subpath(subpath: str, *, volume: str) -> None:
    """The create-time checks (see the module docstring); messages are Docker's."""
    kind = '"volume"'
    if not volume:
        raise errdefs.InvalidArgument(
            f"invalid mount config for type {kind}: must not set Subpath when using anonymous volumes")
    if not is_local(subpath):
        raise errdefs.InvalidArgument(
            f"invalid mount config for type {kind}: subpath must be a relative path within the volume")


def subpath_of(record: Mapping[str, Any]) -> str:
    """The ``VolumeOptions.Subpath`` of a stored mount point (``""``: the whole volume)."""
    spec = record.get("Spec") or {}
    options = spec.get("VolumeOptions") if isinstance(spec, Mapping) else None
    subpath = options.get("Subpath") if isinstance(options, Mapping) else None
    return subpath if isinstance(subpath, str) else ""


def _open_beneath(source: str, subpath: str) -> int:
    combined = posixpath.join(source, subpath)
    try:
        base = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise errdefs.NotFound(f"cannot access path {source}: {exc.strerror.lower()}") from exc
    try:
        return lsys.openat2(base, subpath, os.O_PATH | os.O_CLOEXEC, 0,
                            lsys.RESOLVE_BENEATH | lsys.RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise errdefs.NotFound(f"cannot access path {combined}: lstat {combined}: "
                                   "no such file or directory") from exc
        if exc.errno in (errno.EXDEV, errno.ELOOP):
            raise errdefs.InvalidArgument(f"path concatenation escapes the base directory, base: {source}, "
                                          f"subpath: {subpath}") from exc
        raise errdefs.System(f"cannot open subpath {subpath} of {source}: {exc.strerror}") from exc
    finally:
        os.close(base)


def pin_subpaths(mount_points: Mapping[str, Any] | None, directory: str) -> Mapping[str, Any] | None:
    """``MountPoints`` whose volume subpaths are resolved and pinned under ``directory`` (the
    container's run directory); the records' ``Source`` is then the pin.  Undoes its pins when
    one fails."""
    if not mount_points or not any(subpath_of(record) for record in mount_points.values()):
        return mount_points
    pins = os.path.join(directory, _PINS)
    unpin_subpaths(directory)
    os.makedirs(pins, mode=0o700, exist_ok=True)
    out = dict(mount_points)
    try:
        for index, (destination, record) in enumerate(sorted(mount_points.items())):
            subpath = subpath_of(record)
            if not subpath or record.get("Type") != "volume":
                continue
            fd = _open_beneath(str(record.get("Source") or ""), subpath)
            try:
                target = os.path.join(pins, str(index))
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target, 0o700)
                else:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                lmount.Mount("bind", f"/proc/self/fd/{fd}", ("bind", "private")).mount(target)
            finally:
                os.close(fd)
            out[destination] = {**record, "Source": target}
    except BaseException:
        unpin_subpaths(directory)
        raise
    return out


def unpin_subpaths(directory: str) -> None:
    """Unmount and remove the pins under the run directory ``directory`` (none is fine)."""
    pins = os.path.join(directory, _PINS)
    if not os.path.isdir(pins):
        return
    lmount.unmount_all_under(pins)
    for name in os.listdir(pins):
        path = os.path.join(pins, name)
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)  # empty once unmounted: never a tree walk into a volume
        else:
            os.unlink(path)
    os.rmdir(pins)
