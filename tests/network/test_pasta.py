"""lamina.network.pasta without a rootless engine: pasta's port options, the host port checks,
and the sweep of records whose container is gone (the end to end runs are in
``tests/rootless/test_rootless_network.py``)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from lamina import errdefs
from lamina.network import pasta
from lamina.network.api import PortMapping


def test_forward_options_name_each_port_and_none_for_a_protocol_without() -> None:
    ports = [{"HostIp": "127.0.0.1", "HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"},
             {"HostIp": "", "HostPort": 8443, "ContainerPort": 443, "Protocol": "tcp"}]
    assert pasta._forward_options(ports) == ["-t", "127.0.0.1/8080:80", "-t", "8443:443", "-u", "none"]
    udp = [{"HostIp": "", "HostPort": 5353, "ContainerPort": 53, "Protocol": "udp"}]
    assert pasta._forward_options(udp) == ["-t", "none", "-u", "5353:53"]
    # without ports pasta forwards nothing (its default would forward every listening port)
    assert pasta._forward_options([]) == ["-t", "none", "-u", "none"]


def test_a_port_below_the_unprivileged_start_is_refused_with_dockers_message() -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as handle:
        start = int(handle.read())
    if start == 0:
        pytest.skip("every port is unprivileged on this host")
    with pytest.raises(errdefs.FailedPrecondition) as raised:
        pasta.check_host_ports([PortMapping(ContainerPort=80, HostPort=start - 1)])
    assert (f"cannot expose privileged port {start - 1}, you can add 'net.ipv4.ip_unprivileged_port_start="
            f"{start - 1}' to /etc/sysctl.conf (currently {start})") in str(raised.value)
    pasta.check_host_ports([PortMapping(ContainerPort=80), PortMapping(ContainerPort=80, HostPort=start)])


def test_host_ports_held_by_a_record_or_a_listener_are_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held = listener.getsockname()[1]
        with pytest.raises(errdefs.Conflict, match=f"Bind for 127.0.0.1:{held} failed: port is already allocated"):
            pasta._choose_ports([PortMapping(ContainerPort=80, HostIp="127.0.0.1", HostPort=held)], [])
    recorded = [{"HostIp": "", "HostPort": held, "ContainerPort": 80, "Protocol": "tcp"}]
    with pytest.raises(errdefs.Conflict, match="port is already allocated"):
        pasta._choose_ports([PortMapping(ContainerPort=81, HostIp="127.0.0.1", HostPort=held)], recorded)
    # the same number for the other protocol is another port
    chosen = pasta._choose_ports([PortMapping(ContainerPort=81, Protocol="udp", HostPort=held)], recorded)
    assert chosen == [{"ContainerPort": 81, "Protocol": "udp", "HostIp": "", "HostPort": held}]
    # a range, and random ports: one host port per container port, none of them a recorded one
    ranged = pasta._choose_ports([PortMapping(ContainerPort=80, Range=2), PortMapping(ContainerPort=90)], recorded)
    assert [port["ContainerPort"] for port in ranged] == [80, 81, 90]
    assert len({port["HostPort"] for port in ranged}) == 3 and held not in {port["HostPort"] for port in ranged}


def _record(sandboxes: pasta.PastaSandboxes, container_id: str, pid: int | None) -> None:
    os.makedirs(sandboxes.directory, exist_ok=True)
    with open(os.path.join(sandboxes.directory, f"{container_id}.json"), "w", encoding="utf-8") as handle:
        json.dump({"SandboxKey": sandboxes.netns_path(container_id),
                   "Ports": [{"HostIp": "", "HostPort": 18000, "ContainerPort": 80, "Protocol": "tcp"}]}, handle)
    if pid is not None:
        with open(os.path.join(sandboxes.directory, f"{container_id}.pid"), "w", encoding="ascii") as handle:
            handle.write(f"{pid}\n")


def test_the_sweep_removes_the_records_of_containers_that_are_gone(tmp_path) -> None:
    sandboxes = pasta.PastaSandboxes(str(tmp_path))
    gone, live = "a" * 64, "b" * 64
    # the recorded pid is this test's own process: not a pasta of that namespace, never signalled
    _record(sandboxes, gone, os.getpid())
    _record(sandboxes, live, None)
    problems = sandboxes.problems(lambda container_id: container_id == live)
    assert [problem["Object"] for problem in problems] == [gone]
    assert "pasta not running; host ports 18000/tcp" in problems[0]["Message"]
    assert sandboxes.sweep(lambda container_id: container_id == live) == [
        f"removed leaked pasta network of container {gone}"]
    assert sorted(os.listdir(sandboxes.directory)) == [f"{live}.json"]
    assert sandboxes.sandbox(live)["Ports"][0]["HostPort"] == 18000
    # a record without a pid file (pasta not started yet) holds its ports; one whose pasta is dead does not
    assert sandboxes._holds_ports(live)
    _record(sandboxes, gone, os.getpid())
    assert not sandboxes._holds_ports(gone)
    sandboxes.detach(gone)
    sandboxes.detach(live)
    assert os.listdir(sandboxes.directory) == []
