"""``--userns-remap`` with crun and runc (``HostConfig.Runtime``): the OCI runtime creates the
user namespace from the spec's mappings and sets the container up as the namespace's root,
on lamina's overlay with idmapped lower layers, bound into a bundle that root can reach.

The engine's root is a directory of its own under /tmp opened to search (``o+x``): every
directory above the exec root must be, as Docker requires of its data root's parents (a
pytest ``tmp_path`` sits under a 0700 directory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from lamina import errdefs, fsutil
from lamina import mount as lmount

from .conftest import FIXTURE, Engine
from .test_execs import run_exec
from .test_userns import RANGE, _engine, _run, remap_user  # noqa: F401 - remap_user is a fixture

pytestmark = pytest.mark.privileged


@pytest.fixture(params=["crun", "runc"])
def runtime(request) -> str:
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    return str(request.param)


@pytest.fixture
def remapped(remap_user) -> Iterator[tuple[Engine, int]]:  # noqa: F811 - the fixture above
    """(a remapped engine with busybox loaded, the host uid of its containers' root)."""
    root = tempfile.mkdtemp(prefix="lamina-userns-oci-", dir="/tmp")
    os.chmod(root, 0o711)
    instance = _engine(root, remap_user[0])
    try:
        with open(FIXTURE, "rb") as handle:
            instance.images.load(handle, progress=lambda message: None)
        yield instance, remap_user[1]
    finally:
        instance.cleanup()
        fsutil.remove_tree(root)


def _bundle(engine: Engine, container_id: str) -> str:
    return os.path.join(engine.config.exec_root, "oci", container_id)


def _mounts_under(path: str) -> list[str]:
    return [target for target in lmount.mounted_targets() if target.startswith(path.rstrip("/") + "/")]


def test_the_container_runs_in_the_user_namespace_of_the_mapping(remapped, runtime) -> None:
    engine, start = remapped
    code, out, _ = _run(engine, "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                                "stat -c '%u %g' / /etc/passwd /etc/hosts; ls /sys/class/net; "
                                "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; touch /made; echo x > /etc/hosts",
                        Runtime=runtime)
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split() for line in lines[:2]] == [["0", str(start), str(RANGE)]] * 2
    # the image's files (owned by 0 on disk) through the idmapped layers, and the /etc files
    # lamina wrote, given to the mapping's root: all root's inside
    assert lines[2:6] == ["0", "0 0", "0 0", "0 0"]
    # a sysfs of the container's own network namespace (mounted by lamina from the host's
    # side), and its net.* sysctls written there
    assert lines[6:] == ["eth0", "lo", "0"], out


def test_a_host_root_file_is_out_of_reach_and_volume_files_get_the_remapped_ids(remapped, runtime,
                                                                                  tmp_path) -> None:
    engine, start = remapped
    shared = tmp_path / "shared"
    shared.mkdir()
    secret = shared / "secret"
    secret.write_text("host secret\n")
    os.chmod(secret, 0o600)
    code, out, _ = _run(engine, "cat /mnt/secret; echo status=$?; echo x > /mnt/new; echo write=$?; "
                                "mkdir /data/made && echo hi > /data/made/file && chown 7:8 /data/made/file && "
                                "stat -c '%u %g' /data/made/file",
                        Runtime=runtime, Binds=[f"{shared}:/mnt", "vol:/data"])
    assert code == 0, out
    assert "host secret" not in out
    assert "status=1" in out and "write=1" in out and "\n7 8\n" in out, out
    assert sorted(os.listdir(shared)) == ["secret"]
    data = engine.volumes.inspect("vol")["Mountpoint"]
    made = os.lstat(os.path.join(data, "made"))
    assert (made.st_uid, made.st_gid) == (start, start)
    file = os.lstat(os.path.join(data, "made", "file"))
    assert (file.st_uid, file.st_gid) == (start + 7, start + 8)


