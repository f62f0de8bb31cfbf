"""``--userns-remap`` end to end: an engine remapped to a user the test creates (with its own
ranges in /etc/subuid and /etc/subgid, removed afterwards), real overlay mounts with idmapped
lower layers, containers in user namespaces."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import secrets
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from lamina import errdefs
from lamina import idmap
from lamina.config import EngineConfig
from lamina.services.compose import build_services

from .conftest import FIXTURE, Engine
from .test_execs import run_exec

pytestmark = pytest.mark.privileged

RANGE = 65536


def _ranges_of(name: str) -> list[str]:
    lines = []
    for path in (idmap.SUBUID_FILE, idmap.SUBGID_FILE):
        try:
            with open(path, encoding="utf-8") as handle:
                lines += [line for line in handle if line.startswith(name + ":")]
        except FileNotFoundError:
            pass
    return lines


def _remove_user(name: str) -> None:
    """The user, its group and its ranges gone (userdel keeps the ranges on some systems)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        for line in _ranges_of(name):
            _, start, count = line.strip().split(":")
            end = int(start) + int(count) - 1
            subprocess.run(["usermod", "--del-subuids", f"{start}-{end}", "--del-subgids", f"{start}-{end}", name],
                           capture_output=True, check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)
    assert _ranges_of(name) == [], f"ranges of {name} left in /etc/subuid or /etc/subgid"


@pytest.fixture(scope="module")
def remap_user() -> Iterator[tuple[str, int]]:
    """(name, first host id) of a system user with a 65536-id range in both files."""
    if os.geteuid() != 0:
        pytest.skip("needs root (users, mounts, namespaces)")
    name = "lmtr" + secrets.token_hex(4)
    start = max(idmap.next_free_start(idmap.SUBUID_FILE, RANGE), idmap.next_free_start(idmap.SUBGID_FILE, RANGE))
    end = start + RANGE - 1
    try:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
                       check=True, capture_output=True)
        subprocess.run(["usermod", "--add-subuids", f"{start}-{end}", "--add-subgids", f"{start}-{end}", name],
                       check=True, capture_output=True)
        yield name, start
    finally:
        _remove_user(name)


def _engine(root: str, remap: str = "") -> Engine:
    config = EngineConfig(data_root=os.path.join(root, "data"), exec_root=os.path.join(root, "run"),
                          userns_remap=remap)
    return Engine(root, config, build_services(config))


@pytest.fixture
def remapped(tmp_path, remap_user) -> Iterator[tuple[Engine, int]]:
    """(a remapped engine with busybox loaded, the host uid of its containers' root)."""
    instance = _engine(str(tmp_path), remap_user[0])
    try:
        with open(FIXTURE, "rb") as handle:
            instance.images.load(handle, progress=lambda message: None)
        yield instance, remap_user[1]
    finally:
        instance.cleanup()


def _run(engine: Engine, script: str, **host: Any) -> tuple[int, str, str]:
    container_id = engine.run("sh", "-c", script, HostConfig=host)
    code = engine.wait(container_id)
    return code, engine.output(container_id), container_id


def _layer_fingerprints(engine: Engine) -> dict[str, tuple[str, str]]:
    """chainID -> (cache-id, sha256 of every entry's path, mode, owner and content) of every
    image layer on disk."""
    layers = engine.images.layers
    out = {}
    for layer in layers.layers():
        root = layers.driver.diff_path(layer.cache_id)
        digest = hashlib.sha256()
        for directory, names, files in sorted(os.walk(root)):
            names.sort()
            for name in sorted(names + files):
                path = os.path.join(directory, name)
                info = os.lstat(path)
                digest.update(f"{os.path.relpath(path, root)} {info.st_mode} {info.st_uid} {info.st_gid}\n".encode())
                if stat.S_ISREG(info.st_mode):
                    with open(path, "rb") as handle:
                        digest.update(hashlib.sha256(handle.read()).digest())
        out[str(layer.chain_id)] = (layer.cache_id, digest.hexdigest())
    return out


