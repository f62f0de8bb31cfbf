"""The tree comparison the driver suites rely on must see every kind of difference."""

from __future__ import annotations

import os

import pytest

from fstest import (apply, assert_same_tree, chmod, chown, create_device, create_dir, create_fifo,
                    create_file, hardlink, opaque, remove_all, rename, set_xattr, snapshot_tree, symlink,
                    whiteout)


def tree(root, *appliers):
    os.makedirs(root)
    apply(str(root), create_dir("d"), create_file("d/f", "content"), create_file("g", b"x" * 100),
          symlink("d/f", "link"), *appliers)
    return str(root)


def test_identical_trees_compare_equal(tmp_path):
    assert_same_tree(tree(tmp_path / "a"), tree(tmp_path / "b"))


@pytest.mark.parametrize("only_a, only_b, expected", [
    ((), (create_file("d/f", "other"),), "differs  d/f: content expected b'content', got b'other'"),
    ((), (chmod("g", 0o600),), "differs  g: mode expected '0644', got '0600'"),
    ((), (remove_all("d"),), "missing  d/f"),
    ((), (create_file("extra", ""),), "extra    extra"),
    ((), (set_xattr("g", "user.note", b"n"),), "differs  g: xattrs"),
    ((create_file("d/h", b"x" * 100),), (hardlink("g", "d/h"),), "differs  g: hardlink expected None, got 'd/h'"),
    ((), (rename("g", "h"),), "missing  g"),
], ids=["content", "mode", "missing directory", "extra file", "xattr", "hardlink group", "renamed file"])
def test_each_kind_of_difference_is_reported(tmp_path, only_a, only_b, expected):
    a = tree(tmp_path / "a", *only_a)
    b = tree(tmp_path / "b", *only_b)
    with pytest.raises(AssertionError) as caught:
        assert_same_tree(a, b)
    message = str(caught.value)
    assert expected in message
    assert "expected tree:" in message and "actual tree:" in message


def test_symlink_targets_are_compared(tmp_path):
    a = tree(tmp_path / "a", symlink("one", "l2"))
    b = tree(tmp_path / "b", symlink("two", "l2"))
    with pytest.raises(AssertionError, match="differs  l2: link expected 'one', got 'two'"):
        assert_same_tree(a, b)


@pytest.mark.privileged
def test_owners_devices_and_overlay_markers(tmp_path):
    root = tree(tmp_path / "a", create_dir("w"), chown("g", 1000, 1001), create_device("null", 1, 3),
                create_fifo("pipe"), whiteout("w/gone"), opaque("w"))
    snapshot = snapshot_tree(root)
    assert (snapshot["g"].uid, snapshot["g"].gid) == (1000, 1001)
    assert snapshot["null"].type == "char" and snapshot["null"].rdev == (1, 3)
    assert snapshot["pipe"].type == "fifo"
    assert snapshot["w/gone"].rdev == (0, 0)
    assert ("trusted.overlay.opaque", b"y") in snapshot["w"].xattrs
    other = tree(tmp_path / "b", create_dir("w"), create_device("null", 1, 5), create_fifo("pipe"),
                 whiteout("w/gone"), opaque("w"))
    with pytest.raises(AssertionError) as caught:
        assert_same_tree(root, other)
    assert "differs  g: uid expected 1000, got 0" in str(caught.value)
    assert "differs  null: rdev expected (1, 3), got (1, 5)" in str(caught.value)
