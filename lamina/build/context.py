"""Build contexts: where the Dockerfile and the COPY/ADD sources come from.

A context is a directory tree (:class:`SourceTree`) plus the Dockerfile read for it
(:class:`BuildContext`).  Three ways to get one, as ``docker build`` has:

- :func:`open_directory_context`: a local directory, read in place (nothing is copied).  The
  ``.dockerignore`` at its top filters what COPY/ADD see, with the Docker client's semantics
  (:mod:`lamina.build.dockerignore`).  ``-f`` may name a Dockerfile anywhere: a relative path
  is relative to the current directory (like the docker CLI), and a Dockerfile outside the
  context is simply read from there.  Without ``-f``: ``Dockerfile``, else ``dockerfile``.
- :func:`open_tar_context`: a tar stream (plain, gzip, bzip2, xz or zstd), as the Engine API
  receives it; extracted with :func:`lamina.archive.apply_tar` into a private temporary
  directory that :meth:`BuildContext.close` removes.  The Dockerfile is a path *inside* the
  tar.  Like Docker's daemon, no other filtering happens (the client filtered), but
  ``.dockerignore`` and the Dockerfile are removed after reading when a pattern excludes
  them.  (Entries named ``.wh.*`` are treated as whiteouts by the extractor and do not
  survive.)
- :func:`open_stdin_context`: ``docker build -`` -- the stream is a context tar when it looks
  like one (compressed, or a valid tar header), else it is the Dockerfile itself and the
  context holds only that file.

Either way the Dockerfile and ``.dockerignore`` are available to the builder but are hidden
from COPY/ADD when ``.dockerignore`` excludes them.

Source resolution (:meth:`SourceTree.match`) follows Docker's classic builder: one leading
``/`` and ``./`` are dropped, the path is cleaned, symbolic links are followed; a path that
leaves the context -- ``../x``, or a symlink whose target is absolute or climbs out -- is
refused with ``forbidden path outside the build context: ../x``.  Sources with ``*``, ``?`` or
``[`` are patterns matched with Go's ``filepath.Match`` against context-relative paths (``*``
never crosses ``/``, ``**`` is not special).  A missing or excluded source is
:class:`lamina.errdefs.NotFound` (``file not found in build context or excluded by
.dockerignore``).

Checksums (:meth:`SourceTree.checksum`) are the cache keys Docker's classic builder records in
history (``COPY file:<hex> in /dest``): per file, sha256 over a tarsum-v1 style header (name,
mode, uid, gid, size, type, link target, device numbers, ``security.capability``; not the
modification time) followed by the content; per directory, ``dir:`` + sha256 of the sorted
hashes of everything in it; several sources, ``multi:`` + sha256 of their hashes joined by
``,``.  Files are read only when a checksum needs them, each at most once (cached).  A
directory context hashes its files as owned by 0:0, as they arrive in the docker CLI's context
tar, so that reading the directory in place and extracting its tar give the same cache keys.

:func:`plan_copy` turns matched sources into copy steps with Docker's destination rules.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO

from lamina import errdefs, fsutil
from lamina.build.dockerignore import (
    DockerIgnore,
    contains_wildcards,
    go_clean,
    go_match,
)
from lamina.records import dataclass

__all__ = [
    "SourceTree", "BuildContext", "SourceMatch", "CopyStep",
    "open_directory_context", "open_tar_context", "open_stdin_context",
    "plan_copy", "normalize_destination", "normalize_workdir", "is_url", "looks_like_archive",
    "read_head",
    "DEFAULT_DOCKERFILE",
]

DEFAULT_DOCKERFILE = "Dockerfile"
_MAX_SYMLINKS = 255
_CHUNK = 1 << 20
_TAR_BLOCK = 512


def is_url(source: str) -> bool:
    """Whether an ADD source is a remote URL (``http://`` or ``https://``)."""
    return source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class SourceMatch:
    """One source of COPY/ADD found in a tree.

    ``path`` is the context-relative path as written or matched (cleaned, ``""`` for the
    context root); ``resolved`` the same path once symbolic links are followed.
    """

    path: str
    resolved: str
    is_directory: bool


@dataclass(frozen=True)
class CopyStep:
    """Copy ``source`` (a :class:`SourceMatch`) to the absolute image path ``destination``:
    a directory's *contents* go into ``destination``; a file becomes ``destination``."""

    source: SourceMatch
    destination: str


def _forbidden(path: str, target: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"forbidden path outside the build context: {path} ({target})")


def _not_found(path: str) -> errdefs.NotFound:
    return errdefs.NotFound("file not found in build context or excluded by .dockerignore: "
                            f"stat {path}: file does not exist")


class SourceTree:
    """A directory COPY/ADD read from: a build context, or a stage's root filesystem.

    ``ignore`` filters what is visible (a directory context's ``.dockerignore``; None: all);
    ``hidden`` names paths that exist but are not visible (the Dockerfile and
    ``.dockerignore`` when excluded).
    """

    def __init__(self, root: str | os.PathLike[str], ignore: DockerIgnore | None = None,
                 hidden: frozenset[str] = frozenset(), owner: tuple[int, int] | None = None) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.ignore = ignore if ignore else None
        self.hidden = hidden
        # (uid, gid) checksums use instead of the files' own: a directory read in place hashes
        # as the docker CLI's context tar (owned by 0:0) would, so both ways share the cache
        self.owner = owner
        self._hashes: dict[str, str] = {}

    # -- visibility and resolution ------------------------------------------------------------

    def visible(self, path: str) -> bool:
        """Whether the context-relative ``path`` is part of the context COPY/ADD see."""
        path = go_clean(path)
        if path == ".":
            return True
        if path in self.hidden:
            return False
        return self.ignore is None or self.ignore.included(path)

    def _lstat(self, path: str) -> os.stat_result | None:
        if path and not self.visible(path):
            return None
        try:
            info = os.lstat(os.path.join(self.root, path) if path else self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise fsutil.system_error(f"reading the build context at {path!r}", exc) from exc
        if stat.S_ISSOCK(info.st_mode):
            return None  # the Docker client never sends sockets
        return info

    def _resolve(self, path: str, *, strict: bool, original: str) -> str:
        """Follow the symlinks of ``path`` inside the tree.  ``strict``: refuse anything that
        would leave it; otherwise scope it like Docker (absolute targets and ``..`` beyond the
        root stay at the root)."""
        pending = deque(part for part in path.split("/") if part not in ("", "."))
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.popleft()
            if part == "..":
                if resolved:
                    resolved.pop()
                elif strict:
                    raise _forbidden(original, "/".join(("..", *pending)))
                continue
            candidate = "/".join((*resolved, part))
            info = self._lstat(candidate)
            if info is None:
                return "/".join((candidate, *pending)) if pending else candidate
            if stat.S_ISLNK(info.st_mode):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise errdefs.InvalidArgument(f"too many levels of symbolic links: {original}")
                try:
                    target = os.readlink(os.path.join(self.root, candidate))
                except OSError as exc:
                    raise fsutil.system_error(f"reading the link {candidate!r}", exc) from exc
                if target.startswith("/"):
                    if strict:
                        raise _forbidden(original, target)
                    resolved = []
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            resolved.append(part)
        return "/".join(resolved)

    def resolve(self, source: str) -> str:
        """The context-relative path ``source`` names once links are followed; refuses paths
        leaving the tree with Docker's ``forbidden path outside the build context``."""
        return self._resolve(_strip_source(source), strict=True, original=source)

    def _single(self, path: str, original: str) -> SourceMatch:
        resolved = self._resolve(path, strict=True, original=original)
        info = self._lstat(resolved)
        if info is None or (path and not self.visible(path)):
            raise _not_found(path or ".")
        return SourceMatch(path, resolved, stat.S_ISDIR(info.st_mode))

    def match(self, source: str) -> list[SourceMatch]:
        """The sources one COPY/ADD argument names: the path itself, or every visible path
        matching it when it is a pattern (possibly none)."""
        path = _strip_source(source)
        if contains_wildcards(path):
            depth = path.count("/") + path.count("[") + 1
            matches = []
            for relative, _info in self._walk("", depth):
                if go_match(path, relative):
                    matches.append(self._single(relative, relative))
            return matches
        cleaned = go_clean(path)
        if cleaned == ".":
            cleaned = ""
        elif cleaned == ".." or cleaned.startswith("../"):
            raise _forbidden(source, cleaned)
        return [self._single(cleaned, source)]

    def match_all(self, sources: list[str] | tuple[str, ...]) -> list[SourceMatch]:
        """:meth:`match` for every source of one instruction; nothing at all is an error."""
        matches: list[SourceMatch] = []
        for source in sources:
            matches.extend(self.match(source))
        if not matches:
            raise errdefs.NotFound("no source files were specified")
        return matches

    # -- reading -----------------------------------------------------------------------------

    def _walk(self, start: str, max_depth: int | None = None) -> Iterator[tuple[str, os.stat_result]]:
        ignore = self.ignore or DockerIgnore()
        base_depth = start.count("/") + 1 if start else 0
        for relative, info in ignore.walk(self.root, start):
            if relative in self.hidden or stat.S_ISSOCK(info.st_mode):
                continue
            if max_depth is not None and relative.count("/") + 1 - base_depth > max_depth:
                continue
            yield relative, info

    def walk(self, directory: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """Every visible path below the context-relative ``directory`` (links not followed)."""
        return self._walk(_relative(directory))

    def open(self, path: str) -> BinaryIO:
        """Open the visible regular file ``path`` for reading (links resolved inside the tree,
        never outside it)."""
        resolved = self.resolve(path)
        info = self._lstat(resolved)
        if info is None or not self.visible(_strip_source(path) or "."):
            raise _not_found(path)
        return self._open_resolved(resolved, f"opening {path!r} in the build context")

    def _open_resolved(self, resolved: str, doing: str) -> BinaryIO:
        """Open the resolved path ``resolved`` beneath the root for reading; a failure is a
        :class:`~lamina.errdefs.System` error saying ``doing``."""
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = fsutil.open_beneath(root_fd, resolved)
        except OSError as exc:
            raise fsutil.system_error(doing, exc) from exc
        finally:
            os.close(root_fd)
        return os.fdopen(fd, "rb")

    # -- checksums ---------------------------------------------------------------------------

    def file_hash(self, path: str) -> str:
        """Docker's per-path hash (``lazySource.Hash``): links followed inside the tree."""
        resolved = self._resolve(_relative(path), strict=False, original=path)
        cached = self._hashes.get(resolved)
        if cached is not None:
            return cached
        info = self._lstat(resolved)
        if info is None:
            return resolved  # a dangling link hashes as its path, as in Docker
        full = os.path.join(self.root, resolved)
        hasher = hashlib.sha256(_header_bytes(full, resolved, info, self.owner))
        if stat.S_ISREG(info.st_mode) and info.st_size > 0:
            with self._open_resolved(resolved, f"reading {resolved!r} for its checksum") as file:
                while chunk := file.read(_CHUNK):
                    hasher.update(chunk)
        digest = hasher.hexdigest()
        self._hashes[resolved] = digest
        return digest

    def source_hash(self, source: SourceMatch) -> str:
        """``file:<hex>`` or ``dir:<hex>`` for one matched source."""
        if not source.is_directory:
            return "file:" + self.file_hash(source.path)
        hashes = []
        if source.resolved:
            hashes.append(self.file_hash(source.resolved))
        hashes.extend(self.file_hash(relative) for relative, _info in self._walk(source.resolved))
        return _hash_strings("dir", sorted(hashes))

    def checksum(self, sources: list[str] | tuple[str, ...] | list[SourceMatch]) -> str:
        """The cache key of a COPY/ADD's sources, in Docker's format (see the module doc)."""
        resolved: list[SourceMatch] = []
        for source in sources:
            if isinstance(source, SourceMatch):
                resolved.append(source)
            else:
                resolved.extend(self.match(source))
        if not resolved:
            raise errdefs.NotFound("no source files were specified")
        hashes = [self.source_hash(match) for match in resolved]
        if len(hashes) == 1:
            return hashes[0]
        return _hash_strings("multi", hashes)


def _hash_strings(prefix: str, values: list[str]) -> str:
    return prefix + ":" + hashlib.sha256(",".join(values).encode()).hexdigest()


def _header_bytes(full: str, name: str, info: os.stat_result, owner: tuple[int, int] | None = None) -> bytes:
    """The tarsum v1 header selection Docker hashes before a file's content (``owner``
    replaces the file's uid and gid)."""
    mode = info.st_mode
    permissions = stat.S_IMODE(mode)
    size = 0
    linkname = ""
    devmajor = devminor = 0
    if stat.S_ISREG(mode):
        typeflag, size = "0", info.st_size
    elif stat.S_ISDIR(mode):
        typeflag = "5"
        if not name.endswith("/"):
            name += "/"
    elif stat.S_ISLNK(mode):
        typeflag = "2"
        linkname = os.readlink(full)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        typeflag = "3" if stat.S_ISCHR(mode) else "4"
        devmajor, devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
    else:
        typeflag = "6"
    uid, gid = owner if owner is not None else (info.st_uid, info.st_gid)
    fields = [("name", name), ("mode", str(permissions)), ("uid", str(uid)),
              ("gid", str(gid)), ("size", str(size)), ("typeflag", typeflag),
              ("linkname", linkname), ("uname", ""), ("gname", ""),
              ("devmajor", str(devmajor)), ("devminor", str(devminor))]
    out = bytearray()
    for key, value in fields:
        out += key.encode() + value.encode("utf-8", "surrogateescape")
    try:
        capability = os.getxattr(full, "security.capability", follow_symlinks=False)
    except OSError:
        capability = None
    if capability is not None:
        out += b"security.capability" + capability
    return bytes(out)


def _relative(path: str) -> str:
    """A context-relative slash path, clean, ``""`` for the root."""
    cleaned = go_clean(_strip_source(path))
    return "" if cleaned == "." else cleaned


def _strip_source(source: str) -> str:
    """Docker's source normalisation: one leading ``/`` and then one ``./`` are dropped."""
    source = source.removeprefix("/")
    source = source.removeprefix("./")
    return source


# -- destinations ---------------------------------------------------------------------------


def normalize_workdir(current: str, requested: str) -> str:
    """WORKDIR's rule: a relative path joins the current working directory."""
    if requested == "":
        raise errdefs.InvalidArgument("cannot normalize nothing")
    if not requested.startswith("/"):
        return go_clean("/" + "/".join(part for part in (current, requested) if part))
    return go_clean(requested)


def normalize_destination(workdir: str, destination: str) -> str:
    """COPY/ADD's destination as an absolute path: a relative one joins WORKDIR; a trailing
    ``/`` (which makes it a directory) is kept."""
    ends_in_slash = destination.endswith("/")
    if destination.startswith("/"):
        return destination
    joined = go_clean("/" + "/".join(part for part in (workdir, destination) if part))
    if ends_in_slash and joined != "/":
        joined += "/"
    return joined


def plan_copy(matches: list[SourceMatch], destination: str, workdir: str = "/", *,
              instruction: str = "COPY",
              is_directory: Callable[[str], bool] | None = None) -> list[CopyStep]:
    """Docker's COPY/ADD destination rules for already matched sources.

    Several sources need a destination ending in ``/``; a directory source copies its contents
    into the destination; a file source goes *into* the destination when it ends with ``/`` or
    is an existing directory in the image (``is_directory`` tells), else it becomes the
    destination.  Returned destinations are absolute and clean.
    """
    target = normalize_destination(workdir, destination)
    if not matches:
        raise errdefs.NotFound("no source files were specified")
    if len(matches) > 1 and not target.endswith("/"):
        raise errdefs.InvalidArgument(f"When using {instruction} with more than one source file, "
                                      "the destination must be a directory and end with a /")
    clean_target = go_clean(target)
    into_directory = target.endswith("/") or (is_directory is not None and is_directory(clean_target))
    steps = []
    for match in matches:
        if match.is_directory:
            steps.append(CopyStep(match, clean_target))
        elif into_directory:
            name = match.path.rsplit("/", 1)[-1]
            steps.append(CopyStep(match, go_clean(f"{clean_target}/{name}")))
        else:
            steps.append(CopyStep(match, clean_target))
    return steps


# -- contexts -------------------------------------------------------------------------------


class BuildContext(SourceTree):
    """A build context with its Dockerfile; close it to remove a temporary extraction."""

    def __init__(self, root: str, dockerfile: bytes, dockerfile_name: str, *,
                 ignore: DockerIgnore | None = None, hidden: frozenset[str] = frozenset(),
                 temporary: bool = False, owner: tuple[int, int] | None = None) -> None:
        super().__init__(root, ignore, hidden, owner)
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name
        self._temporary = temporary

    def close(self) -> None:
        if self._temporary:
            self._temporary = False
            fsutil.remove_tree(self.root)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _read_ignore(root: str) -> DockerIgnore | None:
    path = os.path.join(root, ".dockerignore")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as exc:
        raise fsutil.system_error("reading .dockerignore", exc) from exc
    try:
        return DockerIgnore.from_text(data)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"error reading .dockerignore: {exc}") from exc


def _hidden_paths(ignore: DockerIgnore | None, dockerfile_relative: str | None) -> frozenset[str]:
    if ignore is None:
        return frozenset()
    candidates = [".dockerignore"] + ([dockerfile_relative] if dockerfile_relative else [])
    return frozenset(go_clean(path) for path in candidates if ignore.matches(path))


def _read_file(path: str, shown: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise errdefs.NotFound(f"Cannot locate specified Dockerfile: {shown}") from exc
    except OSError as exc:
        raise fsutil.system_error(f"reading the Dockerfile {shown}", exc) from exc


def open_directory_context(directory: str | os.PathLike[str], dockerfile: str | None = None, *,
                           dockerfile_content: bytes | None = None,
                           cwd: str | None = None) -> BuildContext:
    """A context read in place from ``directory`` (see the module doc for ``-f``).

    ``dockerfile_content`` is a Dockerfile given on stdin (``-f -``); ``cwd`` is what a
    relative ``dockerfile`` is relative to (the process's current directory by default).
    """
    root = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(root):
        raise errdefs.NotFound(f"unable to prepare context: path {os.fspath(directory)!r} not found")
    ignore = _read_ignore(root)
    if dockerfile_content is not None:
        return BuildContext(root, dockerfile_content, "-", ignore=ignore,
                            hidden=_hidden_paths(ignore, None), owner=(0, 0))
    if dockerfile is None or dockerfile == "":
        path = os.path.join(root, DEFAULT_DOCKERFILE)
        if not os.path.lexists(path) and os.path.lexists(os.path.join(root, "dockerfile")):
            path = os.path.join(root, "dockerfile")
        shown = os.path.join(os.fspath(directory), os.path.basename(path))
    else:
        path = os.path.abspath(os.path.join(cwd or os.getcwd(), dockerfile))
        shown = dockerfile
    content = _read_file(path, shown)
    relative = os.path.relpath(path, root)
    inside = relative != ".." and not relative.startswith("../")
    name = relative if inside else path
    return BuildContext(root, content, name, ignore=ignore,
                        hidden=_hidden_paths(ignore, relative if inside else None), owner=(0, 0))


def read_head(stream: BinaryIO) -> bytes:
    """The first bytes of ``stream`` that :func:`looks_like_archive` judges (two tar blocks;
    fewer only when the stream ends before)."""
    prefix = b""
    while len(prefix) < 2 * _TAR_BLOCK:
        chunk = stream.read(2 * _TAR_BLOCK - len(prefix))
        if not chunk:
            break
        prefix += chunk
    return prefix


def looks_like_archive(prefix: bytes) -> bool:
    """The Docker CLI's test on the first bytes of stdin: compressed, or a valid tar header."""
    from lamina.archive import detect

    if detect(prefix) is not None:
        return True
    if len(prefix) < _TAR_BLOCK:
        return False
    header = prefix[:_TAR_BLOCK]
    try:
        recorded = int(header[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return recorded == computed and any(header[:100])


def _extract(stream: BinaryIO, temp_root: str | None) -> str:
    # the archive code only for contexts that come as a tar (a directory needs none of it)
    import tempfile

    from lamina.archive import TarReader, WhiteoutMode, apply_tar, decompressed

    root = tempfile.mkdtemp(prefix="lamina-build-context-", dir=temp_root)
    try:
        os.chmod(root, 0o700)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            source = decompressed(stream, threaded=False)
            try:
                apply_tar(root_fd, TarReader(source), WhiteoutMode.APPLY,
                          same_owner=os.geteuid() == 0)
            finally:
                source.close()
        finally:
            os.close(root_fd)
    except errdefs.LaminaError as exc:
        fsutil.remove_tree(root)
        raise errdefs.InvalidArgument(f"the build context is not a valid tar archive: {exc}") from exc
    except BaseException:
        fsutil.remove_tree(root)
        raise
    return root


def open_tar_context(stream: BinaryIO, dockerfile: str = DEFAULT_DOCKERFILE, *,
                     temp_root: str | None = None) -> BuildContext:
    """A context from a tar stream (any supported compression); ``dockerfile`` is a path
    inside it.  The extraction is removed by :meth:`BuildContext.close`."""
    root = _extract(stream, temp_root)
    try:
        return _context_from_extracted(root, dockerfile or DEFAULT_DOCKERFILE)
    except BaseException:
        fsutil.remove_tree(root)
        raise


def _context_from_extracted(root: str, dockerfile: str) -> BuildContext:
    tree = SourceTree(root)
    name = dockerfile
    try:
        resolved = tree.resolve(name)
        info = tree._lstat(resolved)
        if info is None and name == DEFAULT_DOCKERFILE:
            name = "dockerfile"
            resolved = tree.resolve(name)
            info = tree._lstat(resolved)
    except errdefs.InvalidArgument as exc:
        raise errdefs.NotFound(f"Cannot locate specified Dockerfile: {dockerfile}") from exc
    if info is None or not stat.S_ISREG(info.st_mode):
        raise errdefs.NotFound(f"Cannot locate specified Dockerfile: {dockerfile}")
    with tree.open(name) as file:
        content = file.read()
    ignore = _read_ignore(root)
    relative = go_clean(_strip_source(name))
    for path in _hidden_paths(ignore, relative):
        fsutil.remove_tree(os.path.join(root, path))  # like Docker: gone from the context
    return BuildContext(root, content, relative, temporary=True)


def open_stdin_context(stream: BinaryIO, dockerfile: str | None = None, *,
                       temp_root: str | None = None) -> BuildContext:
    """``docker build -``: a context tar, or a bare Dockerfile (then the context holds only
    that Dockerfile)."""
    import tempfile

    from lamina.archive.compression import PrefixedStream

    prefix = read_head(stream)
    if looks_like_archive(prefix):
        return open_tar_context(PrefixedStream(prefix, stream), dockerfile or DEFAULT_DOCKERFILE,  # type: ignore[arg-type]
                                temp_root=temp_root)
    if dockerfile == "-":
        raise errdefs.InvalidArgument("build context is not an archive")
    content = prefix + stream.read()
    root = tempfile.mkdtemp(prefix="lamina-build-context-", dir=temp_root)
    try:
        fsutil.atomic_write(os.path.join(root, DEFAULT_DOCKERFILE), content, 0o600)
    except BaseException:
        fsutil.remove_tree(root)
        raise
    return BuildContext(root, content, DEFAULT_DOCKERFILE, temporary=True)
