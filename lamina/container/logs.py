"""Docker's ``json-file`` log driver: the writer a container's monitor uses, and the reader behind
``logs`` (``--tail``, ``--since``, ``--until``, ``-t``, ``-f``), and (re-exported from
:mod:`lamina.stdcopy`) the multiplexed stream frames of the attach/logs endpoints.

File format (``<root>/containers/<id>/<id>-json.log``, mode 0640), byte-compatible with Docker:
one JSON object per line, fields in this order::

    {"log":"hello\\n","stream":"stdout","time":"2026-11-23T02:44:34.662391651Z"}

``log`` is the output chunk as a JSON string, escaped like Go's ``encoding/json`` with HTML
escaping (``<`` ``>`` ``&`` as ``\\u003c`` ``\\u003e`` ``\\u0026``, control bytes other than ``\\n``
and ``\\r`` as ``\\u00XX``, U+2028/U+2029 escaped, every byte of invalid UTF-8 as ``\\ufffd``).
``time`` is RFC 3339 with nanoseconds in UTC, trailing zeros trimmed (Go's ``RFC3339Nano``).

Lines, as Docker's log copier cuts them: each ``\\n``-terminated line of a stream is one entry
whose ``log`` ends with ``\\n``.  A line longer than 16 KiB is cut into 16 KiB *partial* entries
without a trailing newline; the entry that completes it carries the newline, and all pieces carry
the timestamp of the first piece.  Output still without a newline when a stream ends (or the
writer closes) is written as a partial entry (no ``\\n`` added).

Rotation (``--log-opt max-size=10m --log-opt max-file=3``): before an entry is written to a file
already ``max-size`` bytes or more, ``<log>.<n-1>`` is renamed to ``<log>.<n>`` for n down to 2 (the oldest
falls off), ``<log>`` to ``<log>.1``, and a new ``<log>`` is started.  With ``max-file=1`` the file
is truncated in place instead.  ``max-size`` takes Docker's units for this option
(``units.FromHumanSize``: decimal, ``10k`` = 10000 bytes, ``10m`` = 10**7).
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Self

from lamina import errdefs
from lamina.fsutil import system_error
from lamina.image.rfc3339 import format_time, parse_time  # one home for RFC 3339 (re-exported)
from lamina.log import get_logger
from lamina.records import dataclass
from lamina.stdcopy import STDERR, STDIN, STDOUT, SYSTEM_ERROR, demultiplex, frame

__all__ = [
    "PARTIAL_LINE_SIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SYSTEM_ERROR",
    "JsonFileWriter",
    "LogOptions",
    "demultiplex",
    "encode_entry",
    "format_time",
    "format_time_fixed",
    "frame",
    "log_path",
    "parse_log_options",
    "parse_size",
    "parse_time",
    "read_logs",
]

log = get_logger(__name__)

PARTIAL_LINE_SIZE = 16 * 1024     # Docker's copier buffer: longer lines become partial entries
_STREAMS = ("stdout", "stderr")
_TAIL_BLOCK = 64 * 1024
_HEAD_SIZE = 128        # bytes compared to notice a file truncated and rewritten in place
_FILE_MODE = 0o640


# ---------------------------------------------------------------------------------------------
# encoding


# Go decodes invalid UTF-8 one byte at a time and writes the escape text \ufffd for each offending
# byte (a real U+FFFD in the input stays raw): mark them with a lone surrogate, which valid UTF-8
# can never decode to, and escape the marker.
_INVALID_MARK = "\ud800"


def _replace_per_byte(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    return _INVALID_MARK * (exc.end - exc.start), exc.end


codecs.register_error("lamina-go-replace", _replace_per_byte)

_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\",
                 ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                 0x2028: "\\u2028", 0x2029: "\\u2029", ord(_INVALID_MARK): "\\ufffd"})


def _json_string(data: bytes) -> str:
    return '"' + data.decode("utf-8", "lamina-go-replace").translate(_ESCAPES) + '"'


def format_time_fixed(time_ns: int) -> str:
    """Docker's ``RFC3339NanoFixed`` (always nine digits), the prefix of ``logs -t``."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def encode_entry(data: bytes, stream: str, time_ns: int) -> bytes:
    """One log line, byte for byte as Docker's json-file driver writes it (with the ``\\n``)."""
    parts = []
    if data:
        parts.append('"log":' + _json_string(data))
    if stream:
        parts.append('"stream":' + _json_string(stream.encode()))
    parts.append('"time":"' + format_time(time_ns) + '"')
    return ("{" + ",".join(parts) + "}\n").encode()


