"""The registry pieces that need no registry: challenges, X-Registry-Auth, references and
platforms, the distribution metadata's format, config.json and credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from lamina import errdefs
from lamina.api.distribution import decode_auth
from lamina.cli.dockerconfig import DockerConfig, encode_auth, registry_key
from lamina.distribution.metadata import MetadataStore
from lamina.distribution.pull import Platform, _select, parse_platform
from lamina.distribution.registry.auth import Credentials, parse_challenge
from lamina.distribution.registry.client import api_host, is_insecure
from lamina.image.reference import registry_domain
from lamina.services.distribution import resolve_pull_reference

DIGEST = "sha256:" + "ab" * 32
DIFF_ID = "sha256:" + "cd" * 32


@pytest.mark.parametrize("header, scheme, parameters", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull"}),
    ('Basic realm="lamina test"', "basic", {"realm": "lamina test"}),
    ('Bearer realm="r",error="insufficient_scope",scope="a:b:pull,push"', "bearer",
     {"realm": "r", "error": "insufficient_scope", "scope": "a:b:pull,push"}),
    ('Bearer realm=unquoted, service="s"', "bearer", {"realm": "unquoted", "service": "s"}),
], ids=["docker hub's bearer challenge", "a basic challenge", "an insufficient scope", "an unquoted value"])
def test_challenges_are_parsed(header, scheme, parameters) -> None:
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.parameters) == (scheme, parameters)


def test_credentials_never_show_their_secret() -> None:
    credentials = Credentials(username="me", password="hunter2")
    assert "hunter2" not in repr(credentials) and "hunter2" not in str(credentials)
    assert credentials.basic() == "Basic " + base64.b64encode(b"me:hunter2").decode()


def test_x_registry_auth_decodes_docker_clis_forms() -> None:
    assert decode_auth(None) is None and decode_auth("") is None
    assert decode_auth(base64.urlsafe_b64encode(b"{}").decode()) is None
    value = encode_auth("me", "pw", "localhost:5000")
    assert decode_auth(value.rstrip("=")) == Credentials(username="me", password="pw")
    token = decode_auth(encode_auth(server="x", identity_token="tok"))
    assert token is not None and token.identity_token == "tok"
    with pytest.raises(errdefs.InvalidArgument) as failure:
        decode_auth("!!!not-base64-secret")
    assert "secret" not in str(failure.value)


@pytest.mark.parametrize("image, tag, expected", [
    ("busybox", "latest", "docker.io/library/busybox:latest"),
    ("localhost:5000/app", "1", "localhost:5000/app:1"),
    ("localhost:5000/app:2", "", "localhost:5000/app:2"),
    ("app", DIGEST, f"docker.io/library/app@{DIGEST}"),
    ("user/app", "", "docker.io/user/app"),
], ids=["a library image", "a registry with a port", "a tag in fromImage", "a digest as tag", "no tag: all tags"])
def test_pull_references_combine_from_image_and_tag(image, tag, expected) -> None:
    assert resolve_pull_reference(image, tag).string() == expected


def test_a_tag_twice_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        resolve_pull_reference("busybox:1", "2")


@pytest.mark.parametrize("text, expected", [
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/arm64", Platform("linux", "arm64", "v8")),
    ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ("x86_64", Platform("linux", "amd64")),
])
def test_platforms_are_normalised(text, expected) -> None:
    assert parse_platform(text) == expected


@pytest.mark.parametrize("text", ["", "linux//", "a/b/c/d", "bogus", "linux/a b", "../../etc"])
def test_malformed_platforms_are_refused(text) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_platform(text)


def test_platform_selection_names_what_the_index_has() -> None:
    index = {"manifests": [
        {"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    ]}
    assert _select(index, Platform("linux", "arm64", "v8"), "x")["digest"] == "b"
    assert _select(index, Platform("linux", "arm", "v7"), "x")["digest"] == "c"
    with pytest.raises(errdefs.NotFound) as failure:
        _select(index, Platform("linux", "s390x"), "x:latest")
    assert "linux/amd64, linux/arm/v7, linux/arm64/v8" in str(failure.value)


def test_registry_names_and_insecure_hosts() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert registry_domain("https://index.docker.io/v1/") == "docker.io"
    assert registry_domain("http://localhost:5000") == "localhost:5000"
    insecure = ("127.0.0.0/8", "localhost", "registry.internal:5000")
    assert is_insecure("127.0.0.1:5000", insecure) and is_insecure("localhost:80", insecure)
    assert is_insecure("registry.internal:5000", insecure)
    assert not is_insecure("registry.internal:5001", insecure) and not is_insecure("10.0.0.1", insecure)


def test_the_metadata_is_written_as_docker_writes_it(tmp_path) -> None:
    store = MetadataStore(str(tmp_path / "distribution"))
    store.add(DIFF_ID, DIGEST, "localhost:5000/app")
    store.add(DIFF_ID, DIGEST, "localhost:5000/app")  # recorded once
    store.add(DIFF_ID, DIGEST, "localhost:5000/other")
    with open(tmp_path / "distribution" / "diffid-by-digest" / "sha256" / DIGEST[7:]) as handle:
        assert handle.read() == DIFF_ID
    with open(tmp_path / "distribution" / "v2metadata-by-diffid" / "sha256" / DIFF_ID[7:], "rb") as handle:
        assert handle.read() == (
            b'[{"Digest":"%s","SourceRepository":"localhost:5000/app","HMAC":""},'
            b'{"Digest":"%s","SourceRepository":"localhost:5000/other","HMAC":""}]' % (DIGEST.encode(), DIGEST.encode()))
    assert store.diff_id(DIGEST) == DIFF_ID
    store.remove(DIFF_ID, DIGEST, "localhost:5000/app")
    assert [m.source_repository for m in store.v2_metadata(DIFF_ID)] == ["localhost:5000/other"]
    assert store.diff_id("sha256:" + "00" * 32) is None


def test_config_json_stores_and_erases_credentials_like_docker(tmp_path) -> None:
    config = DockerConfig(str(tmp_path / "docker" / "config.json"))
    config.store("localhost:5000", "me", "pw")
    config.store("docker.io", "hub", "pw2")
    with open(config.path) as handle:
        document = json.load(handle)
    assert document["auths"]["localhost:5000"] == {"auth": base64.b64encode(b"me:pw").decode()}
    assert "https://index.docker.io/v1/" in document["auths"]
    assert stat.S_IMODE(os.stat(config.path).st_mode) == 0o600
    assert config.credentials("localhost:5000") == ("me", "pw", "")
    assert decode_auth(config.auth_header("localhost:5000")) == Credentials(username="me", password="pw")
    assert config.erase("localhost:5000") and not config.erase("localhost:5000")
    assert config.auth_header("localhost:5000") is None
    assert registry_key("https://registry-1.docker.io") == "https://index.docker.io/v1/"


def test_a_credential_helper_is_used_over_stdin(tmp_path, monkeypatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-lamina-test"
    helper.parent.mkdir()
    store = tmp_path / "helper-store.json"
    helper.write_text(f"""#!/bin/sh
action="$1"
input=$(cat)
case "$action" in
  store) printf '%s' "$input" > {store} ;;
  get) if [ -f {store} ]; then cat {store}; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f {store} ;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"registry.example:443": "lamina-test"}}))
    config = DockerConfig(str(path))
    assert config.credentials("registry.example:443") == ("", "", "")
    config.store("registry.example:443", "me", "s3cret")
    assert json.loads(store.read_text()) == {"ServerURL": "registry.example:443", "Username": "me", "Secret": "s3cret"}
    assert "s3cret" not in path.read_text()
    assert config.credentials("registry.example:443") == ("me", "s3cret", "")
    assert config.erase("registry.example:443") and not store.exists()
