"""tar-split: the record that reassembles a layer's exact tar from its extracted files.

On-disk format (vbatts/tar-split ``tar/storage``, as Docker's layerdb stores it in
``tar-split.json.gz``): a gzip stream of JSON documents, one per line, each an *entry*::

    {"type":2,"payload":"<base64 of raw bytes>","position":0}
    {"type":1,"name":"bin/busybox","size":1982256,"payload":"<base64 CRC-64>","position":1}
    {"type":1,"name":"bin/sh","payload":null,"position":2}

- ``type`` 1 is a *file* entry: one per tar header, in archive order; ``name`` is the raw name
  as the tar gives it (after PAX / GNU long-name merging, not normalised) or ``name_raw``
  (base64 bytes) when that is not valid UTF-8; ``size`` is omitted when 0; ``payload`` is the
  8-byte big-endian CRC-64 (Go's ISO table) of the content, or ``null`` when ``size`` is 0.
- ``type`` 2 is a *segment*: raw bytes of the stream that are not file content (headers,
  PAX/GNU records, padding, end-of-archive blocks, trailing data), verbatim.
- ``position`` counts entries from 0.  Field order and escaping follow Go's ``encoding/json``
  (HTML characters escaped as ``\\u003c`` etc.), so the JSON equals what Docker writes.

Reassembly (:func:`assemble`) writes segments verbatim and, for each file entry with a size,
exactly ``size`` bytes read from the extracted tree, checking the CRC-64.  Like tar-split, a
record with two file entries of the same (cleaned) name is refused: the tree could not give
back both contents.
"""

from __future__ import annotations

import binascii
import errno
import json
import os
import posixpath
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import fastcrc

from lamina import errdefs, fsutil
from lamina.archive.api import FileGetter

def _gzip() -> Any:
    """isal's gzip (several times faster than zlib's), imported when a record is read or
    written: reassembly from a layer store's index needs neither."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a declared dependency
        import gzip as igzip  # type: ignore[no-redef]
    return igzip


__all__ = ["TarSplitWriter", "assemble", "assembled_size", "read_entries", "compact_entries", "CompactEntry",
           "DirectoryFileGetter",
           "FILE_TYPE", "SEGMENT_TYPE"]

FILE_TYPE = 1
SEGMENT_TYPE = 2
_CHUNK = 1 << 20
ASSEMBLY_CHUNK = 1 << 20  # bytes per chunk of a reassembled layer
_RECORD_BLOCK = 1 << 20  # decompressed bytes of a tar-split record decoded at a time

_GO_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
               0x2028: "\\u2028", 0x2029: "\\u2029"}


def _go_string(text: str) -> bytes:
    """A JSON string as Go's encoding/json writes it (HTML characters escaped)."""
    encoded = json.dumps(text, ensure_ascii=False)
    if any(character in encoded for character in "<>&\u2028\u2029"):
        encoded = encoded.translate(_GO_ESCAPES)
    return encoded.encode("utf-8")


def _clean(name: str) -> str:
    cleaned = posixpath.normpath(name) if name else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