# ---------------------------------------------------------------------------------------------
# options


_SIZE_PATTERN = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


def parse_size(text: str, *, binary: bool = False) -> int:
    """A size with Docker's units: ``FromHumanSize`` (decimal, the default; what ``max-size``
    uses) or, with ``binary``, ``RAMInBytes`` (``--memory``: ``1k`` = 1024)."""
    match = _SIZE_PATTERN.match(text.strip())
    if not match:
        raise errdefs.InvalidArgument(f"invalid size: '{text}'")
    try:
        value = float(match.group(1))
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid size: '{text}'") from exc
    prefix = (match.group(2) or "").lower()
    if prefix:
        value *= (_BINARY if binary else _DECIMAL)[prefix]
    return int(value)


@dataclass(frozen=True)
class LogOptions:
    """``--log-opt`` values of the json-file driver."""

    max_size: int | None = None    # bytes; None: never rotate
    max_file: int = 1


_KNOWN_OPTIONS = {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}


def parse_log_options(options: Mapping[str, str]) -> LogOptions:
    """Validate ``--log-opt`` key=value pairs as Docker's json-file driver does."""
    for key in options:
        if key not in _KNOWN_OPTIONS:
            raise errdefs.InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    max_size = None
    if "max-size" in options:
        max_size = parse_size(options["max-size"])
        if max_size <= 0:
            raise errdefs.InvalidArgument("max-size must be a positive number")
    max_file = 1
    if "max-file" in options:
        try:
            max_file = int(options["max-file"])
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid max-file {options['max-file']!r}: not a number") from exc
        if max_file < 1:
            raise errdefs.InvalidArgument("max-file cannot be less than 1")
    if options.get("compress", "false").lower() in ("1", "t", "true"):
        raise errdefs.NotImplemented("compressed rotated log files (compress=true) are not supported yet")
    for key in ("labels", "labels-regex", "env", "env-regex", "tag"):
        if key in options:
            log.info("log opt %s is accepted but not recorded in the log entries yet", key)
    return LogOptions(max_size=max_size, max_file=max_file)


def log_path(containers_root: str, container_id: str) -> str:
    """``<containers_root>/<id>/<id>-json.log``."""
    return os.path.join(containers_root, container_id, f"{container_id}-json.log")


# ---------------------------------------------------------------------------------------------
# writer


