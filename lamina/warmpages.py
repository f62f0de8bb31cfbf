"""The pages a fork server's worker wrote, faulted in ahead by the next spare.

The engine cache's workers are forks of its fork server (:mod:`lamina.cli.forkserver`): each
page of the interpreter's memory a worker first writes (a reference count is a write) is
copied then, a copy-on-write fault (~6 µs on the test machine): a ``run``'s create made ~1,100
of them before its start request.  The next worker waits forked ahead, idle, as a spare: it
faults in ahead what a worker wrote, and its command finds those pages its own.

Not the monitor template's forks: a monitor lives as long as its container, and its spare
helper is counted with the template in the memory a running container costs
(``bench/scale.py``).  Measured with 20 running containers: spare helpers warmed this way
(~1,190 faults of a start's helper became ~645) took it from 2.94 to 3.25 MiB a container, over
issue 16's 3 MiB; spare monitors too, 4.2 MiB.

File: ``<socket, without .sock>.pages`` beside the fork server's socket: the page ranges a
worker held alone and present (``/proc/self/pagemap`` bits 56 and 63) in its private writable
anonymous mappings when its work ended, as pairs of native unsigned 64-bit integers (start,
length), replaced whole (:func:`lamina.fsutil.atomic_replace`, not synced: a cache) before the
worker reports its exit (~0.6 ms). Only one that faulted nothing in ahead writes it (its pages
are all its work's own), and only when the file is missing or older than :data:`RECORD_EVERY`
seconds (:func:`due`): a spare forked then faults nothing in, so that its work is recorded
afresh, and the record follows what the work does (a big command's pages do not stay). A spare
otherwise reads it, keeps the parts that lie in its own private writable anonymous mappings, at
most :data:`LIMIT` bytes, and has the kernel fault them in writable (``madvise``
``MADV_POPULATE_WRITE``, Linux 5.14; nothing before). Contents never change: a stale or wrong
file costs the spare memory, at most :data:`LIMIT`, and nothing else.
"""

from __future__ import annotations

import errno
import os
import struct
import time

from lamina import fsutil

__all__ = ["LIMIT", "RECORD_EVERY", "due", "fault_in", "pages_path", "record", "record_when_due", "warm"]

RECORD_EVERY = 30.0     # seconds
LIMIT = 16 << 20        # bytes a spare faults in, at most (a run's create wrote ~7 MiB)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_REGION_LIMIT = 256 << 20  # a larger mapping is an allocator's reservation, not what a command wrote
_RANGE = struct.Struct("=QQ")
_MADV_POPULATE_WRITE = 23
# the top byte of a pagemap entry: bit 63 (present) is 0x80, bit 56 (mapped by this process alone) 0x01
_WRITTEN = bytes(1 if value & 0x81 == 0x81 else 0 for value in range(256))


def pages_path(socket_path: str) -> str:
    """The record beside ``socket_path`` (``<socket without .sock>.pages``)."""
    return (socket_path[:-len(".sock")] if socket_path.endswith(".sock") else socket_path) + ".pages"


def _regions() -> list[tuple[int, int]]:
    """(start, end) of this process's private writable anonymous mappings (the heap, the
    allocators' arenas), from ``/proc/self/maps``."""
    regions = []
    with open("/proc/self/maps", "rb") as handle:
        for line in handle:
            fields = line.split()
            permissions = fields[1]
            if permissions[:2] != b"rw" or permissions[3:4] != b"p" or fields[4] != b"0":
                continue
            if len(fields) > 5 and fields[5] != b"[heap]":
                continue  # a stack, a named anonymous mapping
            start, end = (int(value, 16) for value in fields[0].split(b"-"))
            if end - start <= _REGION_LIMIT:
                regions.append((start, end))
    return regions


def record(path: str) -> int:
    """Write to ``path`` the page ranges this process wrote (see the module docstring); the
    bytes they span."""
    import re

    ranges = []
    descriptor = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for start, end in _regions():
            entries = os.pread(descriptor, (end - start) // _PAGE * 8, start // _PAGE * 8)
            flags = entries[7::8].translate(_WRITTEN)
            for run in re.finditer(b"\x01+", flags):
                ranges.append((start + run.start() * _PAGE, (run.end() - run.start()) * _PAGE))
    finally:
        os.close(descriptor)
    fsutil.atomic_replace(path, b"".join(_RANGE.pack(*item) for item in ranges))
    return sum(length for _, length in ranges)


def due(path: str) -> bool:
    """Whether the record at ``path`` is missing or older than :data:`RECORD_EVERY` seconds."""
    try:
        return time.time() - os.stat(path).st_mtime >= RECORD_EVERY
    except FileNotFoundError:
        return True


def fault_in(path: str) -> int:
    """Fault in, writable, what ``path`` names within this process's private writable
    anonymous mappings (at most :data:`LIMIT` bytes); the bytes faulted in (0 without a file,
    or before Linux 5.14)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(LIMIT // _PAGE * _RANGE.size)
    except OSError:
        return 0
    from lamina import sys as lsys

    regions = _regions()
    done = 0
    for address, length in _RANGE.iter_unpack(data[:len(data) - len(data) % _RANGE.size]):
        for start, end in regions:
            low, high = max(address, start), min(address + length, end)
            if low >= high:
                continue
            low -= low % _PAGE
            high = min(high + (-high) % _PAGE, end, low + LIMIT - done)
            try:
                lsys.madvise(low, high - low, _MADV_POPULATE_WRITE)
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # a kernel without MADV_POPULATE_WRITE
                    return done
                continue  # ENOMEM (a hole), EFAULT, ...: the next range
            done += high - low
            if done >= LIMIT:
                return done
    return done


def warm(path: str) -> bool:
    """A spare: fault in what ``path`` names (:func:`fault_in`) unless a new record is due;
    whether it did (when not, what its command writes is all its own: it records it with
    :func:`record_when_due`).  Never fails."""
    try:
        if due(path):
            return False
        fault_in(path)
    except Exception:  # noqa: BLE001 - only a saving: the spare waits as it is
        return False
    return True


def record_when_due(path: str) -> None:
    """A process that faulted nothing in ahead, its work done: :func:`record` when
    :func:`due`.  Never fails."""
    try:
        if due(path):
            record(path)
    except Exception:  # noqa: BLE001 - only a saving
        pass