def test_inside_a_remapped_container_uid_map_shows_the_range(remapped) -> None:
    engine, start = remapped
    code, out, _ = _run(engine, "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c '%u %g' / /etc/passwd")
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split() for line in lines[:2]] == [["0", str(start), str(RANGE)]] * 2
    # the image's files, owned by 0 on disk, are root's through the idmapped layers
    assert lines[2:] == ["0", "0 0", "0 0"]


def test_container_root_cannot_read_a_host_root_file_through_a_bind_mount(remapped, tmp_path) -> None:
    engine, _ = remapped
    shared = tmp_path / "shared"
    shared.mkdir()
    secret = shared / "secret"
    secret.write_text("host secret\n")
    os.chmod(secret, 0o600)
    code, out, _ = _run(engine, "cat /mnt/secret; echo status=$?; echo x > /mnt/new; echo write=$?",
                        Binds=[f"{shared}:/mnt"])
    assert code == 0
    assert "host secret" not in out
    assert "status=1" in out and "write=1" in out, out
    assert sorted(os.listdir(shared)) == ["secret"]


def test_files_created_in_a_volume_belong_to_the_remapped_ids(remapped) -> None:
    engine, start = remapped
    code, out, _ = _run(engine, "mkdir /data/made && echo hi > /data/made/file && chown 7:8 /data/made/file "
                                "&& stat -c '%u %g' /data/made/file", Binds=["vol:/data"])
    assert (code, out) == (0, "7 8\n")
    data = engine.volumes.inspect("vol")["Mountpoint"]
    made = os.lstat(os.path.join(data, "made"))
    assert (made.st_uid, made.st_gid) == (start, start)
    file = os.lstat(os.path.join(data, "made", "file"))
    assert (file.st_uid, file.st_gid) == (start + 7, start + 8)


def test_layers_on_disk_are_untouched_by_the_remap(tmp_path, remap_user) -> None:
    plain = _engine(str(tmp_path))
    try:
        with open(FIXTURE, "rb") as handle:
            plain.images.load(handle, progress=lambda message: None)
        before = _layer_fingerprints(plain)
        code, out, _ = _run(plain, "true")
        assert code == 0, out
        entries_before = set(os.listdir(plain.config.data_root))
        overlay_before = set(os.listdir(os.path.join(plain.config.data_root, "overlay2")))
    finally:
        plain.cleanup()
    remapped = _engine(str(tmp_path), remap_user[0])
    try:
        code, out, container_id = _run(remapped, "echo changed >> /etc/passwd; rm /bin/true; cat /proc/self/uid_map")
        assert code == 0, out
        assert str(remap_user[1]) in out
        assert _layer_fingerprints(remapped) == before
        # no per-remap copy of the layers (Docker's <data-root>/<uid>.<gid>/): only the
        # container's own init and read-write layers are new
        assert set(os.listdir(remapped.config.data_root)) == entries_before
        layer = remapped.mounts.get(container_id)
        overlay_after = set(os.listdir(os.path.join(remapped.config.data_root, "overlay2")))
        assert overlay_after - overlay_before == {layer.mount_id, layer.init_id}
    finally:
        remapped.cleanup()


