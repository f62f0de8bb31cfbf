"""``--network``, ``--pid``, ``--ipc`` and ``--uts`` ``container:NAME`` and ``--ipc shareable``
through the ``lamina`` program (a separate process, the in-process engine, real namespaces)."""

from __future__ import annotations

import json

import pytest

from cli.test_containers_e2e import loaded_engine

pytestmark = pytest.mark.privileged


def test_run_with_the_namespaces_of_another_container() -> None:
    with loaded_engine("lsn-") as lamina:
        web = lamina.ok("run", "-d", "--name", "web", "--network", "none", "--ipc", "shareable", "-h", "webhost",
                        "busybox", "sh", "-c", "echo shared > /dev/shm/note; exec httpd -f -p 127.0.0.1:8080 -h /etc")
        lamina.wait_for(lambda: "8080" in lamina.ok("exec", "web", "netstat", "-ltn"))
        result = lamina("run", "--rm", "--network", "container:web", "--pid", "container:web", "--ipc",
                        "container:web", "--uts", "container:web", "busybox", "sh", "-c",
                        "wget -qO- http://127.0.0.1:8080/hostname; hostname; cat /dev/shm/note; "
                        "cat /proc/1/cmdline | tr '\\0' ' '")
        assert result.code == 0, result.err
        assert result.out == "webhost\nwebhost\nshared\nhttpd -f -p 127.0.0.1:8080 -h /etc "
        joiner = lamina.ok("create", "--network", "container:web", "busybox", "true").strip()
        inspected = json.loads(lamina.ok("inspect", joiner))[0]
        assert inspected["HostConfig"]["NetworkMode"] == f"container:{web.strip()}"
        assert inspected["NetworkSettings"]["Networks"] == {}
        refused = lamina("run", "--rm", "--network", "container:web", "-p", "80:80", "busybox", "true")
        assert refused.code == 125
        assert "conflicting options: port publishing and the container type network mode" in refused.err
        lamina.ok("stop", "-t", "0", "web")
        stopped = lamina("start", joiner)
        assert stopped.code != 0 and "cannot join network of a non running container" in stopped.err
