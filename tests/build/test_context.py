"""Build contexts: directory/tar/stdin, -f inside and outside, .dockerignore visibility, safe
source resolution (``..``, absolute paths, escaping symlinks), wildcards, copy plans and the
Docker-format checksums."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import pathlib
import tarfile

import pytest
import zstandard

from lamina import errdefs
from lamina.build.context import (BuildContext, SourceMatch, SourceTree, looks_like_archive, normalize_destination,
                                  normalize_workdir, open_directory_context, open_stdin_context, open_tar_context,
                                  plan_copy)


def make_tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith("/"):
            target.mkdir(exist_ok=True)
        else:
            target.write_text(content)
    return root


@pytest.fixture()
def context_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    root = make_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM scratch\n", "app/main.py": "print(1)\n", "app/lib/util.py": "x = 1\n",
        "app/README.md": "readme", "notes.txt": "n", "other.txt": "o", "secret.key": "k", "empty/": "",
    })
    (root / "link-to-app").symlink_to("app")
    (root / "link-to-file").symlink_to("app/main.py")
    (root / "abs-link").symlink_to("/etc/passwd")
    (root / "up-link").symlink_to("../outside")
    (root / "deep-up").symlink_to("app/../../outside")
    (tmp_path / "outside").write_text("do not read")
    return root


def paths(matches: list[SourceMatch]) -> list[tuple[str, str, bool]]:
    return [(match.path, match.resolved, match.is_directory) for match in matches]


# -- safety --------------------------------------------------------------------------------

FORBIDDEN = [
    ("a parent path", "../outside"),
    ("a parent path after a leading slash", "/../outside"),
    ("a path climbing out through a directory", "app/../../outside"),
    ("a symlink with an absolute target", "abs-link"),
    ("a symlink climbing out", "up-link"),
    ("a symlink whose target climbs through a directory", "deep-up"),
    ("a path through an escaping symlink", "up-link/x"),
]


@pytest.mark.parametrize("source", [case[1] for case in FORBIDDEN], ids=[case[0] for case in FORBIDDEN])
def test_sources_outside_the_context_are_refused(context_dir: pathlib.Path, source: str) -> None:
    context = open_directory_context(context_dir)
    with pytest.raises(errdefs.InvalidArgument, match=r"^forbidden path outside the build context: "):
        context.match(source)
    with pytest.raises(errdefs.InvalidArgument, match="forbidden path outside the build context"):
        context.open(source)


def test_forbidden_message_names_the_source(context_dir: pathlib.Path) -> None:
    with pytest.raises(errdefs.InvalidArgument) as info:
        open_directory_context(context_dir).match("../x")
    assert str(info.value).startswith("forbidden path outside the build context: ../x")


RESOLVED = [
    ("a file", "notes.txt", [("notes.txt", "notes.txt", False)]),
    ("a leading slash is dropped", "/notes.txt", [("notes.txt", "notes.txt", False)]),
    ("a leading dot slash is dropped", "./app", [("app", "app", True)]),
    ("the context root", ".", [("", "", True)]),
    ("a trailing slash is cleaned", "app/", [("app", "app", True)]),
    ("a dot-dot that stays inside", "app/lib/../main.py", [("app/main.py", "app/main.py", False)]),
    ("a symlink to a directory is followed", "link-to-app", [("link-to-app", "app", True)]),
    ("a path through a symlinked directory", "link-to-app/lib/util.py",
     [("link-to-app/lib/util.py", "app/lib/util.py", False)]),
    ("a symlink to a file is followed", "link-to-file", [("link-to-file", "app/main.py", False)]),
    ("a wildcard at the top", "*.txt", [("notes.txt", "notes.txt", False), ("other.txt", "other.txt", False)]),
    ("a wildcard does not cross directories", "app/*.py", [("app/main.py", "app/main.py", False)]),
    ("a wildcard in a directory name", "app/l*/*.py", [("app/lib/util.py", "app/lib/util.py", False)]),
    ("a character class", "[no]*.txt", [("notes.txt", "notes.txt", False), ("other.txt", "other.txt", False)]),
    ("double star is not special in COPY", "**/*.py", [("app/main.py", "app/main.py", False)]),
    ("a wildcard matching nothing", "*.nothing", []),
    ("an escaped wildcard is literal", "notes\\*", []),
]


@pytest.mark.parametrize("source,expected", [case[1:] for case in RESOLVED], ids=[case[0] for case in RESOLVED])
def test_source_resolution(context_dir: pathlib.Path, source: str, expected: list[tuple[str, str, bool]]) -> None:
    context = open_directory_context(context_dir)
    if expected == [] and "\\" in source:
        with pytest.raises(errdefs.NotFound):
            context.match(source)
        return
    assert paths(context.match(source)) == expected


def test_missing_source_is_not_found(context_dir: pathlib.Path) -> None:
    with pytest.raises(errdefs.NotFound, match="file not found in build context or excluded by .dockerignore: "
                                                "stat missing: file does not exist"):
        open_directory_context(context_dir).match("missing")


def test_nothing_matched_at_all_is_an_error(context_dir: pathlib.Path) -> None:
    with pytest.raises(errdefs.NotFound, match="no source files were specified"):
        open_directory_context(context_dir).match_all(["*.nothing"])


def test_symlink_loop_is_an_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(errdefs.InvalidArgument, match="too many levels of symbolic links"):
        SourceTree(tmp_path).match("a")


# -- .dockerignore ---------------------------------------------------------------------------

def test_dockerignore_hides_sources(context_dir: pathlib.Path) -> None:
    (context_dir / ".dockerignore").write_text("*.key\napp/*.md\n")
    context = open_directory_context(context_dir)
    with pytest.raises(errdefs.NotFound):
        context.match("secret.key")
    with pytest.raises(errdefs.NotFound):
        context.match("app/README.md")
    assert [relative for relative, _ in context.walk("app")] == ["app/lib", "app/lib/util.py", "app/main.py"]
    assert paths(context.match("*.key")) == []
    assert context.visible(".dockerignore")


def test_excluded_dockerfile_and_dockerignore_are_read_but_not_copyable(context_dir: pathlib.Path) -> None:
    (context_dir / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    context = open_directory_context(context_dir)
    assert context.dockerfile == b"FROM scratch\n"
    assert context.hidden == frozenset({"Dockerfile", ".dockerignore"})
    for name in ("Dockerfile", ".dockerignore"):
        with pytest.raises(errdefs.NotFound):
            context.match(name)
    assert "Dockerfile" not in [relative for relative, _ in context.walk()]


def test_not_excluded_dockerfile_is_copyable(context_dir: pathlib.Path) -> None:
    assert paths(open_directory_context(context_dir).match("Dockerfile")) == [("Dockerfile", "Dockerfile", False)]


def test_symlink_into_an_excluded_directory_finds_nothing(context_dir: pathlib.Path) -> None:
    (context_dir / ".dockerignore").write_text("app\n")
    with pytest.raises(errdefs.NotFound):
        open_directory_context(context_dir).match("link-to-app/main.py")


# -- Dockerfile location ----------------------------------------------------------------------

def test_lowercase_dockerfile_fallback(tmp_path: pathlib.Path) -> None:
    make_tree(tmp_path, {"dockerfile": "FROM a\n"})
    context = open_directory_context(tmp_path)
    assert (context.dockerfile, context.dockerfile_name) == (b"FROM a\n", "dockerfile")


def test_dockerfile_relative_to_the_current_directory(context_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    make_tree(tmp_path, {"elsewhere/Build.df": "FROM outside\n"})
    context = open_directory_context(context_dir, "elsewhere/Build.df", cwd=str(tmp_path))
    assert context.dockerfile == b"FROM outside\n"
    assert context.dockerfile_name == str(tmp_path / "elsewhere/Build.df")
    assert context.hidden == frozenset()


def test_dockerfile_inside_the_context_under_another_name(context_dir: pathlib.Path) -> None:
    make_tree(context_dir, {"docker/dev.Dockerfile": "FROM dev\n", ".dockerignore": "docker\n"})
    context = open_directory_context(context_dir, str(context_dir / "docker/dev.Dockerfile"))
    assert (context.dockerfile, context.dockerfile_name) == (b"FROM dev\n", "docker/dev.Dockerfile")
    assert "docker/dev.Dockerfile" in context.hidden


def test_dockerfile_from_stdin_with_a_directory(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir, dockerfile_content=b"FROM stdin\n")
    assert (context.dockerfile, context.dockerfile_name) == (b"FROM stdin\n", "-")


def test_missing_dockerfile(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errdefs.NotFound, match="Cannot locate specified Dockerfile: nope"):
        open_directory_context(tmp_path, "nope", cwd=str(tmp_path))
    with pytest.raises(errdefs.NotFound, match="Cannot locate specified Dockerfile"):
        open_directory_context(tmp_path)
    with pytest.raises(errdefs.NotFound, match="unable to prepare context"):
        open_directory_context(tmp_path / "missing")


# -- tar and stdin -----------------------------------------------------------------------------

def context_tar(files: dict[str, str], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


COMPRESSIONS = [
    ("plain", lambda data: data),
    ("gzip", gzip.compress),
    ("bzip2", bz2.compress),
    ("xz", lzma.compress),
    ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
]


@pytest.mark.parametrize("compress", [case[1] for case in COMPRESSIONS], ids=[f"a {case[0]} tar" for case in COMPRESSIONS])
def test_tar_context(tmp_path: pathlib.Path, compress: object) -> None:
    data = compress(context_tar({"Dockerfile": "FROM t\n", "src/a.txt": "a"}))  # type: ignore[operator]
    with open_tar_context(io.BytesIO(data), temp_root=str(tmp_path)) as context:
        assert context.dockerfile == b"FROM t\n"
        assert paths(context.match("src/*.txt")) == [("src/a.txt", "src/a.txt", False)]
        root = context.root
        assert os.path.isdir(root)
    assert not os.path.exists(root)


def test_tar_context_removes_excluded_dockerfile_and_dockerignore(tmp_path: pathlib.Path) -> None:
    data = context_tar({"build/Dockerfile.x": "FROM t\n", ".dockerignore": "build\n.dockerignore\n", "keep": "k"})
    with open_tar_context(io.BytesIO(data), "build/Dockerfile.x", temp_root=str(tmp_path)) as context:
        assert context.dockerfile == b"FROM t\n"
        assert not os.path.exists(os.path.join(context.root, "build/Dockerfile.x"))
        assert not os.path.exists(os.path.join(context.root, ".dockerignore"))
        assert paths(context.match("keep")) == [("keep", "keep", False)]


def test_tar_context_with_an_escaping_dockerfile_symlink(tmp_path: pathlib.Path) -> None:
    data = context_tar({"x": "x"}, symlinks={"Dockerfile": "/etc/hostname"})
    with pytest.raises(errdefs.NotFound, match="Cannot locate specified Dockerfile: Dockerfile"):
        open_tar_context(io.BytesIO(data), temp_root=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_tar_context_hostile_entries_are_refused(tmp_path: pathlib.Path) -> None:
    data = context_tar({"../evil": "x", "Dockerfile": "FROM a\n"})
    with pytest.raises(errdefs.InvalidArgument):
        open_tar_context(io.BytesIO(data), temp_root=str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert not (tmp_path.parent / "evil").exists()


def test_corrupt_compressed_context(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        open_tar_context(io.BytesIO(b"\x1f\x8b" + b"garbage" * 100), temp_root=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_stdin_tar(tmp_path: pathlib.Path) -> None:
    data = context_tar({"Dockerfile": "FROM s\n", "f": "f"})
    with open_stdin_context(io.BytesIO(data), temp_root=str(tmp_path)) as context:
        assert context.dockerfile == b"FROM s\n"
        assert paths(context.match("f")) == [("f", "f", False)]


def test_stdin_bare_dockerfile(tmp_path: pathlib.Path) -> None:
    with open_stdin_context(io.BytesIO(b"FROM bare\nRUN true\n"), temp_root=str(tmp_path)) as context:
        assert context.dockerfile == b"FROM bare\nRUN true\n"
        assert [relative for relative, _ in context.walk()] == ["Dockerfile"]
    assert os.listdir(tmp_path) == []


def test_stdin_bare_dockerfile_with_dash_dockerfile_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="build context is not an archive"):
        open_stdin_context(io.BytesIO(b"FROM x\n"), "-", temp_root=str(tmp_path))


def test_archive_detection() -> None:
    assert looks_like_archive(context_tar({"a": "b"})[:1024])
    assert looks_like_archive(gzip.compress(b"x"))
    assert not looks_like_archive(b"FROM alpine\n" * 100)
    assert not looks_like_archive(b"\0" * 1024)


# -- copy plans ------------------------------------------------------------------------------

FILE = SourceMatch("dir/a.txt", "dir/a.txt", False)
LINKED = SourceMatch("link.txt", "real/target.txt", False)
DIRECTORY = SourceMatch("dir", "dir", True)

PLANS = [
    ("a file to a new name", [FILE], "/dest", "/", None, ["/dest"]),
    ("a file into a directory by trailing slash", [FILE], "/dest/", "/", None, ["/dest/a.txt"]),
    ("a file into an existing directory", [FILE], "/dest", "/", {"/dest"}, ["/dest/a.txt"]),
    ("a relative destination joins WORKDIR", [FILE], "sub/", "/work", None, ["/work/sub/a.txt"]),
    ("a dot destination is WORKDIR", [FILE], ".", "/work", {"/work"}, ["/work/a.txt"]),
    ("a directory copies its contents", [DIRECTORY], "/dest", "/", None, ["/dest"]),
    ("a directory with a trailing slash", [DIRECTORY], "/dest/", "/", None, ["/dest"]),
    ("a symlinked source keeps the name as written", [LINKED], "/d/", "/", None, ["/d/link.txt"]),
    ("several sources into a directory", [FILE, DIRECTORY], "/d/", "/", None, ["/d/a.txt", "/d"]),
    ("a destination is cleaned", [FILE], "/a/../b//", "/", None, ["/b/a.txt"]),
]


@pytest.mark.parametrize("matches,destination,workdir,directories,expected", [case[1:] for case in PLANS],
                         ids=[case[0] for case in PLANS])
def test_copy_plan(matches: list[SourceMatch], destination: str, workdir: str, directories: set[str] | None,
                   expected: list[str]) -> None:
    checker = (lambda path: path in directories) if directories is not None else None
    steps = plan_copy(matches, destination, workdir, is_directory=checker)
    assert [step.destination for step in steps] == expected
    assert [step.source for step in steps] == matches


def test_several_sources_need_a_directory_destination() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="When using ADD with more than one source file, the "
                                                      "destination must be a directory and end with a /"):
        plan_copy([FILE, DIRECTORY], "/dest", instruction="ADD")


def test_destination_and_workdir_normalisation() -> None:
    assert normalize_destination("/work", "x/") == "/work/x/"
    assert normalize_destination("/work", "/abs") == "/abs"
    assert normalize_destination("", "x") == "/x"
    assert normalize_workdir("/a", "b/../c") == "/a/c"
    assert normalize_workdir("/a", "/b/") == "/b"
    assert normalize_workdir("", "rel") == "/rel"
    with pytest.raises(errdefs.InvalidArgument):
        normalize_workdir("/", "")


def test_plan_from_a_context(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    steps = plan_copy(context.match_all(["app/*.py", "notes.txt", "empty"]), "/srv/", "/")
    assert [(step.source.path, step.destination) for step in steps] == [
        ("app/main.py", "/srv/main.py"), ("notes.txt", "/srv/notes.txt"), ("empty", "/srv")]


# -- checksums -------------------------------------------------------------------------------

def expected_file_hash(root: pathlib.Path, name: str) -> str:
    """The tarsum-v1 selection written out by hand for a regular file."""
    info = os.lstat(root / name)
    content = (root / name).read_bytes()
    header = (f"name{name}mode{info.st_mode & 0o7777}uid{info.st_uid}gid{info.st_gid}size{len(content)}"
              f"typeflag0linkname" "uname" "gname" "devmajor0devminor0").encode()
    return hashlib.sha256(header + content).hexdigest()


def test_file_checksum_format(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    assert context.checksum(["notes.txt"]) == "file:" + expected_file_hash(context_dir, "notes.txt")
    assert context.checksum(["link-to-file"]) == "file:" + expected_file_hash(context_dir, "app/main.py")


def test_directory_checksum_format(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    hashes = [context.file_hash(path) for path in ("app", "app/README.md", "app/lib", "app/lib/util.py",
                                                   "app/main.py")]
    expected = "dir:" + hashlib.sha256(",".join(sorted(hashes)).encode()).hexdigest()
    assert context.checksum(["app"]) == expected
    directory_header = hashes[0]
    info = os.lstat(context_dir / "app")
    assert directory_header == hashlib.sha256(
        f"nameapp/mode{info.st_mode & 0o7777}uid{info.st_uid}gid{info.st_gid}size0typeflag5linkname"
        "unamegnamedevmajor0devminor0".encode()).hexdigest()


def test_multi_checksum_format(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    first, second = context.checksum(["notes.txt"]), context.checksum(["other.txt"])
    assert context.checksum(["*.txt"]) == "multi:" + hashlib.sha256(f"{first},{second}".encode()).hexdigest()


def test_checksum_changes_with_content_and_mode_not_mtime(context_dir: pathlib.Path) -> None:
    before = open_directory_context(context_dir).checksum(["app"])
    os.utime(context_dir / "app/main.py", (1, 1))
    assert open_directory_context(context_dir).checksum(["app"]) == before
    (context_dir / "app/main.py").write_text("print(2)\n")
    changed = open_directory_context(context_dir).checksum(["app"])
    assert changed != before
    (context_dir / "app/main.py").chmod(0o755)
    assert open_directory_context(context_dir).checksum(["app"]) != changed


def test_checksum_ignores_excluded_files(context_dir: pathlib.Path) -> None:
    before = open_directory_context(context_dir).checksum(["app"])
    (context_dir / ".dockerignore").write_text("app/*.log\n")
    (context_dir / "app/debug.log").write_text("noise")
    assert open_directory_context(context_dir).checksum(["app"]) == before


def test_checksums_are_lazy_and_cached(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    assert context._hashes == {}
    first = context.checksum(["notes.txt"])
    assert set(context._hashes) == {"notes.txt"}
    (context_dir / "notes.txt").write_text("changed after hashing")
    assert context.checksum(["notes.txt"]) == first  # read once per context
    assert open_directory_context(context_dir).checksum(["notes.txt"]) != first


def test_open_reads_through_the_tree(context_dir: pathlib.Path) -> None:
    context = open_directory_context(context_dir)
    with context.open("link-to-app/main.py") as file:
        assert file.read() == b"print(1)\n"
    assert isinstance(context, BuildContext)
