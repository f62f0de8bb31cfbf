"""The cgroup manager's layout detection, file values and stats parsing, on fake cgroup trees
(plain directories) — the v2 paths cannot run on this v1 machine's kernel, so their file
formats are checked here; the kernel behaviour is in test_cgroups_kernel.py."""

from __future__ import annotations

import os

import pytest

from lamina import errdefs
from lamina.runtime.api import Resources
from lamina.runtime.cgroups import (
    CgroupLayout,
    CgroupManager,
    detect_layout,
)
from lamina.runtime.cgroup_limits import shares_to_weight

HYBRID_MOUNTINFO = """\
25 19 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
"""


def test_a_hybrid_layout_uses_the_v1_hierarchies(tmp_path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(HYBRID_MOUNTINFO)
    layout = detect_layout(str(mountinfo))
    assert layout.version == 1
    assert layout.mount_point("cpu") == layout.mount_point("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.mount_point("memory") == "/sys/fs/cgroup/memory"
    assert layout.mount_point("freezer") is None
    manager = CgroupManager("lamina/abc", layout)
    # co-mounted controllers share one directory; the named systemd hierarchy gets one too
    assert manager.directories() == ["/sys/fs/cgroup/cpu,cpuacct/lamina/abc", "/sys/fs/cgroup/memory/lamina/abc",
                                     "/sys/fs/cgroup/systemd/lamina/abc", "/sys/fs/cgroup/pids/lamina/abc"]


def test_a_unified_layout_reads_the_available_controllers(tmp_path) -> None:
    unified = tmp_path / "cgroup"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"35 24 0:30 / {unified} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    layout = detect_layout(str(mountinfo))
    assert layout.version == 2
    assert layout.unified == str(unified)
    assert set(layout.controllers) == {"cpu", "cpuset", "memory", "pids", "io"}


def test_no_cgroup_filesystem_is_a_clear_error(tmp_path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    with pytest.raises(errdefs.FailedPrecondition, match="no cgroup filesystem"):
        detect_layout(str(mountinfo))


@pytest.mark.parametrize("path", ["", "/", "lamina/../x", "a//b"], ids=["empty", "root", "dot-dot", "empty part"])
def test_bad_cgroup_paths_are_refused(path: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        CgroupManager(path, CgroupLayout(2, (("", "/sys/fs/cgroup"),)))


def test_cpu_shares_to_weight_matches_docker() -> None:
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(0) == 0


def _files(directory, **contents: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in contents.items():
        (directory / name.replace("__", ".")).write_text(value)


def _v2(tmp_path) -> tuple[CgroupManager, object]:
    root = tmp_path / "unified"
    leaf = root / "lamina" / "abc"
    _files(leaf, memory__max="max\n", memory__swap__max="max\n", cpu__max="max 100000\n", cpu__weight="100\n",
           cpuset__cpus="\n", pids__max="max\n")
    layout = CgroupLayout(2, tuple([("", str(root))] + [(name, str(root)) for name in ("cpu", "cpuset", "memory",
                                                                                        "pids", "io")]))
    return CgroupManager("lamina/abc", layout), leaf


def test_v2_limits_are_written_in_v2_formats(tmp_path) -> None:
    manager, leaf = _v2(tmp_path)
    manager.apply(Resources(memory=256 << 20, memory_swap=512 << 20, cpu_quota=150000, cpu_period=100000,
                            cpu_shares=1024, cpuset_cpus="0-1", pids_limit=10))
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (leaf / "memory.swap.max").read_text() == str(256 << 20)  # swap only: total minus memory
    assert (leaf / "cpu.max").read_text() == "150000 100000"
    assert (leaf / "cpu.weight").read_text() == "39"
    assert (leaf / "cpuset.cpus").read_text() == "0-1"
    assert (leaf / "pids.max").read_text() == "10"


def test_v2_unlimited_values(tmp_path) -> None:
    manager, leaf = _v2(tmp_path)
    manager.apply(Resources(memory=0, memory_swap=-1, pids_limit=0))
    assert (leaf / "memory.max").read_text() == "max"
    assert (leaf / "memory.swap.max").read_text() == "max"
    assert (leaf / "pids.max").read_text() == "max"


def test_v2_stats_and_oom(tmp_path) -> None:
    manager, leaf = _v2(tmp_path)
    _files(leaf, cpu__stat="usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\n"
                           "throttled_usec 20\n",
           memory__current="4096\n", memory__max="1048576\n", memory__stat="anon 1024\nfile 2048\n",
           io__stat="8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
           pids__current="3\n", memory__events="low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n")
    stats = manager.stats()
    assert stats["cpu_stats"]["cpu_usage"] == {"total_usage": 1_500_000, "usage_in_kernelmode": 500_000,
                                               "usage_in_usermode": 1_000_000}
    assert stats["cpu_stats"]["throttling_data"] == {"periods": 3, "throttled_periods": 1, "throttled_time": 20_000}
    assert stats["memory_stats"] == {"usage": 4096, "limit": 1048576, "stats": {"anon": 1024, "file": 2048}}
    assert stats["pids_stats"] == {"current": 3}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 100}, {"major": 8, "minor": 0, "op": "write", "value": 200}]
    assert manager.oom_killed() and manager.oom_kill_count() == 1


def test_v1_limits_and_a_missing_file_names_it(tmp_path) -> None:
    hierarchies = {name: tmp_path / name for name in ("cpu", "memory", "pids", "cpuset")}
    leaves = {name: path / "lamina" / "abc" for name, path in hierarchies.items()}
    _files(leaves["cpu"], cpu__cfs_quota_us="-1\n", cpu__cfs_period_us="100000\n", cpu__shares="1024\n")
    _files(leaves["memory"], memory__limit_in_bytes="9223372036854771712\n")
    _files(leaves["pids"], pids__max="100\n")
    _files(leaves["cpuset"], cpuset__cpus="0-1\n")
    layout = CgroupLayout(1, tuple((name, str(path)) for name, path in sorted(hierarchies.items())))
    manager = CgroupManager("lamina/abc", layout)
    manager.apply(Resources(memory=64 << 20, cpu_quota=50000, cpu_period=100000, cpu_shares=512, pids_limit=-1))
    assert (leaves["memory"] / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (leaves["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (leaves["cpu"] / "cpu.shares").read_text() == "512"
    assert (leaves["pids"] / "pids.max").read_text() == "max"
    # swap accounting is off (no memsw file): a clear error naming the file
    with pytest.raises(errdefs.FailedPrecondition, match="memory.memsw.limit_in_bytes"):
        manager.apply(Resources(memory=64 << 20, memory_swap=128 << 20))
    # no freezer hierarchy at all
    with pytest.raises(errdefs.FailedPrecondition, match="freezer"):
        manager.freeze()


def test_invalid_combinations_are_refused_before_writing(tmp_path) -> None:
    manager, leaf = _v2(tmp_path)
    with pytest.raises(errdefs.InvalidArgument, match="Minimum memoryswap limit"):
        manager.apply(Resources(memory=512 << 20, memory_swap=256 << 20))
    with pytest.raises(errdefs.InvalidArgument, match="less than 1ms"):
        manager.apply(Resources(cpu_quota=10))
    assert (leaf / "memory.max").read_text() == "max\n"


def test_writes_the_kernel_refuses_name_the_file(tmp_path) -> None:
    manager, leaf = _v2(tmp_path)
    os.unlink(leaf / "pids.max")
    with pytest.raises(errdefs.FailedPrecondition, match=r"pids\.max"):
        manager.apply(Resources(pids_limit=5))
