"""The event log: one append-only file of event messages shared by every lamina process.

The in-process CLI, ``lamina serve`` and the container monitors all change state, so events
cannot live in one daemon's memory as Docker keeps them: each process appends to the same
file, and ``GET /events`` reads and follows it.

On disk (under ``<data-root>/events/``, mode 0700)::

    events.log      one event message per line (JSON, see lamina.events.message), oldest first
    events.log.1    the file before the last rotation

Commit point of an event: the single ``write(2)`` of its line.  Each writer opens
``events.log`` with ``O_APPEND``, takes a *shared* ``flock`` on it, checks that the path still
names the file it opened (a rotation may have happened in between; it then reopens), writes
the whole line (at most :data:`MAX_LINE` bytes) with one call and closes the file.  Appends to
a local file are atomic, so lines of concurrent writers never interleave.  Events are not
fsynced: a crash may lose the last ones (Docker loses all of them at a restart); a torn line
is skipped by readers.

Rotation: a writer that leaves the file larger than ``rotate_bytes`` (default
:data:`ROTATE_BYTES`, 4 MiB) converts its lock to an *exclusive* ``flock`` (waiting for the
writers between their check and their write: each holds its shared lock for one append),
checks again (another writer may have rotated meanwhile) and renames ``events.log`` over
``events.log.1``.  A conversion that did not wait would fail as long as writers keep
appending, and the file would outgrow its bound under load.  The exclusive lock guarantees no writer is between its check and its write,
so nothing is written to a file after it was renamed.  Bound: between 4 and 8 MiB of events,
some 10,000 to 25,000 container events (a line with a few labels is 300-400 bytes); Docker
keeps the last 256 in memory.

Reading (:meth:`EventLog.stream`): without ``since`` or ``until`` only new events (Docker:
nothing is replayed); otherwise the stored events in the window (``since`` and ``until``
inclusive, on ``timeNano``) from ``events.log.1`` then ``events.log``, then, when following,
new lines as they are appended: the reader polls the file every ``poll_interval`` seconds
(0.05 s), reads complete lines only (a line being written is kept until its newline
arrives), and after a rotation reads the rest of the renamed file before moving to the new
one.  Writers' clocks are read before their append, so lines of concurrent processes can be
out of order by the time an append takes; the window is applied per event.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lamina import errdefs
from lamina.events.message import build_message
from lamina.log import get_logger

__all__ = ["FILE_NAME", "MAX_LINE", "POLL_INTERVAL", "ROTATE_BYTES", "EventLog", "encode_line"]

log = get_logger("lamina.events")

FILE_NAME = "events.log"
MAX_LINE = 4096
ROTATE_BYTES = 4 << 20
POLL_INTERVAL = 0.05
_READ_SIZE = 1 << 16
_TRUNCATED_VALUE = 256
# attributes kept when a line is too long (labels are dropped first)
_CORE_ATTRIBUTES = frozenset({
    "image", "name", "exitCode", "execDuration", "signal", "oldName", "execID", "driver", "container",
    "destination", "read/write", "propagation", "height", "width", "reclaimed", "comment", "imageID",
    "imageRef", "type",
})


def encode_line(message: Mapping[str, Any]) -> bytes:
    """The message as one log line (JSON and a newline) of at most :data:`MAX_LINE` bytes:
    when it is longer, the labels among its attributes are left out, then long values cut."""
    line = _dump(message)
    if len(line) <= MAX_LINE:
        return line
    actor = dict(message.get("Actor") or {})
    attributes = {key: value for key, value in (actor.get("Attributes") or {}).items()
                  if key in _CORE_ATTRIBUTES}
    trimmed = dict(message, Actor=dict(actor, Attributes=attributes))
    line = _dump(trimmed)
    if len(line) <= MAX_LINE:
        return line
    attributes = {key: value[:_TRUNCATED_VALUE] for key, value in attributes.items()}
    trimmed = dict(message, Actor=dict(actor, Attributes=attributes))
    if "from" in trimmed:
        trimmed["from"] = str(trimmed["from"])[:_TRUNCATED_VALUE]
    line = _dump(trimmed)
    if len(line) <= MAX_LINE:
        return line
    raise errdefs.InvalidArgument(f"the event is larger than {MAX_LINE} bytes even without its labels")


def _dump(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_ino, first.st_dev) == (second.st_ino, second.st_dev)


def _open_read(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _decode(line: bytes) -> dict[str, Any] | None:
    """One stored message; None for a torn or foreign line."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("timeNano"), int):
        return None
    return message


