"""The real docker CLI (/usr/local/bin/docker, 28.x) against ``lamina serve`` with
``DOCKER_HOST=unix://...``: version negotiation, info, load, images, inspect, tag, history,
save -o, import, rmi, image prune, system df, and daemon errors as docker prints them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def lines(result) -> list[str]:
    return result.stdout.decode().splitlines()


@pytest.fixture
def busybox(docker) -> str:
    result = docker("load", "-i", BUSYBOX_ARCHIVE)
    assert lines(result) == ["Loaded image: busybox:latest"]
    return docker("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.decode().strip()


def test_version_negotiates_down_to_the_servers_api_version(docker) -> None:
    versions = docker("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.Os}}")
    assert lines(versions) == ["1.45 1.45 linux"]
    plain = docker("version").stdout.decode()
    assert "1.45 (downgraded from" in plain
    assert "minimum version 1.24" in plain


def test_a_pinned_older_api_version_is_served_and_a_too_new_one_refused(docker, busybox) -> None:
    environment_version = {"DOCKER_API_VERSION": "1.30"}
    result = docker("images", "--format", "{{.Repository}}", env_extra=environment_version)
    assert lines(result) == ["busybox"]
    refused = docker("images", check=False, env_extra={"DOCKER_API_VERSION": "1.99"})
    assert refused.returncode != 0
    assert b"1.99" in refused.stderr


def test_info_describes_the_engine(docker, server) -> None:
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] in ("overlay2", "vfs")
    assert info["DockerRootDir"] == server.data_root
    assert info["OSType"] == "linux"
    assert docker("info").returncode == 0


def test_load_lists_inspects_and_shows_history(docker, busybox) -> None:
    assert busybox.startswith("sha256:")
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert lines(listed) == [f"busybox:latest {busybox[7:19]}"]
    inspected = json.loads(docker("image", "inspect", "busybox:latest").stdout)
    assert inspected[0]["Id"] == busybox
    assert inspected[0]["RepoTags"] == ["busybox:latest"]
    assert inspected[0]["RootFS"]["Type"] == "layers"
    history = docker("history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "busybox")
    assert lines(history)[0].startswith(busybox)
    assert docker("images", "-q").stdout.decode().split() == [busybox[7:19]]


def test_load_from_stdin_reports_progress_without_a_terminal(docker) -> None:
    with open(BUSYBOX_ARCHIVE, "rb") as archive:
        result = docker("load", input=archive.read())
    assert "Loaded image: busybox:latest" in result.stdout.decode()


def test_tag_then_rmi_untags_and_deletes(docker, busybox) -> None:
    docker("tag", "busybox", "example.org/team/box:1.0")
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(lines(tags)) == ["busybox:latest", "example.org/team/box:1.0"]
    assert lines(docker("rmi", "example.org/team/box:1.0")) == ["Untagged: example.org/team/box:1.0"]
    removed = lines(docker("rmi", "busybox"))
    assert removed[0] == "Untagged: busybox:latest"
    assert f"Deleted: {busybox}" in removed
    assert docker("images", "-q").stdout == b""


def test_daemon_errors_are_printed_like_dockerd_and_fail(docker) -> None:
    missing = docker("rmi", "no-such-image", check=False)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "Error response from daemon: No such image: no-such-image"
    inspected = docker("image", "inspect", "no-such-image", check=False)
    assert inspected.returncode == 1
    assert "No such image" in inspected.stderr.decode()


def test_save_writes_an_archive_with_the_same_layers(docker, busybox, socket_dir) -> None:
    output = os.path.join(socket_dir, "saved.tar")
    docker("save", "-o", output, "busybox:latest")

    def layer_digests(path: str) -> tuple[str, list[str]]:
        with tarfile.open(path) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))[0]
            digests = [hashlib.sha256(archive.extractfile(layer).read()).hexdigest()
                       for layer in manifest["Layers"]]
        return manifest["Config"], digests

    assert layer_digests(output)[1] == layer_digests(BUSYBOX_ARCHIVE)[1]
    docker("rmi", "busybox")
    assert lines(docker("load", "-i", output)) == ["Loaded image: busybox:latest"]
    assert docker("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.decode().strip() == busybox


def test_import_creates_an_image_with_message_and_changes(docker, socket_dir) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"hello from import\n"
        entry = tarfile.TarInfo("etc/hello")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    path = os.path.join(socket_dir, "rootfs.tar")
    with open(path, "wb") as file:
        file.write(buffer.getvalue())
    image_id = docker("import", "-m", "made by a test", "-c", "ENV GREETING=hi", "-c", 'CMD ["cat", "/etc/hello"]',
                      path, "imported:v1").stdout.decode().strip()
    assert image_id.startswith("sha256:")
    inspected = json.loads(docker("image", "inspect", "imported:v1").stdout)[0]
    assert inspected["Id"] == image_id
    assert inspected["Comment"] == "made by a test"
    assert "GREETING=hi" in inspected["Config"]["Env"]
    assert inspected["Config"]["Cmd"] == ["cat", "/etc/hello"]
    from_stdin = docker("import", "-", "imported:v2", input=buffer.getvalue()).stdout.decode().strip()
    assert from_stdin.startswith("sha256:")


def test_image_prune_removes_dangling_images(docker, busybox) -> None:
    docker("tag", "busybox", "keep:me")
    docker("rmi", "busybox")   # still tagged keep:me: only untagged
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entry = tarfile.TarInfo("dangling")
        archive.addfile(entry, io.BytesIO(b""))
    dangling = docker("import", "-", input=buffer.getvalue()).stdout.decode().strip()
    assert dangling in docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.decode()
    pruned = docker("image", "prune", "-f").stdout.decode()
    assert f"deleted: {dangling}" in pruned
    assert "Total reclaimed space" in pruned
    assert lines(docker("images", "--format", "{{.Repository}}:{{.Tag}}")) == ["keep:me"]


def test_system_df_reports_image_sizes(docker, busybox) -> None:
    table = docker("system", "df").stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["TYPE", "TOTAL", "ACTIVE"]
    images_row = next(line for line in table.splitlines() if line.startswith("Images"))
    assert images_row.split()[1] == "1"
    verbose = docker("system", "df", "-v").stdout.decode()
    assert "busybox" in verbose
