"""Contracts of the archive layer: tar entries, whiteout modes, changes, file getters.

Vocabulary:

- **entry**: one member of a tar stream as a :class:`TarEntry`; ``name`` is normalised
  (no leading ``/`` or ``./``, no trailing ``/``, never empty, never containing ``..``
  components after normalisation: such names are rejected as hostile).
- **whiteout**: ``.wh.<name>`` in a layer tar; on an overlay upper dir a 0/0 character device.
- **opaque directory**: ``.wh..wh..opq`` in a layer tar; on disk the xattr
  ``trusted.overlay.opaque=y``, or ``user.overlay.opaque=y`` (:data:`USER_OPAQUE_XATTR`) where
  overlay is mounted with ``userxattr`` (in a user namespace: rootless lamina).  Both prefixes
  (:data:`OVERLAY_XATTR_PREFIXES`) are overlayfs' own: never taken from a tar, never exported
  (:mod:`lamina.archive.overlayfs`, re-exported here).
- **tar-split**: the record (``tar-split.json.gz``, vbatts/tar-split's format, as Docker's
  layerdb stores it) of every raw byte of a layer tar that is not file content, plus for each
  file its name, size and CRC-64 (Go ISO table), so the exact tar can be reassembled later
  from the extracted files: its sha256 then equals the diff_id.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from lamina.archive.overlayfs import (  # noqa: F401 - re-exported: the archive layer's vocabulary
    OPAQUE_XATTR,
    OPAQUE_XATTRS,
    OVERLAY_XATTR_PREFIXES,
    USER_OPAQUE_XATTR,
    is_opaque,
    is_overlay_xattr,
    is_whiteout_device,
)
from lamina.records import dataclass, field
from typing import BinaryIO, Protocol

__all__ = ["TarEntry", "EntryType", "WhiteoutMode", "ChangeKind", "Change", "FileGetter",
           "WHITEOUT_PREFIX", "WHITEOUT_OPAQUE", "WHITEOUT_META_PREFIX", "OPAQUE_XATTR",
           "USER_OPAQUE_XATTR", "OPAQUE_XATTRS", "OVERLAY_XATTR_PREFIXES", "is_overlay_xattr", "is_opaque",
           "is_whiteout_device"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
WHITEOUT_META_PREFIX = ".wh..wh."


class EntryType(enum.Enum):
    REGULAR = "0"
    HARDLINK = "1"
    SYMLINK = "2"
    CHAR = "3"
    BLOCK = "4"
    DIRECTORY = "5"
    FIFO = "6"


@dataclass
class TarEntry:
    name: str
    type: EntryType
    mode: int = 0o644           # permission bits including setuid/setgid/sticky (no type bits)
    uid: int = 0
    gid: int = 0
    size: int = 0               # content bytes (REGULAR only; 0 otherwise)
    mtime_ns: int = 0
    atime_ns: int | None = None
    linkname: str = ""          # symlink target as written, or normalised hardlink target name
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)


class WhiteoutMode(enum.Enum):
    """How extraction treats ``.wh.`` entries.

    OVERLAY: store them in overlay form (0/0 char device, opaque xattr) in a fresh upper dir.
    APPLY: the target already holds the parent's full tree (vfs, naive diff): delete what the
    whiteout names; an opaque marker empties the directory except for what this layer added.
    """

    OVERLAY = "overlay"
    APPLY = "apply"


class ChangeKind(enum.Enum):
    MODIFY = "C"
    ADD = "A"
    DELETE = "D"


@dataclass(frozen=True, order=True)
class Change:
    """One change of a layer against its parent, with Docker's path form (``/etc/passwd``)."""

    path: str
    kind: ChangeKind


class FileGetter(Protocol):
    """Opens the content of a file of a layer by its tar name, for tar-split reassembly."""

    def open(self, name: str) -> BinaryIO: ...


class ByteSource(Protocol):
    """What the tar reader consumes: a binary stream with ``readinto``."""

    def readinto(self, buffer: bytearray | memoryview) -> int: ...


def iter_chunks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk
