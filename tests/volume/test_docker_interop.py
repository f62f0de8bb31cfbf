"""The real docker CLI and docker-py against ``lamina serve``: ``docker volume`` commands and
``docker run -v`` / ``--mount`` print and behave as with dockerd."""

from __future__ import annotations

import json
import os

import pytest
from server.conftest import (  # noqa: F401 - fixtures
    BUSYBOX_ARCHIVE,
    DOCKER,
    docker,
    server,
    socket_dir,
    start_server,
)

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def out(result) -> str:
    return result.stdout.decode()


def test_docker_volume_commands(docker) -> None:  # noqa: F811 - the fixture
    assert out(docker("volume", "create", "--label", "team=a", "-o", "type=tmpfs", "-o", "device=tmpfs",
                      "cache")) == "cache\n"
    assert out(docker("volume", "create", "plain")) == "plain\n"
    listing = out(docker("volume", "ls")).splitlines()
    assert listing[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [line.split() for line in listing[1:]] == [["local", "cache"], ["local", "plain"]]
    assert out(docker("volume", "ls", "-q", "--filter", "label=team=a")) == "cache\n"
    [volume] = json.loads(out(docker("volume", "inspect", "cache")))
    assert volume["Options"] == {"type": "tmpfs", "device": "tmpfs"} and volume["Labels"] == {"team": "a"}
    assert volume["Scope"] == "local" and volume["Mountpoint"].endswith("/volumes/cache/_data")
    assert out(docker("volume", "inspect", "--format", "{{.Driver}}", "plain")) == "local\n"
    missing = docker("volume", "inspect", "ghost", check=False)
    assert missing.returncode != 0 and b"ghost" in missing.stderr
    bad = docker("volume", "create", "-d", "flocker", "x1", check=False)
    assert bad.returncode != 0 and b'plugin "flocker" not found' in bad.stderr
    assert out(docker("volume", "rm", "cache", "plain")) == "cache\nplain\n"
    assert out(docker("volume", "ls", "-q")) == ""


def test_docker_run_with_volumes_and_prune(docker) -> None:  # noqa: F811 - the fixture
    docker("load", "-i", BUSYBOX_ARCHIVE)
    docker("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo one > /data/f")
    assert out(docker("run", "--rm", "--mount", "source=shared,target=/data,readonly", "busybox",
                      "cat", "/data/f")) == "one\n"
    refused = docker("run", "--rm", "-v", "shared:/data:ro", "busybox", "touch", "/data/g", check=False)
    assert refused.returncode != 0 and b"Read-only file system" in refused.stderr
    docker("create", "--name", "keeper", "-v", "/anon", "-v", "shared:/shared", "busybox", "true")
    mounts = json.loads(out(docker("inspect", "--format", "{{json .Mounts}}", "keeper")))
    assert sorted(mount["Destination"] for mount in mounts) == ["/anon", "/shared"]
    in_use = docker("volume", "rm", "shared", check=False)
    assert in_use.returncode != 0 and b"volume is in use" in in_use.stderr
    pruned = out(docker("volume", "prune", "-a", "-f"))
    assert pruned.strip() == "Total reclaimed space: 0B"
    docker("rm", "-v", "keeper")
    assert out(docker("volume", "ls", "-q")) == "shared\n"
    assert "shared" in out(docker("volume", "prune", "-a", "-f"))
