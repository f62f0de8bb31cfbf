"""The ``docker`` package from PyPI (docker-py) against ``lamina serve``: the low-level
``APIClient`` and the high-level ``DockerClient``, with version negotiation (``version="auto"``)
and a pinned version; ping, version, info, df, images load/list/get/inspect/history/tag/
remove/save/import/prune, and errors as docker-py's exception classes."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from server.conftest import BUSYBOX_ARCHIVE

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


@pytest.fixture
def api(server):
    client = docker.APIClient(base_url=server.host, version="auto", timeout=60)
    yield client
    client.close()


@pytest.fixture
def client(server):
    client = docker.DockerClient(base_url=server.host, version="auto", timeout=60)
    yield client
    client.close()


def archive_bytes() -> bytes:
    with open(BUSYBOX_ARCHIVE, "rb") as file:
        return file.read()


def rootfs_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"from docker-py\n"
        entry = tarfile.TarInfo("hello.txt")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def test_api_client_negotiates_and_reads_the_system(api, server) -> None:
    assert api.api_version == "1.45"
    assert api.ping() is True
    version = api.version()
    assert version["ApiVersion"] == "1.45" and version["MinAPIVersion"] == "1.24"
    info = api.info()
    assert info["DockerRootDir"] == server.data_root
    assert set(api.df()) >= {"LayersSize", "Images", "Containers", "Volumes"}


def test_api_client_image_operations(api) -> None:
    messages = list(api.load_image(archive_bytes()))
    assert {"stream": "Loaded image: busybox:latest\n"} in messages
    images = api.images()
    assert [image["RepoTags"] for image in images] == [["busybox:latest"]]
    image_id = images[0]["Id"]
    assert api.inspect_image("busybox")["Id"] == image_id
    assert api.history("busybox")[0]["Id"] == image_id
    assert api.tag("busybox", "sdk/box", "one") is True
    assert sorted(api.images(name="sdk/box", quiet=True)) == [image_id]
    saved = b"".join(api.get_image("sdk/box:one"))
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        assert json.load(archive.extractfile("manifest.json"))[0]["RepoTags"] == ["sdk/box:one"]
    imported = api.import_image_from_data(rootfs_tar(), repository="sdk/imported", tag="v1")
    imported_id = json.loads(imported.splitlines()[-1])["status"]
    assert api.inspect_image("sdk/imported:v1")["Id"] == imported_id
    from_file = api.import_image(src=io.BytesIO(rootfs_tar()), repository="sdk/imported", tag="v2",
                                 changes=["ENV FROM=file"])
    assert "FROM=file" in api.inspect_image(json.loads(from_file.splitlines()[-1])["status"])["Config"]["Env"]
    assert {"Untagged": "sdk/box:one"} in api.remove_image("sdk/box:one")
    pruned = api.prune_images()
    assert set(pruned) == {"ImagesDeleted", "SpaceReclaimed"}


def test_api_client_errors_are_docker_py_exceptions(api) -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        api.inspect_image("no-such-image")
    with pytest.raises(docker.errors.NotFound):
        api.remove_image("no-such-image")
    with pytest.raises(docker.errors.APIError) as failure:
        api.images(filters={"no-such-filter": "x"})
    assert failure.value.status_code == 400


def test_a_pinned_api_version_is_used_in_paths(server) -> None:
    client = docker.APIClient(base_url=server.host, version="1.41")
    try:
        assert client.api_version == "1.41"
        assert client.version()["ApiVersion"] == "1.45"
        assert client.images() == []
    finally:
        client.close()
    server.wait_logged('"GET /v1.41/images/json')


def test_docker_client_high_level_images(client, server) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.45"
    assert client.info()["OSType"] == "linux"
    loaded = client.images.load(archive_bytes())
    assert [image.tags for image in loaded] == [["busybox:latest"]]
    image = client.images.get("busybox")
    assert image.id == loaded[0].id
    assert image.tag("high/level", tag="v2") is True
    assert sorted(client.images.get(image.id).tags) == ["busybox:latest", "high/level:v2"]
    assert [found.id for found in client.images.list(name="high/level")] == [image.id]
    assert image.history()[0]["Id"] == image.id
    saved = b"".join(image.save(named=True))
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        assert "manifest.json" in archive.getnames()
    client.images.remove("high/level:v2")
    assert client.images.get("busybox").tags == ["busybox:latest"]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("high/level:v2")
    assert set(client.images.prune()) == {"ImagesDeleted", "SpaceReclaimed"}
    assert "Images" in client.df()
