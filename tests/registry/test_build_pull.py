"""``lamina build`` pulls its base images from a real registry: a missing FROM image is pulled
(Docker's classic builder), a present one is used as it is, ``--pull`` pulls every FROM image
again; the pull's status lines appear in the build output."""

from __future__ import annotations

import pytest

from registry.conftest import FIXTURE_DIFF_ID, FIXTURE_IMAGE_ID, skopeo_push_fixture

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


def build(lamina, directory, dockerfile: str, *args: str, check: bool = True):
    directory.mkdir(exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    return lamina("build", *args, str(directory), check=check)


def test_from_a_missing_image_pulls_it_and_pull_pulls_a_present_one_again(registry, lamina, tmp_path) -> None:
    skopeo_push_fixture(registry, "base:latest")
    base = f"{registry.host}/base"
    context = tmp_path / "app"
    first = build(lamina, context, f"FROM {base}\nENV A=1\n", "-t", "app").stdout.decode()
    assert f"Step 1/2 : FROM {base}\nlatest: Pulling from base\n" in first
    assert f"Status: Downloaded newer image for {base}:latest\n ---> {FIXTURE_IMAGE_ID[7:19]}\n" in first
    assert lamina.inspect(f"{base}:latest")["Id"] == FIXTURE_IMAGE_ID
    assert lamina.inspect("app")["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]

    present = build(lamina, context, f"FROM {base}\nENV A=1\n").stdout.decode()
    assert "Pulling from" not in present and " ---> Using cache" in present

    # a newer image under the same tag in the registry; the local tag keeps the old one
    newer = build(lamina, tmp_path / "newer", f"FROM {base}\nLABEL v=2\n", "-t", f"{base}:latest").stdout.decode()
    assert "Pulling from" not in newer
    lamina("push", f"{base}:latest")
    newer_id = lamina.inspect(f"{base}:latest")["Id"]
    lamina("tag", FIXTURE_IMAGE_ID, f"{base}:latest")

    kept = build(lamina, context, f"FROM {base}\nENV A=1\n").stdout.decode()
    assert "Pulling from" not in kept and f" ---> {FIXTURE_IMAGE_ID[7:19]}\n" in kept
    pulled = build(lamina, context, f"FROM {base}\nENV A=1\n", "--pull", "-t", "app").stdout.decode()
    assert "latest: Pulling from base\n" in pulled
    assert f"Status: Downloaded newer image for {base}:latest\n ---> {newer_id[7:19]}\n" in pulled
    assert lamina.inspect(f"{base}:latest")["Id"] == newer_id
    assert lamina.inspect("app")["Config"]["Labels"] == {"v": "2"}

    again = build(lamina, context, f"FROM {base}\nENV A=1\n", "--pull").stdout.decode()
    assert f"Status: Image is up to date for {base}:latest\n" in again


def test_from_an_image_the_registry_lacks_is_a_clear_error(registry, lamina, tmp_path) -> None:
    result = build(lamina, tmp_path / "ctx", f"FROM {registry.host}/nosuch:1\nENV A=1\n", "-t", "never",
                   check=False)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert err.startswith("Dockerfile:1: ") and f"{registry.host}/nosuch" in err and "not found" in err.lower()
    assert lamina("images", "-q", "never").stdout == b""


def test_from_an_image_behind_basic_auth_pulls_with_the_logged_in_credentials(tls_registry, lamina, tmp_path) -> None:
    from registry.conftest import FIXTURE, PASSWORD, USER

    secure = {"LAMINA_INSECURE_REGISTRIES": "", "LAMINA_CERTS_D": tls_registry.certs_d}
    image = f"{tls_registry.host}/secure:1"
    lamina("load", "-i", FIXTURE)
    lamina("tag", "busybox", image)
    lamina("login", "-u", USER, "--password-stdin", tls_registry.host, input=PASSWORD.encode() + b"\n", env=secure)
    lamina("push", image, env=secure)
    lamina("rmi", image)
    lamina("logout", tls_registry.host)
    dockerfile = f"FROM {image}\nENV A=1\n"
    anonymous = build(lamina, tmp_path / "ctx", dockerfile, check=False)
    assert anonymous.returncode != 0 and "authentication required" in anonymous.stderr.decode()
    lamina("login", "-u", USER, "--password-stdin", tls_registry.host, input=PASSWORD.encode() + b"\n", env=secure)
    pulled = lamina("build", str(tmp_path / "ctx"), env=secure).stdout.decode()
    assert f"Status: Downloaded newer image for {image}\n" in pulled
    assert lamina.inspect(image)["Id"] == FIXTURE_IMAGE_ID
    assert PASSWORD not in pulled
