"""Smaller Docker behaviours that docker-py's own integration suite checks, through docker-py
and the real docker CLI against ``lamina serve``: commit of a container that exits while being
paused, build output and options, in-band load errors, Docker's error messages, the ``runc``
runtime name, volume subpaths and ``cp`` of the files lamina mounts into a container."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from server.conftest import BUSYBOX_ARCHIVE, REPOSITORY

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


@pytest.fixture
def docker_cli(docker):
    """The real docker CLI against the server (the ``docker`` fixture; this module's ``docker``
    name is docker-py)."""
    return docker


@pytest.fixture
def api(server):
    client = docker.APIClient(base_url=server.host, version="auto", timeout=60)
    with open(BUSYBOX_ARCHIVE, "rb") as archive:
        list(client.load_image(archive.read()))
    yield client
    client.close()


def test_commit_of_a_container_that_exits_at_once_commits_it_as_exited(api) -> None:
    # docker-py's CommitTest: the container's "touch" ends while commit pauses it
    for _ in range(5):
        container = api.create_container("busybox", ["touch", "/test"])
        api.start(container)
        image = api.commit(container["Id"])  # paused while running, or committed as exited
        assert api.inspect_image(image["Id"])["Container"] == container["Id"]
        assert api.wait(container)["StatusCode"] == 0


def _archive_with(replace: dict[str, bytes | None]) -> bytes:
    """The busybox archive with members replaced (None: left out)."""
    out = io.BytesIO()
    with tarfile.open(BUSYBOX_ARCHIVE) as source, tarfile.open(fileobj=out, mode="w") as archive:
        for member in source.getmembers():
            name = member.name
            data = source.extractfile(member).read() if member.isfile() else None
            if name in replace:
                data = replace[name]
                if data is None:
                    continue
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _stored(server) -> tuple[list[str], list[str]]:
    root = os.path.join(server.data_root, "image", "overlay2")
    layers = os.path.join(root, "layerdb", "sha256")
    images = os.path.join(root, "imagedb", "content", "sha256")
    return (sorted(os.listdir(layers)) if os.path.isdir(layers) else [],
            sorted(os.listdir(images)) if os.path.isdir(images) else [])


def _layer_member() -> str:
    with tarfile.open(BUSYBOX_ARCHIVE) as source:
        return next(name for name in source.getnames() if name.endswith("/layer.tar"))


def _corrupted_layer() -> bytes:
    with tarfile.open(BUSYBOX_ARCHIVE) as source:
        data = bytearray(source.extractfile(_layer_member()).read())
    data[len(data) // 2] ^= 0xFF  # inside a file's content: the tar still reads, its digest differs
    return bytes(data)


def _truncated_layer() -> bytes:
    with tarfile.open(BUSYBOX_ARCHIVE) as source:
        return source.extractfile(_layer_member()).read()[:100_000]


@pytest.mark.parametrize(("body", "message"), [
    (lambda: b"abc", "not a valid image archive"),
    (lambda: _archive_with({"manifest.json": None, "repositories": None}), "manifest.json"),
    (lambda: _archive_with({_layer_member(): _corrupted_layer()}), "digest"),
    (lambda: _archive_with({_layer_member(): _truncated_layer()}), ""),
], ids=["not a tar", "a tar without manifest", "a layer whose digest is wrong", "a truncated layer"])
def test_a_bad_load_reports_in_band_and_stores_nothing(server, body, message) -> None:
    client = docker.DockerClient(base_url=server.host, version="auto", timeout=60)
    try:
        with pytest.raises(docker.errors.ImageLoadError) as caught:
            client.images.load(body())
        assert message in str(caught.value)
        raw = list(client.api.load_image(body()))
        assert "errorDetail" in raw[-1] and raw[-1]["error"] == raw[-1]["errorDetail"]["message"]
        assert _stored(server) == ([], [])
        assert client.images.list() == []
    finally:
        client.close()


def test_docker_load_of_a_bad_archive_prints_the_error(docker_cli, tmp_path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"abc")
    result = docker_cli("load", "-i", str(bad), check=False)
    assert result.returncode == 1
    assert "not a valid image archive" in result.stderr.decode()


def lamina_cli(server, *argv: str) -> subprocess.CompletedProcess:
    """The lamina CLI against the server."""
    environment = {key: value for key, value in os.environ.items() if key not in ("LAMINA_HOST", "DOCKER_HOST")}
    return subprocess.run([sys.executable, "-m", "lamina.cli.main", "-H", server.host, *argv], env=environment,
                          capture_output=True, cwd=REPOSITORY, timeout=60, check=False)


def test_an_unknown_log_driver_is_refused_with_dockers_message(api, server, docker_cli) -> None:
    # docker-py's test_invalid_log_driver_raises_exception compares the whole explanation
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container("busybox", ["true"], host_config=api.create_host_config(
            log_config=docker.types.LogConfig(type="asdf", config={})))
    assert caught.value.explanation == "logger: no log driver named 'asdf' is registered"
    assert caught.value.status_code == 400
    result = docker_cli("create", "--log-driver", "asdf", "busybox", check=False)
    assert result.returncode == 1
    assert "Error response from daemon: logger: no log driver named 'asdf' is registered" in result.stderr.decode()
    result = lamina_cli(server, "create", "--log-driver", "asdf", "busybox")
    assert "logger: no log driver named 'asdf' is registered" in result.stderr.decode()
    assert api.containers(all=True) == []


def test_inspect_of_a_missing_object_says_no_such_object(api, server, docker_cli) -> None:
    result = docker_cli("inspect", "nosuchthing", check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == "Error: No such object: nosuchthing\n"
    result = lamina_cli(server, "inspect", "nosuchthing")
    assert result.stderr.decode() == "Error: No such object: nosuchthing\n"
    # each kind's own 404, which the CLI skips before it gives up
    for kind, message in (("container", "No such container: nosuch"), ("image", "No such image: nosuch"),
                          ("network", "network nosuch not found"), ("volume", "no such volume")):
        result = docker_cli("inspect", "--type", kind, "nosuch", check=False)
        assert result.returncode == 1 and message in result.stderr.decode(), (kind, result.stderr)
    result = docker_cli("plugin", "inspect", "nosuch", check=False)
    assert 'plugin "nosuch" not found' in result.stderr.decode()
    # an object that exists is found by its kind
    assert json.loads(docker_cli("inspect", "busybox").stdout)[0]["RepoTags"] == ["busybox:latest"]


def test_runc_is_a_runtime_and_an_unknown_runtime_is_refused(api, server, docker_cli) -> None:
    info = api.info()
    assert "runc" in info["Runtimes"] and info["DefaultRuntime"] in info["Runtimes"]
    assert "runc" in lamina_cli(server, "info").stdout.decode().split("Runtimes:")[1].splitlines()[0].split()
    # runc is the real runc (lamina's OCI runtime), not a name for lamina's own runtime
    container = api.create_container("busybox", ["echo", "under runc"],
                                     host_config=api.create_host_config(runtime="runc"))
    assert api.inspect_container(container)["HostConfig"]["Runtime"] == "runc"
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0
    assert api.logs(container) == b"under runc\n"
    default = api.create_container("busybox", ["true"])
    assert api.inspect_container(default)["HostConfig"]["Runtime"] == info["DefaultRuntime"]
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container("busybox", ["true"], host_config=api.create_host_config(runtime="nosuch"))
    assert caught.value.status_code == 400
    assert caught.value.explanation == "unknown or invalid runtime name: nosuch"


def test_docker_cp_reads_and_writes_the_containers_etc_files(docker_cli, api, tmp_path) -> None:
    docker_cli("run", "-d", "--name", "cpfiles", "--hostname", "myhost", "--add-host", "foo.test:1.2.3.4",
               "busybox", "sleep", "60")
    copied = docker_cli("cp", "cpfiles:/etc/hosts", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(copied)) as archive:
        assert b"1.2.3.4\tfoo.test\n" in archive.extractfile("hosts").read()
    docker_cli("cp", "cpfiles:/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_text() == "myhost\n"
    (tmp_path / "new-hosts").write_text("10.9.8.7\tcopied.test\n")
    docker_cli("cp", str(tmp_path / "new-hosts"), "cpfiles:/etc/hosts")
    assert docker_cli("exec", "cpfiles", "cat", "/etc/hosts").stdout == b"10.9.8.7\tcopied.test\n"
    assert docker_cli("diff", "cpfiles").stdout == b""
    docker_cli("rm", "-f", "cpfiles")


def test_volume_subpath_mounts_part_of_a_volume_and_refuses_escapes(api, server, docker_cli) -> None:
    api.create_volume("subvol")
    filler = api.create_container("busybox", ["sh", "-c", "mkdir -p /v/sub/deep && echo inside > /v/sub/file && "
                                                          "ln -s /etc /v/absolute && ln -s ../.. /v/up && "
                                                          "ln -s sub /v/inner"],
                                  host_config=api.create_host_config(binds=["subvol:/v"]))
    api.start(filler)
    assert api.wait(filler)["StatusCode"] == 0

    def run(subpath: str, target: str = "/x", command: tuple[str, ...] = ("ls", "/x")) -> tuple[int, bytes]:
        mount = docker.types.Mount(target, "subvol", subpath=subpath)
        container = api.create_container("busybox", list(command), host_config=api.create_host_config(mounts=[mount]))
        api.start(container)
        return api.wait(container)["StatusCode"], api.logs(container)

    assert run("sub") == (0, b"deep\nfile\n")
    assert run("inner") == (0, b"deep\nfile\n")  # a symlink that stays inside the volume
    assert run("sub/file", "/x/f", ("cat", "/x/f")) == (0, b"inside\n")
    for subpath in ("absolute", "up"):
        with pytest.raises(docker.errors.APIError) as caught:
            run(subpath)
        assert caught.value.status_code == 400
        assert "path concatenation escapes the base directory" in caught.value.explanation
    with pytest.raises(docker.errors.NotFound) as caught:
        run("missing")
    assert "cannot access path" in caught.value.explanation and "missing: no such file or directory" in \
        caught.value.explanation
    for subpath, message in (("../x", "subpath must be a relative path within the volume"),
                             ("/x", "subpath must be a relative path within the volume")):
        with pytest.raises(docker.errors.APIError) as caught:
            api.create_container("busybox", ["true"], host_config=api.create_host_config(
                mounts=[docker.types.Mount("/x", "subvol", subpath=subpath)]))
        assert caught.value.status_code == 400 and message in caught.value.explanation
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container("busybox", ["true"], host_config=api.create_host_config(
            mounts=[docker.types.Mount("/x", None, subpath="a")]))
    assert "must not set Subpath when using anonymous volumes" in caught.value.explanation
    # the pins are gone with the runs
    assert not [line for line in open("/proc/self/mountinfo") if "/subpaths/" in line]
    # the docker CLI's --mount volume-subpath, and the lamina CLI's
    assert docker_cli("run", "--rm", "--mount", "type=volume,src=subvol,dst=/x,volume-subpath=sub", "busybox",
                      "cat", "/x/file").stdout == b"inside\n"
    result = lamina_cli(server, "run", "--rm", "--mount", "type=volume,src=subvol,dst=/x,volume-subpath=sub/deep",
                        "busybox", "ls", "-a", "/x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b".\n..\n"
