"""The real docker CLI through ``lamina serve``: ``run --network/--pid/--ipc container:NAME``,
``--ipc shareable``, inspect of a container without a network of its own, and the NET I/O
column of ``stats``."""

from __future__ import annotations

import json
import os

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER, docker, server, socket_dir, start_server  # noqa: F401

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def test_docker_cli_shares_namespaces_and_counts_network_traffic(docker) -> None:  # noqa: F811
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)
    try:
        docker("run", "-d", "--name", "web", "--ipc", "shareable", "busybox", "sh", "-c",
               "echo shared > /dev/shm/note; exec httpd -f -p 8080 -h /etc")
        address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").stdout.decode().strip()
        assert address
        result = docker("run", "--rm", "--network", "container:web", "--pid", "container:web", "--ipc",
                        "container:web", "busybox", "sh", "-c",
                        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/hostname && break; "
                        "sleep 0.2; done; ip -4 -o addr show eth0; cat /dev/shm/note; ps -o args")
        output = result.stdout.decode()
        web_id = docker("inspect", "-f", "{{.Id}}", "web").stdout.decode().strip()
        assert output.startswith(web_id[:12] + "\n")
        assert f"inet {address}/" in output and "shared\n" in output and "httpd -f -p 8080" in output
        docker("create", "--name", "joiner", "--network", "container:web", "busybox", "true")
        inspected = json.loads(docker("inspect", "joiner").stdout)[0]
        assert inspected["HostConfig"]["NetworkMode"] == f"container:{web_id}"
        assert inspected["NetworkSettings"]["Networks"] == {}
        refused = docker("run", "--rm", "--network", "container:web", "--dns", "10.9.9.9", "busybox", "true",
                         check=False)
        assert refused.returncode != 0 and b"conflicting options: dns and the network mode" in refused.stderr
        docker("run", "--rm", "busybox", "ping", "-c", "3", "-W", "3", address)
        net_io = docker("stats", "--no-stream", "--format", "{{.NetIO}}", "web").stdout.decode().strip()
        received = net_io.split(" / ")[0]
        assert received not in ("0B", "--"), net_io
        docker("stop", "-t", "0", "web")
        stopped = docker("start", "joiner", check=False)
        assert stopped.returncode != 0 and b"cannot join network of a non running container" in stopped.stderr
    finally:
        docker("rm", "-f", "web", "joiner", check=False)
