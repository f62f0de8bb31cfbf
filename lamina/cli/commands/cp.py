"""``lamina cp [-a] [-L] [-q] CONTAINER:SRC_PATH DEST_PATH|-`` and ``SRC_PATH|- CONTAINER:DEST_PATH``.

The copy rules are docker's (``archive.CopyInfoDestinationPath`` / ``PrepareArchiveCopy``):

* destination is an existing directory: the source goes *into* it (``SRC/.`` copies the
  directory's content instead of the directory itself);
* destination is an existing file: a file source replaces it, a directory source is an error;
* destination does not exist: the source is created under that name (its parent must exist;
  a trailing ``/`` demands a directory, so a file source is then an error).

The archive's top entry is renamed accordingly (its first path component, and hardlink targets
under it).  ``-`` reads a tar from stdin (extracted into the container directory DEST_PATH) or
writes the container's tar to stdout.  Paths in the container are absolute (relative ones are
taken from ``/``); the engine resolves them inside the container root.

Safety of the local side: extraction goes through :func:`lamina.archive.apply_tar` on a
directory fd of the destination directory, so no entry and no symlink already on disk can make
it write outside that directory; ``.wh.*`` entries (whiteouts belong to layers, not to copies)
are skipped instead of being applied.  Ownership is kept when running as root (like docker's
untar); ``-a`` asks the engine to keep the local uid/gid when copying into the container.
"""

from __future__ import annotations

import argparse
import os
import stat
import threading
from collections.abc import Iterator

from lamina.cli.commands.save import write_output
from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import EXIT_NOT_FOUND, CommandError, UsageError
from lamina.cli.formatting import human_size

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["GO_MODE_DIR", "GO_MODE_SYMLINK", "configure", "run", "split_argument"]

# Go's os.FileMode type bits, as the engine reports them in PathStat.mode.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC_PATH")
    parser.add_argument("destination", metavar="DEST_PATH")
    parser.add_argument("-a", "--archive", action="store_true", help="archive mode (copy all uid/gid information)")
    parser.add_argument("-L", "--follow-link", action="store_true", help="always follow symbol link in SRC_PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress progress output during copy")


def split_argument(argument: str) -> tuple[str, str]:
    """``name:/path`` -> (``name``, ``/path``); a local path -> (``""``, path).  Absolute
    paths and paths starting with ``.`` are local even if they contain ``:``."""
    if argument.startswith(("/", ".")):
        return "", argument
    container, colon, path = argument.partition(":")
    if not colon:
        return "", argument
    return container, path


def _container_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _base(path: str) -> str:
    """The last component, keeping docker's ``.`` for ``dir/.`` (copy the content)."""
    trimmed = path.rstrip("/") or "/"
    return os.path.basename(trimmed) if trimmed != "/" else "/"


def _copies_content(path: str) -> bool:
    return path.endswith("/.") or path == "."


def _asserts_directory(path: str) -> bool:
    return path.endswith(("/", "/.")) or path == "."


# -- the archive stream -----------------------------------------------------------------------

class _Rebased:
    """A TarReader whose entries under ``old`` are renamed under ``new`` (other entries and
    whiteouts are dropped); everything else is the reader's."""

    def __init__(self, reader: Any, old: str, new: str, skipped: list[str]) -> None:
        self._reader = reader
        self._old = old
        self._new = new
        self._skipped = skipped

    def _rename(self, name: str) -> str | None:
        if not self._old or self._old == self._new:
            return name
        if name == self._old:
            return self._new
        if name.startswith(self._old + "/"):
            return self._new + name[len(self._old):]
        return None

    def __iter__(self) -> Iterator[Any]:
        from lamina.archive import EntryType

        for entry in self._reader:
            if os.path.basename(entry.name).startswith(".wh."):
                self._skipped.append(entry.name)
                continue
            name = self._rename(entry.name)
            if name is None:
                self._skipped.append(entry.name)
                continue
            entry.name = name
            if entry.type is EntryType.HARDLINK:
                target = self._rename(entry.linkname)
                if target is None:
                    self._skipped.append(entry.name)
                    continue
                entry.linkname = target
            yield entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _extract(chunks: Iterator[bytes], directory: str, old: str, new: str, context: Context) -> None:
    from lamina.archive import TarReader, WhiteoutMode, apply_tar
    from lamina.archive.tarstream import ChunkReader

    skipped: list[str] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except OSError as exc:
        raise CommandError(f"cannot open the destination directory {directory}: {exc.strerror}",
                           EXIT_NOT_FOUND if exc.errno == 2 else 1) from exc
    try:
        reader = _Rebased(TarReader(ChunkReader(iter(chunks))), old, new, skipped)
        apply_tar(fd, reader, WhiteoutMode.APPLY, same_owner=os.geteuid() == 0)
    finally:
        os.close(fd)
    for name in skipped:
        context.error(f"skipped {name}: not part of the copied path, or a layer whiteout")


