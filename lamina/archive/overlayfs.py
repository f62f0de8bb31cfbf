"""overlayfs' marks on disk, the one home of their format: a whiteout is a character device
0/0, an opaque directory has ``<namespace>.overlay.opaque=y``, and every ``<namespace>.overlay.*``
extended attribute is overlayfs' own (never taken from a tar, never exported).  The namespace
is ``trusted``, or ``user`` where overlay is mounted with ``userxattr`` (in a user namespace:
rootless lamina).

Only ``os`` and ``stat``: the writer of a container's init layer (on the path of every
create) reads these marks without loading the rest of the archive layer.
"""

from __future__ import annotations

import os
import stat

__all__ = ["OPAQUE_XATTR", "USER_OPAQUE_XATTR", "OPAQUE_XATTRS", "OVERLAY_XATTR_PREFIXES", "is_opaque",
           "is_overlay_xattr", "is_whiteout_device", "xattr_prefix"]

OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"
OPAQUE_XATTRS = (OPAQUE_XATTR, USER_OPAQUE_XATTR)
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def xattr_prefix(rootless: bool) -> str:
    """The prefix of overlayfs' own xattrs on a mount made by root (``trusted.overlay.``) or in
    a user namespace (``user.overlay.``)."""
    return OVERLAY_XATTR_PREFIXES[1] if rootless else OVERLAY_XATTR_PREFIXES[0]


def is_whiteout_device(info: os.stat_result) -> bool:
    """Whether ``info`` is overlayfs' whiteout: a character device 0/0."""
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def is_overlay_xattr(name: str) -> bool:
    """Whether ``name`` is one of overlayfs' own xattrs (trusted or userxattr flavour)."""
    return name.startswith(OVERLAY_XATTR_PREFIXES)


def is_opaque(xattrs: dict[str, bytes]) -> bool:
    """Whether a directory's xattrs mark it opaque (either flavour)."""
    return any(xattrs.get(name) == b"y" for name in OPAQUE_XATTRS)
