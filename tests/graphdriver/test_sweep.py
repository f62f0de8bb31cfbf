"""Sweeping work in progress: a probe directory in use by another process is left alone."""

from __future__ import annotations

import os

from lamina.graphdriver import common


def test_only_stale_probe_directories_are_swept(tmp_path) -> None:
    fresh = common.probe_directory(str(tmp_path))
    stale = common.probe_directory(str(tmp_path))
    old = os.stat(stale).st_mtime - common.PROBE_GRACE_SECONDS - 1
    os.utime(stale, (old, old))
    os.mkdir(tmp_path / "layer-incomplete")
    removed = common.sweep_leftovers(str(tmp_path))
    assert sorted(removed) == sorted([os.path.basename(stale), "layer-incomplete"])
    assert os.path.isdir(fresh)


def test_a_leftover_removed_meanwhile_is_passed_over(tmp_path, monkeypatch) -> None:
    os.mkdir(tmp_path / "gone-removing")
    os.mkdir(tmp_path / "kept-incomplete")
    real_listdir = os.listdir
    # the listing still names an entry its owner has removed since
    monkeypatch.setattr(common.os, "listdir", lambda path: real_listdir(path) + ["vanished-removing"])
    removed = common.sweep_leftovers(str(tmp_path))
    assert sorted(removed) == ["gone-removing", "kept-incomplete"]