def test_exec_in_a_container_on_a_network_of_lamina(remapped, runtime) -> None:
    """The sandbox lamina made belongs to the host's user namespace: crun joins it before the
    container's user namespace; runc before 1.3 would join the user namespace first and
    fail, so it runs in the sandbox instead (oci_userns.enter_network_namespace_around)."""
    engine, start = remapped
    container_id = engine.run("sleep", "300", HostConfig={"Runtime": runtime})
    engine.wait_for(lambda: engine.state(container_id)["Running"], message="the container to run")
    pid = engine.state(container_id)["Pid"]
    sandbox = engine.container_views.inspect(container_id)["NetworkSettings"]["SandboxKey"]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(sandbox).st_ino
    streams, info = run_exec(engine, container_id, "sh", "-c", "head -1 /proc/self/uid_map; ls /sys/class/net; "
                             "readlink /proc/self/ns/net; readlink /proc/1/ns/net")
    assert info["ExitCode"] == 0, streams
    words = streams[1].decode().split()
    assert words[:5] == ["0", str(start), str(RANGE), "eth0", "lo"], streams
    assert words[5] == words[6] == os.readlink(f"/proc/{pid}/ns/net"), streams
    engine.containers.remove(container_id, force=True)
    assert not os.path.exists(_bundle(engine, container_id))


def test_exec_pause_stats_commit_and_stop(remapped, runtime) -> None:
    engine, start = remapped
    container_id = engine.run("sh", "-c", "mkdir /made && chown 5:6 /made && exec sleep 300",
                              HostConfig={"Runtime": runtime, "NetworkMode": "none"})
    engine.wait_for(lambda: engine.state(container_id)["Running"], message="the container to run")
    bundle = _bundle(engine, container_id)
    assert os.stat(bundle).st_mode & 0o777 == 0o710 and os.stat(bundle).st_gid == start
    assert _mounts_under(bundle) == [os.path.join(bundle, "rootfs")]

    streams, info = run_exec(engine, container_id, "sh", "-c", "cat /proc/self/uid_map; id -u; stat -c '%u %g' /made")
    assert info["ExitCode"] == 0, streams
    assert streams[1].decode().split() == ["0", str(start), str(RANGE), "0", "5", "6"], streams

    engine.containers.pause(container_id)
    assert engine.state(container_id)["Paused"]
    engine.containers.unpause(container_id)
    stats = next(engine.container_views.stats(container_id, stream=False))
    assert stats["memory_stats"]["usage"] > 0 and stats["pids_stats"]["current"] >= 1, stats
    processes = engine.container_views.top(container_id)["Processes"]
    assert any("sleep 300" in " ".join(row) for row in processes), processes

    # a running container is paused for its commit; its files get container ids
    image_id = engine.container_files.commit(container_id, repository="committed")["Id"]
    top = engine.images.layers.get(str(engine.images.images.get_config(image_id).chain_id()))
    made = os.lstat(os.path.join(engine.images.layers.driver.diff_path(top.cache_id), "made"))
    assert (made.st_uid, made.st_gid) == (5, 6)

    engine.containers.stop(container_id, timeout=1)
    assert engine.wait(container_id) == 137
    assert not os.path.exists(bundle) and _mounts_under(bundle) == []
    from lamina.runtime.cgroups import CgroupManager

    assert not CgroupManager(f"lamina/{container_id}").exists()