# -- container -> local -------------------------------------------------------------------------

def _copy_from_container(context: Context, args: argparse.Namespace, container: str, source: str,
                         destination: str) -> int:
    client = context.client
    source = _container_path(source)
    if args.follow_link:
        info = client.archive_stat(container, source)
        if int(info.get("mode") or 0) & GO_MODE_SYMLINK and info.get("linkTarget"):
            target = str(info["linkTarget"])
            source = target if target.startswith("/") else os.path.join(os.path.dirname(source.rstrip("/")), target)
    info, chunks = client.get_archive(container, source)
    if destination == "-":
        if is_terminal(context.out):
            raise UsageError("cowardly refusing to write a tar archive to a terminal. Redirect the output")
        return write_output(context, None, chunks)

    source_is_dir = bool(int(info.get("mode") or 0) & GO_MODE_DIR)
    source_base = _base(source)
    if _copies_content(source):
        source_base = ""
    try:
        target = os.stat(destination)
        exists, is_dir = True, stat.S_ISDIR(target.st_mode)
    except FileNotFoundError:
        exists, is_dir = False, False

    if exists and is_dir:
        directory, old, new = destination, "", ""
    elif exists:
        if source_is_dir:
            raise CommandError(f"cannot copy directory {source} to the file {destination}")
        directory = os.path.dirname(os.path.abspath(destination))
        old, new = source_base, os.path.basename(destination)
    else:
        if _asserts_directory(destination) and not source_is_dir:
            raise CommandError(f"destination directory {destination} does not exist", EXIT_NOT_FOUND)
        directory = os.path.dirname(os.path.abspath(destination.rstrip("/")))
        if not os.path.isdir(directory):
            raise CommandError(f"destination directory {directory} does not exist", EXIT_NOT_FOUND)
        old, new = source_base, os.path.basename(destination.rstrip("/"))
        if not old:
            # Copying a directory's content to a new name: create it, then extract into it.
            os.mkdir(destination.rstrip("/"))
            directory, new = destination.rstrip("/"), ""
    _extract(chunks, directory, old, new, context)
    if not args.quiet and is_terminal(context.err):
        context.error(f"Successfully copied {human_size(int(info.get('size') or 0))} to {destination}")
    return 0


# -- local -> container -------------------------------------------------------------------------

def _tar_local(path: str, name: str, sink: Any) -> None:
    """Write a tar of the local ``path`` with its top entry named ``name`` ("" for the content
    of a directory) through ``sink`` (called with byte chunks)."""
    from lamina.archive import EntryType, TarEntry, TarWriter

    writer = TarWriter(sink)
    links: dict[tuple[int, int], str] = {}

    def entry(full: str, member: str, info: os.stat_result) -> None:
        mode = info.st_mode
        base = TarEntry(name=member, type=EntryType.REGULAR, mode=stat.S_IMODE(mode), uid=info.st_uid,
                        gid=info.st_gid, mtime_ns=info.st_mtime_ns)
        if stat.S_ISDIR(mode):
            base.type = EntryType.DIRECTORY
            writer.add(base)
            with os.scandir(full) as children:
                names = sorted(child.name for child in children)
            for child in names:
                child_path = os.path.join(full, child)
                entry(child_path, f"{member}/{child}" if member else child, os.lstat(child_path))
            return
        if stat.S_ISREG(mode) and info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            if key in links:
                base.type, base.linkname = EntryType.HARDLINK, links[key]
                writer.add(base)
                return
            links[key] = member
        if stat.S_ISREG(mode):
            base.size = info.st_size
            with open(full, "rb") as file:
                writer.add(base, file)
        elif stat.S_ISLNK(mode):
            base.type, base.linkname = EntryType.SYMLINK, os.readlink(full)
            writer.add(base)
        elif stat.S_ISFIFO(mode):
            base.type = EntryType.FIFO
            writer.add(base)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            base.type = EntryType.CHAR if stat.S_ISCHR(mode) else EntryType.BLOCK
            base.devmajor, base.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
            writer.add(base)
        # sockets cannot be archived: skipped, like tar does

    info = os.stat(path) if name == "" else os.lstat(path)
    if name == "":
        with os.scandir(path) as children:
            names = sorted(child.name for child in children)
        for child in names:
            child_path = os.path.join(path, child)
            entry(child_path, child, os.lstat(child_path))
    else:
        entry(path, name, info)
    writer.close()


