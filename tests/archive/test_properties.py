"""Property tests: mutated archives fail cleanly; random trees survive write -> read -> extract."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.archive import (
    EntryType,
    TarEntry,
    TarReader,
    TarSplitWriter,
    TarWriter,
    WhiteoutMode,
    apply_tar,
)

from .helpers import END, info, member, snapshot, tarfile_bytes

IS_ROOT = os.geteuid() == 0


def _seed_archive() -> bytes:
    import tarfile
    members = [
        (info("dir", tarfile.DIRTYPE, mode=0o755), None),
        (info("dir/file", size=700, mtime=1_700_000_000.5, uid=5), b"x" * 700),
        (info("dir/" + "long" * 40, size=3), b"abc"),
        (info("dir/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None),
        (info("dir/hard", tarfile.LNKTYPE, linkname="dir/file"), None),
        (info("dir/.wh.gone", size=0), b""),
        (info("dir/sub/.wh..wh..opq", size=0), b""),
    ]
    return tarfile_bytes(members) + member("tail", b"t" * 10) + END


SEED = _seed_archive()


def _read_and_extract_in_child(data: bytes, base: str, mode: WhiteoutMode) -> object:
    """Read (recording tar-split) and extract ``data`` in a child chrooted into ``base``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            if IS_ROOT:
                os.chroot(base)
                os.chdir("/")
                target = "/target"
            else:
                target = os.path.join(base, "target")
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            try:
                recorder = TarSplitWriter(io.BytesIO())
                reader = TarReader(io.BytesIO(data), recorder=recorder, max_trailing=4096)
                apply_tar(fd, reader, mode, same_owner=IS_ROOT)
                recorder.close()
                result: object = "ok"
            except errdefs.LaminaError as exc:
                result = ["clean", type(exc).__name__, str(exc)]
            except BaseException as exc:
                import traceback
                result = ["unclean", type(exc).__name__, traceback.format_exc()]
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(output)


mutation = st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutation, cut=st.one_of(st.none(), st.integers(0, len(SEED))),
       mode=st.sampled_from([WhiteoutMode.APPLY, WhiteoutMode.OVERLAY]))
def test_mutated_archives_fail_cleanly_or_extract(changes, cut, mode) -> None:
    data = bytearray(SEED)
    for position, value in changes:
        data[position] = value
    if cut is not None:
        del data[cut:]
    base = tempfile.mkdtemp(prefix="lamina-mutation-")
    try:
        os.mkdir(os.path.join(base, "target"))
        result = _read_and_extract_in_child(bytes(data), base, mode)
        assert sorted(os.listdir(base)) == ["target"], "the extraction wrote outside its target"
    finally:
        shutil.rmtree(base)
    assert result == "ok" or result[0] == "clean", result


@settings(max_examples=300, deadline=None)
@given(changes=mutation)
def test_mutated_headers_never_crash_the_reader(changes) -> None:
    data = bytearray(SEED)
    for position, value in changes:
        data[position % 2048] = value                 # aim at the first headers
    reader = TarReader(io.BytesIO(bytes(data)), recorder=TarSplitWriter(io.BytesIO()))
    try:
        for _ in reader:
            reader.read_content(100)
        reader.finish()
    except errdefs.LaminaError:
        pass


# -- random trees -----------------------------------------------------------------------

NAME = st.text(alphabet="abcxyz_-.é日", min_size=1, max_size=10).filter(
    lambda name: name not in (".", "..") and not name.startswith(".wh."))
LONG_NAME = st.text(alphabet="abcdefgh", min_size=90, max_size=140)
TIME = st.integers(-(2**31 - 2) * 10**9, 2**33 * 10**9)   # what ext4 stores exactly
XATTRS = st.dictionaries(st.sampled_from(["user.a", "user.b", "user.long" + "x" * 40]), st.binary(max_size=40),
                         max_size=2)


