"""``lamina push --format oci``: an OCI image manifest instead of Docker's schema 2, read back by
skopeo and pulled by another engine with the same image id."""

from __future__ import annotations

import json
import subprocess

import pytest

from registry.conftest import FIXTURE, FIXTURE_DIFF_ID, FIXTURE_IMAGE_ID, need

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def skopeo(registry, name: str, *extra: str) -> dict:
    return json.loads(subprocess.run([need("skopeo"), "inspect", "--tls-verify=false", *extra,
                                      f"docker://{registry.host}/{name}"], check=True, capture_output=True,
                                     timeout=60).stdout)


def test_push_format_oci_pushes_an_oci_manifest_that_skopeo_reads_and_lamina_pulls(registry, lamina,
                                                                                   other_lamina) -> None:
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", f"{registry.host}/oci:1")
    lamina("tag", "busybox", f"{registry.host}/docker:1")
    out = lamina("push", "--format", "oci", f"{registry.host}/oci:1").stdout.decode()
    raw = skopeo(registry, "oci:1", "--raw")
    assert raw["mediaType"] == OCI_MANIFEST
    assert raw["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",
                             "size": raw["config"]["size"], "digest": FIXTURE_IMAGE_ID}
    assert [layer["mediaType"] for layer in raw["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    seen = skopeo(registry, "oci:1")
    assert f"1: digest: {seen['Digest']} size: " in out
    assert lamina.inspect(f"{registry.host}/oci:1")["RepoDigests"] == [f"{registry.host}/oci@{seen['Digest']}"]
    assert skopeo(registry, "oci:1", "--config")["rootfs"]["diff_ids"] == [FIXTURE_DIFF_ID]
    # the default stays Docker's schema 2; the layer blob is the same one
    lamina("push", f"{registry.host}/docker:1")
    docker = skopeo(registry, "docker:1", "--raw")
    assert docker["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert docker["layers"][0]["digest"] == raw["layers"][0]["digest"]
    assert skopeo(registry, "docker:1")["Digest"] != seen["Digest"]
    other_lamina("pull", f"{registry.host}/oci:1")
    assert other_lamina.inspect(f"{registry.host}/oci:1")["Id"] == FIXTURE_IMAGE_ID


def test_an_unknown_manifest_format_is_refused(registry, lamina) -> None:
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", f"{registry.host}/x:1")
    result = lamina("push", "--format", "v2s1", f"{registry.host}/x:1", check=False)
    assert result.returncode != 0 and "invalid choice: 'v2s1'" in result.stderr.decode()


def test_the_engine_refuses_an_unknown_manifest_format_before_sending_anything(tmp_path) -> None:
    from lamina import errdefs
    from lamina.config import EngineConfig
    from lamina.services.compose import build_services

    services = build_services(EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run")))
    sent: list[dict] = []
    with pytest.raises(errdefs.InvalidArgument, match="unknown manifest format 'v2s1': docker or oci"):
        services.distribution.push("127.0.0.1:9/x", tag="1", progress=sent.append, manifest_format="v2s1")
    assert sent == []