def test_rm_restart_policy_and_logs(remapped, runtime) -> None:
    engine, start = remapped
    removed = engine.create("sh", "-c", "head -1 /proc/self/uid_map", HostConfig={"Runtime": runtime, "AutoRemove": True})
    assert engine.start_and_wait(removed) == 0
    # gone for every reader when the waiters wake; its monitor deletes its directories after
    assert removed not in engine.services.containers.store.ids()
    engine.wait_for(lambda: removed not in engine.container_ids(), message="the record's directory to be deleted")
    # the runtime's state (its bundle, the cgroups) goes last: nothing runs in them any more
    engine.wait_for(lambda: not os.path.exists(_bundle(engine, removed)), message="the bundle to be deleted")
    assert _mounts_under(os.path.join(engine.config.exec_root, "oci")) == []

    restarted = engine.run("sh", "-c", "head -1 /proc/self/uid_map; exit 3",
                           HostConfig={"Runtime": runtime, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    engine.wait_for(lambda: not engine.state(restarted)["Running"]
                    and engine.container_views.inspect(restarted)["RestartCount"] == 2, timeout=20,
                    message="two restarts")
    assert engine.state(restarted)["ExitCode"] == 3
    assert engine.output(restarted).split() == ["0", str(start), str(RANGE)] * 3
    assert _mounts_under(os.path.join(engine.config.exec_root, "oci")) == []


def test_a_healthcheck_runs_in_the_user_namespace(remapped, runtime) -> None:
    engine, start = remapped
    container_id = engine.run("sleep", "300", HostConfig={"Runtime": runtime},
                              Healthcheck={"Test": ["CMD-SHELL", f"grep -q ' {start} ' /proc/self/uid_map"],
                                           "Interval": 100_000_000, "Timeout": 5_000_000_000})
    engine.wait_for(lambda: (engine.state(container_id).get("Health") or {}).get("Status") == "healthy",
                    timeout=20, message="a healthy probe")
    engine.containers.remove(container_id, force=True)
    assert not os.path.exists(_bundle(engine, container_id))


def test_userns_host_runs_as_without_remap(remapped, runtime) -> None:
    engine, _ = remapped
    code, out, container_id = _run(engine, "cat /proc/self/uid_map; touch /made", UsernsMode="host", Runtime=runtime)
    assert code == 0, out
    assert out.split() == ["0", "0", "4294967295"]
    upper = engine.mounts.driver.diff_path(engine.mounts.get(container_id).mount_id)
    assert os.lstat(os.path.join(upper, "made")).st_uid == 0


@pytest.mark.parametrize("host, script, expected", [
    ({"ReadonlyRootfs": True}, "touch /x 2>/dev/null || echo read-only", "read-only"),
    ({"Tmpfs": {"/scratch": ""}}, "touch /scratch/x && stat -c '%u' /scratch/x", "0"),
    ({"NetworkMode": "none"}, "ls /sys/class/net", "lo"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "cat /proc/sys/net/ipv4/ip_forward", "1"),
    ({"Sysctls": {"kernel.shmmax": "1000000"}}, "cat /proc/sys/kernel/shmmax", "1000000"),
    ({"IpcMode": "shareable"}, "touch /dev/shm/mine && stat -c '%u' /dev/shm/mine", "0"),
    ({"IpcMode": "host"}, "readlink /proc/self/ns/ipc; ls -d /dev/shm/", os.readlink("/proc/self/ns/ipc") + "\n/dev/shm/"),
    ({"OomScoreAdj": 100}, "cat /proc/self/oom_score_adj", "100"),
    ({"User": "nobody"}, "id -u", "65534"),
    ({"Binds": ["/dev/shm:/hostshm:ro"]}, "touch /hostshm/x 2>/dev/null || echo read-only", "read-only"),
    ({"Memory": 64 * 1024 * 1024}, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes", "67108864"),
], ids=["read-only root", "tmpfs", "no network", "a net sysctl of the bridge's namespace", "an ipc sysctl",
        "shareable ipc", "host ipc", "oom_score_adj", "a user of the image", "a read-only bind of a nosuid nodev mount", "a memory limit"])
def test_options_work_in_a_remapped_oci_container(remapped, runtime, host, script, expected) -> None:
    engine, start = remapped
    if "Memory" in host and not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy")
    host = dict(host)  # the case is shared by both runtimes
    config = {"User": host.pop("User")} if "User" in host else {}
    container_id = engine.run("sh", "-c", script + "; head -1 /proc/self/uid_map",
                              HostConfig={"Runtime": runtime, **host}, **config)
    code, out = engine.wait(container_id), engine.output(container_id)
    assert code == 0, out
    first, mapping = out.rstrip("\n").rsplit("\n", 1)
    assert first.strip() == expected, out
    assert mapping.split() == ["0", str(start), str(RANGE)]


def test_an_exec_root_out_of_the_remapped_root_s_reach_is_a_clear_error(tmp_path, remap_user, runtime) -> None:  # noqa: F811
    engine = _engine(str(tmp_path), remap_user[0])  # under pytest's 0700 directories
    try:
        with open(FIXTURE, "rb") as handle:
            engine.images.load(handle, progress=lambda message: None)
        container_id = engine.create("true", HostConfig={"Runtime": runtime})
        with pytest.raises(errdefs.FailedPrecondition, match="restricts access to the remapped root"):
            engine.containers.start(container_id)
        assert not os.path.exists(_bundle(engine, container_id))
        assert _mounts_under(str(tmp_path)) == []
    finally:
        engine.cleanup()

