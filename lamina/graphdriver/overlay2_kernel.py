"""What the kernel's overlayfs supports, for the overlay2 driver (:mod:`.overlay2`): the
options every overlay mount starts with (``index=off`` where the kernel knows it,
``userxattr`` in a user namespace), the usability probe (a real test mount in a scratch
directory under the driver's home) and Docker's check that native diffs are right (no opaque
copy-up, no redirect_dir, no metacopy).  Nothing is recorded here: the registry caches a probe
that passed (:mod:`.registry`)."""

from __future__ import annotations

import errno
import os

from lamina import errdefs
from lamina import mount as lmount
from lamina.config import in_user_namespace
from lamina.graphdriver import common
from lamina.mount import Mount

__all__ = ["base_options", "kernel_parameter", "probe", "native_diff_problem"]

_OVERLAY_PARAMETERS = "/sys/module/overlay/parameters"
# filesystems that cannot hold an overlay upper directory
_UNSUPPORTED_BACKING = ("overlayfs", "aufs", "ecryptfs")


def kernel_parameter(name: str) -> str | None:
    try:
        with open(os.path.join(_OVERLAY_PARAMETERS, name), "r", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _supports_index_option() -> bool:
    return os.path.exists(os.path.join(_OVERLAY_PARAMETERS, "index"))


def _overlay_listed() -> bool:
    try:
        with open("/proc/filesystems", "r", encoding="ascii") as handle:
            return any(line.split()[-1:] == ["overlay"] for line in handle)
    except OSError:
        return False


def base_options() -> tuple[str, ...]:
    """The options every overlay mount starts with: ``index=off`` where the kernel knows it,
    ``userxattr`` in a user namespace (see the module docstring)."""
    return (("index=off",) if _supports_index_option() else ()) + (("userxattr",) if in_user_namespace() else ())


def _xattr_prefix() -> str:
    """Where overlayfs keeps its own xattrs for the mounts this process makes."""
    return "user.overlay." if in_user_namespace() else "trusted.overlay."


def _test_mount(scratch: str) -> None:
    """Mount a two-lower overlay in ``scratch`` and unmount it; raises LaminaError on failure."""
    for name in ("lower1", "lower2", "upper", "work", "merged"):
        os.mkdir(os.path.join(scratch, name), 0o700)
    mount = Mount(type="overlay", source="overlay", options=base_options() + (
        "lowerdir=lower2:lower1", "upperdir=upper", "workdir=work"), chdir=scratch)
    merged = os.path.join(scratch, "merged")
    mount.mount(merged)
    lmount.unmount(merged)


def probe(home: str) -> str | None:
    """Why overlay2 cannot be used with ``home``, or None when it can.

    Checks, in order: ``home`` can be created; its backing filesystem is not one overlayfs
    refuses as upper (overlayfs itself, aufs, ecryptfs); the filesystem reports d_type; a real
    overlay mount in a scratch directory under ``home`` succeeds (this also loads the module).
    """
    def check(scratch: str) -> str | None:
        backing = common.backing_filesystem(home)
        if backing in _UNSUPPORTED_BACKING:
            return f"backing filesystem is {backing}, which cannot hold overlay upper directories"
        if not common.supports_d_type(scratch):
            return f"backing filesystem {backing} does not support d_type (xfs must be formatted with ftype=1)"
        try:
            _test_mount(scratch)
        except errdefs.LaminaError as exc:
            listed = "" if _overlay_listed() else "; overlay is not in /proc/filesystems"
            return f"a test overlay mount failed: {exc}{listed}"
        return None

    return common.probe_in_scratch(home, check, f"probing {home} failed")


def native_diff_problem(home: str) -> str | None:
    """Why the kernel's overlayfs cannot give native diffs, or None when it can (Docker's check).

    Native diff reads the upper directory as the layer's changes.  That is wrong when the
    kernel copies the opaque flag up (before 4.8), records renamed directories as
    ``trusted.overlay.redirect`` (redirect_dir) or copies up metadata only (metacopy).
    """
    scratch = common.probe_directory(home)
    try:
        for name in ("l1/d", "l1/d1", "l2/d", "l3", "work", "merged"):
            os.makedirs(os.path.join(scratch, name), 0o755)
        with open(os.path.join(scratch, "l1", "f"), "wb") as handle:
            handle.write(b"x")
        prefix = _xattr_prefix()
        os.setxattr(os.path.join(scratch, "l2", "d"), prefix + "opaque", b"y")
        mount = Mount(type="overlay", source="overlay", options=base_options() + (
            "lowerdir=l2:l1", "upperdir=l3", "workdir=work"), chdir=scratch)
        merged = os.path.join(scratch, "merged")
        mount.mount(merged)
        try:
            with open(os.path.join(merged, "d", "f"), "wb"):
                pass
            if _xattr(os.path.join(scratch, "l3", "d"), prefix + "opaque") == b"y":
                return "the kernel copies the opaque flag up (kernel older than 4.8)"
            os.chmod(os.path.join(merged, "f"), 0o600)
            if _xattr(os.path.join(scratch, "l3", "f"), prefix + "metacopy") is not None:
                return "overlay metacopy is enabled"
            try:
                os.rename(os.path.join(merged, "d1"), os.path.join(merged, "d2"))
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    return None  # redirect_dir is off: directory renames are refused
                raise
            if _xattr(os.path.join(scratch, "l3", "d2"), prefix + "redirect") is not None:
                return "overlay redirect_dir is enabled"
            return None
        finally:
            lmount.unmount(merged)
    except OSError as exc:
        return f"the native diff check failed: {exc}"
    except errdefs.LaminaError as exc:
        return f"the native diff check failed: {exc}"
    finally:
        common.remove_probe(scratch)


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
