"""The monitor template's own life (no container, no root): it leaves once idle, not while a
starter holds its lock nor while a lease is open, answers a malformed request with its kind and
a probe with nothing, and a start nobody waits for still yields one template."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import threading
import time

import pytest

from lamina.container.monitor import MonitorRecipe, protocol
from lamina.container.monitor.client import TemplateLease, warm_template
from lamina.container.monitor.template import Template
from lamina.container.rundir import bind_unix, connect_unix


@pytest.fixture
def paths(tmp_path) -> tuple[str, str]:
    directory = tmp_path / "monitor-template"
    directory.mkdir()
    return str(directory / "k.sock"), str(directory / "lock")


def serve_in_thread(template: Template) -> threading.Thread:
    thread = threading.Thread(target=template.serve, daemon=True)
    thread.start()
    return thread


def test_an_idle_template_unlinks_its_socket_and_leaves(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.1))
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_a_template_does_not_leave_while_a_starter_holds_its_lock(paths) -> None:
    path, lock = paths
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.1))
        time.sleep(0.5)
        assert thread.is_alive() and os.path.exists(path)
    finally:
        os.close(fd)  # the lock goes with it
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_a_malformed_spawn_request_is_answered_invalid_argument_and_its_descriptors_closed(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.3))
    read_fd, write_fd = os.pipe()
    try:
        with connect_unix(path) as sock:
            socket.send_fds(sock, [protocol.encode({"spawn": "c" * 64})], [write_fd])
            os.close(write_fd)
            answer = protocol.read_answer(sock, 10)
        assert answer["error"]["kind"] == "invalid_argument"
        # the template closed its copy of the pipe: nobody holds the write end any more
        assert os.read(read_fd, 10) == b""
    finally:
        os.close(read_fd)
        thread.join(10)
    assert not thread.is_alive()


def test_a_lease_keeps_an_idle_template_until_its_holder_closes_it(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.1))
    with connect_unix(path) as sock:
        sock.sendall(protocol.encode({"lease": True}))
        answer = protocol.read_answer(sock, 10)
        assert answer == {"ok": True, "pid": os.getpid()}
        time.sleep(0.5)
        assert thread.is_alive() and os.path.exists(path)
    thread.join(10)
    assert not thread.is_alive()
    assert not os.path.exists(path)


def test_a_probe_gets_no_answer_and_the_template_serves_on(paths) -> None:
    path, lock = paths
    thread = serve_in_thread(Template(bind_unix(path), path, lock, idle_seconds=0.3))
    try:
        with connect_unix(path) as probe:
            probe.shutdown(socket.SHUT_WR)
            probe.settimeout(10)
            assert probe.recv(64) == b""  # closed without an answer
        with connect_unix(path) as sock:
            sock.sendall(protocol.encode({"spawn": 1}))
            assert protocol.read_answer(sock, 10)["error"]["kind"] == "invalid_argument"
    finally:
        thread.join(10)
    assert not thread.is_alive()


# a builder whose import waits for a file: the template it is given to cannot listen before
_GATED_BUILDER = '''
import os
import time

_gate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate")
_deadline = time.monotonic() + 60
while not os.path.exists(_gate) and time.monotonic() < _deadline:
    time.sleep(0.01)


def build(arguments):
    raise RuntimeError("this test's builder makes no context")
'''


def _template_processes(exec_root: str) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"-I" in argv and exec_root.encode() in argv:
            found.add(int(name))
    return found


def _template_log(exec_root: str) -> str:
    try:
        with open(os.path.join(exec_root, "monitor-template", "template.log"), encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return "(no template.log)"


def test_a_start_nobody_waits_for_keeps_the_lock_until_the_template_listens(tmp_path, monkeypatch) -> None:
    """Two warm starts and a spawn while the template imports: one template, and the
    spawn's connection waits for it instead of starting another."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "lamina_gated_builder.py").write_text(_GATED_BUILDER)
    monkeypatch.setattr(sys, "path", [*sys.path, str(modules)])  # the template's import path too
    exec_root = str(tmp_path / "run")
    recipe = MonitorRecipe(exec_root=exec_root, builder="lamina_gated_builder:build", arguments={})
    leases: list[TemplateLease] = []
    try:
        warm_template(recipe)  # returns at once: the template cannot listen before the gate opens
        warm_template(recipe)  # the first start holds the lock: no second template
        # the started process shows the template's argv once it has exec'd (a moment, under load)
        deadline = time.monotonic() + 10
        while not _template_processes(exec_root) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_template_processes(exec_root)) == 1, _template_log(exec_root)
        waiter = threading.Thread(target=lambda: leases.append(TemplateLease(recipe)), daemon=True)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), "the spawn's connection did not wait for the template being started"
        (modules / "gate").write_text("")
        waiter.join(60)
        assert leases, "the waiting connection never reached the template"
        deadline = time.monotonic() + 10
        while _template_processes(exec_root) != {leases[0].pid}:  # the first process exits once it listens
            assert time.monotonic() < deadline, _template_processes(exec_root)
            time.sleep(0.01)
    finally:
        (modules / "gate").write_text("")
        for lease in leases:
            lease.close()
            lease.sock.close()
        for pid in _template_processes(exec_root):
            os.kill(pid, signal.SIGKILL)


def test_the_templates_own_records_go_to_its_log(tmp_path, monkeypatch) -> None:
    """A context the template cannot make (its builder fails) is logged in template.log."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "lamina_failing_builder.py").write_text(
        "def build(arguments):\n    raise RuntimeError('this builder makes no context')\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(modules)])  # the template's import path too
    exec_root = str(tmp_path / "run")
    recipe = MonitorRecipe(exec_root=exec_root, builder="lamina_failing_builder:build", arguments={})
    try:
        warm_template(recipe)  # the template makes the recipe's context before any request
        deadline = time.monotonic() + 30
        while "this builder makes no context" not in _template_log(exec_root):
            assert time.monotonic() < deadline, _template_log(exec_root)
            time.sleep(0.02)
        assert "cannot prepare the monitors' context" in _template_log(exec_root)
    finally:
        for pid in _template_processes(exec_root):
            os.kill(pid, signal.SIGKILL)
