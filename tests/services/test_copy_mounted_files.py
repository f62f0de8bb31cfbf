"""``docker cp`` of the files mounted into a container on their own: ``/etc/hosts``,
``/etc/hostname`` and ``/etc/resolv.conf`` (written into the container's directory and
bind-mounted by the runtime) and a bind mount of a single file.  Reading them gives the
container's files, not the image's copies under the mounts; writing them rewrites the mounted
file in place, so a running container sees the new content and its mount stays."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from lamina import errdefs

pytestmark = pytest.mark.privileged


def tar_of(members: dict[str, bytes], *, directory: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        if directory:
            archive.addfile(_directory(directory))
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def read(engine, container_id: str, path: str) -> tuple[str, bytes]:
    stat, chunks = engine.container_files.archive_get(container_id, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        members = archive.getmembers()
        assert [member.name for member in members] == [stat["name"]]
        return stat["name"], archive.extractfile(members[0]).read()


def container_file(engine, container_id: str, name: str) -> bytes:
    with open(os.path.join(engine.config.data_root, "containers", container_id, name), "rb") as handle:
        return handle.read()


def test_cp_reads_and_writes_the_containers_own_files(engine) -> None:
    created = engine.create("true", Hostname="never-started")
    assert read(engine, created, "/etc/hostname") == ("hostname", b"localhost\n")  # the image's, as in Docker
    container_id = engine.run("sh", "-c", "while ! grep -q copied.test /etc/hosts; do sleep 0.05; done; cat /etc/hosts",
                              Hostname="myhost", HostConfig={"ExtraHosts": ["foo.test:1.2.3.4"]})
    engine.wait_for(lambda: engine.state(container_id)["Running"] and engine.state(container_id).get("Pid"),
                    message="the start")
    assert read(engine, container_id, "/etc/hostname") == ("hostname", b"myhost\n")
    name, hosts = read(engine, container_id, "/etc/hosts")
    assert name == "hosts" and b"1.2.3.4\tfoo.test\n" in hosts
    assert hosts == container_file(engine, container_id, "hosts")
    assert read(engine, container_id, "/etc/resolv.conf")[1] == container_file(engine, container_id, "resolv.conf")
    assert engine.container_files.archive_stat(container_id, "//etc/hosts")["size"] == len(hosts)
    # docker cp FILE c:/etc/hosts sends the file renamed "hosts" to /etc
    engine.container_files.archive_put(container_id, "/etc", io.BytesIO(tar_of({"hosts": b"10.9.8.7\tcopied.test\n"})))
    assert engine.wait(container_id) == 0
    assert engine.output(container_id) == "10.9.8.7\tcopied.test\n"  # the running container saw it
    assert container_file(engine, container_id, "hosts") == b"10.9.8.7\tcopied.test\n"
    # the image's /etc/hosts under the mount is untouched: no change in the container's layer
    assert not [change for change in engine.container_files.changes(container_id) if change["Path"].startswith("/etc")]
    # a whole /etc copied in: its hosts goes to the container's file, the rest to the layer
    engine.container_files.archive_put(container_id, "/", io.BytesIO(
        tar_of({"etc/hosts": b"10.0.0.1\tagain\n", "etc/other": b"x"}, directory="etc")))
    assert container_file(engine, container_id, "hosts") == b"10.0.0.1\tagain\n"
    assert {"Path": "/etc/other", "Kind": 1} in engine.container_files.changes(container_id)
    with pytest.raises(errdefs.InvalidArgument, match="non-regular"):
        engine.container_files.archive_put(container_id, "/etc", io.BytesIO(tar_of({}, directory="hosts")))
    with pytest.raises(errdefs.NotFound):
        engine.container_files.archive_stat(container_id, "/etc/hosts/below")


def test_read_only_root_filesystem_makes_the_files_read_only(engine) -> None:
    container_id = engine.run("true", HostConfig={"ReadonlyRootfs": True})
    assert engine.wait(container_id) == 0
    assert read(engine, container_id, "/etc/hostname")[1] == container_file(engine, container_id, "hostname")
    with pytest.raises(errdefs.Conflict, match="read-only"):
        engine.container_files.archive_put(container_id, "/etc", io.BytesIO(tar_of({"hosts": b"x\n"})))
    assert container_file(engine, container_id, "hostname") != b"x\n"


def test_a_bind_mounted_file_is_read_and_written_under_its_container_name(engine, tmp_path) -> None:
    source = tmp_path / "host-side.conf"
    source.write_bytes(b"from the host\n")
    container_id = engine.run("true", HostConfig={"Binds": [f"{source}:/srv/app.conf"]})
    assert engine.wait(container_id) == 0
    assert read(engine, container_id, "/srv/app.conf") == ("app.conf", b"from the host\n")
    engine.container_files.archive_put(container_id, "/srv", io.BytesIO(tar_of({"app.conf": b"copied in\n"})))
    assert source.read_bytes() == b"copied in\n"
