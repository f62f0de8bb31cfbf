"""Bad input through the real `lamina` program: a clear message naming the problem, a distinct
non-zero exit code, and nothing already stored changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
LAMINA = os.path.join(os.path.dirname(sys.executable), "lamina")


def lamina(root, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "--data-root", str(root), *args], input=input, capture_output=True,
                          timeout=120)


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    assert lamina(path, "load", "-q", "-i", FIXTURE).returncode == 0
    yield path
    subprocess.run(["umount", "-R", str(path)], capture_output=True)


def images(root) -> list[str]:
    out = lamina(root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.decode().split("\n"))


def test_an_unknown_storage_driver_is_named_with_the_available_ones(tmp_path) -> None:
    result = lamina(tmp_path / "root", "--storage-driver", "nosuch", "images")
    assert result.returncode not in (0, 1)
    assert b"unknown storage driver" in result.stderr and b"overlay2" in result.stderr


def test_an_unwritable_data_root_is_reported(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = lamina(blocker / "root", "images")
    assert result.returncode != 0
    assert str(blocker).encode() in result.stderr


@pytest.mark.parametrize("args", [
    ("tag", "busybox", "Bad:Name"),
    ("tag", "busybox", "busybox:bad tag"),
    ("rmi", "UPPER/case"),
    ("image", "inspect", "a b"),
], ids=["an uppercase repository", "a tag with a space", "an uppercase rmi", "a name with a space"])
def test_malformed_references_are_refused(root, args) -> None:
    before = images(root)
    result = lamina(root, *args)
    assert result.returncode != 0
    assert b"invalid reference format" in result.stderr or b"No such" in result.stderr, result.stderr
    assert images(root) == before


def test_a_truncated_archive_fails_and_changes_nothing(root, tmp_path) -> None:
    before = images(root)
    data = open(FIXTURE, "rb").read()
    result = lamina(root, "load", input=data[: len(data) // 3])
    assert result.returncode != 0
    assert b"truncated" in result.stderr or b"invalid" in result.stderr.lower(), result.stderr
    assert images(root) == before
    check = lamina(root, "system", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_exit_codes_differ_by_kind(root) -> None:
    missing = lamina(root, "image", "inspect", "nosuch:latest")
    malformed = lamina(root, "tag", "busybox", "Bad:Name")
    assert missing.returncode != 0 and malformed.returncode != 0
    assert missing.returncode != malformed.returncode
    inspect = lamina(root, "image", "inspect", "busybox")
    assert json.loads(inspect.stdout)[0]["RepoTags"] == ["busybox:latest"]
