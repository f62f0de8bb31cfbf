"""The real docker CLI against ``lamina serve --userns-remap USER``: containers run in the
remapped user namespace, Docker's refusals reach the CLI as Docker prints them, and ``docker
info`` lists ``userns``."""

from __future__ import annotations

import os
import subprocess

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
