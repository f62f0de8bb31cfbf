"""Resolution inside a root by descriptor: openat2(RESOLVE_IN_ROOT) and the userspace walk
used without it must agree, and neither may leave the root."""

from __future__ import annotations

import errno
import os

import pytest

from lamina.runtime.paths import (
    make_dirs_in_root,
    make_file_in_root,
    normalize,
    open_in_root,
)


@pytest.fixture(params=[True, False], ids=["openat2", "userspace walk"])
def use_openat2(request) -> bool:
    return request.param


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "secret").write_text("container\n")
    (root / "data").mkdir()
    os.symlink("/etc", root / "abs")                       # absolute: means the root's /etc
    os.symlink("../../../../../etc", root / "data" / "up")  # climbs: clamped at the root
    os.symlink(str(outside), root / "host")                 # a host path: looked up inside
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, outside, fd
    os.close(fd)


def _read(root_fd: int, path: str, use_openat2: bool) -> str:
    fd = open_in_root(root_fd, path, os.O_RDONLY, use_openat2=use_openat2)
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["/etc/secret", "abs/secret", "/data/up/secret", "../../etc/secret",
                                  "/data/../../etc/./secret"],
                         ids=["plain", "absolute symlink", "symlink climbing out", "dot-dot at the start",
                              "dot-dot in the middle"])
def test_paths_resolve_to_the_root_s_files(tree, use_openat2: bool, path: str) -> None:
    _, _, root_fd = tree
    assert _read(root_fd, path, use_openat2) == "container\n"


def test_a_symlink_to_a_host_path_does_not_reach_the_host(tree, use_openat2: bool) -> None:
    _, _, root_fd = tree
    with pytest.raises(FileNotFoundError):
        open_in_root(root_fd, "/host/secret", os.O_RDONLY, use_openat2=use_openat2)


def test_symlink_loops_fail(tree, use_openat2: bool) -> None:
    _, _, root_fd = tree
    with pytest.raises(OSError) as caught:
        open_in_root(root_fd, "/loop1", os.O_RDONLY, use_openat2=use_openat2)
    assert caught.value.errno == errno.ELOOP


def test_make_dirs_creates_through_a_dangling_host_symlink_inside_the_root(tree) -> None:
    root, outside, root_fd = tree
    fd = make_dirs_in_root(root_fd, "/host/a/b")
    os.close(fd)
    assert not (outside / "a").exists()
    assert (root / str(outside).lstrip("/") / "a" / "b").is_dir()


def test_make_dirs_creates_every_missing_level_and_follows_relative_dangling_links(tree) -> None:
    root, outside, root_fd = tree
    os.symlink("../made/by/link", root / "data" / "dangling")  # relative, its target missing
    fd = make_dirs_in_root(root_fd, "/data/dangling/x/y")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(root / "made" / "by" / "link" / "x" / "y"))
    finally:
        os.close(fd)
    fd = make_dirs_in_root(root_fd, "/new/a/b/c")  # nothing below the root exists
    os.close(fd)
    assert (root / "new" / "a" / "b" / "c").is_dir()
    assert not (outside / "made").exists()
    # what exists already is opened, not made again
    fd = make_dirs_in_root(root_fd, "/abs")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(root / "etc"))
    finally:
        os.close(fd)


def test_make_file_creates_parents_and_an_empty_file(tree) -> None:
    root, _, root_fd = tree
    os.close(make_file_in_root(root_fd, "/abs/new/file"))
    assert (root / "etc" / "new" / "file").read_text() == ""
    os.close(make_file_in_root(root_fd, "/etc/secret"))
    assert (root / "etc" / "secret").read_text() == "container\n"  # existing content kept


def test_make_dirs_refuses_a_file_on_the_way(tree) -> None:
    _, _, root_fd = tree
    with pytest.raises(NotADirectoryError):
        make_dirs_in_root(root_fd, "/etc/secret/sub")


def test_normalize() -> None:
    assert normalize("/") == "."
    assert normalize("../../x/./y/") == "x/y"
    assert normalize("//a//b") == "a/b"
