"""The container's ``/sys/fs/cgroup`` as :func:`lamina.runtime.rootfs.mount_cgroups` makes it:
the same mounts, with the same flags, whether the kernel's descriptor-based mount calls
(``open_tree``, ``mount_setattr``, ``move_mount``) do it or a bind and a remount per hierarchy.

Each case runs in a forked child in a mount namespace of its own: every mount dies with it."""

from __future__ import annotations

import errno
import os

import pytest

from tests.processes import in_forked_child

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and mounts need root")


def _mounts_in_child(tmp_path, missing: str | None) -> list[tuple[str, str, str]]:
    """(mount point relative to the root, root of the mount, per-mount options) of every mount
    under ``<root>/sys/fs/cgroup`` after ``mount_cgroups``; ``missing`` names the call made
    to fail with ENOSYS (as on an older kernel)."""
    from lamina import mount as mountlib
    from lamina import sys as lsys
    from lamina.runtime import rootfs

    root = tmp_path / f"root-{missing}"
    sources = []
    for name in ("cpu,cpuacct", "memory", "pids"):
        source = tmp_path / "sources" / name / "lamina" / "abc"
        source.mkdir(parents=True, exist_ok=True)
        (source / "cgroup.procs").write_text("")
        sources.append((name, str(source)))
    def mount_and_list() -> list[list[str]]:
        if missing is not None:
            def refuse(*_args, **_kwargs):
                raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

            setattr(lsys, missing, refuse)
        lsys.unshare(lsys.CLONE_NEWNS)
        mountlib.set_propagation("/", "rprivate")
        root.mkdir()
        lsys.mount("tmpfs", str(root), "tmpfs", 0, None)
        os.makedirs(root / "sys" / "fs")
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        rootfs.mount_cgroups(root_fd, tuple(sources))
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                point = fields[4]
                if point.startswith(f"{root}/sys/fs/cgroup"):
                    found.append([point[len(str(root)):], fields[3], fields[5]])
        return found

    result = in_forked_child(mount_and_list)
    return [tuple(item) for item in result]


def test_each_hierarchy_is_bound_read_only_and_the_kernel_calls_used_do_not_matter(tmp_path) -> None:
    fast = _mounts_in_child(tmp_path, None)
    points = [point for point, _, _ in fast]
    assert points == ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory",
                      "/sys/fs/cgroup/pids"], fast
    for point, _, options in fast:
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(",")), (point, options)
    for point, mount_root, _ in fast[1:]:
        name = point.rsplit("/", 1)[1]
        assert mount_root.endswith(f"/sources/{name}/lamina/abc"), (point, mount_root)
    # without open_tree, or without mount_setattr (Linux before 5.12): a bind and a remount
    assert _mounts_in_child(tmp_path, "open_tree") == fast
    assert _mounts_in_child(tmp_path, "mount_setattr") == fast
