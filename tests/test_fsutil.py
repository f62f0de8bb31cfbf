"""fsutil: atomic writes and tree removal, including trees no path can name."""

from __future__ import annotations

import os

from lamina import fsutil


def test_remove_tree_handles_a_tree_deeper_than_path_max_and_the_recursion_limit(tmp_path) -> None:
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for index in range(2500):
        os.mkdir("d" * 8, dir_fd=fd)
        with open(os.open("file", os.O_CREAT | os.O_WRONLY, dir_fd=fd), "w") as handle:
            handle.write(str(index))
        os.symlink("/etc", "link", dir_fd=fd)
        deeper = os.open("d" * 8, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    fsutil.remove_tree(root)
    assert not root.exists()
    assert os.path.exists("/etc/passwd")


def test_remove_tree_never_follows_symlinks(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.symlink(victim, tree / "sub" / "link")
    os.chmod(tree / "sub", 0o500)
    fsutil.remove_tree(tree)
    assert not tree.exists()
    assert (victim / "keep").read_text() == "x"


def test_remove_tree_of_a_missing_path_or_a_file(tmp_path) -> None:
    fsutil.remove_tree(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    fsutil.remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()


def test_atomic_write_replaces_content_and_leaves_no_temporary_files(tmp_path) -> None:
    target = tmp_path / "state.json"
    fsutil.atomic_write_json(target, {"a": 1})
    fsutil.atomic_write_json(target, {"a": 2})
    assert fsutil.read_json(target) == {"a": 2}
    assert os.listdir(tmp_path) == ["state.json"]


def test_lock_probes_see_a_lock_held_by_another_process(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "lease"
    assert not fsutil.lock_is_held(path)  # missing
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        assert fsutil.lock_is_held(path)
        assert not fsutil.FileLock(path).try_acquire()
    finally:
        holder.kill()
        holder.wait()
    assert not fsutil.lock_is_held(path)
    lock = fsutil.FileLock(path)
    assert lock.try_acquire()
    lock.release()


def test_modified_before_reads_the_link_itself_and_a_missing_path_is_not(tmp_path) -> None:
    old = tmp_path / "old"
    old.write_bytes(b"")
    os.utime(old, (1_000_000, 1_000_000))
    link = tmp_path / "link"
    os.symlink(old, link)  # the link is new, its target old
    assert fsutil.modified_before(old, 1_000_000)
    assert not fsutil.modified_before(old, 999_999)
    assert not fsutil.modified_before(link, 1_000_000)
    assert not fsutil.modified_before(tmp_path / "missing", 2_000_000_000)
