"""``docker run`` options through the real docker CLI against ``lamina serve``, and the same
flags through the real ``lamina`` program: the effect is read from inside the container, and an
option lamina does not do fails with the field named (exit 125, no container left)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from server.conftest import BUSYBOX_ARCHIVE, DOCKER

pytestmark = [pytest.mark.privileged, pytest.mark.interop]
LAMINA = os.path.join(os.path.dirname(sys.executable), "lamina")
needs_docker = pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason=f"{DOCKER} is not installed")

INSIDE = ("cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj; df -k /dev/shm | tail -1 | "
          "awk '{print $2}'; mkdir /made 2>/dev/null && echo mkdir-allowed || echo mkdir-denied; "
          "tr '\\0' ' ' < /proc/1/cmdline")


def profile_file(tmp_path) -> str:
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    return str(path)


def check_inside(output: str) -> None:
    lines = output.splitlines()
    assert lines[:4] == ["1", "300", str(16 << 10), "mkdir-denied"], output
    assert lines[4].startswith("/sbin/docker-init -- sh -c")


@needs_docker
def test_docker_run_options_take_effect(docker, tmp_path) -> None:
    docker("load", "-i", BUSYBOX_ARCHIVE)
    result = docker("run", "--rm", "--init", "--sysctl", "net.ipv4.ip_forward=1", "--oom-score-adj", "300",
                    "--shm-size", "16m", "--security-opt", f"seccomp={profile_file(tmp_path)}",
                    "busybox", "sh", "-c", INSIDE)
    check_inside(result.stdout.decode())


@needs_docker
def test_docker_run_with_an_unsupported_option_names_it(docker) -> None:
    docker("load", "-i", BUSYBOX_ARCHIVE)
    refused = docker("run", "--rm", "--oom-kill-disable", "busybox", "true", check=False)
    assert refused.returncode == 125 and b"OomKillDisable" in refused.stderr
    refused = docker("run", "--rm", "--sysctl", "vm.swappiness=1", "busybox", "true", check=False)
    assert refused.returncode == 125 and b"vm.swappiness" in refused.stderr
    assert docker("ps", "-aq").stdout.strip() == b""


def lamina(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "--data-root", str(root), *args], capture_output=True, timeout=120)


def test_lamina_run_options_take_effect(tmp_path) -> None:
    root = tmp_path / "root"
    try:
        assert lamina(root, "load", "-q", "-i", BUSYBOX_ARCHIVE).returncode == 0
        cidfile = tmp_path / "cid"
        result = lamina(root, "run", "--rm", "--init", "--sysctl", "net.ipv4.ip_forward=1", "--oom-score-adj",
                        "300", "--shm-size", "16m", "--security-opt", f"seccomp={profile_file(tmp_path)}",
                        "--cidfile", str(cidfile), "busybox", "sh", "-c", INSIDE)
        assert result.returncode == 0, result.stderr
        check_inside(result.stdout.decode())
        assert len(cidfile.read_text()) == 64
        again = lamina(root, "run", "--rm", "--cidfile", str(cidfile), "busybox", "true")
        assert again.returncode == 125 and b"container ID file found" in again.stderr
        refused = lamina(root, "run", "--rm", "--device", "/dev/nosuchdevice", "busybox", "true")
        assert refused.returncode == 125 and b"/dev/nosuchdevice" in refused.stderr
        info = lamina(root, "info")
        assert b"Init Binary: /usr/bin/tini-static" in info.stdout
        assert lamina(root, "ps", "-aq").stdout.strip() == b""
    finally:
        subprocess.run(["umount", "-R", str(root)], capture_output=True)
