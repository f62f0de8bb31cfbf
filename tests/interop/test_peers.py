"""Interop with real tools: skopeo and umoci read what lamina writes, lamina reads what they write.

Runs the real ``lamina`` command (the console script of this checkout's venv) on a temp data
root, so these are also end-to-end tests of the CLI over the in-process transport.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "busybox-docker-archive.tar")
FIXTURE_IMAGE_ID = "sha256:657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed"
FIXTURE_DIFF_ID = "sha256:a8cc1059680454e58aa2d5a4ebdebe9e83b1ae7b769ab1d0221b9637448b0b51"
LAMINA = os.path.join(os.path.dirname(sys.executable), "lamina")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (make test installs it with apt)")
    return path


@pytest.fixture
def lamina(tmp_path):
    root = tmp_path / "root"

    def run(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([LAMINA, "--data-root", str(root), *args], input=input,
                                capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"lamina {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    yield run
    subprocess.run(["umount", "-R", str(root)], capture_output=True)


def inspect(lamina, name: str) -> dict:
    return json.loads(lamina("image", "inspect", name).stdout)[0]


def test_skopeo_inspects_and_copies_an_archive_lamina_saved(lamina, tmp_path) -> None:
    skopeo = need("skopeo")
    lamina("load", "-i", FIXTURE)
    archive = tmp_path / "busybox.tar"
    lamina("save", "-o", str(archive), "busybox:latest")
    seen = json.loads(subprocess.run([skopeo, "inspect", f"docker-archive:{archive}"], check=True,
                                     capture_output=True).stdout)
    assert seen["Layers"] == [FIXTURE_DIFF_ID]  # uncompressed layers: blob digest = diff_id
    layout = tmp_path / "layout"
    subprocess.run([skopeo, "copy", f"docker-archive:{archive}", f"oci:{layout}:busybox:latest"], check=True,
                   capture_output=True)
    config = json.loads(subprocess.run([skopeo, "inspect", "--config", f"oci:{layout}:busybox:latest"],
                                       check=True, capture_output=True).stdout)
    assert config["rootfs"]["diff_ids"] == [FIXTURE_DIFF_ID]


def test_an_oci_layout_written_by_skopeo_loads_with_identical_diff_ids(lamina, tmp_path) -> None:
    skopeo = need("skopeo")
    layout = tmp_path / "layout"
    # skopeo compresses layers with gzip when writing an OCI layout: lamina must decompress
    subprocess.run([skopeo, "copy", "--dest-compress", f"docker-archive:{FIXTURE}", f"oci:{layout}:busybox:1"],
                   check=True, capture_output=True)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"]
    out = lamina("load", "-i", str(layout)).stdout.decode()
    assert "Loaded image" in out
    # skopeo writes only the tag in org.opencontainers.image.ref.name: the image loads untagged
    image_id = out.strip().split()[-1]
    assert inspect(lamina, image_id)["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    # and the same layout as a tar
    tar_path = tmp_path / "layout.tar"
    with tarfile.open(tar_path, "w") as archive:
        archive.add(layout, arcname=".")
    out = lamina("load", "-i", str(tar_path)).stdout.decode()
    assert image_id in out


def test_an_oci_layout_written_by_umoci_loads_with_identical_diff_ids(lamina, tmp_path) -> None:
    umoci = need("umoci")
    layout = tmp_path / "umoci-layout"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True, capture_output=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:app"], check=True, capture_output=True)
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:app", str(bundle)], check=True, capture_output=True)
    (bundle / "rootfs" / "hello.txt").write_text("hello from umoci\n")
    os.makedirs(bundle / "rootfs" / "etc", exist_ok=True)
    (bundle / "rootfs" / "etc" / "motd").write_text("umoci\n")
    subprocess.run([umoci, "repack", "--image", f"{layout}:app", str(bundle)], check=True, capture_output=True)
    subprocess.run([umoci, "config", "--image", f"{layout}:app", "--config.cmd", "/bin/sh"], check=True,
                   capture_output=True)
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    config = json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
    out = lamina("load", "-i", str(layout)).stdout.decode()
    image_id = out.strip().split()[-1]
    loaded = inspect(lamina, image_id)
    assert loaded["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert image_id == "sha256:" + hashlib.sha256(
        (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()).hexdigest()


def test_umoci_unpacks_an_oci_layout_lamina_saved(lamina, tmp_path) -> None:
    umoci = need("umoci")
    lamina("load", "-i", FIXTURE)
    archive = tmp_path / "oci.tar"
    lamina("save", "--format", "oci", "-o", str(archive), "busybox:latest")
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(archive)], check=True)
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:latest", str(bundle)], check=True, capture_output=True)
    assert os.path.exists(bundle / "rootfs" / "bin" / "busybox")


def test_loading_the_fixture_and_saving_it_again_keeps_every_id(lamina, tmp_path) -> None:
    lamina("load", "-i", FIXTURE)
    archive = tmp_path / "again.tar"
    lamina("save", "-o", str(archive), "busybox")
    other = tmp_path / "other-root"
    result = subprocess.run([LAMINA, "--data-root", str(other), "load", "-i", str(archive)], capture_output=True,
                            check=True)
    assert b"Loaded image: busybox:latest" in result.stdout
    data = json.loads(subprocess.run([LAMINA, "--data-root", str(other), "image", "inspect", "busybox"],
                                     capture_output=True, check=True).stdout)[0]
    assert data["Id"] == FIXTURE_IMAGE_ID
    assert data["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    subprocess.run(["umount", "-R", str(other)], capture_output=True)
