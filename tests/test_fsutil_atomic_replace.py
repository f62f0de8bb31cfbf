"""fsutil.atomic_replace: atomic like atomic_write, without the fsyncs."""

from __future__ import annotations

import os
import stat

import pytest

from lamina import fsutil


def test_atomic_replace_writes_and_replaces_whole_files_without_syncing(tmp_path, fsyncs) -> None:
    calls = fsyncs
    path = tmp_path / "state.json"
    fsutil.atomic_replace(path, "first", 0o600)
    assert path.read_text() == "first"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    inode = os.stat(path).st_ino
    fsutil.atomic_replace(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert calls == []
    assert os.listdir(tmp_path) == ["state.json"]


def test_atomic_write_still_syncs_the_file_and_the_directory(tmp_path, fsyncs) -> None:
    calls = fsyncs
    fsutil.atomic_write(tmp_path / "record", "data")
    assert len(calls) == 2
    assert (tmp_path / "record").read_text() == "data"


def test_atomic_replace_leaves_nothing_behind_when_the_rename_fails(tmp_path) -> None:
    target = tmp_path / "directory"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(OSError):
        fsutil.atomic_replace(target, "data")  # a file cannot replace a non-empty directory
    assert sorted(os.listdir(tmp_path)) == ["directory"]
