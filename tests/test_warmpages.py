"""lamina.warmpages: a forked process records the pages it wrote (and only those), and
another fork faults in what such a record names, which then are its own (mapped by it alone)
with their contents unchanged."""

from __future__ import annotations

import ctypes
import os
import struct
import time

from lamina import warmpages
from tests.processes import in_forked_child

PAGE = os.sysconf("SC_PAGE_SIZE")
PAGES = 64


def _exclusive(address: int, count: int) -> list[bool]:
    """Whether each page from ``address`` is present and mapped by this process alone."""
    with open("/proc/self/pagemap", "rb") as handle:
        handle.seek(address // PAGE * 8)
        entries = struct.unpack(f"={count}Q", handle.read(count * 8))
    return [bool(entry >> 63 & 1 and entry >> 56 & 1) for entry in entries]


def _buffer() -> tuple[bytearray, int]:
    """A page-aligned span of PAGES pages inside a bytearray, each written by this process
    (present), and its address."""
    buffer = bytearray((PAGES + 1) * PAGE)
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    start = address + (-address) % PAGE
    for offset in range(start - address, start - address + PAGES * PAGE, PAGE):
        buffer[offset] = 7
    return buffer, start


def _covered(ranges: list[tuple[int, int]], address: int) -> bool:
    return any(start <= address < start + length for start, length in ranges)


def test_a_fork_records_the_pages_it_wrote_and_not_those_it_shares(tmp_path) -> None:
    buffer, start = _buffer()
    first = start - ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    record = str(tmp_path / "fork.pages")

    def write_some_and_record() -> int:
        for page in range(10, 20):
            buffer[first + page * PAGE] = 9  # copied now: this process's own
        return warmpages.record(record)

    assert in_forked_child(write_some_and_record) > 0
    with open(record, "rb") as handle:
        data = handle.read()
    ranges = list(struct.iter_unpack("=QQ", data))
    assert all(_covered(ranges, start + page * PAGE) for page in range(10, 20))
    assert not any(_covered(ranges, start + page * PAGE) for page in (0, 9, 20, 40, PAGES - 1))


def test_a_fork_faults_in_what_a_record_names_within_its_own_mappings(tmp_path) -> None:
    buffer, start = _buffer()
    record = tmp_path / "fork.pages"
    # pages 30-39 of the buffer, and a range no mapping of the child holds (skipped)
    record.write_bytes(struct.pack("=QQ", start + 30 * PAGE, 10 * PAGE) + struct.pack("=QQ", PAGE, PAGE))

    def fault_in() -> list:
        before = _exclusive(start, PAGES)
        done = warmpages.fault_in(str(record))
        after = _exclusive(start, PAGES)
        offset = start - ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
        return [before, done, after, list(buffer[offset:offset + PAGES * PAGE:PAGE])]

    before, done, after, contents = in_forked_child(fault_in)
    assert not any(before)  # shared with the parent after the fork
    assert done == 10 * PAGE
    assert after == [30 <= page < 40 for page in range(PAGES)]
    assert contents == [7] * PAGES  # only faulted in: nothing written


def test_a_missing_record_faults_in_nothing_and_a_new_one_is_due_only_when_it_is_old(tmp_path) -> None:
    record = str(tmp_path / "fork.pages")
    assert warmpages.fault_in(record) == 0
    assert warmpages.due(record)
    warmpages.record(record)
    assert not warmpages.due(record)
    old = time.time() - warmpages.RECORD_EVERY - 1
    os.utime(record, (old, old))
    assert warmpages.due(record)


def test_the_record_sits_beside_the_fork_servers_socket() -> None:
    assert warmpages.pages_path("/run/lamina/engine-cache/ab12.fork.sock") == "/run/lamina/engine-cache/ab12.fork.pages"