@st.composite
def trees(draw) -> list[tuple[TarEntry, bytes]]:
    kinds = ["dir", "file", "symlink", "hardlink", "fifo"] + (["char", "block"] if IS_ROOT else [])
    entries: list[tuple[TarEntry, bytes]] = []
    directories = [""]
    files: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 20))):
        parent = draw(st.sampled_from(directories))
        name = draw(st.one_of(NAME, LONG_NAME))
        path = f"{parent}/{name}" if parent else name
        if path in used:
            continue
        used.add(path)
        kind = draw(st.sampled_from(kinds))
        if kind == "hardlink" and not files:
            kind = "file"
        owner = {"uid": draw(st.integers(0, 2**21)), "gid": draw(st.integers(0, 70000))} if IS_ROOT else {}
        common = {"mode": draw(st.integers(0, 0o7777)), "mtime_ns": draw(TIME), **owner}
        if not IS_ROOT:
            common["mode"] |= 0o700 if kind == "dir" else 0o600   # the test itself must read it back
        if kind == "dir":
            entries.append((TarEntry(name=path, type=EntryType.DIRECTORY, xattrs=draw(XATTRS), **common), b""))
            directories.append(path)
        elif kind == "file":
            content = draw(st.binary(max_size=2000))
            entries.append((TarEntry(name=path, type=EntryType.REGULAR, size=len(content), xattrs=draw(XATTRS),
                                     **common), content))
            files.append(path)
        elif kind == "hardlink":
            entries.append((TarEntry(name=path, type=EntryType.HARDLINK, linkname=draw(st.sampled_from(files))), b""))
        elif kind == "symlink":
            target = draw(st.one_of(NAME, st.just("/etc/passwd"), st.just("../../../x")))
            common["mode"] = 0o777
            entries.append((TarEntry(name=path, type=EntryType.SYMLINK, linkname=target, **common), b""))
        elif kind == "fifo":
            entries.append((TarEntry(name=path, type=EntryType.FIFO, **common), b""))
        else:
            entries.append((TarEntry(name=path, type=EntryType.CHAR if kind == "char" else EntryType.BLOCK,
                                     devmajor=draw(st.integers(1, 255)), devminor=draw(st.integers(0, 2**20 - 1)),
                                     **common), b""))
    return entries


def _expected(entries: list[tuple[TarEntry, bytes]]) -> dict[str, tuple]:
    import hashlib
    kinds = {EntryType.DIRECTORY: "dir", EntryType.REGULAR: "file", EntryType.SYMLINK: "symlink",
             EntryType.FIFO: "fifo", EntryType.CHAR: "char", EntryType.BLOCK: "block"}
    by_name: dict[str, tuple] = {}
    for entry, content in entries:
        if entry.type is EntryType.HARDLINK:
            by_name[entry.name] = by_name[entry.linkname]
            continue
        uid, gid = (entry.uid, entry.gid) if IS_ROOT else (os.geteuid(), os.getegid())
        by_name[entry.name] = (
            kinds[entry.type], entry.mode, uid, gid,
            len(content) if entry.type is EntryType.REGULAR else len(os.fsencode(entry.linkname))
            if entry.type is EntryType.SYMLINK else 0,
            entry.mtime_ns,
            os.makedev(entry.devmajor, entry.devminor) if entry.type in (EntryType.CHAR, EntryType.BLOCK) else 0,
            entry.linkname if entry.type is EntryType.SYMLINK else "",
            hashlib.sha256(content).hexdigest() if entry.type is EntryType.REGULAR else "",
            tuple(sorted(entry.xattrs.items())))
    return by_name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(entries=trees())
def test_random_trees_survive_write_read_extract(entries) -> None:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for entry, content in entries:
        writer.add(entry, [content] if content else None)
    writer.close()
    target = tempfile.mkdtemp(prefix="lamina-tree-")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        try:
            apply_tar(fd, TarReader(io.BytesIO(out.getvalue())), WhiteoutMode.APPLY, same_owner=IS_ROOT)
        finally:
            os.close(fd)
        tree = snapshot(target)
        actual = {path: (node.kind, node.mode, node.uid, node.gid, node.size, node.mtime_ns, node.rdev,
                         node.target, node.digest, node.xattrs) for path, node in tree.nodes.items()}
        expected = _expected(entries)
        assert actual == expected
        groups: dict[int, set[str]] = {}
        for path, node in tree.nodes.items():
            if node.link_group:
                groups.setdefault(node.link_group, set()).add(path)
        expected_groups: dict[str, set[str]] = {}
        for entry, _ in entries:
            if entry.type is EntryType.HARDLINK:
                expected_groups.setdefault(entry.linkname, {entry.linkname}).add(entry.name)
        assert sorted(map(sorted, groups.values())) == sorted(map(sorted, expected_groups.values()))
    finally:
        shutil.rmtree(target)
