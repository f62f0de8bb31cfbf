"""Layer tars for the graph driver tests, built with Python's tarfile (independent of lamina's
own tar writer) from declarative entries."""

from __future__ import annotations

import io
import secrets
import tarfile
from dataclasses import dataclass, field

__all__ = ["Entry", "file", "directory", "symlink", "hardlink", "char_device", "fifo", "whiteout",
           "opaque", "layer_tar", "reader", "new_id"]

MTIME = 1_700_000_000


@dataclass(frozen=True)
class Entry:
    name: str
    type: bytes
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    major: int = 0
    minor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def file(name: str, content: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
         xattrs: dict[str, bytes] | None = None) -> Entry:
    data = content.encode() if isinstance(content, str) else content
    return Entry(name, tarfile.REGTYPE, data, mode, uid, gid, xattrs=xattrs or {})


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
              xattrs: dict[str, bytes] | None = None) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, xattrs=xattrs or {})


def symlink(name: str, target: str, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(name, tarfile.SYMTYPE, mode=0o777, uid=uid, gid=gid, linkname=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def char_device(name: str, major: int, minor: int, mode: int = 0o666) -> Entry:
    return Entry(name, tarfile.CHRTYPE, mode=mode, major=major, minor=minor)


def fifo(name: str, mode: int = 0o644) -> Entry:
    return Entry(name, tarfile.FIFOTYPE, mode=mode)


def whiteout(path: str) -> Entry:
    """``.wh.<name>``: the layer deletes ``path``."""
    parent, _, name = path.rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}")


def opaque(directory_path: str) -> Entry:
    """``<dir>/.wh..wh..opq``: the layer hides everything below ``directory_path`` in lower layers."""
    return file(f"{directory_path}/.wh..wh..opq")


def layer_tar(*entries: Entry) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name + ("/" if entry.type == tarfile.DIRTYPE else ""))
            info.type = entry.type
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = MTIME
            info.linkname = entry.linkname
            info.devmajor, info.devminor = entry.major, entry.minor
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
                                    for key, value in entry.xattrs.items()}
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.content)
                archive.addfile(info, io.BytesIO(entry.content))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def new_id() -> str:
    """A random cache-id, like the layer store makes."""
    return secrets.token_hex(32)


def reader(data: bytes):
    """lamina's streaming reader over a tar in memory, what ``apply_diff`` consumes."""
    from lamina.archive import TarReader
    return TarReader(io.BytesIO(data))
