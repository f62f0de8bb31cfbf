"""The engine cache (lamina.cli.enginecache): a read that ran in-process leaves a warm engine
that answers the next reads, exactly as in-process, sees what other processes change, serves
only its own identity, and leaves when idle or told to."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from lamina.cli import enginecache, forkserver, front
from tests.processes import comm, gone
from tests.server.cacheengine import cached, engine, serving, wait_until  # noqa: F401 - fixtures
from tests.server.conftest import REPOSITORY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine cache serves root only (overlay2 needs root)")

CASES = [  # no relative times of the container made a second ago ("Less than a second ago", "1 second ago")
    ("ps", "-a", "--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Status}}\t{{.Names}}"),
    ("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.Image}} {{.Command}}"),
    ("images",),
    ("images", "-q", "--no-trunc"),
    ("inspect", "c1"),
    ("image", "inspect", "--format", "{{.Id}} {{.Os}}", "busybox"),
    ("history", "busybox"),
    ("volume", "ls"),
    ("network", "ls"),
    ("system", "df"),
    ("inspect", "nope"),
    ("ps", "--bogus"),
    ("inspect", "--format", "{{.Nope}}", "c1"),
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(case) for case in CASES])
def test_the_cache_answers_a_read_as_it_runs_in_process(cached, capfd, argv):
    expected = cached.in_process(*argv)
    got = cached.lamina(*argv)
    assert (got.returncode, got.stdout.decode(), got.stderr.decode()) == \
        (expected.returncode, expected.stdout.decode(), expected.stderr.decode())
    # and it was the cache that answered: the front got an answer without running main
    capfd.readouterr()
    assert front.forward(list(argv), cached.environment) == expected.returncode
    assert capfd.readouterr() == (expected.stdout.decode(), expected.stderr.decode())


def test_the_cache_sees_what_other_processes_change(cached, capfd):
    def names() -> list[str]:
        capfd.readouterr()
        assert front.forward(["ps", "-a", "--format", "{{.Names}}"], cached.environment) == 0
        return sorted(capfd.readouterr().out.split())

    assert names() == ["c1"]
    assert cached.in_process("create", "--name", "c2", "busybox", "true").returncode == 0
    assert names() == ["c1", "c2"]
    assert cached.in_process("rm", "c2").returncode == 0
    assert names() == ["c1"]
    assert cached.in_process("tag", "busybox", "other:tag").returncode == 0
    capfd.readouterr()
    assert front.forward(["images", "--format", "{{.Repository}}:{{.Tag}}"], cached.environment) == 0
    assert sorted(capfd.readouterr().out.split()) == ["busybox:latest", "other:tag"]
    assert cached.in_process("rmi", "other:tag").returncode == 0
    assert cached.in_process("volume", "create", "cached-volume").returncode == 0
    capfd.readouterr()
    assert front.forward(["images", "--format", "{{.Repository}}:{{.Tag}}"], cached.environment) == 0
    assert front.forward(["volume", "ls", "-q"], cached.environment) == 0
    assert capfd.readouterr().out.split() == ["busybox:latest", "cached-volume"]
    assert cached.in_process("volume", "rm", "cached-volume").returncode == 0
    capfd.readouterr()
    assert front.forward(["volume", "ls", "-q"], cached.environment) == 0
    assert capfd.readouterr().out == ""


def test_a_running_container_is_seen_running_then_exited(cached, capfd):
    assert cached.in_process("run", "-d", "--name", "c2", "--network", "none", "busybox", "sleep", "30").returncode == 0
    capfd.readouterr()
    assert front.forward(["inspect", "--format", "{{.State.Status}}", "c2"], cached.environment) == 0
    assert capfd.readouterr().out == "running\n"
    assert cached.in_process("kill", "c2").returncode == 0
    assert cached.in_process("wait", "c2").returncode == 0
    capfd.readouterr()
    assert front.forward(["inspect", "--format", "{{.State.Status}}", "c2"], cached.environment) == 0
    assert capfd.readouterr().out == "exited\n"


def test_one_cache_per_identity_and_it_leaves_when_idle(engine):
    pids = [enginecache.start(engine.socket, engine.environment, idle_seconds=2.0) for _ in range(3)]
    exited: set[int] = set()

    def gone(pid: int) -> bool:
        if pid not in exited and os.waitpid(pid, os.WNOHANG)[0] == pid:
            exited.add(pid)
        return pid in exited

    try:
        assert all(pids)
        assert wait_until(lambda: serving(engine.socket))
        # the two that found the lock held leave at once; the one that serves stays
        assert wait_until(lambda: sum(gone(pid) for pid in pids) == 2, 20), exited
        [server] = set(pids) - exited
        with open(engine.socket[:-len(".sock")] + ".pid", encoding="ascii") as handle:
            assert int(handle.read()) == server
        # idle for two seconds: it unlinks its socket and its pid file, and exits
        assert wait_until(lambda: gone(server), 30)
        assert not os.path.exists(engine.socket)
        assert not os.path.exists(engine.socket[:-len(".sock")] + ".pid")
        # and its fork server with it (the idle clock is theirs both)
        assert wait_until(lambda: not engine.processes(), 20)
        assert not os.path.exists(engine.fork_socket)
        assert not os.path.exists(engine.fork_socket[:-len(".sock")] + ".pid")
    finally:
        for pid in set(pids) - exited - {None}:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_sigterm_stops_the_cache_and_its_fork_server(cached):
    pid, fork_server, spare = cached.cache_pid(), cached.fork_server_pid(), cached.spare_pid()
    assert sorted(cached.processes()) == sorted([pid, fork_server, spare])
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not cached.processes(), 20)
    assert not os.path.exists(cached.socket) and not os.path.exists(cached.fork_socket)


def _template_pid(exec_root: str) -> int | None:
    """The monitor template of ``exec_root`` (its pid file), if one serves."""
    directory = os.path.join(exec_root, "monitor-template")
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.endswith(".pid"):
            try:
                with open(os.path.join(directory, name), encoding="ascii") as handle:
                    pid = int(handle.read())
            except (OSError, ValueError):
                continue
            if not gone(pid):  # a killed one may wait as a zombie for a subreaper (this pytest)
                return pid
    return None


def _connected(client: int, server: int) -> bool:
    """Whether process ``client`` holds a unix socket whose peer is one of process ``server``'s
    (``ss``: the peer's inode of each socket, with the process holding it)."""
    import re

    listing = subprocess.run(["ss", "-x", "-p", "-n"], capture_output=True, text=True, check=True).stdout
    sockets = [(int(match[1]), int(match[2]), int(match[3])) for match in
               re.finditer(r"^\S+\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)",
                           listing, re.MULTILINE)]
    held_by_server = {inode for inode, _peer, pid in sockets if pid == server}
    return any(pid == client and peer in held_by_server for _inode, peer, pid in sockets)


def test_the_cache_holds_the_monitor_template_a_run_started(cached):
    """As lamina serve does: a lease (a connection the template counts as a request in
    progress), so the template, which leaves after its own idle time otherwise, is there for
    every run while the cache lives; but a cache that only answered reads starts none."""
    from tests.server.conftest import kill_monitor_templates

    # the fixture's in-process create started one: the cache holds it
    assert wait_until(lambda: _template_pid(cached.exec_root) is not None), "no monitor template"
    assert wait_until(lambda: _connected(cached.cache_pid(), _template_pid(cached.exec_root)), 20), \
        "the cache holds no lease"
    kill_monitor_templates(cached.exec_root)
    time.sleep(3)  # the cache looks for one every second
    assert _template_pid(cached.exec_root) is None
    assert cached.lamina("ps", "-a").returncode == 0
    assert _template_pid(cached.exec_root) is None
    done = cached.lamina("run", "--rm", "--network", "none", "busybox", "true")
    assert done.returncode == 0, done.stderr
    template = _template_pid(cached.exec_root)
    assert template is not None
    assert wait_until(lambda: _connected(cached.cache_pid(), template), 20), "the cache holds no lease"


def test_what_the_cache_never_takes(cached, capfd):
    environment = cached.environment
    assert front.forward(["ps"], environment) == 0  # the cache serves
    capfd.readouterr()
    assert front.forward(["--data-root", cached.data_root, "ps"], environment) is None  # a global option
    assert front.forward(["ps"], {**environment, "LAMINA_FORWARD": "0"}) is None
    assert front.forward(["ps"], {**environment, "LAMINA_STORAGE_DRIVER": "vfs"}) is None
    assert front.forward(["serve", "--help"], environment) is None  # a daemon is never forked
    assert front.forward(["login", "--help"], environment) is None  # nor a command that prompts
    # another data root is another identity: another socket, where nothing serves
    other = {**environment, "LAMINA_DATA_ROOT": os.path.join(cached.base, "other")}
    assert front.cache_socket(other["LAMINA_DATA_ROOT"], cached.exec_root) != cached.socket
    assert front.forward(["ps"], other) is None
    # so is another time zone (local times print in it)
    assert front.cache_socket(cached.data_root, cached.exec_root, {"TZ": "Asia/Tokyo"}) != cached.socket
    assert front.forward(["ps"], {**environment, "TZ": "Asia/Tokyo"}) is None
    assert capfd.readouterr() == ("", "")


def test_a_command_the_cache_would_not_take_starts_no_cache(engine):
    for argv, extra in ((("ps",), {"LAMINA_FORWARD": "0"}), (("--data-root", engine.data_root, "ps"), {}),
                        (("ps",), {"LAMINA_STORAGE_DRIVER": "overlay2"}), (("version",), {"LAMINA_FORWARD": "0"}),
                        (("serve", "--help"), {}), (("login", "--help"), {}),
                        (("version",), {"LAMINA_HOST": "unix:///nonexistent"})):
        engine.lamina(*argv, **extra)
        assert not engine.processes(), argv
    assert not os.path.exists(os.path.join(engine.exec_root, front.CACHE_DIRECTORY))


def test_the_cache_serves_its_own_namespaces_only(engine):
    program = ("import os; from lamina.cli.front import cache_socket; "
               f"print(cache_socket({engine.data_root!r}, {engine.exec_root!r}, os.environ))")
    here = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=REPOSITORY,
                          env=engine.environment)
    elsewhere = subprocess.run(["unshare", "--net", "--mount", sys.executable, "-c", program], capture_output=True,
                               text=True, check=True, cwd=REPOSITORY, env=engine.environment)
    assert here.stdout.strip() == engine.socket
    assert elsewhere.stdout.strip() not in ("", "None", engine.socket)


