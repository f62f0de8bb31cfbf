"""Random access to the members of an image archive (``docker save`` tar or OCI layout).

An image archive is read in one pass over each member, never extracted to a temporary tree:
a seekable file is indexed (headers only; contents are skipped by seeking) and members are
then read by offset with ``pread``.  A non-seekable input (a pipe, a request body) is first
spooled, as ``docker load`` does: into an anonymous memory file while it fits a quarter of the
memory available, else into a temporary file beside the store (see :func:`open_archive`); a
compressed archive is spooled decompressed.  A directory (an OCI layout on disk) is read in place.

Extracting while the bytes arrive: a docker-save archive names its layers in ``manifest.json``,
which comes last, so a stream cannot be loaded before it was received whole; but its layer
members can be extracted meanwhile.  Given a layer store that can put a layer on its parent
late (:meth:`~lamina.layer.store.LayerStore.can_prepare`: overlay2), a follower thread reads
the spool behind the receiving thread (``pread`` of what was written, waiting for more), walks
the outer tar's headers, and hands every member that may be a layer to
:meth:`~lamina.layer.store.LayerStore.prepare` (extracted, hashed, its tar-split recorded, not
published).  A member that is not a layer tar simply fails to prepare.  The loader then takes
a prepared layer by member name (:meth:`TarArchive.take_prepared`), only when the authoritative
index of the whole spool places that member at the very offset and size the follower read;
everything else is read from the spool as before, and what is not taken is discarded on
:meth:`TarArchive.close`.  The bytes a prepared layer was made of are lamina's own spool's, so
the diff_id hashed while extracting is the member's; the loader still compares it with the
image config's.  If the stream fails (truncated, malformed framing, a client gone) the follower
stops and every prepared layer is discarded: nothing is stored.

Python's ``tarfile`` is used here only to parse the outer archive's headers; nothing is
extracted with it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tarfile
import tempfile
import threading
from typing import TYPE_CHECKING, BinaryIO, Protocol

from lamina import errdefs, fsutil
from lamina.archive import decompressed, detect

if TYPE_CHECKING:
    from lamina.layer.store import LayerStore, PreparedLayer

log = logging.getLogger("lamina.distribution")

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

    def take_prepared(self, name: str) -> PreparedLayer | None:
        """A layer already extracted from member ``name`` (see the module docstring), or None."""

    def close(self) -> None: ...


def _normalise(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


class TarArchive:
    """Members of a seekable tar file, by normalised name."""

    def __init__(self, handle: BinaryIO, cleanup: str | None = None, *,
                 prepared: _PreparedMembers | None = None) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._cleanup = cleanup
        self._prepared = prepared
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

    def take_prepared(self, name: str) -> PreparedLayer | None:
        """The layer extracted from member ``name`` while the archive arrived (see the module
        docstring), now the caller's to commit or discard; None when there is none."""
        if self._prepared is None:
            return None
        info = self._resolve(name)
        return self._prepared.take(_normalise(info.name), info.offset_data, info.size)

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
        if self._prepared is not None:
            self._prepared.discard()
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

    def take_prepared(self, name: str) -> PreparedLayer | None:
        return None  # read in place: nothing was extracted ahead

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
    memory file's bytes move there when the limit is passed).

    One thread writes; another may read what was written meanwhile (:meth:`read_into`, which
    waits for bytes to come), until :meth:`end`."""

    def __init__(self, spool_dir: str, memory_limit: int) -> None:
        self._spool_dir = spool_dir
        self._memory_limit = memory_limit
        self._arrived = threading.Condition()  # guards size, ended, failed and the fd's swap
        self.path: str | None = None
        self.size = 0
        self.ended = False
        self.failed = False
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
            with self._arrived:
                self._to_disk()
        while data:
            written = os.write(self.fd, data)  # only this thread swaps the fd
            data = data[written:]
            with self._arrived:
                self.size += written
                self._arrived.notify_all()

    def end(self, *, failed: bool) -> None:
        """No more bytes come; ``failed``: the archive is incomplete (readers stop)."""
        with self._arrived:
            self.ended = True
            self.failed = failed
            self._arrived.notify_all()

    def read_into(self, view: memoryview, offset: int) -> int:
        """Bytes from ``offset`` into ``view`` once some were written there; 0 at the end.
        Raises :class:`_Unfinished` when the archive failed before them."""
        with self._arrived:
            while self.size <= offset and not self.ended:
                self._arrived.wait()
            if self.failed:
                raise _Unfinished("the image archive ended early")
            available = self.size - offset
            if available <= 0:
                return 0
            return os.preadv(self.fd, [view[:min(len(view), available)]], offset)

    def discard(self) -> None:
        os.close(self.fd)
        if self.path is not None:
            os.unlink(self.path)


class _Unfinished(errdefs.InvalidArgument):
    """The archive being received failed before the bytes a follower waits for."""


class _ArrivingMember:
    """A member's bytes ``[offset, offset + size)`` read from the spool as they arrive."""

    def __init__(self, spool: _Spool, offset: int, size: int) -> None:
        self._spool = spool
        self._position = offset
        self._end = offset + size

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        left = self._end - self._position
        if left <= 0:
            return 0
        size = self._spool.read_into(view[:min(len(view), left)], self._position)
        if size == 0:
            raise _Unfinished("image archive is truncated")
        self._position += size
        return size

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(min(self._end - self._position, _SPOOL_READ_SIZE) if size < 0 else size)
        return bytes(buffer[:self.readinto(buffer)])

    def readable(self) -> bool:
        return True


