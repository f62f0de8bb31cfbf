"""Sweeping work in progress: a probe directory in use by another process is left alone."""

from __future__ import annotations

import os

from lamina.graphdriver import common


def test_only_probe_directories_no_process_holds_are_swept(tmp_path) -> None:
    held = common.probe_directory(str(tmp_path))  # this process's probe, in use
    child_ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # a prober that dies with its probe directory still there
        try:
            os.write(child_ready[1], common.probe_directory(str(tmp_path)).encode())
        finally:
            os._exit(0)
    os.close(child_ready[1])
    dead = os.read(child_ready[0], 4096).decode()
    os.close(child_ready[0])
    os.waitpid(pid, 0)
    os.mkdir(tmp_path / "layer-incomplete")
    removed = common.sweep_leftovers(str(tmp_path))
    assert sorted(removed) == sorted([os.path.basename(dead), "layer-incomplete"])
    assert os.path.isdir(held)
    common.remove_probe(held)
    assert not os.path.exists(held)
    assert common.sweep_leftovers(str(tmp_path)) == []


def test_a_probe_held_by_another_live_process_is_left_alone(tmp_path) -> None:
    ready, release = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(ready[1], common.probe_directory(str(tmp_path)).encode())
            os.read(release[0], 1)
        finally:
            os._exit(0)
    try:
        os.close(ready[1])
        path = os.read(ready[0], 4096).decode()
        assert common.sweep_leftovers(str(tmp_path)) == []
        assert os.path.isdir(path)
    finally:
        os.write(release[1], b"x")
        os.waitpid(pid, 0)
    assert common.sweep_leftovers(str(tmp_path)) == [os.path.basename(path)]


def test_a_leftover_removed_meanwhile_is_passed_over(tmp_path, monkeypatch) -> None:
    os.mkdir(tmp_path / "gone-removing")
    os.mkdir(tmp_path / "kept-incomplete")
    real_listdir = os.listdir
    # the listing still names an entry its owner has removed since
    monkeypatch.setattr(common.os, "listdir", lambda path: real_listdir(path) + ["vanished-removing"])
    removed = common.sweep_leftovers(str(tmp_path))
    assert sorted(removed) == ["gone-removing", "kept-incomplete"]
