"""The real docker CLI and docker-py pull, push and log in through ``lamina serve`` against a
real registry (Debian's docker-registry on 127.0.0.1, see tests/registry/conftest.py)."""

from __future__ import annotations

import json
import os

import pytest

from registry.conftest import FIXTURE_DIFF_ID, FIXTURE_IMAGE_ID, PASSWORD, USER, skopeo_push_fixture
from registry.conftest import registry, tls_registry  # noqa: F401 - fixtures
from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def test_docker_pulls_and_pushes_through_lamina(registry, docker) -> None:  # noqa: F811
    skopeo_push_fixture(registry)
    pulled = docker("pull", f"{registry.host}/busybox").stdout.decode()
    assert "Pull complete" in pulled
    assert f"Status: Downloaded newer image for {registry.host}/busybox:latest" in pulled
    image = json.loads(docker("image", "inspect", f"{registry.host}/busybox").stdout)[0]
    assert image["Id"] == FIXTURE_IMAGE_ID and image["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    digest = image["RepoDigests"][0].split("@")[1]
    listed = docker("images", "--digests", "--format", "{{.Digest}}").stdout.decode().split()
    assert digest in listed
    docker("tag", f"{registry.host}/busybox", f"{registry.host}/by-docker:7")
    pushed = docker("push", f"{registry.host}/by-docker:7").stdout.decode()
    assert "Mounted from busybox" in pushed or "Layer already exists" in pushed
    assert "7: digest: sha256:" in pushed
    docker("rmi", f"{registry.host}/by-docker:7", f"{registry.host}/busybox")
    docker("pull", f"{registry.host}/by-docker:7")
    assert json.loads(docker("image", "inspect", f"{registry.host}/by-docker:7").stdout)[0]["Id"] == FIXTURE_IMAGE_ID
    missing = docker("pull", f"{registry.host}/missing:1", check=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr


def test_docker_py_pulls_pushes_and_inspects_the_distribution(registry, server) -> None:  # noqa: F811
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=server.host, version="1.45")
    try:
        client.images.load(open(BUSYBOX_ARCHIVE, "rb").read())
        client.images.get("busybox").tag(f"{registry.host}/sdk", "1")
        lines = [json.loads(line) for line in client.api.push(f"{registry.host}/sdk", tag="1", stream=True)
                 if line.strip()]
        assert not [line for line in lines if "error" in line], lines
        assert [line["aux"]["Tag"] for line in lines if "aux" in line] == ["1"]
        distribution = client.api.inspect_distribution(f"{registry.host}/sdk:1")
        assert distribution["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert distribution["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
        client.images.remove(f"{registry.host}/sdk:1")
        image = client.images.pull(f"{registry.host}/sdk", tag="1")
        assert image.id == FIXTURE_IMAGE_ID
    finally:
        client.close()


@pytest.fixture
def secure_server(tls_registry, start_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("LAMINA_INSECURE_REGISTRIES", "")
    monkeypatch.setenv("LAMINA_CERTS_D", tls_registry.certs_d)
    return start_server()


def test_docker_login_through_lamina_then_push(tls_registry, secure_server, tmp_path) -> None:  # noqa: F811
    import subprocess

    environment = secure_server.environment()

    def docker(*argv: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *argv], env=environment, input=input, capture_output=True, timeout=120)

    assert docker("load", "-i", BUSYBOX_ARCHIVE).returncode == 0
    assert docker("tag", "busybox", f"{tls_registry.host}/private:1").returncode == 0
    refused = docker("push", f"{tls_registry.host}/private:1")
    assert refused.returncode != 0 and b"authentication required" in refused.stderr
    wrong = docker("login", "-u", USER, "--password-stdin", tls_registry.host, input=b"nope")
    assert wrong.returncode != 0 and b"nope" not in wrong.stderr
    login = docker("login", "-u", USER, "--password-stdin", tls_registry.host, input=PASSWORD.encode())
    assert login.returncode == 0, login.stderr
    assert b"Login Succeeded" in login.stdout
    pushed = docker("push", f"{tls_registry.host}/private:1")
    assert pushed.returncode == 0, pushed.stderr
    assert PASSWORD.encode() not in secure_server.output().encode()


def test_docker_py_gets_404_for_a_missing_tag_and_503_for_an_unreachable_registry(registry, server) -> None:  # noqa: F811
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.APIClient(base_url=server.host, version="1.45")
    try:
        with pytest.raises(docker_sdk.errors.NotFound, match="not found"):
            client.pull(f"{registry.host}/nothing", tag="1")
        with pytest.raises(docker_sdk.errors.APIError) as failure:
            client.pull("127.0.0.1:9/nothing", tag="1")
        assert failure.value.status_code == 503
    finally:
        client.close()
