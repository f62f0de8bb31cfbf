"""Declarative filesystem fixtures: build trees with appliers, compare whole trees.

Like containerd's ``fstest``: a tree is described as a list of appliers::

    apply(root,
          create_dir("etc", 0o755),
          create_file("etc/hostname", b"box\\n", 0o644),
          symlink("hostname", "etc/name"),
          chown("etc/hostname", 1000, 1000))

and two trees are compared with :func:`assert_same_tree`, which on failure shows which paths
differ and in which field, followed by a dump of both trees.  Paths are relative to the root;
nothing follows a symlink (``lchown``, ``lsetxattr``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields

__all__ = [
    "Applier", "Node", "apply", "create_file", "create_dir", "symlink", "hardlink", "chown",
    "chmod", "set_xattr", "remove_all", "rename", "create_device", "create_fifo", "whiteout",
    "opaque", "snapshot_tree", "dump_tree", "tree_differences", "assert_same_tree",
]

Applier = Callable[[str], None]


def _at(root: str, path: str) -> str:
    path = path.strip("/")
    if not path or any(part == ".." for part in path.split("/")):
        raise ValueError(f"bad fixture path {path!r}")
    return os.path.join(root, path)


def apply(root: str, *appliers: Applier) -> None:
    """Run ``appliers`` in order against ``root`` (which must exist)."""
    for applier in appliers:
        applier(root)


def create_file(path: str, content: bytes | str = b"", mode: int = 0o644) -> Applier:
    data = content.encode() if isinstance(content, str) else content

    def run(root: str) -> None:
        target = _at(root, path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    return run


def create_dir(path: str, mode: int = 0o755) -> Applier:
    def run(root: str) -> None:
        target = _at(root, path)
        os.mkdir(target)
        os.chmod(target, mode)
    return run


def symlink(target: str, path: str) -> Applier:
    def run(root: str) -> None:
        os.symlink(target, _at(root, path))
    return run


def hardlink(old: str, new: str) -> Applier:
    def run(root: str) -> None:
        os.link(_at(root, old), _at(root, new), follow_symlinks=False)
    return run


def chown(path: str, uid: int, gid: int) -> Applier:
    def run(root: str) -> None:
        os.lchown(_at(root, path), uid, gid)
    return run


def chmod(path: str, mode: int) -> Applier:
    def run(root: str) -> None:
        os.chmod(_at(root, path), mode)
    return run


def set_xattr(path: str, name: str, value: bytes | str) -> Applier:
    data = value.encode() if isinstance(value, str) else value

    def run(root: str) -> None:
        os.setxattr(_at(root, path), name, data, follow_symlinks=False)
    return run


def remove_all(path: str) -> Applier:
    def run(root: str) -> None:
        target = _at(root, path)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(target)
            return
        for current, directories, files in os.walk(target, topdown=False):
            for name in files + [d for d in directories if os.path.islink(os.path.join(current, d))]:
                os.unlink(os.path.join(current, name))
            for name in directories:
                if not os.path.islink(os.path.join(current, name)):
                    os.rmdir(os.path.join(current, name))
        os.rmdir(target)
    return run


def rename(old: str, new: str) -> Applier:
    def run(root: str) -> None:
        os.rename(_at(root, old), _at(root, new))
    return run


def create_device(path: str, major: int, minor: int, *, block: bool = False, mode: int = 0o644) -> Applier:
    def run(root: str) -> None:
        target = _at(root, path)
        os.mknod(target, (stat.S_IFBLK if block else stat.S_IFCHR) | 0o600, os.makedev(major, minor))
        os.chmod(target, mode)
    return run


def create_fifo(path: str, mode: int = 0o644) -> Applier:
    def run(root: str) -> None:
        target = _at(root, path)
        os.mkfifo(target, 0o600)
        os.chmod(target, mode)
    return run


def whiteout(path: str) -> Applier:
    """An overlay whiteout: a 0/0 character device (mode 0 like the kernel makes them)."""
    def run(root: str) -> None:
        os.mknod(_at(root, path), stat.S_IFCHR, os.makedev(0, 0))
    return run


def opaque(path: str) -> Applier:
    """Mark a directory opaque for overlayfs (``trusted.overlay.opaque=y``)."""
    return set_xattr(path, "trusted.overlay.opaque", b"y")


@dataclass(frozen=True)
class Node:
    """What is compared of one path: everything but timestamps and inode numbers."""

    type: str                              # file, dir, symlink, char, block, fifo, socket
    mode: int                              # permission bits with setuid/setgid/sticky
    uid: int
    gid: int
    content: str | None = None             # files: the bytes if short, else size and sha256
    link: str | None = None                # symlink target
    rdev: tuple[int, int] | None = None    # devices: (major, minor)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlink: str | None = None            # files with several links: first path of the group

    def describe(self) -> str:
        text = f"{self.type:<7} {self.mode:04o} {self.uid}:{self.gid}"
        if self.content is not None:
            text += f" {self.content}"
        if self.link is not None:
            text += f" -> {self.link}"
        if self.rdev is not None:
            text += f" dev {self.rdev[0]},{self.rdev[1]}"
        if self.hardlink is not None:
            text += f" linked with {self.hardlink}"
        for name, value in self.xattrs:
            text += f" [{name}={value!r}]"
        return text


_TYPES = ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
          (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"))


def _content(path: str, size: int) -> str:
    digest = hashlib.sha256()
    head = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            if len(head) < 48:
                head += chunk[:48]
            digest.update(chunk)
    if size <= 40:
        return repr(head)
    return f"{size} bytes sha256:{digest.hexdigest()[:16]}"


def _xattrs(path: str, ignore: Iterable[str]) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    result = []
    for name in sorted(names):
        if any(name == prefix or name.startswith(prefix) for prefix in ignore):
            continue
        try:
            result.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(result)


def snapshot_tree(root: str, *, ignore_xattrs: Iterable[str] = ("security.selinux",),
                  include_root: bool = False) -> dict[str, Node]:
    """Every path under ``root`` (``/``-separated, relative) mapped to its :class:`Node`."""
    ignore = tuple(ignore_xattrs)
    found: dict[str, tuple[os.stat_result, str]] = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = os.path.join(root, relative) if relative else root
        with os.scandir(directory) as entries:
            for entry in entries:
                path = f"{relative}/{entry.name}" if relative else entry.name
                st = entry.stat(follow_symlinks=False)
                found[path] = (st, entry.path)
                if stat.S_ISDIR(st.st_mode):
                    pending.append(path)
    if include_root:
        found["."] = (os.lstat(root), root)
    groups: dict[tuple[int, int], str] = {}
    members: dict[tuple[int, int], int] = {}
    for path in sorted(found):
        st, _full = found[path]
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), path)
            members[(st.st_dev, st.st_ino)] = members.get((st.st_dev, st.st_ino), 0) + 1
    snapshot: dict[str, Node] = {}
    for path in sorted(found):
        st, full = found[path]
        kind = next(name for test, name in _TYPES if test(st.st_mode))
        key = (st.st_dev, st.st_ino)
        # a group seen only once in the tree (its other links are elsewhere) is not a group
        shared = groups.get(key) if members.get(key, 0) > 1 else None
        snapshot[path] = Node(
            type=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            content=_content(full, st.st_size) if kind == "file" else None,
            link=os.readlink(full) if kind == "symlink" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
            xattrs=_xattrs(full, ignore),
            hardlink=shared,
        )
    return snapshot


def dump_tree(snapshot: Mapping[str, Node]) -> str:
    return "\n".join(f"  {path}: {node.describe()}" for path, node in sorted(snapshot.items())) or "  (empty)"


def tree_differences(expected: Mapping[str, Node], actual: Mapping[str, Node]) -> list[str]:
    """Human-readable lines, one per difference; empty when the trees are the same."""
    lines = []
    for path in sorted(set(expected) | set(actual)):
        if path not in actual:
            lines.append(f"missing  {path}: {expected[path].describe()}")
        elif path not in expected:
            lines.append(f"extra    {path}: {actual[path].describe()}")
        elif expected[path] != actual[path]:
            for item in fields(Node):
                want = getattr(expected[path], item.name)
                got = getattr(actual[path], item.name)
                if want != got:
                    if item.name == "mode":
                        want, got = f"'{want:04o}'", f"'{got:04o}'"
                    elif item.name == "content":
                        want, got = str(want), str(got)  # already a readable form
                    else:
                        want, got = repr(want), repr(got)
                    lines.append(f"differs  {path}: {item.name} expected {want}, got {got}")
    return lines


def assert_same_tree(expected: str | Mapping[str, Node], actual: str | Mapping[str, Node], *,
                     ignore_xattrs: Iterable[str] = ("security.selinux",)) -> None:
    """Fail with a readable difference and a dump of both trees unless they are the same."""
    ignore = tuple(ignore_xattrs)
    want = snapshot_tree(expected, ignore_xattrs=ignore) if isinstance(expected, str) else expected
    got = snapshot_tree(actual, ignore_xattrs=ignore) if isinstance(actual, str) else actual
    differences = tree_differences(want, got)
    if differences:
        raise AssertionError(
            "trees differ:\n" + "\n".join("  " + line for line in differences)
            + "\nexpected tree:\n" + dump_tree(want) + "\nactual tree:\n" + dump_tree(got))