def _tar_owners(data: bytes) -> dict[str, tuple[int, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name.lstrip("./").rstrip("/"): (member.uid, member.gid) for member in archive.getmembers()}


def test_commit_export_and_cp_give_container_relative_ids(remapped) -> None:
    engine, start = remapped
    code, out, container_id = _run(engine, "mkdir /made && echo x > /made/file && chown 5:6 /made/file")
    assert code == 0, out
    upper = engine.mounts.driver.diff_path(engine.mounts.get(container_id).mount_id)
    on_host = os.lstat(os.path.join(upper, "made", "file"))
    assert (on_host.st_uid, on_host.st_gid) == (start + 5, start + 6)

    exported = _tar_owners(b"".join(engine.container_files.export(container_id)))
    assert exported["made"] == (0, 0) and exported["made/file"] == (5, 6) and exported["bin/busybox"] == (0, 0)

    _, chunks = engine.container_files.archive_get(container_id, "/made")
    assert _tar_owners(b"".join(chunks)) == {"made": (0, 0), "made/file": (5, 6)}

    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w") as archive:
        info = tarfile.TarInfo("copied")
        info.size, info.uid, info.gid = 2, 9, 10
        archive.addfile(info, io.BytesIO(b"c\n"))
    engine.container_files.archive_put(container_id, "/", io.BytesIO(source.getvalue()), copy_uid_gid=True)
    copied = os.lstat(os.path.join(upper, "copied"))
    assert (copied.st_uid, copied.st_gid) == (start + 9, start + 10)

    image_id = engine.container_files.commit(container_id, repository="committed")["Id"]
    top = engine.images.images.get_config(image_id).chain_id()
    committed = engine.images.layers.get(str(top))
    diff = engine.images.layers.driver.diff_path(committed.cache_id)
    owners = {name: (os.lstat(os.path.join(diff, name)).st_uid, os.lstat(os.path.join(diff, name)).st_gid)
              for name in ("made", "made/file", "copied")}
    assert owners == {"made": (0, 0), "made/file": (5, 6), "copied": (9, 10)}


def test_exec_joins_the_container_s_user_namespace(remapped) -> None:
    engine, start = remapped
    container_id = engine.run("sleep", "60")
    engine.wait_for(lambda: engine.state(container_id)["Running"], message="the container to run")
    streams, info = run_exec(engine, container_id, "sh", "-c", "cat /proc/self/uid_map; id -u")
    assert info["ExitCode"] == 0, streams
    assert streams[1].decode().split() == ["0", str(start), str(RANGE), "0"], streams
    engine.containers.kill(container_id)


def test_userns_host_opts_out(remapped) -> None:
    engine, start = remapped
    code, out, container_id = _run(engine, "cat /proc/self/uid_map; touch /made", UsernsMode="host")
    assert code == 0
    assert out.split() == ["0", "0", "4294967295"]
    upper = engine.mounts.driver.diff_path(engine.mounts.get(container_id).mount_id)
    assert os.lstat(os.path.join(upper, "made")).st_uid == 0


@pytest.mark.parametrize("host, message", [
    ({"Privileged": True}, "privileged mode is incompatible with user namespaces.  You must run the container "
                           "in the host namespace when running privileged mode"),
    ({"NetworkMode": "host"}, "cannot share the host's network namespace when user namespaces are enabled"),
    ({"PidMode": "host"}, "cannot share the host PID namespace when user namespaces are enabled"),
], ids=["privileged", "host network", "host pid"])
def test_what_needs_the_host_user_namespace_is_refused_under_remap(remapped, host, message) -> None:
    """(crun and runc run remapped containers: tests/services/test_userns_oci.py)"""
    engine, _ = remapped
    with pytest.raises(errdefs.InvalidArgument) as caught:
        engine.create("true", HostConfig=host)
    assert message in str(caught.value)
    assert engine.container_ids() == []
    engine.create("true", HostConfig={**host, "UsernsMode": "host"})  # accepted, as Docker


def test_userns_host_without_remap_is_accepted_and_other_modes_are_400(engine) -> None:
    container_id = engine.run("cat", "/proc/self/uid_map", HostConfig={"UsernsMode": "host"})
    assert engine.wait(container_id) == 0
    assert engine.output(container_id).split() == ["0", "0", "4294967295"]
    with pytest.raises(errdefs.InvalidArgument, match="UsernsMode"):
        engine.create("true", HostConfig={"UsernsMode": "private"})


def test_a_user_without_a_range_is_refused_at_engine_start_naming_the_file(tmp_path) -> None:
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"), userns_remap="nobody")
    with pytest.raises(errdefs.InvalidArgument) as caught:
        build_services(config)
    assert "/etc/subuid" in str(caught.value) and "'nobody'" in str(caught.value)
    with pytest.raises(errdefs.InvalidArgument, match="no such user"):
        build_services(EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"),
                                    userns_remap="no-such-user-here"))


