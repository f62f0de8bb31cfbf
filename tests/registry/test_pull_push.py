"""Pull and push against a real registry (Debian's docker-registry), interop with skopeo."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from registry.conftest import FIXTURE, FIXTURE_DIFF_ID, FIXTURE_IMAGE_ID, need, skopeo_push_fixture

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


def skopeo_inspect(registry, name: str, *extra: str) -> dict:
    return json.loads(subprocess.run([need("skopeo"), "inspect", "--tls-verify=false", *extra,
                                      f"docker://{registry.host}/{name}"], check=True, capture_output=True,
                                     timeout=60).stdout)


def image_dir(lamina) -> str:
    image = os.path.join(lamina.root, "image")
    (driver,) = os.listdir(image)
    return os.path.join(image, driver)


def leftovers(lamina) -> dict[str, list[str]]:
    """What a failed pull must not leave: layers, images, write sets, leases."""
    root = image_dir(lamina)
    found = {}
    for relative in ("layerdb/sha256", "imagedb/content/sha256", "layerdb/tmp"):
        path = os.path.join(root, relative)
        found[relative] = sorted(os.listdir(path)) if os.path.isdir(path) else []
    return found


def test_pull_of_an_image_skopeo_pushed_has_skopeos_ids_and_records_docker_metadata(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    pushed = skopeo_inspect(registry, "busybox:latest")
    result = lamina("pull", f"{registry.host}/busybox")
    out = result.stdout.decode()
    blob = pushed["Layers"][0]
    assert "latest: Pulling from busybox" in out
    assert f"{blob[7:19]}: Pull complete" in out
    assert f"Digest: {pushed['Digest']}" in out
    assert f"Status: Downloaded newer image for {registry.host}/busybox:latest" in out
    image = lamina.inspect(f"{registry.host}/busybox:latest")
    assert image["Id"] == FIXTURE_IMAGE_ID
    assert image["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    assert image["RepoDigests"] == [f"{registry.host}/busybox@{pushed['Digest']}"]
    listed = lamina("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout.decode()
    assert f"{registry.host}/busybox latest {pushed['Digest']}" in listed
    distribution = os.path.join(image_dir(lamina), "distribution")
    with open(os.path.join(distribution, "diffid-by-digest", "sha256", blob[7:])) as handle:
        assert handle.read() == FIXTURE_DIFF_ID
    with open(os.path.join(distribution, "v2metadata-by-diffid", "sha256", FIXTURE_DIFF_ID[7:])) as handle:
        assert json.load(handle) == [{"Digest": blob, "SourceRepository": f"{registry.host}/busybox", "HMAC": ""}]
    again = lamina("pull", f"{registry.host}/busybox:latest").stdout.decode()
    assert f"{blob[7:19]}: Already exists" in again
    assert f"Status: Image is up to date for {registry.host}/busybox:latest" in again
    by_digest = lamina("pull", f"{registry.host}/busybox@{pushed['Digest']}").stdout.decode()
    assert f"Digest: {pushed['Digest']}" in by_digest
    events = [json.loads(line) for line in lamina("events", "--since", "0", "--until", str(int(time.time()) + 1),
                                                   "--format", "{{json .}}").stdout.splitlines()]
    pulls = [(e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in events if e["Action"] == "pull"]
    assert pulls[0] == (f"{registry.host}/busybox:latest", f"{registry.host}/busybox")


def test_save_after_pull_reproduces_the_registrys_diff_ids(registry, lamina, tmp_path) -> None:
    skopeo_push_fixture(registry)
    lamina("pull", f"{registry.host}/busybox")
    archive = tmp_path / "saved.tar"
    lamina("save", "-o", str(archive), f"{registry.host}/busybox")
    seen = json.loads(subprocess.run([need("skopeo"), "inspect", f"docker-archive:{archive}"], check=True,
                                     capture_output=True).stdout)
    assert seen["Layers"] == [FIXTURE_DIFF_ID]


def test_an_image_lamina_pushed_is_read_by_skopeo_and_pulled_by_another_engine(registry, lamina,
                                                                               other_lamina) -> None:
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", f"{registry.host}/app:1")
    out = lamina("push", f"{registry.host}/app:1").stdout.decode()
    assert f"The push refers to repository [{registry.host}/app]" in out
    assert "a8cc10596804: Pushed" in out
    seen = skopeo_inspect(registry, "app:1")
    assert f"1: digest: {seen['Digest']} size: " in out
    config = skopeo_inspect(registry, "app:1", "--config")
    assert config["rootfs"]["diff_ids"] == [FIXTURE_DIFF_ID]
    raw = json.loads(subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false",
                                     f"docker://{registry.host}/app:1"], check=True, capture_output=True).stdout)
    assert raw["config"]["digest"] == FIXTURE_IMAGE_ID
    assert raw["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert lamina.inspect(f"{registry.host}/app:1")["RepoDigests"] == [f"{registry.host}/app@{seen['Digest']}"]
    # a second push finds the layer; the manifest is the same
    again = lamina("push", f"{registry.host}/app:1").stdout.decode()
    assert "a8cc10596804: Layer already exists" in again
    assert f"1: digest: {seen['Digest']}" in again
    # a cross-repository mount within the registry
    lamina("tag", "busybox", f"{registry.host}/team/copy:2")
    mounted = lamina("push", f"{registry.host}/team/copy:2").stdout.decode()
    assert "a8cc10596804: Mounted from app" in mounted
    # another engine, without any metadata, compresses the layer to the same blob (reproducible gzip)
    other_lamina("load", "-i", FIXTURE)
    other_lamina("tag", "busybox", f"{registry.host}/fresh:1")
    fresh = other_lamina("push", f"{registry.host}/fresh:1").stdout.decode()
    assert "a8cc10596804: Pushed" in fresh
    assert f"1: digest: {seen['Digest']}" in fresh
    # and pulls what lamina pushed with the same image id
    other_lamina("rmi", "busybox", f"{registry.host}/fresh:1")
    other_lamina("pull", f"{registry.host}/app:1")
    assert other_lamina.inspect(f"{registry.host}/app:1")["Id"] == FIXTURE_IMAGE_ID


def test_push_of_every_tag_and_pull_of_every_tag(registry, lamina, other_lamina) -> None:
    lamina("load", "-i", FIXTURE)
    for tag in ("a", "b"):
        lamina("tag", "busybox", f"{registry.host}/many:{tag}")
    out = lamina("push", "--all-tags", f"{registry.host}/many").stdout.decode()
    assert "a: digest: sha256:" in out and "b: digest: sha256:" in out
    assert sorted(skopeo_inspect(registry, "many:a")["RepoTags"]) == ["a", "b"]
    other_lamina("pull", "--all-tags", f"{registry.host}/many")
    tags = other_lamina("images", "--format", "{{.Tag}}", f"{registry.host}/many").stdout.decode().split()
    assert sorted(tags) == ["a", "b"]


def test_run_pulls_a_missing_image(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    result = lamina("run", "--rm", f"{registry.host}/busybox", "echo", "pulled-and-ran")
    assert b"pulled-and-ran" in result.stdout
    assert b"Unable to find image" in result.stderr
    never = lamina("run", "--rm", "--pull", "never", f"{registry.host}/busybox:other", "true", check=False)
    assert never.returncode != 0


def test_quiet_pull_prints_only_the_reference(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    result = lamina("pull", "-q", f"{registry.host}/busybox")
    assert result.stdout.decode() == f"{registry.host}/busybox:latest\n"


def test_zstd_layers_pushed_by_skopeo_pull_with_the_same_image_id(registry, lamina) -> None:
    skopeo_push_fixture(registry, "zstd:1", extra=("--dest-compress-format", "zstd", "--format", "oci"))
    raw = json.loads(subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false",
                                     f"docker://{registry.host}/zstd:1"], check=True, capture_output=True).stdout)
    assert raw["layers"][0]["mediaType"].endswith("+zstd")
    lamina("pull", f"{registry.host}/zstd:1")
    image = lamina.inspect(f"{registry.host}/zstd:1")
    assert image["Id"] == raw["config"]["digest"]  # skopeo converted the config to OCI's
    assert image["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    # a push to the same repository does not describe the zstd blob as gzip: it sends its own
    lamina("tag", f"{registry.host}/zstd:1", f"{registry.host}/zstd:again")
    assert "a8cc10596804: Pushed" in lamina("push", f"{registry.host}/zstd:again").stdout.decode()


def test_manifest_inspect_and_search_read_the_registry(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    skopeo_push_fixture(registry, "tools/busybox-copy:1")
    manifest = json.loads(lamina("manifest", "inspect", f"{registry.host}/busybox").stdout)
    raw = json.loads(subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false",
                                     f"docker://{registry.host}/busybox"], check=True, capture_output=True).stdout)
    assert manifest == raw
    found = lamina("search", "--format", "{{.Name}}", f"{registry.host}/busy").stdout.decode().split()
    assert found == [f"{registry.host}/busybox", f"{registry.host}/tools/busybox-copy"]
    hub = lamina("search", "busybox", check=False)
    assert hub.returncode == 7 and b"/v2/_catalog" in hub.stderr
    assert lamina("manifest", "inspect", f"{registry.host}/nope", check=False).returncode == 4


def test_removing_the_last_tag_of_a_pulled_image_removes_its_digest_reference_too(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    lamina("pull", f"{registry.host}/busybox")
    lamina("tag", f"{registry.host}/busybox", "kept:1")
    removed = lamina("rmi", f"{registry.host}/busybox").stdout.decode().splitlines()
    assert removed[0] == f"Untagged: {registry.host}/busybox:latest"
    assert removed[1].startswith(f"Untagged: {registry.host}/busybox@sha256:")
    assert lamina.inspect("kept:1")["RepoDigests"] == []
    gone = lamina("rmi", "kept:1").stdout.decode()
    assert f"Deleted: {FIXTURE_IMAGE_ID}" in gone


def test_docker_hub_images_come_from_the_configured_mirrors_in_order(registry, lamina) -> None:
    skopeo_push_fixture(registry, "library/busybox:latest")
    mirrors = {"LAMINA_REGISTRY_MIRRORS": f"http://127.0.0.1:9,http://{registry.host}"}
    result = lamina("pull", "busybox", env=mirrors)
    assert "Status: Downloaded newer image for busybox:latest" in result.stdout.decode()
    assert "registry mirror http://127.0.0.1:9" in result.stderr.decode()  # the first one is down
    image = lamina.inspect("busybox")
    assert image["Id"] == FIXTURE_IMAGE_ID
    assert image["RepoDigests"][0].startswith("busybox@sha256:")
    bad = lamina("pull", "busybox", env={"LAMINA_REGISTRY_MIRRORS": "ftp://mirror"}, check=False)
    assert bad.returncode == 3 and b"invalid registry mirror" in bad.stderr
