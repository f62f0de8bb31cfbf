"""Random access to the members of an image archive (``docker save`` tar or OCI layout).

An image archive is read in one pass over each member, never extracted to a temporary tree:
a seekable file is indexed (headers only; contents are skipped by seeking) and members are
then read by offset with ``pread``.  A non-seekable input (a pipe, a request body) is first
spooled, as ``docker load`` does: into an anonymous memory file while it fits a quarter of the
memory available, else into a temporary file beside the store (see :func:`open_archive`); a
compressed archive is spooled decompressed.  A directory (an OCI layout on disk) is read in place.

Python's ``tarfile`` is used here only to parse the outer archive's headers; nothing is
extracted with it.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from typing import BinaryIO, Protocol

from lamina import errdefs, fsutil
from lamina.archive import decompressed, detect

__all__ = ["ArchiveReader", "TarArchive", "DirectoryArchive", "open_archive", "MemberStream", "memory_available"]

_MAX_LINK_DEPTH = 16
_SPOOL_READ_SIZE = 1 << 20


class MemberStream:
    """A readable window ``[offset, offset + size)`` of a file descriptor (pread, no seek)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._position = offset
        self._end = offset + size

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer)
        remaining = self._end - self._position
        if remaining <= 0:
            return 0
        want = min(len(view), remaining)
        data = os.preadv(self._fd, [view[:want]], self._position)
        if data == 0:
            raise errdefs.InvalidArgument("image archive is truncated")
        self._position += data
        return data

    def read(self, size: int = -1) -> bytes:
        remaining = self._end - self._position
        if size < 0 or size > remaining:
            size = remaining
        if size <= 0:
            return b""
        data = os.pread(self._fd, size, self._position)
        if not data:
            raise errdefs.InvalidArgument("image archive is truncated")
        self._position += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class ArchiveReader(Protocol):
    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> MemberStream: ...

    def read(self, name: str, limit: int = 64 << 20) -> bytes: ...

    def close(self) -> None: ...


def _normalise(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


class TarArchive:
    """Members of a seekable tar file, by normalised name."""

    def __init__(self, handle: BinaryIO, cleanup: str | None = None) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._cleanup = cleanup
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(fileobj=handle, mode="r:") as archive:
                for info in archive:
                    self._members[_normalise(info.name)] = info
        except tarfile.ReadError as exc:
            if "unexpected end" in str(exc):
                raise errdefs.InvalidArgument("image archive is truncated (unexpected end of data)") from exc
            raise errdefs.InvalidArgument(f"not a valid image archive: {exc}") from exc
        except EOFError as exc:
            raise errdefs.InvalidArgument("image archive is truncated") from exc

    def _resolve(self, name: str) -> tarfile.TarInfo:
        name = _normalise(name)
        for _ in range(_MAX_LINK_DEPTH):
            info = self._members.get(name)
            if info is None:
                raise errdefs.InvalidArgument(f"image archive has no member {name!r}")
            if info.issym():
                name = _normalise(posixpath.join(posixpath.dirname(name), info.linkname))
                continue
            if info.islnk():
                name = _normalise(info.linkname)
                continue
            if not info.isfile():
                raise errdefs.InvalidArgument(f"image archive member {name!r} is not a file")
            return info
        raise errdefs.InvalidArgument(f"image archive member {name!r}: too many levels of links")

    def exists(self, name: str) -> bool:
        return _normalise(name) in self._members

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str) -> MemberStream:
        info = self._resolve(name)
        return MemberStream(self._fd, info.offset_data, info.size)

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        info = self._resolve(name)
        if info.size > limit:
            raise errdefs.InvalidArgument(f"image archive member {name!r} is too large ({info.size} bytes)")
        data = os.pread(self._fd, info.size, info.offset_data)
        if len(data) != info.size:
            raise errdefs.InvalidArgument(f"image archive is truncated inside {name!r}")
        return data

    def close(self) -> None:
        self._handle.close()
        if self._cleanup:
            try:
                os.unlink(self._cleanup)
            except FileNotFoundError:
                pass


class DirectoryArchive:
    """Members of an OCI layout directory on disk, resolved without leaving it."""

    def __init__(self, path: str) -> None:
        self._root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._open_fds: list[int] = []

    def _fd(self, name: str) -> int:
        try:
            fd = fsutil.open_beneath(self._root_fd, _normalise(name), os.O_RDONLY)
        except OSError as exc:
            raise errdefs.InvalidArgument(f"image layout has no file {name!r}") from exc
        self._open_fds.append(fd)
        return fd

    def exists(self, name: str) -> bool:
        try:
            os.close(fsutil.open_beneath(self._root_fd, _normalise(name), os.O_RDONLY))
            return True
        except OSError:
            return False

    def size(self, name: str) -> int:
        return os.fstat(self._fd(name)).st_size

    def open(self, name: str) -> MemberStream:
        fd = self._fd(name)
        return MemberStream(fd, 0, os.fstat(fd).st_size)

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        stream = self.open(name)
        if stream._end > limit:
            raise errdefs.InvalidArgument(f"image layout file {name!r} is too large")
        return stream.read()

    def close(self) -> None:
        for fd in self._open_fds:
            os.close(fd)
        self._open_fds.clear()
        os.close(self._root_fd)