def test_an_image_with_ids_beyond_the_range_is_refused_at_create(remapped) -> None:
    engine, _ = remapped
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w") as archive:
        for name, uid in (("ok", 0), ("far", 70000)):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            archive.addfile(info, io.BytesIO(b""))
    engine.images.import_image(io.BytesIO(source.getvalue()), repository="far", tag="latest",
                               progress=lambda message: None)
    with pytest.raises(errdefs.InvalidArgument) as caught:
        engine.create("true", Image="far:latest")
    text = str(caught.value)
    assert "/far" in text and "70000" in text and f"{RANGE} uids" in text, text
    assert engine.container_ids() == []
    assert engine.mounts.container_ids() == []
    # --userns=host needs no mapping of the image's ids
    engine.create("true", Image="far:latest", HostConfig={"UsernsMode": "host"})


def test_info_names_userns_and_idmapped_mounts(remapped) -> None:
    engine, _ = remapped
    options = engine.system.info()["SecurityOptions"]
    assert any(option.startswith("name=userns,") and "idmap=mounts" in option for option in options), options


def test_default_creates_the_dockremap_user_and_its_ranges_once() -> None:
    try:
        pwd.getpwnam(idmap.DEFAULT_REMAP_USER)
        pytest.skip("this host has a dockremap user of its own: left alone")
    except KeyError:
        pass
    try:
        user, group, mapping = idmap.resolve_remap("default")
        assert (user, group) == ("dockremap", "dockremap")
        assert len(mapping.uid_maps) == 1 and mapping.uid_maps[0].size == RANGE
        assert mapping.uid_maps[0].host_id >= 100000
        assert len(_ranges_of("dockremap")) == 2
        assert idmap.resolve_remap("default")[2] == mapping  # made once
        assert len(_ranges_of("dockremap")) == 2
    finally:
        _remove_user(idmap.DEFAULT_REMAP_USER)


@pytest.mark.parametrize("host, script, expected", [
    ({"IpcMode": "host"}, "ls -d /dev/shm >/dev/null && echo ok", "ok"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "cat /proc/sys/net/ipv4/ip_forward", "1"),
    ({"Sysctls": {"kernel.shmmax": "1000000"}}, "cat /proc/sys/kernel/shmmax", "1000000"),
    ({"OomScoreAdj": 100}, "cat /proc/self/oom_score_adj", "100"),
    ({"NetworkMode": "none"}, "ls /sys/class/net", "lo"),
    ({"Init": True}, "tr '\\0' ' ' < /proc/1/cmdline; echo", "/sbin/docker-init -- sh -c"),
    ({"ReadonlyRootfs": True}, "touch /x 2>/dev/null || echo read-only", "read-only"),
    ({"Tmpfs": {"/scratch": ""}}, "touch /scratch/x && stat -c '%u' /scratch/x", "0"),
], ids=["host ipc", "a net sysctl of the bridge's namespace", "an ipc sysctl", "oom_score_adj", "no network",
        "init", "read-only root", "tmpfs"])
def test_options_work_in_a_remapped_container(remapped, host, script, expected) -> None:
    engine, start = remapped
    if host.get("Init") and not os.path.exists("/usr/bin/tini-static"):
        pytest.skip("no tini-static")
    code, out, _ = _run(engine, script + "; head -1 /proc/self/uid_map", **host)
    assert code == 0, out
    first, mapping = out.rstrip("\n").rsplit("\n", 1)
    assert first.strip() == expected if not host.get("Init") else first.startswith(expected), first
    assert mapping.split() == ["0", str(start), str(RANGE)]


@pytest.mark.parametrize("mode", ["NetworkMode", "PidMode", "IpcMode", "UTSMode"])
def test_joining_another_container_s_namespaces_is_refused_under_remap(remapped, mode) -> None:
    """Another container's namespaces belong to its own user namespace (one per monitor) or
    the host's: a remapped container refuses them; with --userns=host it joins a remapped
    donor (the host's root may enter the namespaces of any user namespace)."""
    engine, start = remapped
    donor = engine.run("sh", "-c", "echo from-donor > /dev/shm/marker && echo ready && exec sleep 300",
                       name="donor", HostConfig={"IpcMode": "shareable"})
    engine.wait_for(lambda: "ready" in engine.output(donor), message="the donor")
    with pytest.raises(errdefs.InvalidArgument, match="when user namespaces are enabled"):
        engine.create("true", HostConfig={mode: "container:donor"})
    joiner = engine.run("sh", "-c", "cat /dev/shm/marker; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid",
                        HostConfig={"UsernsMode": "host", mode: "container:donor",
                                    **({"IpcMode": "container:donor"} if mode != "IpcMode" else {})})
    assert engine.wait(joiner) == 0, engine.output(joiner)
    lines = engine.output(joiner).splitlines()
    donor_pid = engine.state(donor)["Pid"]
    assert lines[:2] == ["from-donor", os.readlink(f"/proc/{donor_pid}/ns/ipc")]
    if mode == "PidMode":
        assert lines[2] == os.readlink(f"/proc/{donor_pid}/ns/pid")
    engine.containers.remove(donor, force=True)