def test_no_cache_where_its_socket_would_not_fit_a_unix_address(engine):
    deep = os.path.join(engine.base, "x" * 100)
    assert front.cache_socket(engine.data_root, deep) is None
    done = engine.lamina("ps", "-a", LAMINA_EXEC_ROOT=deep)
    assert done.returncode == 0 and b"c1" in done.stdout
    assert not engine.processes()


def _request(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(request)
        received = b""
        while piece := sock.recv(65536):
            received += piece
    return received


def test_the_cache_is_no_daemon_to_talk_to(cached):
    answer = _request(cached.socket, b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")
    body = b"ps"
    answer = _request(cached.socket, b"POST /lamina/command HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Lamina-Data-Root: /var/lib/elsewhere\r\nContent-Length: 2\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 409 ")
    assert os.stat(cached.socket).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(cached.socket)).st_mode & 0o777 == 0o700


def test_a_killed_cache_is_replaced_by_the_next_read(cached, capfd):
    pid = cached.cache_pid()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not cached.processes(), 20)  # its fork server leaves with it
    assert os.path.exists(cached.socket)  # a dead socket file: nothing listens
    assert front.forward(["ps", "-a"], cached.environment) is None  # so the read runs in-process
    done = cached.lamina("ps", "-a", "--format", "{{.Names}}")
    assert (done.returncode, done.stdout) == (0, b"c1\n")
    assert wait_until(lambda: serving(cached.socket)), "the next cache did not replace the dead socket"
    replacement = cached.cache_pid()
    assert replacement != pid and replacement in cached.processes()
    capfd.readouterr()
    assert front.forward(["ps", "-a", "--format", "{{.Names}}"], cached.environment) == 0
    assert capfd.readouterr().out == "c1\n"