def _seekable(source: BinaryIO) -> bool:
    try:
        return bool(source.seekable()) and hasattr(source, "fileno") and source.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def memory_available() -> int:
    """The kernel's estimate of memory available without swapping (``MemAvailable``), less
    where this process's memory cgroup or one of its ancestors has less room under its limit;
    0 when unknown."""
    available = 0
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return 0
    room = _cgroup_memory_room()
    return available if room is None else min(available, room)


def _read_number(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):  # absent, or "max" (no limit)
        return None


def _cgroup_memory_room() -> int | None:
    """The least room (limit - usage) of this process's memory cgroup and its ancestors, v2
    (``memory.max``) or v1 (``memory.limit_in_bytes``); None when none has a limit we can read."""
    try:
        with open("/proc/self/cgroup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    room: int | None = None
    for line in lines:
        _hierarchy, controllers, path = line.split(":", 2)
        if controllers == "":
            base, limit_name, usage_name = "/sys/fs/cgroup", "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit_name, usage_name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        directory = os.path.normpath(os.path.join(base, path.lstrip("/")))
        while True:
            limit = _read_number(os.path.join(directory, limit_name))
            usage = _read_number(os.path.join(directory, usage_name))
            if limit is not None and usage is not None:
                room = max(limit - usage, 0) if room is None else min(room, max(limit - usage, 0))
            if directory == base or not directory.startswith(base + "/"):
                break
            directory = os.path.dirname(directory)
    return room


class _Spool:
    """The bytes of a non-seekable archive, written in order into an anonymous memory file
    (memfd) while they fit in ``memory_limit`` bytes, else into a file in ``spool_dir`` (the
    memory file's bytes move there when the limit is passed)."""

    def __init__(self, spool_dir: str, memory_limit: int) -> None:
        self._spool_dir = spool_dir
        self._memory_limit = memory_limit
        self.path: str | None = None
        self.size = 0
        self.fd = self._memory_file() if memory_limit > 0 else self._disk_file()

    def _memory_file(self) -> int:
        try:
            return os.memfd_create("lamina-load", os.MFD_CLOEXEC)
        except OSError:  # no memfd here (an old kernel, a seccomp filter): spool to disk
            self._memory_limit = 0
            return self._disk_file()

    def _disk_file(self) -> int:
        os.makedirs(self._spool_dir, mode=0o700, exist_ok=True)
        fd, self.path = tempfile.mkstemp(dir=self._spool_dir, prefix="load-", suffix=".tar")
        return fd

    def _to_disk(self) -> None:
        memory = self.fd
        try:
            self.fd = self._disk_file()
            copied = 0
            while copied < self.size:
                sent = os.sendfile(self.fd, memory, copied, self.size - copied)
                if sent == 0:
                    raise errdefs.DataLoss("the memory spool of an image archive ended early")
                copied += sent
        finally:
            if self.fd != memory:  # else discard() closes it
                os.close(memory)

    def write(self, data: memoryview) -> None:
        if self.path is None and self.size + len(data) > self._memory_limit:
            self._to_disk()
        while data:
            written = os.write(self.fd, data)
            data = data[written:]
            self.size += written

    def discard(self) -> None:
        os.close(self.fd)
        if self.path is not None:
            os.unlink(self.path)


def _spool(source: BinaryIO, spool_dir: str, memory_limit: int) -> TarArchive:
    """``source`` (decompressed) copied to a spool, opened as a :class:`TarArchive`."""
    spool = _Spool(spool_dir, memory_limit)
    try:
        stream = decompressed(source)  # a plain tar passes through unchanged
        buffer = memoryview(bytearray(_SPOOL_READ_SIZE))
        readinto = getattr(stream, "readinto", None)
        while True:
            if readinto is not None:
                size = readinto(buffer)
                data = buffer[:size]
            else:
                data = memoryview(stream.read(_SPOOL_READ_SIZE))
                size = len(data)
            if not size:
                break
            spool.write(data)
        os.lseek(spool.fd, 0, os.SEEK_SET)
    except BaseException:
        spool.discard()
        raise
    handle = open(spool.fd, "rb")  # owns the descriptor from here on
    try:
        return TarArchive(handle, cleanup=spool.path)
    except BaseException:
        handle.close()
        if spool.path is not None:
            os.unlink(spool.path)
        raise


def open_archive(source: BinaryIO | str, spool_dir: str, *, memory_limit: int | None = None) -> ArchiveReader:
    """Open an archive from a path (file or OCI layout directory) or a stream.

    A non-seekable stream is spooled first: into memory while it takes at most
    ``memory_limit`` bytes (default: a quarter of :func:`memory_available`), then into a file in
    ``spool_dir``.  A spool in memory is never written back to disk: a spool file on the data
    root's filesystem was, by the ``syncfs`` that commits each layer, which doubled the disk
    writes of a load through ``lamina serve``."""
    if isinstance(source, str):
        if os.path.isdir(source):
            return DirectoryArchive(source)
        try:
            source = open(source, "rb")
        except OSError as exc:
            raise fsutil.system_error(f"open {source}", exc) from exc
    prefix = b""
    if _seekable(source):
        position = source.tell()
        prefix = source.read(8)
        source.seek(position)
        if detect(prefix) is None:
            return TarArchive(source)
    return _spool(source, spool_dir, memory_available() // 4 if memory_limit is None else memory_limit)