class JsonFileWriter:
    """Appends a container's stdout/stderr to its json-file log, rotating like Docker.

    ``write`` may be called from one thread per stream; it cuts the data into lines and keeps an
    unterminated tail until more data (or :meth:`flush`/:meth:`close`) arrives.
    """

    def __init__(self, path: str, *, max_size: int | str | None = None, max_file: int = 1,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if isinstance(max_size, str):
            max_size = parse_size(max_size)
        if max_size is not None and max_size <= 0:
            raise errdefs.InvalidArgument("max-size must be a positive number")
        if max_file < 1:
            raise errdefs.InvalidArgument("max-file cannot be less than 1")
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = {stream: bytearray() for stream in _STREAMS}
        self._partial_time: dict[str, int] = {}
        self._fd = self._open(truncate=False)
        self._size = os.fstat(self._fd).st_size

    def _open(self, *, truncate: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        try:
            return os.open(self.path, flags, _FILE_MODE)
        except OSError as exc:
            raise system_error(f"cannot open the log file {self.path}", exc) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, stream: str, data: bytes) -> None:
        if stream not in _STREAMS:
            raise errdefs.InvalidArgument(f"unknown log stream {stream!r} (stdout or stderr)")
        with self._lock:
            if self._fd < 0:
                raise errdefs.FailedPrecondition(f"the log {self.path} is closed")
            pending = self._pending[stream]
            pending += data
            start = 0
            while True:
                newline = pending.find(b"\n", start, start + PARTIAL_LINE_SIZE)
                if newline >= 0:
                    self._emit(stream, bytes(pending[start:newline]), last=True)
                    start = newline + 1
                elif len(pending) - start >= PARTIAL_LINE_SIZE:
                    self._emit(stream, bytes(pending[start:start + PARTIAL_LINE_SIZE]), last=False)
                    start += PARTIAL_LINE_SIZE
                else:
                    break
            del pending[:start]

    def flush(self, stream: str | None = None) -> None:
        """Write what is buffered without a newline as a partial entry (Docker does this when a
        stream ends)."""
        with self._lock:
            for name in (stream,) if stream else _STREAMS:
                pending = self._pending[name]
                if pending and self._fd >= 0:
                    self._emit(name, bytes(pending), last=False)
                    pending.clear()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _emit(self, stream: str, line: bytes, *, last: bool) -> None:
        if stream in self._partial_time:
            timestamp = self._partial_time[stream]
        else:
            timestamp = self._clock()
        if last:
            self._partial_time.pop(stream, None)
            line += b"\n"
        else:
            self._partial_time[stream] = timestamp
        entry = encode_entry(line, stream, timestamp)
        if self.max_size is not None and self._size >= self.max_size:
            # rotate before writing, not right after the entry that filled the file: a follower
            # then gets the chance to read that entry before a max-file=1 truncation
            self._rotate()
        view = memoryview(entry)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise system_error(f"cannot write to the log {self.path}", exc) from exc
        self._size += len(entry)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.max_file >= 2:
            try:
                for number in range(self.max_file - 1, 1, -1):
                    try:
                        os.rename(f"{self.path}.{number - 1}", f"{self.path}.{number}")
                    except FileNotFoundError:
                        pass
                os.rename(self.path, f"{self.path}.1")
            except OSError as exc:
                raise system_error(f"cannot rotate the log {self.path}", exc) from exc
            self._fd = self._open(truncate=False)
        else:
            self._fd = self._open(truncate=True)
        self._size = 0


# ---------------------------------------------------------------------------------------------
# reader


@dataclass
class _Entry:
    """One decoded log line."""

    stream: str
    payload: bytes
    time_text: str
    time_ns: int


def _decode(line: bytes, path: str) -> _Entry | None:
    try:
        value = json.loads(line)
        text = value.get("log", "")
        time_text = value["time"]
        return _Entry(str(value.get("stream", "")), text.encode("utf-8", "surrogatepass"), time_text,
                      parse_time(time_text))
    except (ValueError, KeyError, TypeError, AttributeError, errdefs.InvalidArgument):
        log.warning("skipping a malformed line in %s: %.80r", path, line)
        return None


def _rotated_paths(path: str) -> list[str]:
    """``<log>.N`` ... ``<log>.1`` that exist, oldest first."""
    directory, base = os.path.split(path)
    numbers = []
    try:
        names = os.listdir(directory or ".")
    except OSError as exc:
        raise system_error(f"cannot list {directory}", exc) from exc
    for name in names:
        if name.startswith(base + ".") and name[len(base) + 1:].isdigit():
            numbers.append(int(name[len(base) + 1:]))
    return [f"{path}.{number}" for number in sorted(numbers, reverse=True)]


def _open_read(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise system_error(f"cannot open the log {path}", exc) from exc


class _FileCursor:
    """Reads complete lines from one open log file, from ``offset`` on."""

    def __init__(self, fd: int, path: str, offset: int = 0) -> None:
        self.fd = fd
        self.path = path
        self.offset = offset
        self.buffer = b""
        self.head = os.pread(fd, _HEAD_SIZE, 0) if offset else b""

    def _truncated(self) -> bool:
        # max-file=1 rotation truncates in place: the file shrank, or it grew back past our
        # offset but starts with other bytes (the first entry's timestamp differs)
        if not self.offset:
            return False
        if os.fstat(self.fd).st_size < self.offset:
            return True
        return os.pread(self.fd, len(self.head), 0) != self.head

    def lines(self) -> Iterator[bytes]:
        if self._truncated():
            self.offset = 0
            self.buffer = b""
        while True:
            chunk = os.pread(self.fd, 1 << 20, self.offset)
            if not chunk:
                return
            if not self.offset:
                self.head = chunk[:_HEAD_SIZE]
            self.offset += len(chunk)
            data = self.buffer + chunk
            *complete, self.buffer = data.split(b"\n")
            yield from (line for line in complete if line)

    def inode(self) -> tuple[int, int]:
        info = os.fstat(self.fd)
        return info.st_dev, info.st_ino

    def close(self) -> None:
        os.close(self.fd)


def _complete_end(fd: int, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 if none)."""
    position = size
    while position > 0:
        start = max(0, position - _TAIL_BLOCK)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _tail(fd: int, end: int, count: int, accept: Callable[[_Entry], bool], path: str) -> list[_Entry]:
    """The last ``count`` accepted entries before ``end``, read backwards in blocks."""
    found: list[_Entry] = []
    position = end
    carry = b""
    while position > 0 and len(found) < count:
        start = max(0, position - _TAIL_BLOCK)
        block = os.pread(fd, position - start, start) + carry
        position = start
        lines = block.split(b"\n")
        # the first piece may be the end of a line that starts in an earlier block
        carry = lines.pop(0) if position > 0 else b""
        for line in reversed(lines):
            if not line:
                continue
            entry = _decode(line, path)
            if entry is not None and accept(entry):
                found.append(entry)
                if len(found) == count:
                    break
    found.reverse()
    return found


_UNIX_TIME = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")


def _timestamp_ns(value: float | str | None) -> int | None:
    """Seconds since the epoch (0 or None: not set) in ns.  Strings (the API's ``since`` /
    ``until``: ``1700000000.123456789``, or RFC 3339) are exact; floats to the microsecond."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _UNIX_TIME.match(value.strip())
        if match:
            result = int(match.group(1)) * 1_000_000_000 + int((match.group(2) or "").ljust(9, "0"))
        else:
            result = parse_time(value.strip())
    else:
        result = round(value * 1_000_000) * 1000
    return result or None


def read_logs(path: str, *, stdout: bool = True, stderr: bool = True, tail: int | None = None,
              since: float | str | None = None, until: float | str | None = None, timestamps: bool = False,
              follow: bool = False, stop: Callable[[], bool] | None = None,
              poll_interval: float = 0.05) -> Iterator[tuple[str, bytes, str]]:
    """Entries of a json-file log and its rotated files, oldest first, as (stream, payload, time).

    ``payload`` is the ``log`` text as bytes, prefixed with ``<RFC3339NanoFixed> `` when
    ``timestamps``; ``time`` is the entry's timestamp as stored.  ``tail`` keeps the last N
    entries of the selected streams (None or negative: all), read backwards from the end;
    ``since``/``until`` (seconds since the epoch; a float is taken to the microsecond, a string
    such as ``"1700000000.123456789"`` exactly) then keep entries in [since, until].  With
    ``follow`` the reader keeps waiting for new entries, across rotations, until ``stop()``
    returns true (then it yields what was written up to that moment) or an entry is after
    ``until``.
    """
    if not (stdout or stderr):
        raise errdefs.InvalidArgument("you must choose at least one stream")
    since_ns = _timestamp_ns(since)
    until_ns = _timestamp_ns(until)
    wanted = {name for name, chosen in (("stdout", stdout), ("stderr", stderr)) if chosen}

    def accept(entry: _Entry) -> bool:
        return entry.stream in wanted

    def output(entry: _Entry) -> tuple[str, bytes, str]:
        payload = entry.payload
        if timestamps:
            payload = format_time_fixed(entry.time_ns).encode() + b" " + payload
        return entry.stream, payload, entry.time_text

    # Snapshot: open every file first, newest last, so a rotation while reading changes nothing
    opened: list[tuple[str, int]] = []
    try:
        for candidate in [*_rotated_paths(path), path]:
            fd = _open_read(candidate)
            if fd is not None:
                opened.append((candidate, fd))
    except BaseException:
        for _, fd in opened:
            os.close(fd)
        raise

    current: _FileCursor | None = None
    if opened and opened[-1][0] == path:
        current = _FileCursor(opened[-1][1], path)
        history = opened[:-1]
    else:
        history = opened

    try:
        entries: Iterator[_Entry]
        if tail is not None and tail >= 0:
            collected: list[_Entry] = []
            if current is not None:
                # stop at the last complete line; the follower picks up from there
                end = _complete_end(current.fd, os.fstat(current.fd).st_size)
                current.offset = end
                collected = _tail(current.fd, end, tail, accept, path) if tail else []
            for old_path, fd in reversed(history):
                if len(collected) >= tail:
                    break
                older = _tail(fd, os.fstat(fd).st_size, tail - len(collected), accept, old_path)
                collected = older + collected
            entries = iter(collected)
        else:
            def everything() -> Iterator[_Entry]:
                for old_path, fd in history:
                    cursor = _FileCursor(fd, old_path)
                    for line in cursor.lines():
                        entry = _decode(line, old_path)
                        if entry is not None and accept(entry):
                            yield entry
                if current is not None:
                    for line in current.lines():
                        entry = _decode(line, path)
                        if entry is not None and accept(entry):
                            yield entry
            entries = everything()

        for entry in entries:
            if since_ns is not None and entry.time_ns < since_ns:
                continue
            if until_ns is not None and entry.time_ns > until_ns:
                return
            yield output(entry)

        if not follow:
            return
        for entry in _follow(path, current, stop or (lambda: False), poll_interval):
            if not accept(entry):
                continue
            if since_ns is not None and entry.time_ns < since_ns:
                continue
            if until_ns is not None and entry.time_ns > until_ns:
                return
            yield output(entry)
    finally:
        for _, fd in history:
            os.close(fd)
        if current is not None:
            # _follow closes only the files it opened itself
            current.close()


def _same_file(path: str, identity: tuple[int, int]) -> bool:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    return (info.st_dev, info.st_ino) == identity


def _follow(path: str, cursor: _FileCursor | None, stop: Callable[[], bool],
            poll_interval: float) -> Iterator[_Entry]:
    """New entries of ``path`` as they are written; across rotations, until ``stop()``."""
    owned: list[int] = []
    try:
        while True:
            stopping = stop()
            if cursor is None:
                fd = _open_read(path)
                if fd is not None:
                    owned.append(fd)
                    cursor = _FileCursor(fd, path)
            if cursor is not None:
                for line in cursor.lines():
                    entry = _decode(line, path)
                    if entry is not None:
                        yield entry
                identity = cursor.inode()
                if not _same_file(path, identity) and os.path.exists(path):
                    # rotated: the writer is done with our file; drain it (it may have written
                    # after our read above), then the files rotated in between, then the new one
                    for line in cursor.lines():
                        entry = _decode(line, path)
                        if entry is not None:
                            yield entry
                    rotated = _rotated_paths(path)
                    newer: list[str] = []
                    for candidate in reversed(rotated):     # .1, .2, ... newest first
                        if _same_file(candidate, identity):
                            break
                        newer.append(candidate)
                    else:
                        newer = []                          # ours is gone: cannot tell what is new
                    for candidate in reversed(newer):
                        fd = _open_read(candidate)
                        if fd is None:
                            continue
                        between = _FileCursor(fd, candidate)
                        try:
                            for line in between.lines():
                                entry = _decode(line, candidate)
                                if entry is not None:
                                    yield entry
                        finally:
                            between.close()
                    cursor = None
                    continue
            if stopping:
                return
            time.sleep(poll_interval)
    finally:
        for fd in owned:
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
