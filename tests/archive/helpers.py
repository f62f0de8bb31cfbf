"""Test helpers: building tar inputs independently of lamina, and comparing whole trees."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field

from lamina.archive import TarReader


def header(name: str, *, type: bytes = tarfile.REGTYPE, size: int = 0, mode: int = 0o644,
           linkname: str = "", uid: int = 0, gid: int = 0, mtime: int = 0,
           format: int = tarfile.USTAR_FORMAT) -> bytes:
    """One ustar header block built by Python's tarfile (independent of lamina's writer)."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = size
    info.mode = mode
    info.linkname = linkname
    info.uid, info.gid, info.mtime = uid, gid, mtime
    return info.tobuf(format=format, encoding="utf-8", errors="surrogateescape")


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def fix_checksum(block: bytes | bytearray) -> bytes:
    block = bytearray(block)
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)
    return bytes(block)


def set_field(block: bytes, start: int, end: int, value: bytes) -> bytes:
    mutable = bytearray(block)
    mutable[start:end] = value.ljust(end - start, b"\0")[: end - start]
    return fix_checksum(mutable)


def member(name: str, content: bytes = b"", **options: object) -> bytes:
    return header(name, size=len(content), **options) + pad(content)  # type: ignore[arg-type]


END = bytes(1024)


def tarfile_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], *,
                  format: int = tarfile.PAX_FORMAT, pax_headers: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format, pax_headers=pax_headers or {}) as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def info(name: str, type: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    result = tarfile.TarInfo(name)
    result.type = type
    for key, value in fields.items():
        setattr(result, key, value)
    return result


def read_all(data: bytes, **options: object) -> list[tuple[object, bytes]]:
    """(entry, content) for every entry of ``data`` read by lamina's TarReader."""
    reader = TarReader(io.BytesIO(data), **options)  # type: ignore[arg-type]
    result = []
    for entry in reader:
        result.append((entry, reader.read_content()))
    reader.finish()
    return result


def gnu_tar(arguments: list[str], cwd: str) -> bytes:
    return subprocess.run(["tar", *arguments], cwd=cwd, check=True, capture_output=True).stdout


# -- trees -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    mtime_ns: int = 0
    rdev: int = 0
    target: str = ""
    digest: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    link_group: int = 0


@dataclass
class Tree:
    nodes: dict[str, Node] = field(default_factory=dict)

    def describe(self) -> str:
        return "\n".join(f"{path}: {node}" for path, node in sorted(self.nodes.items()))


def _kind(mode: int) -> str:
    for check, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                        (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                        (stat.S_ISSOCK, "socket")):
        if check(mode):
            return name
    return "?"


def snapshot(root: str, *, times: bool = True, directory_times: bool = True,
             skip_xattrs: tuple[str, ...] = ()) -> Tree:
    """Every node below ``root`` (not ``root`` itself) with its metadata and content digest;
    hardlinked files share a ``link_group`` number (the order in which they were met)."""
    tree = Tree()
    groups: dict[tuple[int, int], int] = {}
    for directory, dirs, files, directory_fd in os.fwalk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.relpath(os.path.join(directory, name), root)
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            kind = _kind(info.st_mode)
            digest = target = ""
            if kind == "file":
                with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory_fd), "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            if kind == "symlink":
                target = os.readlink(name, dir_fd=directory_fd)
            proc = f"/proc/self/fd/{directory_fd}/{name}"
            xattrs = tuple(sorted((key, os.getxattr(proc, key, follow_symlinks=False))
                                  for key in os.listxattr(proc, follow_symlinks=False)
                                  if not key.startswith(skip_xattrs)))
            group = 0
            if kind != "dir" and info.st_nlink > 1:
                group = groups.setdefault((info.st_dev, info.st_ino), len(groups) + 1)
            keep_time = times and (directory_times or kind != "dir")
            tree.nodes[path] = Node(
                kind=kind, mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid,
                size=info.st_size if kind in ("file", "symlink") else 0,
                mtime_ns=info.st_mtime_ns if keep_time else 0,
                rdev=info.st_rdev if kind in ("char", "block") else 0, target=target,
                digest=digest, xattrs=xattrs, link_group=group)
    return tree


def assert_same_tree(actual: Tree, expected: Tree) -> None:
    if actual.nodes != expected.nodes:
        missing = sorted(set(expected.nodes) - set(actual.nodes))
        extra = sorted(set(actual.nodes) - set(expected.nodes))
        different = [f"{path}:\n  got      {actual.nodes[path]}\n  expected {expected.nodes[path]}"
                     for path in sorted(set(actual.nodes) & set(expected.nodes))
                     if actual.nodes[path] != expected.nodes[path]]
        raise AssertionError(
            f"trees differ\nmissing: {missing}\nextra: {extra}\n" + "\n".join(different[:20])
            + f"\n--- actual tree ---\n{actual.describe()}")


def outside_snapshot(base: str, exclude: str) -> dict[str, tuple[object, ...]]:
    """Metadata and content of everything under ``base`` except the ``exclude`` subtree."""
    result: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(base):
        if os.path.abspath(directory) == os.path.abspath(exclude):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(directory, d)) != os.path.abspath(exclude)]
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            content = b""
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    content = handle.read()
            result[os.path.relpath(path, base)] = (info.st_mode, info.st_uid, info.st_gid, info.st_size,
                                                   info.st_mtime_ns, info.st_ino, content)
    result["."] = (os.lstat(base).st_mode,)
    return result