def test_reads_side_by_side_through_the_cache(cached):
    expected = cached.in_process("inspect", "c1")
    runs = [subprocess.Popen([sys.executable, "-m", "lamina.cli.front", "inspect", "c1"], env=cached.environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPOSITORY) for _ in range(8)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert (run.returncode, out, err) == (0, expected.stdout, expected.stderr)
    # (waited for: a spare forked a moment ago has the fork server's name until it renames itself)
    assert wait_until(lambda: sorted(pid for pid in cached.processes() if comm(pid) != forkserver.SPARE_NAME)
                      == sorted([cached.cache_pid(), cached.fork_server_pid()]))


def test_a_data_root_replaced_under_the_cache_is_read_in_process(cached):
    pid = cached.cache_pid()
    assert cached.in_process("rm", "c1").returncode == 0
    shutil.rmtree(cached.data_root)  # a reset: the warm engine's view of it is stale now
    # the image service, built warm, lists layers it no longer finds (in-process: none)
    got = cached.lamina("system", "df")
    expected = cached.in_process("system", "df")
    assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert got.returncode == 0 and b"Images          0" in got.stdout
    # the engine failed a request of the command: the cache left rather than answer it
    assert wait_until(lambda: pid not in cached.processes(), 20)
    with open(os.path.join(os.path.dirname(cached.socket), "cache.log"), encoding="utf-8") as handle:
        assert "leaving" in handle.read()


def test_a_data_root_made_again_is_never_answered_by_the_engine_built_on_the_old_one(cached):
    pid = cached.cache_pid()
    assert cached.in_process("rm", "c1").returncode == 0
    shutil.rmtree(cached.data_root)
    os.makedirs(cached.data_root)  # another directory at the same path
    # the cache refuses (503): the front runs the read in-process
    assert front.forward(["ps", "-aq"], cached.environment) is None
    assert wait_until(lambda: pid not in cached.processes(), 20)
    got = cached.lamina("images", "-q")
    assert (got.returncode, got.stdout) == (0, b"")
