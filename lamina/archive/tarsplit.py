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

import base64
import binascii
import json
import os
import posixpath
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import fastcrc

from lamina import errdefs, fsutil
from lamina.archive.api import FileGetter

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip  # type: ignore[no-redef]

__all__ = ["TarSplitWriter", "assemble", "assembled_size", "read_entries", "DirectoryFileGetter",
           "FILE_TYPE", "SEGMENT_TYPE"]

FILE_TYPE = 1
SEGMENT_TYPE = 2
_CHUNK = 1 << 20

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

    def __init__(self, fileobj: BinaryIO) -> None:
        self._gzip = _gzip.GzipFile(fileobj=fileobj, mode="wb", mtime=0)
        self._position = 0
        self._seen: set[str] = set()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._closed = False

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
    """The entries of a tar-split record, decoded (``payload`` as bytes, ``name`` as bytes)."""
    try:
        stream = _gzip.GzipFile(fileobj=tar_split, mode="rb")
        for number, line in enumerate(stream):
            if not line.strip():
                continue
            raw = json.loads(line)
            entry_type = raw.get("type")
            payload = raw.get("payload")
            decoded: dict[str, object] = {"type": entry_type}
            if entry_type == SEGMENT_TYPE:
                decoded["payload"] = base64.b64decode(payload or "", validate=True)
            elif entry_type == FILE_TYPE:
                if raw.get("name_raw"):
                    decoded["name"] = base64.b64decode(raw["name_raw"], validate=True)
                else:
                    decoded["name"] = str(raw.get("name", "")).encode("utf-8", "surrogateescape")
                size = raw.get("size", 0) or 0
                if not isinstance(size, int) or size < 0:
                    raise ValueError(f"invalid size {size!r}")
                decoded["size"] = size
                decoded["payload"] = base64.b64decode(payload, validate=True) if payload else None
            else:
                raise ValueError(f"unknown entry type {entry_type!r} on line {number + 1}")
            yield decoded
    except errdefs.LaminaError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, binascii.Error, TypeError, AttributeError) as exc:
        raise errdefs.DataLoss(f"the tar-split record is damaged: {exc}") from exc


def _entries(tar_split: BinaryIO | Iterable[dict[str, object]]) -> Iterable[dict[str, object]]:
    # a record file, or entries already read from one (so a caller parses a record once)
    return read_entries(tar_split) if hasattr(tar_split, "read") else tar_split  # type: ignore[arg-type]


def assembled_size(tar_split: BinaryIO | Iterable[dict[str, object]]) -> int:
    """Length in bytes of the tar that :func:`assemble` would produce."""
    total = 0
    for entry in _entries(tar_split):
        if entry["type"] == SEGMENT_TYPE:
            total += len(entry["payload"])  # type: ignore[arg-type]
        else:
            total += entry["size"]  # type: ignore[operator]
    return total


def assemble(tar_split: BinaryIO | Iterable[dict[str, object]], getter: FileGetter, *, verify: bool = True
             ) -> Iterator[bytes | memoryview]:
    """Yield the exact bytes of the original tar: segments verbatim, file contents from
    ``getter``.  A missing or short file, or (with ``verify``) a CRC mismatch, raises
    :class:`errdefs.DataLoss` naming the file."""
    crc64 = fastcrc.crc64.go_iso
    for entry in _entries(tar_split):
        if entry["type"] == SEGMENT_TYPE:
            yield entry["payload"]  # type: ignore[misc]
            continue
        size: int = entry["size"]  # type: ignore[assignment]
        if not size:
            continue
        name = os.fsdecode(entry["name"])  # type: ignore[arg-type]
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
                try:
                    chunk = handle.read(min(remaining, _CHUNK))
                except OSError as exc:
                    raise errdefs.DataLoss(f"cannot read {name!r}: {exc.strerror or exc}") from exc
                if not chunk:
                    raise errdefs.DataLoss(
                        f"file {name!r} is shorter than recorded ({size - remaining} of {size} bytes)")
                remaining -= len(chunk)
                if verify:
                    crc = crc64(chunk, crc)
                yield chunk
        finally:
            handle.close()
        if verify and crc.to_bytes(8, "big") != entry["payload"]:
            raise errdefs.DataLoss(f"file integrity checksum failed for {name!r}")


class DirectoryFileGetter:
    """Opens files of a tree by tar name, never leaving ``root`` (symlinks resolve inside it)."""

    def __init__(self, root: str) -> None:
        self.root = os.fspath(root)
        self._root_fd: int | None = None

    def open(self, name: str) -> BinaryIO:
        parts = [part for part in name.split("/") if part not in ("", ".")]
        relative = posixpath.normpath("/" + "/".join(parts)).lstrip("/") if parts else "."
        if self._root_fd is None:  # opened once for all the files of a layer
            try:
                self._root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise fsutil.system_error(f"opening {self.root}", exc) from exc
        try:
            fd = fsutil.open_beneath(self._root_fd, relative, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise fsutil.system_error(f"opening {name!r} in {self.root}", exc) from exc
        return os.fdopen(fd, "rb", buffering=0)

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def __del__(self) -> None:
        self.close()