class _Tail:
    """Reads complete lines of ``events.log`` as they are appended, across rotations."""

    def __init__(self, path: str, old_path: str) -> None:
        self.path = path
        self.old_path = old_path
        self.fd = _open_read(path)
        self.pending = b""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def old_lines(self) -> list[bytes]:
        """The lines of ``events.log.1``, unless it is the file already open as the current one
        (a rotation happened since)."""
        fd = _open_read(self.old_path)
        if fd is None:
            return []
        try:
            if self.fd is not None and _same_file(os.fstat(fd), os.fstat(self.fd)):
                return []
            lines, _partial = self._read_all(fd, b"")
            return lines
        finally:
            os.close(fd)

    def skip_to_end(self) -> None:
        if self.fd is not None:
            os.lseek(self.fd, 0, os.SEEK_END)

    def new_lines(self) -> list[bytes]:
        """Complete lines appended since the last call (from the start of a file not seen yet)."""
        if self.fd is None:
            self.fd = _open_read(self.path)
            if self.fd is None:
                return []
        lines, self.pending = self._read_all(self.fd, self.pending)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return lines
        if _same_file(current, os.fstat(self.fd)):
            return lines
        # rotated: what was appended to the old file before the rename, then the new file
        more, _torn = self._read_all(self.fd, self.pending)
        lines.extend(more)
        self.pending = b""
        os.close(self.fd)
        self.fd = _open_read(self.path)
        if self.fd is not None:
            more, self.pending = self._read_all(self.fd, b"")
            lines.extend(more)
        return lines

    @staticmethod
    def _read_all(fd: int, pending: bytes) -> tuple[list[bytes], bytes]:
        chunks = [pending]
        while True:
            data = os.read(fd, _READ_SIZE)
            if not data:
                break
            chunks.append(data)
        *lines, rest = b"".join(chunks).split(b"\n")
        return [line for line in lines if line], rest


class EventLog:
    """The event log in ``directory`` (``<data-root>/events``); see the module docstring.

    Holds no open file or lock between calls, so one instance may be shared by threads and
    inherited by forked monitors."""

    def __init__(self, directory: str, *, rotate_bytes: int = ROTATE_BYTES,
                 poll_interval: float = POLL_INTERVAL) -> None:
        self.directory = directory
        self.path = os.path.join(directory, FILE_NAME)
        self.old_path = self.path + ".1"
        self.rotate_bytes = rotate_bytes
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return f"EventLog({self.directory!r})"

    # -- writing -----------------------------------------------------------------------------

    def emit(self, type: str, action: str, actor_id: str,
             attributes: Mapping[str, str] | None = None) -> None:
        """Record an event now (the :class:`~lamina.events.api.EventSink` method); a failure is
        logged, never raised: the change it reports has happened already."""
        try:
            self.append(build_message(type, action, actor_id, attributes, time.time_ns()))
        except (OSError, errdefs.LaminaError) as exc:
            log.warning("event %s %s %s was not recorded: %s", type, action, actor_id[:12], exc)

    def append(self, message: Mapping[str, Any]) -> None:
        """Append one message (raises on failure)."""
        line = encode_line(message)
        fd = self._open_for_append()
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise errdefs.System(f"short write to {self.path} ({written} of {len(line)} bytes)")
            if os.lseek(fd, 0, os.SEEK_CUR) > self.rotate_bytes:
                self._rotate(fd)
        finally:
            os.close(fd)  # releases the lock

    def _open_for_append(self) -> int:
        for _attempt in range(100):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if _same_file(os.fstat(fd), os.stat(self.path)):
                    return fd
            except FileNotFoundError:
                pass  # renamed away after our open: open the new one
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise errdefs.System(f"cannot append to {self.path}: it keeps being replaced")

    def _rotate(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # flock drops the shared lock first: no deadlock
        try:
            mine = os.fstat(fd)
            if mine.st_size > self.rotate_bytes and _same_file(mine, os.stat(self.path)):
                os.replace(self.path, self.old_path)
        except FileNotFoundError:
            pass

    # -- reading -----------------------------------------------------------------------------

    def stream(self, *, since_ns: int | None = None, until_ns: int | None = None, follow: bool = False,
               stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """Stored events in [``since_ns``, ``until_ns``] (none when both are None), then with
        ``follow`` new ones until ``until_ns`` passes or ``stop`` is set (checked at least
        every ``poll_interval``; setting it ends a waiting generator at once)."""
        tail = _Tail(self.path, self.old_path)
        stop = stop if stop is not None else threading.Event()

        def window(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
            for line in lines:
                message = _decode(line)
                if message is None:
                    continue
                moment = message["timeNano"]
                if since_ns is not None and moment < since_ns:
                    continue
                if until_ns is not None and moment > until_ns:
                    continue
                yield message

        try:
            if since_ns is not None or until_ns is not None:
                yield from window(tail.old_lines())
            else:
                tail.skip_to_end()
            yield from window(tail.new_lines())
            if not follow:
                return
            while not stop.is_set():
                timeout = self.poll_interval
                if until_ns is not None:
                    remaining = (until_ns - time.time_ns()) / 1e9
                    if remaining < 0:
                        yield from window(tail.new_lines())  # appended just before the end
                        return
                    timeout = min(timeout, remaining)
                if stop.wait(timeout):
                    return
                yield from window(tail.new_lines())
        finally:
            tail.close()
