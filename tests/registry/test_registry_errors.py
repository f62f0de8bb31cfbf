"""Bad input and failures: unreachable registries, missing images, corrupt blobs, a registry
killed mid-blob, platforms an index lacks, TLS verification and Basic auth."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from registry.conftest import FIXTURE, FIXTURE_IMAGE_ID, PASSWORD, USER, need, skopeo_push_fixture
from registry.test_pull_push import leftovers

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

EXIT_BAD_REQUEST, EXIT_NOT_FOUND, EXIT_REJECTED, EXIT_UNAVAILABLE = 3, 4, 6, 8


def nothing_pulled(lamina) -> None:
    found = leftovers(lamina)
    assert found == {"layerdb/sha256": [], "imagedb/content/sha256": [], "layerdb/tmp": []}, found


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("image, code, fragments", [
    ("nonexistent.invalid/app", EXIT_UNAVAILABLE, ["nonexistent.invalid", "app", "cannot connect"]),
    ("CLOSED/app", EXIT_UNAVAILABLE, ["127.0.0.1:", "app", "cannot connect"]),
    ("bad//name", EXIT_BAD_REQUEST, ["invalid reference format"]),
], ids=["an unknown host", "a refused connection", "a malformed reference"])
def test_unreachable_registries_and_bad_references_fail_clearly(lamina, image, code, fragments) -> None:
    image = image.replace("CLOSED", f"127.0.0.1:{_closed_port()}")
    result = lamina("pull", image, check=False)
    assert result.returncode == code, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr.decode()


def test_a_missing_tag_or_repository_is_not_found(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    for name in (f"{registry.host}/busybox:nope", f"{registry.host}/nothing"):
        result = lamina("pull", name, check=False)
        assert result.returncode == EXIT_NOT_FOUND, result.stderr
        assert "not found" in result.stderr.decode()
        assert name.split("/", 1)[1].split(":")[0] in result.stderr.decode()
    result = lamina("push", f"{registry.host}/not-here:1", check=False)
    assert result.returncode == EXIT_NOT_FOUND
    assert "An image does not exist locally with the tag" in result.stderr.decode()


def test_a_corrupt_blob_leaves_nothing_and_the_next_pull_succeeds(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    manifest = json.loads(subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false",
                                          f"docker://{registry.host}/busybox"], check=True,
                                         capture_output=True).stdout)
    blob = registry.blob_path(manifest["layers"][0]["digest"])
    with open(blob, "rb") as handle:
        original = handle.read()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    with open(blob, "wb") as handle:
        handle.write(damaged)
    result = lamina("pull", f"{registry.host}/busybox", check=False)
    assert result.returncode != 0
    message = result.stderr.decode()
    assert registry.host in message and "busybox" in message and manifest["layers"][0]["digest"] in message
    nothing_pulled(lamina)
    with open(blob, "wb") as handle:
        handle.write(original)
    lamina("pull", f"{registry.host}/busybox")
    assert lamina.inspect(f"{registry.host}/busybox")["Id"] == FIXTURE_IMAGE_ID


def _big_archive(path: str, size: int) -> None:
    """A docker-archive with one layer holding ``size`` random bytes."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["big:latest"], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in (("layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _pull_until_downloading(registry, lamina, tmp_path) -> subprocess.Popen:
    """A 64 MiB image pushed by skopeo, and a ``lamina pull`` of it that has started
    downloading its layer."""
    archive = str(tmp_path / "big.tar")
    _big_archive(archive, 64 << 20)
    subprocess.run([need("skopeo"), "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    f"docker://{registry.host}/big:latest"], check=True, capture_output=True, timeout=300)
    os.unlink(archive)
    process = subprocess.Popen([*lamina.command(), "pull", f"{registry.host}/big"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=lamina.env)
    assert process.stdout is not None
    for line in process.stdout:
        if b"Downloading" in line:
            break
    return process


def test_a_registry_killed_mid_blob_leaves_nothing_and_the_next_pull_succeeds(registry, lamina, tmp_path) -> None:
    process = _pull_until_downloading(registry, lamina, tmp_path)
    try:
        registry.stop()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_UNAVAILABLE, stderr
    message = stderr.decode()
    assert registry.host in message and "big" in message and "broke off" in message
    nothing_pulled(lamina)
    registry.start()
    lamina("pull", f"{registry.host}/big")
    assert lamina.inspect(f"{registry.host}/big")["Size"] == 64 << 20


def _two_platform_layout(directory: str) -> dict[str, str]:
    """An OCI layout whose index holds the fixture for linux/amd64 and a copy with an arm64
    config; returns the config digests by platform."""
    subprocess.run([need("skopeo"), "copy", f"docker-archive:{FIXTURE}", f"oci:{directory}:base"], check=True,
                   capture_output=True, timeout=120)

    def read_blob(digest: str) -> bytes:
        with open(os.path.join(directory, "blobs", "sha256", digest.split(":")[1]), "rb") as handle:
            return handle.read()

    def write_blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(directory, "blobs", "sha256", digest.split(":")[1]), "wb") as handle:
            handle.write(data)
        return digest

    with open(os.path.join(directory, "index.json")) as handle:
        index = json.load(handle)
    amd64 = index["manifests"][0]
    manifest = json.loads(read_blob(amd64["digest"]))
    config = json.loads(read_blob(manifest["config"]["digest"]))
    config.update(architecture="arm64", variant="v8")
    arm_config = json.dumps(config).encode()
    arm_manifest = dict(manifest, config=dict(manifest["config"], digest=write_blob(arm_config), size=len(arm_config)))
    arm_bytes = json.dumps(arm_manifest).encode()
    descriptors = [
        {"mediaType": amd64["mediaType"], "digest": amd64["digest"], "size": amd64["size"],
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": amd64["mediaType"], "digest": write_blob(arm_bytes), "size": len(arm_bytes),
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    ]
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": descriptors}).encode()
    nested_digest = write_blob(nested)
    index["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested_digest,
                           "size": len(nested), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    with open(os.path.join(directory, "index.json"), "w") as handle:
        json.dump(index, handle)
    return {"amd64": manifest["config"]["digest"], "arm64": arm_manifest["config"]["digest"]}


def test_an_index_pushed_by_skopeo_pulls_per_platform(registry, lamina, tmp_path) -> None:
    layout = str(tmp_path / "layout")
    configs = _two_platform_layout(layout)
    subprocess.run([need("skopeo"), "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
                    f"docker://{registry.host}/multi:latest"], check=True, capture_output=True, timeout=120)
    lamina("pull", f"{registry.host}/multi")
    assert lamina.inspect(f"{registry.host}/multi")["Id"] == configs["amd64"]
    lamina("pull", "--platform", "linux/arm64", f"{registry.host}/multi:latest")
    image = lamina.inspect(f"{registry.host}/multi")
    assert image["Id"] == configs["arm64"] and image["Architecture"] == "arm64"
    missing = lamina("pull", "--platform", "linux/s390x", f"{registry.host}/multi", check=False)
    assert missing.returncode == EXIT_NOT_FOUND
    message = missing.stderr.decode()
    assert "linux/s390x" in message and "linux/amd64" in message and "linux/arm64/v8" in message
    bad = lamina("pull", "--platform", "linux//", f"{registry.host}/multi", check=False)
    assert bad.returncode == EXIT_BAD_REQUEST


def test_tls_with_basic_auth_login_push_and_pull(tls_registry, lamina, other_lamina) -> None:
    secure = {"LAMINA_INSECURE_REGISTRIES": "", "LAMINA_CERTS_D": tls_registry.certs_d}
    host = tls_registry.host
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", f"{host}/secure:1")
    # no CA for the registry: the certificate does not verify
    untrusted = lamina("push", f"{host}/secure:1", check=False, env={"LAMINA_INSECURE_REGISTRIES": ""})
    assert untrusted.returncode == EXIT_UNAVAILABLE
    assert host in untrusted.stderr.decode() and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr.decode()
    # verified, but without credentials
    anonymous = lamina("push", f"{host}/secure:1", check=False, env=secure)
    assert anonymous.returncode == EXIT_REJECTED
    assert "authentication required" in anonymous.stderr.decode()
    wrong = lamina("login", "-u", USER, "--password-stdin", host, input=b"wrong\n", check=False, env=secure)
    assert wrong.returncode == EXIT_REJECTED
    assert b"wrong" not in wrong.stderr
    login = lamina("login", "-u", USER, "--password-stdin", host, input=PASSWORD.encode() + b"\n", env=secure)
    assert login.stdout.decode().strip().endswith("Login Succeeded")
    with open(os.path.join(lamina.env["HOME"], ".docker", "config.json")) as handle:
        stored = json.load(handle)
    assert base64.b64decode(stored["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    pushed = lamina("push", f"{host}/secure:1", env=secure)
    assert PASSWORD.encode() not in pushed.stdout + pushed.stderr
    # another engine with the same credentials pulls it
    os.makedirs(os.path.join(other_lamina.env["HOME"], ".docker"))
    shutil.copy(os.path.join(lamina.env["HOME"], ".docker", "config.json"),
                os.path.join(other_lamina.env["HOME"], ".docker", "config.json"))
    other_lamina("pull", f"{host}/secure:1", env=secure)
    assert other_lamina.inspect(f"{host}/secure:1")["Id"] == FIXTURE_IMAGE_ID
    assert "Removing login credentials" in lamina("logout", host).stdout.decode()
    after = lamina("pull", f"{host}/secure:1", check=False, env=secure)
    assert after.returncode == EXIT_REJECTED
    # the events name the references, never a secret
    events = lamina("events", "--since", "0", "--until", str(int(time.time()) + 1), "--format", "{{json .}}")
    assert b"push" in events.stdout and PASSWORD.encode() not in events.stdout


def test_bearer_tokens_anonymous_pull_and_authenticated_push(token_registry, lamina, other_lamina) -> None:
    registry, tokens = token_registry
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", f"{registry.host}/tokens:1")
    anonymous = lamina("push", f"{registry.host}/tokens:1", check=False)
    assert anonymous.returncode == EXIT_REJECTED, anonymous.stderr
    assert registry.host in anonymous.stderr.decode() and "tokens" in anonymous.stderr.decode()
    wrong = lamina("login", "-u", USER, "--password-stdin", registry.host, input=b"bad", check=False)
    assert wrong.returncode == EXIT_REJECTED and b"bad" not in wrong.stderr
    lamina("login", "-u", USER, "--password-stdin", registry.host, input=PASSWORD.encode())
    tokens.requests.clear()
    lamina("push", f"{registry.host}/tokens:1")
    # one token for the push scope, reused for every request of the push
    assert [r for r in tokens.requests if r["user"] == USER] and len(tokens.requests) <= 2, tokens.requests
    assert all(r["user"] == USER for r in tokens.requests)
    # anonymous pull: the token service grants pull to anyone
    other_lamina("pull", f"{registry.host}/tokens:1")
    assert other_lamina.inspect(f"{registry.host}/tokens:1")["Id"] == FIXTURE_IMAGE_ID
    assert any(r["user"] is None and r["scopes"] == ["repository:tokens:pull"] for r in tokens.requests)


def test_a_pull_killed_mid_blob_is_swept_by_the_next_command(registry, lamina, tmp_path) -> None:
    process = _pull_until_downloading(registry, lamina, tmp_path)
    try:
        process.kill()
    finally:
        process.wait()
    assert leftovers(lamina)["layerdb/tmp"], "the pull was killed before it registered anything"
    lamina("images")  # opening the stores sweeps what the dead pull left (its lease is free)
    nothing_pulled(lamina)
    assert lamina("system", "check").returncode == 0
    lamina("pull", f"{registry.host}/big")


def test_a_manifest_altered_in_the_registry_fails_verification(registry, lamina) -> None:
    skopeo_push_fixture(registry)
    digest = json.loads(subprocess.run([need("skopeo"), "inspect", "--tls-verify=false",
                                        f"docker://{registry.host}/busybox"], check=True,
                                       capture_output=True).stdout)["Digest"]
    path = registry.blob_path(digest)
    with open(path, "rb") as handle:
        manifest = json.load(handle)
    manifest["annotations"] = {"altered": "yes"}
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    for name in (f"{registry.host}/busybox", f"{registry.host}/busybox@{digest}"):
        result = lamina("pull", name, check=False)
        assert result.returncode == 1, result.stderr
        message = result.stderr.decode()
        assert "manifest verification failed" in message and registry.host in message and "busybox" in message
    nothing_pulled(lamina)