def test_shareable_ipc_restart_and_exec_in_a_remapped_container(remapped) -> None:
    """A remapped start runs in the monitor's launch helper: after a restart the container is
    still in a user namespace with the range, its exec joins it, and its shareable /dev/shm
    is writable by its root."""
    engine, start = remapped
    container_id = engine.run("sh", "-c", "touch /dev/shm/mine /made && chown 7:8 /made && exec sleep 300",
                              HostConfig={"IpcMode": "shareable"})
    engine.wait_for(lambda: engine.state(container_id)["Running"], message="the container to run")
    for _ in range(2):
        streams, info = run_exec(engine, container_id, "sh", "-c", "head -1 /proc/self/uid_map; id -u; "
                                 "ls /dev/shm; cat /proc/1/status | grep PPid")
        assert info["ExitCode"] == 0, streams
        assert streams[1].decode().split() == ["0", str(start), str(RANGE), "0", "mine", "PPid:", "0"], streams
        pid = engine.state(container_id)["Pid"]
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            parent = next(int(line.split()[1]) for line in handle if line.startswith("PPid:"))
        # PID 1 was reparented to the monitor (the launch helper and the intermediate are gone)
        assert parent == engine.run_dir(container_id).monitor_pid()
        engine.containers.restart(container_id, timeout=0)
        engine.wait_for(lambda: engine.state(container_id)["Running"] and engine.state(container_id)["Pid"] != pid,
                        message="the restart")
    # a running remapped container is paused for its commit, and its files get container ids
    image_id = engine.container_files.commit(container_id, repository="running")["Id"]
    top = engine.images.layers.get(str(engine.images.images.get_config(image_id).chain_id()))
    made = os.lstat(os.path.join(engine.images.layers.driver.diff_path(top.cache_id), "made"))
    assert (made.st_uid, made.st_gid) == (7, 8)
    assert engine.state(container_id)["Running"] and not engine.state(container_id)["Paused"]
    engine.containers.remove(container_id, force=True)


def test_cp_of_the_mounted_etc_files_of_a_remapped_container(remapped) -> None:
    engine, start = remapped
    container_id = engine.run("sh", "-c", "while ! grep -q copied.test /etc/hosts; do sleep 0.05; done; "
                              "stat -c '%u %g' /etc/hosts")
    engine.wait_for(lambda: engine.state(container_id)["Running"] and engine.state(container_id).get("Pid"),
                    message="the start")
    stat_result, chunks = engine.container_files.archive_get(container_id, "/etc/hosts")
    assert stat_result["name"] == "hosts"
    assert _tar_owners(b"".join(chunks)) == {"hosts": (0, 0)}  # the mapping's root: the container's 0
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w") as archive:
        info = tarfile.TarInfo("hosts")
        info.size = 21
        archive.addfile(info, io.BytesIO(b"10.9.8.7\tcopied.test\n"))
    engine.container_files.archive_put(container_id, "/etc", io.BytesIO(source.getvalue()))
    assert engine.wait(container_id) == 0
    assert engine.output(container_id) == "0 0\n"
    hosts = os.path.join(engine.config.data_root, "containers", container_id, "hosts")
    assert (os.lstat(hosts).st_uid, os.lstat(hosts).st_gid) == (start, start)


def test_remap_is_refused_in_rootless_mode(tmp_path) -> None:
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"),
                          userns_remap="default", rootless_uid=1000)
    with pytest.raises(errdefs.InvalidArgument, match="not supported in rootless mode"):
        build_services(config)  # at the engine's start
