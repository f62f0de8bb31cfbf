"""The real docker CLI against ``lamina serve --userns-remap USER``: containers run in the
remapped user namespace, Docker's refusals reach the CLI as Docker prints them, and ``docker
info`` lists ``userns`` (with ``idmap=copy`` under ``--userns-remap-layers copy``)."""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER
from services.test_userns import RANGE, remap_user  # noqa: F401 - the fixture

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def test_docker_run_through_a_remapped_serve(start_server, remap_user) -> None:  # noqa: F811
    name, start = remap_user
    server = start_server("--userns-remap", name)

    def docker(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *argv], env=server.environment(), capture_output=True, timeout=60, check=False)

    assert docker("load", "-i", BUSYBOX_ARCHIVE).returncode == 0
    result = docker("run", "--rm", "busybox", "cat", "/proc/self/uid_map")
    assert result.returncode == 0, result.stderr.decode() + server.output()[-3000:]
    assert result.stdout.decode().split() == ["0", str(start), str(RANGE)]
    host = docker("run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map")
    assert host.stdout.decode().split() == ["0", "0", "4294967295"], host.stderr.decode()
    refused = docker("run", "--rm", "--privileged", "busybox", "true")
    assert refused.returncode == 125
    assert "privileged mode is incompatible with user namespaces" in refused.stderr.decode()
    info = docker("info").stdout.decode()
    assert "\n  userns\n" in info, info
    options = docker("info", "--format", "{{json .SecurityOptions}}").stdout.decode()
    assert "name=userns" in options and "idmap=mounts" in options, options


def test_docker_run_diff_and_export_through_a_serve_remapped_with_layer_copies(start_server, remap_user,  # noqa: F811
                                                                             tmp_path) -> None:
    name, start = remap_user
    server = start_server("--userns-remap", name, "--userns-remap-layers", "copy")

    def docker(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *argv], env=server.environment(), capture_output=True, timeout=60, check=False)

    assert docker("load", "-i", BUSYBOX_ARCHIVE).returncode == 0
    options = docker("info", "--format", "{{json .SecurityOptions}}").stdout.decode()
    assert "name=userns" in options and "idmap=copy" in options, options
    result = docker("run", "--name", "copied", "busybox", "sh", "-c",
                    "head -1 /proc/self/uid_map; stat -c '%u' /bin/busybox; touch /made; chown 5:6 /made")
    assert result.returncode == 0, result.stderr.decode() + server.output()[-3000:]
    assert result.stdout.decode().split() == ["0", str(start), str(RANGE), "0"]
    assert docker("diff", "copied").stdout.decode().split() == ["A", "/made"]
    exported = tmp_path / "exported.tar"
    assert docker("export", "-o", str(exported), "copied").returncode == 0
    with tarfile.open(exported) as archive:
        owners = {member.name: (member.uid, member.gid) for member in archive.getmembers()}
    assert owners["made"] == (5, 6) and owners["bin/busybox"] == (0, 0)
    assert docker("rm", "copied").returncode == 0