_BLOCK = 512
_NOT_LAYERS = {"manifest.json", "repositories", "index.json", "oci-layout"}


def _may_be_layer(name: str, info: tarfile.TarInfo) -> bool:
    """Whether a member is worth extracting as it arrives (a layer tar, maybe compressed):
    a regular file of at least two blocks (a tar's end) that is not one of the JSON files."""
    return info.isreg() and info.size >= 2 * _BLOCK and name not in _NOT_LAYERS and not name.endswith(".json")


class _PreparedMembers:
    """Layers prepared from the members of an archive while it arrived, by member name with
    the offset and size the follower read (see the module docstring)."""

    def __init__(self, layers: LayerStore) -> None:
        self._layers = layers
        self._by_name: dict[str, tuple[int, int, PreparedLayer]] = {}

    def add(self, name: str, offset: int, size: int, prepared: PreparedLayer) -> None:
        previous = self._by_name.pop(name, None)
        if previous is not None:  # a later member of the same name wins, as in the index
            self._layers.discard_prepared(previous[2])
        self._by_name[name] = (offset, size, prepared)

    def take(self, name: str, offset: int, size: int) -> PreparedLayer | None:
        entry = self._by_name.pop(name, None)
        if entry is None:
            return None
        if entry[:2] != (offset, size):  # the follower read other bytes than the index names
            self._layers.discard_prepared(entry[2])
            return None
        return entry[2]

    def discard(self) -> None:
        while self._by_name:
            _name, (_offset, _size, prepared) = self._by_name.popitem()
            self._layers.discard_prepared(prepared)


