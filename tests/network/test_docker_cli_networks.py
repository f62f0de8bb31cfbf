"""The real docker CLI through ``lamina serve``: ``network create``, ``run --network`` with an
alias, name resolution between containers, ``-p``, ``port``, ``network connect`` /
``disconnect``, ``network rm``."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from network.conftest import no_teardown_meanwhile
from server.conftest import BUSYBOX_ARCHIVE, DOCKER, docker, server, socket_dir, start_server  # noqa: F401

pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]


def test_docker_cli_networks_ports_and_names(docker, names) -> None:  # noqa: F811
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)
    subnet, other_subnet = names.subnet(), names.subnet()
    docker("network", "create", "--subnet", subnet, "-o", f"com.docker.network.bridge.name={names.bridge()}", "appnet")
    docker("network", "create", "--subnet", other_subnet, "-o", f"com.docker.network.bridge.name={names.bridge()}",
           "othernet")
    try:
        docker("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "site",
               "-p", "127.0.0.1::80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
        mapping = docker("port", "web", "80").stdout.decode().strip()
        assert mapping.startswith("127.0.0.1:")
        port = mapping.rsplit(":", 1)[1]
        assert docker("port", "web").stdout.decode().strip() == f"80/tcp -> {mapping}"
        deadline = time.monotonic() + 10
        answer = ""
        while time.monotonic() < deadline and "localhost" not in answer:
            answer = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/hosts"],
                                    capture_output=True, text=True, check=False).stdout
        assert "localhost" in answer
        fetched = docker("run", "--rm", "--network", "appnet", "busybox", "wget", "-qO-", "http://site/hostname")
        assert fetched.stdout.decode().strip()
        address = docker("inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}", "web").stdout.decode()
        assert address.strip().startswith(subnet.rsplit(".", 1)[0])
        docker("run", "-d", "--name", "probe", "--network", "othernet", "busybox", "sleep", "60")
        with no_teardown_meanwhile():
            unreachable = docker("exec", "probe", "ping", "-c1", "-W1", address.strip(), check=False)
        assert unreachable.returncode != 0
        docker("network", "connect", "appnet", "probe")
        assert docker("exec", "probe", "ping", "-c1", "-W3", "web", check=False).returncode == 0
        docker("network", "disconnect", "appnet", "probe")
        with no_teardown_meanwhile():
            assert docker("exec", "probe", "ping", "-c1", "-W1", address.strip(), check=False).returncode != 0
        refused = docker("network", "rm", "appnet", check=False)
        assert refused.returncode != 0 and b"active endpoints" in refused.stderr
    finally:
        docker("rm", "-f", "web", "probe", check=False)
        docker("network", "rm", "appnet", "othernet", check=False)
    assert b"appnet" not in docker("network", "ls").stdout


def test_docker_cli_link_on_a_user_network(docker, names) -> None:  # noqa: F811
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)
    docker("network", "create", "--subnet", names.subnet(), "-o", f"com.docker.network.bridge.name={names.bridge()}",
           "linknet")
    try:
        docker("run", "-d", "--name", "linkweb", "--network", "linknet", "busybox", "sleep", "60")
        address = docker("inspect", "-f", "{{.NetworkSettings.Networks.linknet.IPAddress}}", "linkweb").stdout.decode()
        # the docker CLI sends the link twice (HostConfig.Links and EndpointsConfig.linknet.Links): one entry
        hosts = docker("run", "--rm", "--network", "linknet", "--link", "linkweb:la", "busybox", "sh", "-c",
                       "ping -c1 -W3 la >/dev/null && grep -w la /etc/hosts").stdout.decode()
        assert hosts.splitlines() == [f"{address.strip()}\tla linkweb"]
        docker("create", "--name", "linkapp", "--network", "linknet", "--link", "linkweb:la", "busybox", "true")
        links = docker("inspect", "-f", "{{json .NetworkSettings.Networks.linknet.Links}}", "linkapp").stdout.decode()
        assert links.strip() == '["linkweb:la"]'
    finally:
        docker("rm", "-f", "linkweb", "linkapp", check=False)
        docker("network", "rm", "linknet", check=False)
