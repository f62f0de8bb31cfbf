"""lamina.mount.is_mountpoint: one statx(2) (STATX_ATTR_MOUNT_ROOT), or the mount table where
the kernel does not report that attribute: the same answers, bind mounts of the same file
system included (where st_dev cannot tell), in a mount namespace of the test's own."""

from __future__ import annotations

import os

import pytest

from tests.processes import in_forked_child

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and mounts need root")


def _answers_in_child(tmp_path, statx: bool) -> dict[str, bool]:
    """is_mountpoint of each case, asked in a forked child's own mount namespace (its mounts
    go with it); ``statx=False``: as on a kernel without the attribute."""
    from lamina import mount as mountlib
    from lamina import sys as lsys

    def ask() -> dict[str, bool]:
        if not statx:
            lsys.is_mount_root = lambda path: None
        lsys.unshare(lsys.CLONE_NEWNS)
        mountlib.set_propagation("/", "rprivate")
        base = tmp_path / f"statx-{statx}"
        for name in ("tmpfs", "bound", "source/inner", "plain"):
            (base / name).mkdir(parents=True)
        lsys.mount("tmpfs", str(base / "tmpfs"), "tmpfs", 0, None)
        (base / "tmpfs" / "inside").mkdir()
        lsys.mount(str(base / "source" / "inner"), str(base / "bound"), None, lsys.MS_BIND, None)
        os.symlink(base / "tmpfs", base / "link")
        os.symlink(base / "gone", base / "dangling")
        (base / "file").write_text("")
        cases = {
            "a tmpfs": base / "tmpfs",
            "a bind of the same file system": base / "bound",
            "a symbolic link to a mount point": base / "link",
            "a directory inside a mount": base / "tmpfs" / "inside",
            "a plain directory": base / "plain",
            "the bind's source": base / "source" / "inner",
            "a missing path": base / "missing",
            "a dangling link": base / "dangling",
            "below a file": base / "file" / "below",
            "the root": "/",
        }
        return {name: mountlib.is_mountpoint(str(path)) for name, path in cases.items()}

    return in_forked_child(ask)


@pytest.mark.parametrize("statx", [True, False], ids=["statx", "mount-table"])
def test_mount_points_are_told_apart_from_directories_with_or_without_statx(tmp_path, statx) -> None:
    assert _answers_in_child(tmp_path, statx) == {
        "a tmpfs": True,
        "a bind of the same file system": True,
        "a symbolic link to a mount point": True,
        "a directory inside a mount": False,
        "a plain directory": False,
        "the bind's source": False,
        "a missing path": False,
        "a dangling link": False,
        "below a file": False,
        "the root": True,
    }


def test_statx_reports_the_mount_root_attribute_on_this_kernel() -> None:
    from lamina import sys as lsys

    # Linux 5.8 and later (CI's kernel): the one-call path is the one taken
    assert lsys.is_mount_root("/") is True
    assert lsys.is_mount_root("/etc") is False