def _local_tar_stream(path: str, name: str) -> tuple[Any, list[BaseException]]:
    """A pipe fed by a thread that tars ``path`` (no temporary file); errors are collected."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        with open(write_fd, "wb", buffering=1 << 20) as out:
            try:
                _tar_local(path, name, out.write)
            except BrokenPipeError:
                pass  # the engine stopped reading: it reports why
            except OSError as exc:
                errors.append(exc)

    threading.Thread(target=produce, name="lamina-cp-tar", daemon=True).start()
    return open(read_fd, "rb"), errors


def _copy_to_container(context: Context, args: argparse.Namespace, source: str, container: str,
                       destination: str) -> int:
    from lamina.client.client import ClientError

    client = context.client
    destination = _container_path(destination)
    if source == "-":
        info = client.archive_stat(container, destination)
        if not int(info.get("mode") or 0) & GO_MODE_DIR:
            raise CommandError(f'destination "{container}:{destination}" must be a directory')
        stdin = context.stdin.buffer  # type: ignore[attr-defined]
        client.put_archive(container, destination, stdin, no_overwrite_dir_non_dir=True,
                           copy_uid_gid=args.archive)
        return 0

    local = source
    try:
        local_info = os.stat(local) if args.follow_link else os.lstat(local)
    except FileNotFoundError as exc:
        raise CommandError(f"lstat {source}: no such file or directory", EXIT_NOT_FOUND) from exc
    source_is_dir = stat.S_ISDIR(local_info.st_mode)
    if args.follow_link and os.path.islink(local):
        local = os.path.realpath(local)

    exists, is_dir = True, False
    try:
        info = client.archive_stat(container, destination)
        mode = int(info.get("mode") or 0)
        if mode & GO_MODE_SYMLINK and info.get("linkTarget"):
            target = str(info["linkTarget"])
            destination = target if target.startswith("/") else os.path.join(os.path.dirname(destination), target)
            info = client.archive_stat(container, destination)
            mode = int(info.get("mode") or 0)
        is_dir = bool(mode & GO_MODE_DIR)
    except ClientError as exc:
        if exc.status != 404:
            raise
        exists = False

    # With -L the content is the link target's, the name stays the link's (docker's rebase name).
    source_base = "" if _copies_content(source) else _base(source)
    if exists and is_dir:
        directory, name = destination, source_base
    elif exists:
        if source_is_dir:
            raise CommandError(f"cannot copy directory {source} to the file {container}:{destination}")
        directory, name = os.path.dirname(destination) or "/", os.path.basename(destination)
    else:
        if _asserts_directory(destination) and not source_is_dir:
            raise CommandError(f"destination directory {container}:{destination} does not exist", EXIT_NOT_FOUND)
        trimmed = destination.rstrip("/") or "/"
        directory, name = os.path.dirname(trimmed) or "/", os.path.basename(trimmed)
    stream, errors = _local_tar_stream(local, name)
    with stream:
        client.put_archive(container, directory, stream, no_overwrite_dir_non_dir=True,
                           copy_uid_gid=args.archive)
    if errors:
        raise CommandError(f"reading {source}: {errors[0]}")
    if not args.quiet and is_terminal(context.err):
        context.error(f"Successfully copied {human_size(local_info.st_size)} to {container}:{destination}")
    return 0


def run(args: argparse.Namespace, context: Context) -> int:
    source_container, source_path = split_argument(args.source)
    destination_container, destination_path = split_argument(args.destination)
    if source_container and destination_container:
        raise UsageError("copying between containers is not supported")
    if not source_container and not destination_container:
        raise UsageError("must specify at least one container source")
    if source_container:
        if not source_path:
            raise UsageError("source path cannot be empty")
        return _copy_from_container(context, args, source_container, source_path, destination_path)
    if not destination_path:
        raise UsageError("destination path cannot be empty")
    return _copy_to_container(context, args, source_path, destination_container, destination_path)
