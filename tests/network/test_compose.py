"""Debian's docker-compose (1.29) against ``lamina serve``: a web service with a published port
and a named volume, and a client that fetches it by service name on the project's network."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER, docker, server, socket_dir, start_server  # noqa: F401

COMPOSE = shutil.which("docker-compose")
pytestmark = [pytest.mark.privileged, pytest.mark.interop,
              pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")]

COMPOSE_FILE = """\
version: "3.7"
services:
  web:
    image: busybox
    command: sh -c "echo hello-compose > /www/index.html && httpd -f -p 80 -h /www"
    volumes: ["www:/www"]
    ports: ["127.0.0.1:{port}:80"]
  client:
    image: busybox
    command: wget -qO- http://web/index.html
    depends_on: [web]
volumes:
  www: {{}}
networks:
  default:
    driver_opts:
      com.docker.network.bridge.name: {bridge}
    ipam:
      config:
        - subnet: {subnet}
"""


def test_a_two_service_project(docker, server, names, tmp_path) -> None:  # noqa: F811
    docker("load", "-q", "-i", BUSYBOX_ARCHIVE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(port=port, bridge=names.bridge(),
                                                                     subnet=names.subnet()))

    def compose(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([COMPOSE, "-p", "lamproj", *argv], cwd=tmp_path, env=server.environment(),
                                capture_output=True, text=True, timeout=120, check=False)
        assert not check or result.returncode == 0, f"{result}\\n{server.output()[-3000:]}"
        return result

    try:
        compose("up", "-d", "web")
        fetched = compose("run", "--rm", "client")
        assert "hello-compose" in fetched.stdout
        deadline = time.monotonic() + 10
        answer = ""
        while time.monotonic() < deadline and "hello-compose" not in answer:
            answer = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/index.html"],
                                    capture_output=True, text=True, check=False).stdout
        assert "hello-compose" in answer
    finally:
        compose("down", "-v", check=False)
    assert b"lamproj_default" not in docker("network", "ls").stdout
