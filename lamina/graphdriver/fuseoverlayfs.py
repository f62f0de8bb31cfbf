"""The fuse-overlayfs graph driver: overlay2's layout, mounted by the ``fuse-overlayfs`` program.

The fallback where the kernel's overlayfs cannot be used (an old kernel that refuses overlay in
a user namespace, a backing filesystem overlayfs rejects as upper): Docker's and Podman's
rootless fallback, the Debian package ``fuse-overlayfs``, after ``overlay2`` in the driver
priority (:mod:`lamina.graphdriver.registry`).

On-disk format: :mod:`lamina.graphdriver.overlay2`'s, under ``<data-root>/fuse-overlayfs``
(Docker's directory name for this driver), with the same commit points.  The diff directories
hold what fuse-overlayfs writes: whiteouts as 0/0 character devices, an opaque directory as a
``.wh..wh..opq`` file beside a ``.wh..opq`` whiteout, a format only fuse-overlayfs reads.  So,
as Docker's driver does, diffs are *naive* (:class:`~lamina.graphdriver.naivediff.NaiveDiff`:
layers are applied to and compared through mounted trees), never read from the upper dir.

Mounts are :class:`~lamina.mount.Mount` values of type ``fuse-overlayfs`` (``lowerdir``,
``upperdir``, ``workdir`` relative to the driver's directory); :mod:`lamina.mount` runs the
program, which stays alive serving the mount until it is unmounted.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina import mount as lmount
from lamina.graphdriver import common
from lamina.graphdriver.overlay2 import Overlay2Driver
from lamina.mount import Mount

if TYPE_CHECKING:
    from lamina.idmap import IdentityMapping

__all__ = ["FuseOverlayfsDriver", "probe", "PROGRAM"]

PROGRAM = "fuse-overlayfs"
# options of the kernel's overlay that fuse-overlayfs does not take
_KERNEL_ONLY = ("index=off", "userxattr", "volatile")


def _test_mount(scratch: str) -> None:
    for name in ("lower1", "lower2", "upper", "work", "merged"):
        os.mkdir(os.path.join(scratch, name), 0o700)
    merged = os.path.join(scratch, "merged")
    Mount(type=PROGRAM, source=PROGRAM, options=("lowerdir=lower2:lower1", "upperdir=upper", "workdir=work"),
          chdir=scratch).mount(merged)
    lmount.unmount(merged)


def probe(home: str) -> str | None:
    """Why fuse-overlayfs cannot be used with ``home``, or None: the program is in PATH,
    ``/dev/fuse`` can be opened, and a test mount in a scratch directory succeeds."""
    import shutil  # only when probed: a recorded probe is trusted

    if shutil.which(PROGRAM) is None:
        return f"{PROGRAM} is not installed (Debian package fuse-overlayfs)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse cannot be opened"
    def check(scratch: str) -> str | None:
        if not common.supports_d_type(scratch):
            return f"backing filesystem {common.backing_filesystem(home)} does not support d_type"
        _test_mount(scratch)
        return None

    return common.probe_in_scratch(home, check, "a test mount failed")


class FuseOverlayfsDriver(Overlay2Driver):
    """overlay2's layout and bookkeeping; mounts by fuse-overlayfs, naive diffs."""

    name = "fuse-overlayfs"

    probe = staticmethod(probe)  # the registry asks the class

    def __init__(self, home: str) -> None:
        super().__init__(home)
        self._volatile_refused = True  # no volatile mounts: fuse-overlayfs has no such option

    def mounts(self, id: str, idmap: IdentityMapping | None = None, copies: bool = False) -> list[Mount]:
        if idmap is not None or copies:
            raise errdefs.InvalidArgument("fuse-overlayfs cannot show remapped layers: its diffs compare mounted "
                                          "trees (--userns-remap needs overlay2 or vfs)")
        result = []
        for item in super().mounts(id):
            if item.type != "overlay":
                result.append(item)
                continue
            options = tuple(option for option in item.options if option not in _KERNEL_ONLY)
            result.append(Mount(type=PROGRAM, source=PROGRAM, options=options, chdir=item.chdir))
        return result

    def _native(self, id: str, parent: str | None) -> bool:
        return False  # the upper dirs hold fuse-overlayfs's own opaque format: see the module docstring

    def write_init_layer(self, id: str, entries: tuple[tuple[str, str, int], ...]) -> bool:
        return False  # the same: only a mount reads the layers below as fuse-overlayfs does

    def status(self) -> list[tuple[str, str]]:
        return [("Backing Filesystem", common.backing_filesystem(self.home)),
                ("Supports d_type", "true" if common.supports_d_type(self.home) else "false"),
                ("Native Overlay Diff", "false")]
