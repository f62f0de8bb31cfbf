"""A layer's original tar, reassembled from its tar-split record (``save``, ``push``,
``export`` of an image's layers): the record's segments (headers, padding) verbatim, each
file's content from the graph driver's diff directory, as tar-split's assembler does in Docker.

On-disk format, in a layer's directory of the layer store (:mod:`lamina.layer.store`)::

    tar-split.json.gz   the record (Docker's), written when the layer is registered
    tar-split.index     lamina's cache of the decoded record

``tar-split.index`` spares each ``save`` the decoding of the record (~50 ms for a layer of
5,000 files, a sixth of the whole save).  It is written when the layer is registered (from what
the tar-split writer recorded, unless the headers pass 64 MiB) or else on the first
reassembly, without fsync: ``LTSI1\\n``, the CRC-32 of the rest (4 bytes, big-endian), then
``marshal`` data (format 4) of ``(tar size, [segment bytes | (name bytes, size, CRC-64 bytes |
None), ...])``.  A missing, damaged or unreadable index is rebuilt from the record; Docker does
not know the file and a layer's directory is removed whole, so it needs no bookkeeping of its
own (no commit point: it is a cache checked by its CRC).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from lamina import errdefs, fsutil
from lamina.log import get_logger

__all__ = ["TAR_SPLIT", "layer_tar", "write_index"]

log = get_logger("lamina.layer")

TAR_SPLIT = "tar-split.json.gz"
_INDEX = "tar-split.index"
_INDEX_MAGIC = b"LTSI1\n"


def layer_tar(chain_id: str, diff_id: str, directory: str, diff_path: str, *,
              verify_digest: bool = False) -> tuple[int, Iterator[bytes | memoryview]]:
    """(size, stream) of the original tar of layer ``chain_id`` (its record in ``directory``,
    its files under ``diff_path``), reading the record once.

    Each file's content is checked against the CRC-64 the record holds for it.  Corruption
    anywhere raises :class:`errdefs.DataLoss`: in a file's content by its CRC-64 (after that
    file's last byte), in the record by gzip's CRC-32 (before the first byte).  So the stream
    reproduces the tar whose sha256 is the diff_id; ``verify_digest`` also hashes it and
    compares at the end (Docker's ``TarStream`` does both; the hash costs a core for ~0.15 s
    per 200 MiB and adds nothing the checks above miss, short of a bug in the reassembly
    itself).  Either failure comes after bytes were produced (the stream is not buffered):
    callers writing archives must treat the output as invalid."""
    from lamina.archive.tarsplit import DirectoryFileGetter

    size, entries = _reassembly_index(directory, chain_id)
    getter = DirectoryFileGetter(diff_path)
    if verify_digest:
        return size, _verified(diff_id, entries, getter)
    return size, _checked(entries, getter)


def write_index(directory: str, entries: list) -> int:
    """Write the reassembly index of ``entries`` into the layer ``directory`` (no fsync: a
    damaged one is rebuilt); returns the tar's size."""
    import marshal
    import zlib

    from lamina.archive.tarsplit import assembled_size

    size = assembled_size(entries)
    payload = marshal.dumps((size, entries), 4)
    fsutil.atomic_replace(os.path.join(directory, _INDEX),
                          _INDEX_MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload)
    return size


def _reassembly_index(directory: str, chain_id: str) -> tuple[int, list]:
    """(tar size, compact entries) of the layer's tar-split record, from the index cache
    when it is there and intact, else decoded from the record (and the cache written)."""
    import marshal
    import zlib

    from lamina.archive.tarsplit import assembled_size, compact_entries

    try:
        with open(os.path.join(directory, _INDEX), "rb") as handle:
            data = handle.read()
        if data.startswith(_INDEX_MAGIC) and int.from_bytes(data[6:10], "big") == zlib.crc32(data[10:]):
            size, entries = marshal.loads(data[10:])
            if isinstance(size, int) and isinstance(entries, list):
                return size, entries
    except (OSError, ValueError, EOFError, TypeError):
        pass
    try:
        handle = open(os.path.join(directory, TAR_SPLIT), "rb")
    except FileNotFoundError as exc:
        raise errdefs.DataLoss(f"layer {chain_id} has no {TAR_SPLIT}") from exc
    with handle:
        entries = compact_entries(handle)
    try:
        return write_index(directory, entries), entries
    except OSError as exc:  # a read-only data root still saves
        log.debug("cannot write %s: %s", os.path.join(directory, _INDEX), exc)
        return assembled_size(entries), entries


def _checked(entries: list, getter: object) -> Iterator[bytes | memoryview]:
    from lamina.archive.tarsplit import assemble

    try:
        yield from assemble(entries, getter, verify=True)  # type: ignore[arg-type]
    finally:
        getter.close()  # type: ignore[attr-defined]


def _verified(diff_id: str, entries: list, getter: object) -> Iterator[bytes | memoryview]:
    from lamina.archive.tarsplit import assemble
    from lamina.digest import BackgroundHasher

    hasher = BackgroundHasher()  # hashes beside the reads and the consumer's writes
    try:
        for chunk in assemble(entries, getter, verify=True):  # type: ignore[arg-type]
            hasher.update(chunk)
            yield chunk
        digest = hasher.digest()
    finally:
        hasher.close()
        getter.close()  # type: ignore[attr-defined]
    if digest != diff_id:
        raise errdefs.DataLoss(f"layer {diff_id} is damaged: its content now hashes to {digest}")
