"""Volumes in real containers (busybox from Docker's archive, the native runtime): sharing,
read-only mounts, copy-up, diff/commit, lifecycle with rm -v and --rm, --volumes-from, volumes
with a filesystem, and a symlink in the image that must not send a mount to the host.

One engine per module (loading busybox once); every test removes what it started, and the
teardown kills what is left and unmounts everything under the engine's directory."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.config import EngineConfig
from lamina.services.compose import EngineServices, build_services

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")


class Engine:
    def __init__(self, root: str) -> None:
        self.root = root
        self.config = EngineConfig(data_root=os.path.join(root, "data"), exec_root=os.path.join(root, "run"))
        self.services: EngineServices = build_services(self.config)
        with open(FIXTURE, "rb") as handle:
            self.services.images.load(handle, progress=lambda message: None)
        self.started: list[str] = []

    def __getattr__(self, name: str) -> Any:
        # the engine's services by name (containers, container_views, container_files, ...)
        if name == "services":
            raise AttributeError(name)
        return getattr(self.services, name)

    def create(self, *command: str, image: str = "busybox", **host: Any) -> str:
        body = {"Image": image, "Cmd": list(command), "HostConfig": host}
        container_id = str(self.containers.create(body)["Id"])
        self.started.append(container_id)
        return container_id

    def run(self, *command: str, **host: Any) -> tuple[int, str, str]:
        """Run to the end: (exit code, output, container id)."""
        container_id = self.create(*command, **host)
        self.containers.start(container_id)
        code = int(self.containers.wait(container_id)["StatusCode"])
        return code, self.output(container_id), container_id

    def output(self, container_id: str) -> str:
        return b"".join(payload for _, payload in self.container_streams.logs(container_id)).decode()

    def remove_all(self) -> None:
        for container_id in self.started:
            try:
                self.containers.remove(container_id, force=True, volumes=True)
            except errdefs.LaminaError:
                pass
        self.started.clear()

    def kill_leftovers(self) -> None:
        from lamina.runtime.cgroups import CgroupManager

        runs = os.path.join(self.config.exec_root, "containers")
        for container_id in os.listdir(runs) if os.path.isdir(runs) else []:
            manager = CgroupManager(f"lamina/{container_id}")
            if manager.exists():
                try:
                    manager.thaw()
                    manager.kill_all(signal.SIGKILL)
                    manager.remove(timeout=5)
                except errdefs.LaminaError:
                    pass
        lmount.unmount_all_under(self.root)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    instance = Engine(str(tmp_path_factory.mktemp("engine")))
    try:
        yield instance
    finally:
        instance.remove_all()
        instance.kill_leftovers()
        from lamina.network.run import RunNetwork

        RunNetwork(instance.config.data_root, instance.config.exec_root).remove_bridges()


@pytest.fixture(autouse=True)
def clean_containers(engine: Engine) -> Iterator[None]:
    yield
    engine.remove_all()


def _volume_names(engine: Engine) -> set[str]:
    return {volume["Name"] for volume in engine.volumes.list()["Volumes"]}


def test_two_containers_see_each_others_writes_at_once(engine: Engine) -> None:
    first = engine.create("sh", "-c", "echo from-first > /shared/first; "
                          "for i in $(seq 200); do [ -f /shared/second ] && break; sleep 0.05; done; "
                          "cat /shared/second", Binds=["together:/shared"])
    second = engine.create("sh", "-c", "for i in $(seq 200); do [ -f /shared/first ] && break; sleep 0.05; done; "
                           "cat /shared/first; echo from-second > /shared/second", Binds=["together:/shared"])
    engine.containers.start(first)
    engine.containers.start(second)
    assert engine.containers.wait(first)["StatusCode"] == 0
    assert engine.containers.wait(second)["StatusCode"] == 0
    assert engine.output(first) == "from-second\n"
    assert engine.output(second) == "from-first\n"
    assert sorted(engine.volumes.users("together")) == sorted([first, second])


def test_inspect_lists_docker_shaped_mounts(engine: Engine, tmp_path) -> None:
    container_id = engine.create("true", Binds=["named:/named:ro", f"{tmp_path}:/host", "/anonymous"],
                                 Mounts=[{"Type": "tmpfs", "Target": "/scratch"}], Tmpfs={"/run": "size=1m"})
    mounts = {item["Destination"]: item for item in engine.container_views.inspect(container_id)["Mounts"]}
    assert set(mounts) == {"/named", "/host", "/anonymous", "/scratch"}
    assert mounts["/named"] == {"Type": "volume", "Name": "named",
                                "Source": engine.volumes.inspect("named")["Mountpoint"], "Destination": "/named",
                                "Driver": "local", "Mode": "ro", "RW": False, "Propagation": ""}
    assert mounts["/host"] == {"Type": "bind", "Source": str(tmp_path), "Destination": "/host", "Mode": "",
                               "RW": True, "Propagation": "rprivate"}
    assert mounts["/anonymous"]["Mode"] == "z" and len(mounts["/anonymous"]["Name"]) == 64
    assert mounts["/scratch"]["Type"] == "tmpfs"


def test_read_only_volumes_refuse_writes(engine: Engine) -> None:
    code, output, _ = engine.run("sh", "-c", "touch /data/x 2>&1; echo rc=$?", Binds=["readonly:/data:ro"])
    assert code == 0 and "Read-only file system" in output and "rc=1" in output
    code, output, _ = engine.run("sh", "-c", "touch /data/x && echo ok",
                                 Mounts=[{"Type": "volume", "Source": "readonly", "Target": "/data"}])
    assert code == 0 and output == "ok\n"


def test_read_only_binds_are_read_only_in_submounts_too(engine: Engine, tmp_path) -> None:
    host = tmp_path / "tree"
    (host / "sub").mkdir(parents=True)
    lmount.Mount("tmpfs", "tmpfs", ("size=1m",)).mount(str(host / "sub"))
    try:
        _, output, _ = engine.run("sh", "-c", "touch /data/sub/x 2>&1; echo rc=$?", Binds=[f"{host}:/data:ro"])
        assert "rc=1" in output, output
    finally:
        lmount.unmount(str(host / "sub"))


def test_volume_writes_bypass_the_container_layer(engine: Engine) -> None:
    code, _, container_id = engine.run("sh", "-c", "echo data > /data/in-volume; echo layer > /in-layer",
                                       Binds=["bypass:/data"])
    assert code == 0
    changed = {item["Path"] for item in engine.container_files.changes(container_id)}
    assert "/in-layer" in changed
    assert not any(path.startswith("/data/") for path in changed)
    image = engine.container_files.commit(container_id, repository="committed", tag="volumes")["Id"]
    code, output, _ = engine.run("sh", "-c", "cat /in-layer; ls -A /data 2>&1; echo end", image="committed:volumes")
    assert output == "layer\nend\n"
    with open(os.path.join(engine.volumes.inspect("bypass")["Mountpoint"], "in-volume")) as handle:
        assert handle.read() == "data\n"
    engine.remove_all()
    engine.services.images.remove_image(image, force=True)


def test_an_empty_volume_gets_the_images_files_and_keeps_its_own(engine: Engine) -> None:
    code, output, _ = engine.run("sh", "-c", "ls /etc; echo changed > /etc/motd-from-run",
                                 Binds=["etc-copy:/etc"])
    assert code == 0 and "passwd" in output
    data = engine.volumes.inspect("etc-copy")["Mountpoint"]
    with open(os.path.join(data, "passwd")) as handle:
        assert handle.read().startswith("root:x:0:0:")
    assert os.stat(data).st_mode & 0o7777 == 0o755
    # the second container finds the volume's data, not a fresh copy of the image's
    code, output, _ = engine.run("cat", "/etc/motd-from-run", Binds=["etc-copy:/etc"])
    assert output == "changed\n"
    code, output, _ = engine.run("ls", "-A", "/var", Binds=["var-nocopy:/var:nocopy"])
    assert code == 0 and output == ""
    code, in_image, _ = engine.run("ls", "-A", "/var")
    code, output, _ = engine.run("ls", "-A", "/var", Binds=["var-copy:/var"])
    assert in_image and output == in_image


def test_named_volumes_survive_rm_and_anonymous_ones_go_with_rm_v(engine: Engine) -> None:
    container_id = engine.create("true", Binds=["survivor:/named", "/anonymous"])
    anonymous = next(m["Name"] for m in engine.container_views.inspect(container_id)["Mounts"]
                     if m["Destination"] == "/anonymous")
    with pytest.raises(errdefs.Conflict, match=f"remove survivor: volume is in use - \\[{container_id}\\]"):
        engine.volumes.remove("survivor")
    deleted = engine.volumes.prune(filters={"all": ["true"]})["VolumesDeleted"]
    assert not {"survivor", anonymous} & set(deleted)
    assert {"survivor", anonymous} <= _volume_names(engine), "prune keeps volumes in use"
    engine.containers.remove(container_id, volumes=True)
    names = _volume_names(engine)
    assert "survivor" in names and anonymous not in names
    assert engine.volumes.users("survivor") == []
    # plain rm keeps anonymous volumes too
    container_id = engine.create("true", Binds=["/kept-anonymous"])
    kept = engine.container_views.inspect(container_id)["Mounts"][0]["Name"]
    engine.containers.remove(container_id)
    assert kept in _volume_names(engine) and engine.volumes.users(kept) == []
    engine.volumes.remove(kept)


def test_run_rm_removes_anonymous_volumes(engine: Engine) -> None:
    container_id = engine.create("true", Binds=["/auto-anonymous", "auto-named:/named"], AutoRemove=True)
    anonymous = next(m["Name"] for m in engine.container_views.inspect(container_id)["Mounts"]
                     if m["Destination"] == "/auto-anonymous")
    finish = engine.containers.begin_wait(container_id, condition="removed")  # before the start, as the CLI
    engine.containers.start(container_id)
    finish()
    deadline = time.monotonic() + 10
    while anonymous in _volume_names(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    names = _volume_names(engine)
    assert anonymous not in names and "auto-named" in names
    assert engine.volumes.users("auto-named") == []


def test_volumes_from_inherits_modes(engine: Engine) -> None:
    provider = engine.create("true", Binds=["from-rw:/rw", "from-ro:/ro:ro"])
    code, output, _ = engine.run("sh", "-c", "echo a > /rw/a && echo rw-ok; touch /ro/b 2>/dev/null || echo ro-refused",
                                 VolumesFrom=[provider])
    assert code == 0 and output == "rw-ok\nro-refused\n"
    code, output, consumer = engine.run("sh", "-c", "cat /rw/a; touch /rw/c 2>/dev/null || echo refused",
                                        VolumesFrom=[f"{provider}:ro"])
    assert output == "a\nrefused\n"
    assert consumer in engine.volumes.users("from-rw")
    with pytest.raises(errdefs.InvalidArgument, match="No such container"):
        engine.create("true", VolumesFrom=["no-such-container"])


def test_a_tmpfs_volume_is_mounted_only_while_a_container_runs(engine: Engine) -> None:
    volume = engine.volumes.create("ram", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    code, output, _ = engine.run("sh", "-c", "df -k /ram | tail -1; echo x > /ram/f; cat /ram/f", Binds=["ram:/ram"])
    assert code == 0
    assert output.split()[1] == "2048" and output.endswith("x\n")
    assert not lmount.is_mountpoint(volume["Mountpoint"])
    assert os.listdir(volume["Mountpoint"]) == []


def test_a_symlink_in_the_image_cannot_send_a_mount_to_the_host(engine: Engine, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "host-file").write_text("host")
    code, _, builder = engine.run("ln", "-s", str(victim), "/link")
    assert code == 0
    engine.container_files.commit(builder, repository="linked", tag="latest")
    code, output, _ = engine.run("sh", "-c", "echo inside > /link/written; ls /link", image="linked", Binds=["linked:/link"])
    assert code == 0 and output == "written\n"
    assert sorted(os.listdir(victim)) == ["host-file"], "the host directory was not touched"
    assert not lmount.is_mountpoint(str(victim))
    data = engine.volumes.inspect("linked")["Mountpoint"]
    assert os.listdir(data) == ["written"]
    engine.remove_all()
    engine.services.images.remove_image("linked", force=True)


def test_bad_mounts_fail_the_create_cleanly(engine: Engine) -> None:
    before = _volume_names(engine)
    for host, kind, message in (
            ({"Binds": ["./relative:/x"]}, errdefs.InvalidArgument, "If you intended to pass a host directory"),
            ({"Binds": ["/tmp:/x", "named-dup:/x"]}, errdefs.InvalidArgument, "Duplicate mount point: /x"),
            ({"Binds": ["ok-vol:/ok", "/anon"], "Mounts": [{"Type": "volume", "Source": "bad", "Target": "/b",
                                                            "VolumeOptions": {"DriverConfig": {"Name": "nfs9"}}}]},
             errdefs.NotFound, 'plugin "nfs9" not found'),
            ({"Mounts": [{"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]}, errdefs.InvalidArgument,
             "bind source path does not exist")):
        with pytest.raises(kind, match=message):
            engine.create("true", **host)
    assert _volume_names(engine) - before <= {"ok-vol"}   # Docker keeps named volumes it created
    assert all(engine.volumes.users(name) == [] for name in _volume_names(engine) - before)
    left = set(os.listdir(os.path.join(engine.config.data_root, "containers"))) - set(engine.started)
    assert not {name for name in left if not name.startswith(".")}, "no container record was left behind"


def test_cp_reads_and_writes_through_volumes_like_docker(engine: Engine, tmp_path) -> None:
    """docker cp sees a container's volumes and binds, not the directory under them."""
    import io
    import tarfile

    host = tmp_path / "bind"
    host.mkdir()
    (host / "from-host.txt").write_text("bound\n")
    services = engine.services
    container = services.containers.create(
        {"Image": "busybox", "Cmd": ["sh", "-c", "echo inside > /data/made-inside.txt"],
         "HostConfig": {"Binds": ["cpvol:/data", f"{host}:/bound:ro"]}})["Id"]
    try:
        services.containers.start(container)
        assert services.containers.wait(container)["StatusCode"] == 0
        _, chunks = services.container_files.archive_get(container, "/data/made-inside.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            assert archive.extractfile("made-inside.txt").read() == b"inside\n"
        _, chunks = services.container_files.archive_get(container, "/bound/from-host.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            assert archive.extractfile("from-host.txt").read() == b"bound\n"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("copied-in.txt")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"new"))
        services.container_files.archive_put(container, "/data", io.BytesIO(buffer.getvalue()))
        mountpoint = services.volumes.inspect("cpvol")["Mountpoint"]
        assert open(os.path.join(mountpoint, "copied-in.txt")).read() == "new"
        with pytest.raises(errdefs.Conflict, match="read-only"):
            services.container_files.archive_put(container, "/bound", io.BytesIO(buffer.getvalue()))
        assert not (host / "copied-in.txt").exists()
    finally:
        services.containers.remove(container, force=True, volumes=True)