class _Follower:
    """The thread that extracts layer members from the spool behind its writer."""

    def __init__(self, spool: _Spool, layers: LayerStore) -> None:
        self._spool = spool
        self._layers = layers
        self.prepared = _PreparedMembers(layers)
        self._thread = threading.Thread(target=self._run, name="lamina-load-follow", daemon=True)
        self._thread.start()

    def join(self) -> _PreparedMembers:
        self._thread.join()
        return self.prepared

    def _read(self, offset: int, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        done = 0
        while done < size and (count := self._spool.read_into(view[done:], offset + done)):
            done += count
        return bytes(buffer[:done])

    def _run(self) -> None:
        try:
            self._walk()
        except _Unfinished:
            pass  # the receiving side reports why
        except Exception as exc:  # the spool's index reports a malformed archive; this is a bug
            log.warning("extracting layers while an archive arrives stopped: %s", exc, exc_info=exc)

    def _walk(self) -> None:
        from lamina.archive.tarheader import HeaderError, parse_pax_records

        offset = 0
        overrides: dict[str, str | int] = {}
        while len(block := self._read(offset, _BLOCK)) == _BLOCK:
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError:
                return  # the end of the archive, or not a tar the follower can walk
            data_offset = offset + _BLOCK
            if info.type in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
                if info.size > 1 << 20:
                    return
                content = self._read(data_offset, info.size)
                try:
                    if info.type == tarfile.GNUTYPE_LONGNAME:
                        overrides["path"] = content.rstrip(b"\0").decode("utf-8", "surrogateescape")
                    else:
                        records = parse_pax_records(content)
                        if "path" in records:
                            overrides["path"] = records["path"].decode("utf-8", "surrogateescape")
                        if "size" in records:
                            overrides["size"] = int(records["size"])
                except (HeaderError, ValueError):
                    return
            elif info.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):
                pass
            else:
                name = _normalise(str(overrides.pop("path", info.name)))
                info.size = int(overrides.pop("size", info.size))
                overrides.clear()
                if _may_be_layer(name, info):
                    self._prepare(name, data_offset, info.size)
            offset = data_offset + -(-info.size // _BLOCK) * _BLOCK

    def _prepare(self, name: str, offset: int, size: int) -> None:
        try:
            prepared = self._layers.prepare(_ArrivingMember(self._spool, offset, size))  # type: ignore[arg-type]
        except _Unfinished:
            raise
        except (errdefs.LaminaError, OSError) as exc:  # not a layer tar: read from the spool if used
            log.debug("archive member %s not extracted as it arrived: %s", name, exc)
            return
        self.prepared.add(name, offset, size, prepared)


def _spool(source: BinaryIO, spool_dir: str, memory_limit: int, layers: LayerStore | None = None) -> TarArchive:
    """``source`` (decompressed) copied to a spool, opened as a :class:`TarArchive`; with
    ``layers``, layer members are extracted meanwhile (see the module docstring)."""
    spool = _Spool(spool_dir, memory_limit)
    follower = _Follower(spool, layers) if layers is not None and layers.can_prepare() else None
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
        spool.end(failed=False)
        prepared = follower.join() if follower is not None else None
        os.lseek(spool.fd, 0, os.SEEK_SET)
    except BaseException:
        spool.end(failed=True)
        if follower is not None:
            follower.join().discard()
        spool.discard()
        raise
    handle = open(spool.fd, "rb")  # owns the descriptor from here on
    try:
        return TarArchive(handle, cleanup=spool.path, prepared=prepared)
    except BaseException:
        if prepared is not None:
            prepared.discard()
        handle.close()
        if spool.path is not None:
            os.unlink(spool.path)
        raise


def open_archive(source: BinaryIO | str, spool_dir: str, *, memory_limit: int | None = None,
                 layers: LayerStore | None = None) -> ArchiveReader:
    """Open an archive from a path (file or OCI layout directory) or a stream.

    A non-seekable stream is spooled first: into memory while it takes at most
    ``memory_limit`` bytes (default: a quarter of :func:`memory_available`), then into a file in
    ``spool_dir``.  A spool in memory is never written back to disk: a spool file on the data
    root's filesystem was, by the ``syncfs`` that commits each layer, which doubled the disk
    writes of a load through ``lamina serve``.  With ``layers`` (held shared under a lease by
    the caller), a spooled archive's layers are extracted while it arrives."""
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
    return _spool(source, spool_dir, memory_available() // 4 if memory_limit is None else memory_limit, layers)
