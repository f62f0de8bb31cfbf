"""A container's init layer written straight into its ``diff`` directory, without a mount.

The init layer holds the placeholders the runtime mounts over (``/dev``, ``/etc/hosts``, ...;
:data:`lamina.layer.mounts.INIT_PATHS`) where the image lacks them.  Docker makes them through
a mount of the layer (its ``initlayer.Setup``); an overlay mount and its unmount are most of
the cost of a ``create`` (a work directory, a mount point, the kernel's ``volatile`` marker).
For overlay2 the same result is written here from the layers themselves, as overlayfs would
see them:

* the merged tree's entry at a path is found by looking the path up one component at a time
  in the layers, topmost first (the init layer's own ``diff`` above the image's): the first
  layer that has the name decides; a directory there merges with the same directory in the
  layers below until one of them is opaque (``trusted.overlay.opaque=y``, or ``user.`` for a
  rootless engine) or holds a non-directory under that name;
* a placeholder whose parent directory comes from the image gets that directory copied up
  first, as overlayfs does when something is created in it: same mode, owner and extended
  attributes (not overlayfs' own ``<namespace>.overlay.*``); its times are those of the
  creation, as they are after a creation through the mount.

Whatever this code does not reproduce exactly, or any error it meets, makes it answer
``False``, with the layer's ``diff`` emptied again, and the caller mounts the layer as before: a whiteout on a placeholder's path (a
directory created over it would need the opaque mark), a path component that is a symlink
or another non-directory (the mount resolves it; ``/etc`` as a symlink), a directory renamed
by overlayfs (``overlay.redirect``).
Every path is taken apart into names and each name looked up with ``lstat`` below a directory
already known to be a real one: no symlink in an image is ever followed.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina import fsutil
from lamina.archive.overlayfs import is_whiteout_device, xattr_prefix
from lamina.graphdriver.common import make_placeholder

__all__ = ["write_init_layer"]

_ABSENT, _DIRECTORY, _OTHER = "absent", "directory", "other"


class _NotExact(Exception):
    """What the mount does here is not reproduced: the caller mounts."""


def write_init_layer(diff: str, lowers: list[str], entries: tuple[tuple[str, str, int], ...], *,
                     rootless: bool) -> bool:
    """Create ``entries`` ((path, kind, mode) as :data:`lamina.layer.mounts.INIT_PATHS`,
    directories before what they hold) in the empty layer directory ``diff`` where the tree of
    ``diff`` over ``lowers`` (diff directories, nearest first) lacks them; False, with ``diff``
    empty again, when a mount must do it (see the module docstring).  ``rootless``: overlayfs
    keeps its marks in ``user.overlay.*`` (the ``userxattr`` mount option), not ``trusted.``."""
    layers = [diff, *lowers]
    private = xattr_prefix(rootless)
    try:
        for path, kind, mode in entries:
            names = path.split("/")
            if _lookup(layers, names, private)[0] != _ABSENT:
                continue  # the image has it: the image's is kept
            for depth in range(1, len(names)):
                found, directories = _lookup(layers, names[:depth], private)
                if found != _DIRECTORY:
                    raise _NotExact  # missing, a symlink or another file: the mount's resolution decides
                own = os.path.join(diff, *names[:depth])
                if directories[0] != own:
                    _copy_up_directory(own, directories[0], private)
            make_placeholder(os.path.join(diff, *names), kind, mode)
    except (_NotExact, OSError):
        # an error here (an extended attribute this filesystem refuses, ...) is the mount's to
        # meet: it copies up as the kernel does, and fails with the kernel's own error
        for name in os.listdir(diff):
            fsutil.remove_tree(os.path.join(diff, name))
        return False
    return True


def _lookup(layers: list[str], names: list[str], private: str) -> tuple[str, list[str]]:
    """What the merged tree of ``layers`` (topmost first) has at the path ``names``:
    (_ABSENT | _DIRECTORY | _OTHER, the real directories that make a directory, topmost first)."""
    directories = layers
    for depth, name in enumerate(names, start=1):
        found = _ABSENT
        below: list[str] = []
        for directory in directories:
            candidate = os.path.join(directory, name)
            try:
                info = os.lstat(candidate)
            except FileNotFoundError:
                continue
            if is_whiteout_device(info):
                if found == _ABSENT:
                    raise _NotExact  # what is made over it: overlayfs' business
                break  # it ends the directory's merge
            if not stat.S_ISDIR(info.st_mode):
                if found == _ABSENT:
                    found = _OTHER
                break  # a non-directory hides what is below it, and ends a directory's merge
            if _xattr(candidate, private + "redirect") is not None:
                raise _NotExact
            found = _DIRECTORY
            below.append(candidate)
            if _xattr(candidate, private + "opaque") == b"y":
                break
        if found != _DIRECTORY:
            if found == _OTHER and depth < len(names):
                raise _NotExact  # a symlink (or a file) on the way
            return found, []
        directories = below
    return _DIRECTORY, directories


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _copy_up_directory(target: str, source: str, private: str) -> None:
    """Make ``target`` as overlayfs copies the directory ``source`` up: its mode, owner and
    extended attributes but overlayfs' own (``private``)."""
    info = os.lstat(source)
    os.mkdir(target, 0o700)
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        names = []
    for name in names:
        if not name.startswith(private):
            os.setxattr(target, name, os.getxattr(source, name, follow_symlinks=False), follow_symlinks=False)
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    os.chmod(target, stat.S_IMODE(info.st_mode), follow_symlinks=False)