class TarSplitWriter:
    """Writes tar-split entries, gzip-compressed, to ``fileobj`` (which it does not close).

    Lines are batched before compression; nothing is guaranteed to reach ``fileobj`` before
    :meth:`close`.
    """

    #: the most header bytes :attr:`compact` keeps (a layer of a million tiny files would
    #: need a gigabyte): past it, ``compact`` becomes None
    COMPACT_LIMIT = 64 << 20

    def __init__(self, fileobj: BinaryIO) -> None:
        self._gzip = _gzip().GzipFile(fileobj=fileobj, mode="wb", mtime=0)
        self._position = 0
        self._seen: set[str] = set()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._closed = False
        #: the record in :func:`compact_entries` form, as written (for a reassembly index)
        self.compact: list[CompactEntry] | None = []
        self._compact_size = 0

    def _add(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_size += len(line)
        self._position += 1
        if self._pending_size >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._gzip.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0

    def segment(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            if self.compact is not None:
                self.compact.append(bytes(data))
                self._compact_size += len(data)
                if self._compact_size > self.COMPACT_LIMIT:
                    self.compact = None
            payload = binascii.b2a_base64(data, newline=False)
            self._add(b'{"type":2,"payload":"%s","position":%d}\n' % (payload, self._position))

    def file(self, raw_name: str | bytes, size: int, crc64: bytes | None) -> None:
        name_bytes = os.fsencode(raw_name)
        cleaned = _clean(os.fsdecode(name_bytes))
        if cleaned in self._seen:
            raise errdefs.InvalidArgument(
                f"duplicate path {os.fsdecode(name_bytes)!r} in the archive: tar-split cannot "
                f"record duplicates of file paths")
        self._seen.add(cleaned)
        try:
            text = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            name_field = b',"name_raw":"%s"' % binascii.b2a_base64(name_bytes, newline=False)
        else:
            name_field = b',"name":%s' % _go_string(text) if text else b""
        if self.compact is not None:
            self.compact.append((name_bytes, size, bytes(crc64) if crc64 else None))
        size_field = b',"size":%d' % size if size else b""
        payload = b'"%s"' % binascii.b2a_base64(crc64, newline=False) if crc64 else b"null"
        self._add(b'{"type":1%s%s,"payload":%s,"position":%d}\n'
                  % (name_field, size_field, payload, self._position))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._flush()
            self._gzip.close()


def read_entries(tar_split: BinaryIO) -> Iterator[dict[str, object]]:
    """The entries of a tar-split record, decoded (``payload`` as bytes, ``name`` as bytes).

    The record is decompressed in blocks and each block's lines are decoded by one
    ``json.loads`` of a JSON array (a Python-level call per line costs more than the parse)."""
    number = 0
    try:
        stream = _gzip().GzipFile(fileobj=tar_split, mode="rb")
        rest = b""
        while True:
            block = stream.read(_RECORD_BLOCK)
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
            else:
                rest = b""
            lines = [line for line in data.split(b"\n") if line.strip()]
            if lines:
                for raw in json.loads(b"[" + b",".join(lines) + b"]"):
                    number += 1
                    yield _decoded(raw, number)
            if not block:
                return
    except errdefs.LaminaError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, binascii.Error, TypeError, AttributeError) as exc:
        raise errdefs.DataLoss(f"the tar-split record is damaged: {exc}") from exc


def _decoded(raw: dict, number: int) -> dict[str, object]:
    entry_type = raw.get("type")
    payload = raw.get("payload")
    if entry_type == SEGMENT_TYPE:
        return {"type": entry_type, "payload": binascii.a2b_base64(payload or "", strict_mode=True)}
    if entry_type == FILE_TYPE:
        if raw.get("name_raw"):
            name = binascii.a2b_base64(raw["name_raw"], strict_mode=True)
        else:
            name = str(raw.get("name", "")).encode("utf-8", "surrogateescape")
        size = raw.get("size", 0) or 0
        if size.__class__ is not int or size < 0:
            raise ValueError(f"invalid size {size!r} on line {number}")
        return {"type": entry_type, "name": name, "size": size,
                "payload": binascii.a2b_base64(payload, strict_mode=True) if payload else None}
    raise ValueError(f"unknown entry type {entry_type!r} on line {number}")


#: One entry of a record in the compact form :func:`assemble` works on: a segment's raw
#: bytes, or a file entry's (name as bytes, size, CRC-64 bytes or None).
CompactEntry = bytes | tuple[bytes, int, bytes | None]


def compact_entries(tar_split: BinaryIO | Iterable[dict[str, object]] | Iterable[CompactEntry]
                    ) -> list[CompactEntry]:
    """The record (a file, decoded entries or compact ones) in the compact form (a list
    already in that form is returned as it is)."""
    if isinstance(tar_split, list) and (not tar_split or tar_split[0].__class__ is not dict):
        return tar_split
    entries = read_entries(tar_split) if hasattr(tar_split, "read") else tar_split  # type: ignore[arg-type]
    compact: list[CompactEntry] = []
    append = compact.append
    for entry in entries:  # type: ignore[union-attr]
        if entry.__class__ is not dict:
            append(entry)  # type: ignore[arg-type]
        elif entry["type"] == SEGMENT_TYPE:
            append(entry["payload"])  # type: ignore[arg-type]
        else:
            append((entry["name"], entry["size"], entry["payload"]))  # type: ignore[arg-type]
    return compact


def assembled_size(tar_split: BinaryIO | Iterable[dict[str, object]] | Iterable[CompactEntry]) -> int:
    """Length in bytes of the tar that :func:`assemble` would produce."""
    return sum(len(entry) if entry.__class__ is bytes else entry[1]  # type: ignore[misc]
               for entry in compact_entries(tar_split))


def assemble(tar_split: BinaryIO | Iterable[dict[str, object]] | Iterable[CompactEntry], getter: FileGetter, *,
             verify: bool = True) -> Iterator[memoryview]:
    """Yield the exact bytes of the original tar: segments verbatim, file contents from
    ``getter``.  A missing or short file, or (with ``verify``) a CRC mismatch, raises
    :class:`errdefs.DataLoss` naming the file.

    The bytes come in chunks of :data:`ASSEMBLY_CHUNK` (the last one shorter): file contents
    are read straight into a fresh buffer (``readinto``, no copy) and headers copied beside
    them, so a layer of thousands of small files is a few dozen chunks.  A chunk is never
    written to after it was yielded: a consumer may keep it (hand it to another thread)."""
    crc64 = fastcrc.crc64.go_iso
    capacity = ASSEMBLY_CHUNK
    buffers = _Buffers(capacity)
    view = buffers.take()
    used = 0
    for entry in compact_entries(tar_split):
        if entry.__class__ is bytes:
            payload: bytes = entry  # type: ignore[assignment]
            length = len(payload)
            if used + length > capacity:
                if used:
                    yield view[:used]
                    view, used = buffers.take(), 0
                if length > capacity:  # a segment larger than a chunk (long PAX records)
                    yield memoryview(payload)
                    continue
            view[used:used + length] = payload
            used += length
            continue
        raw_name, size, checksum = entry  # type: ignore[misc]
        if not size:
            continue
        name = os.fsdecode(raw_name)
        try:
            handle = getter.open(name)
        except errdefs.LaminaError as exc:
            raise errdefs.DataLoss(f"cannot reassemble the layer: {name!r}: {exc}") from exc
        except OSError as exc:
            raise errdefs.DataLoss(f"cannot reassemble the layer: {name!r}: {exc.strerror or exc}") from exc
        crc = 0
        remaining = size
        try:
            while remaining:
                if used == capacity:
                    yield view
                    view, used = buffers.take(), 0
                wanted = min(remaining, capacity - used)
                try:
                    got = handle.readinto(view[used:used + wanted])
                except OSError as exc:
                    raise errdefs.DataLoss(f"cannot read {name!r}: {exc.strerror or exc}") from exc
                if not got:
                    raise errdefs.DataLoss(
                        f"file {name!r} is shorter than recorded ({size - remaining} of {size} bytes)")
                if verify:
                    crc = crc64(view[used:used + got], crc)
                used += got
                remaining -= got
        finally:
            handle.close()
        if verify and crc.to_bytes(8, "big") != checksum:
            raise errdefs.DataLoss(f"file integrity checksum failed for {name!r}")
    if used:
        yield view[:used]


class _Buffers:
    """The chunk buffers of one :func:`assemble`, reused once nobody holds them any more.

    A buffer is free when its only references are this pool's (CPython reference counts: a
    memoryview of it anywhere, e.g. in a hashing or writing thread's queue, holds one more).
    Reusing the few buffers a pipeline keeps in flight spares the kernel from handing out
    (and zeroing) fresh pages for every chunk."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buffers: list[bytearray] = []

    def take(self) -> memoryview:
        for buffer in self._buffers:
            # references: the list, the loop variable and getrefcount's argument
            if sys.getrefcount(buffer) == 3:
                return memoryview(buffer)
        buffer = bytearray(self.capacity)
        if len(self._buffers) < 32:
            self._buffers.append(buffer)
        return memoryview(buffer)


class DirectoryFileGetter:
    """Opens files of a tree by tar name, never leaving ``root`` (symlinks resolve inside it).

    The directories on the way are opened one component at a time with ``O_NOFOLLOW`` and the
    last few kept open (a layer's files come grouped by directory), so a file costs one
    ``openat``; a path through a symlink (rare in a layer's file list) is resolved inside the
    root by :func:`lamina.fsutil.open_beneath`."""

    _KEEP = 64  # directory fds kept open

    def __init__(self, root: str) -> None:
        self.root = os.fspath(root)
        self._root_fd: int | None = None
        self._directories: dict[str, int] = {}

    def open(self, name: str) -> BinaryIO:
        parts = [part for part in name.split("/") if part not in ("", ".")]
        relative = posixpath.normpath("/" + "/".join(parts)).lstrip("/") if parts else "."
        if self._root_fd is None:  # opened once for all the files of a layer
            try:
                self._root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise fsutil.system_error(f"opening {self.root}", exc) from exc
        directory, _, base = relative.rpartition("/")
        try:
            try:
                fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._directory(directory))
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                fd = fsutil.open_beneath(self._root_fd, relative, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise fsutil.system_error(f"opening {name!r} in {self.root}", exc) from exc
        return os.fdopen(fd, "rb", buffering=0)

    def _directory(self, directory: str) -> int:
        assert self._root_fd is not None
        if not directory:
            return self._root_fd
        fd = self._directories.get(directory)
        if fd is not None:
            return fd
        parent, _, base = directory.rpartition("/")
        fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._directory(parent))
        if len(self._directories) >= self._KEEP:
            for kept in self._directories.values():
                os.close(kept)
            self._directories.clear()
        self._directories[directory] = fd
        return fd

    def close(self) -> None:
        for fd in self._directories.values():
            os.close(fd)
        self._directories.clear()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def __del__(self) -> None:
        self.close()
