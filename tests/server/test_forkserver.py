"""The engine cache's fork server (lamina.cli.forkserver): a command that is not a read runs in
a fork of the warm cache, with the caller's descriptors, terminal, environment, umask and
working directory, as it runs in-process; the caller's signals reach it, its death takes the
worker, the worker's death by a signal is the caller's."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from lamina.cli import enginecache, forkserver, front
from tests.processes import children, comm
from tests.server.cacheengine import cached as cached_engine, cmdline, compiled_front, engine, serving, wait_until  # noqa: F401 - fixtures
from tests.server.conftest import REPOSITORY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine cache serves root only (overlay2 needs root)")

_QUIET = ("--network", "none", "busybox")  # no network: nothing of the test leaves the host

CASES = [
    ("run", "--rm", *_QUIET, "sh", "-c", "echo out; echo err >&2; exit 3"),
    ("run", "--rm", *_QUIET, "true"),
    ("run",),                                   # a usage error: 125 and argparse's words
    ("run", "--bogus", "busybox"),
    ("rm", "nope"),                             # the engine's error, exit 1
    ("version", "--format", "{{.Client.Version}} {{.Server.Os}}"),
    ("ps", "--help"),                           # help is not a read the cache answers: forked
    ("container", "rm", "--help"),              # an alias's usage names the alias
    ("nope",),
]


@pytest.fixture(params=["python-front", "compiled-front"])
def cached(request, cached_engine):
    """The cached engine, its commands run by the Python front and by the compiled one
    (lamina/cli/front.c): the same client of the fork server."""
    if request.param == "compiled-front":
        cached_engine.program = (request.getfixturevalue("compiled_front"),)
    return cached_engine


def _front(engine, *argv: str, **options) -> subprocess.Popen:
    environment = {**engine.environment, **options.pop("env", {})}
    return subprocess.Popen([*engine.program, *argv], env=environment,
                            cwd=options.pop("cwd", REPOSITORY), **options)


@contextlib.contextmanager
def _running(engine, *argv: str, **options) -> Iterator[subprocess.Popen]:
    """``_front`` as a context: the front is killed and reaped at the end, whatever happened."""
    run = _front(engine, *argv, **options)
    try:
        yield run
    finally:
        run.kill()
        run.communicate()


def _workers(pid: int) -> list[int]:
    """The children of the fork server ``pid`` that run a command (not its spare)."""
    return [child for child in children(pid) if comm(child) != forkserver.SPARE_NAME]


def _worker(engine, run: subprocess.Popen) -> int:
    """The worker of ``engine``'s fork server that runs ``run``'s command, once it runs: the
    child of the fork server on the front's standard output (by name, a spare forked a moment
    ago and not yet named would count as one, and the spare given the command keeps the
    spares' name until it read it)."""
    fork_server = engine.fork_server_pid()
    output = os.readlink(f"/proc/{run.pid}/fd/1")
    found: list[int] = []

    def on_output(pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/fd/1") == output
        except OSError:
            return False

    def started() -> bool:
        found[:] = [child for child in children(fork_server) if on_output(child)]
        return len(found) == 1

    assert wait_until(started), "no worker started"
    return found[0]


def _read_until(fd: int, marker: bytes, seconds: float = 60.0) -> bytes:
    received = b""
    deadline = time.monotonic() + seconds
    while marker not in received:
        assert time.monotonic() < deadline, received
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                piece = os.read(fd, 4096)
            except OSError:  # a pty whose other side closed
                break
            if not piece:
                break
            received += piece
    return received


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(case) for case in CASES])
def test_a_command_runs_in_a_worker_as_it_runs_in_process(cached, argv):
    expected = cached.in_process(*argv)
    got = cached.lamina(*argv)
    assert (got.returncode, got.stdout.decode(), got.stderr.decode()) == \
        (expected.returncode, expected.stdout.decode(), expected.stderr.decode())


# what the engine cache loads and builds before it forks its fork server (enginecache._warm),
# what the fork server builds before it forks a worker (forkserver.serve), then two workers:
# the first starts the monitor template as a previous command would have, the second prints
# the modules its run loaded
_WORKER_IMPORTS = """
import os, sys
from lamina.cli import enginecache
from lamina.cli.main import main, prebuild_parsers
from lamina.client.transport import InProcessTransport
from lamina.config import EngineConfig
from lamina.records import compile_loaded_inits

config = EngineConfig.from_environment()
enginecache._warm(InProcessTransport(config).router, config)
prebuild_parsers()
compile_loaded_inits()
argv = sys.argv[1:]
for report in (False, True):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # create prints the id
        before = set(sys.modules)
        code = main(argv)
        os.write(write_fd, " ".join(sorted(set(sys.modules) - before)).encode() if report else b"")
        os._exit(code)
    os.close(write_fd)
    loaded = os.read(read_fd, 65536).decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
print(loaded)
"""


@pytest.mark.parametrize("argv", [("run", "--rm", *_QUIET, "true"), ("create", *_QUIET, "true")])
def test_a_worker_starting_a_container_loads_no_module(engine, argv):
    """What ``run`` and ``create`` import in a worker costs every one of them (a module's load is
    ~0.2-2 ms): the cache loads it before it forks (``enginecache._FORKED_MODULES``)."""
    try:
        done = subprocess.run([sys.executable, "-c", _WORKER_IMPORTS, *argv], env=engine.environment,
                              capture_output=True, cwd=REPOSITORY, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().split() == []
    finally:
        engine.in_process("container", "prune", "-f")  # the containers the workers created


def test_what_the_fork_server_never_takes(cached, capfd):
    environment = cached.environment
    command = ["run", "--rm", *_QUIET, "echo", "forked"]
    # this process's descriptors go to the worker: it prints on them
    assert front.forward(command, environment) == 0
    assert capfd.readouterr() == ("forked\n", "")
    assert front.forward(["--data-root", cached.data_root, *command], environment) is None  # a global option
    assert front.forward(command, {**environment, "LAMINA_FORWARD": "0"}) is None
    assert front.forward(command, {**environment, "LAMINA_STORAGE_DRIVER": "vfs"}) is None  # another engine
    assert front.forward(command, {**environment, "LAMINA_HOST": "unix:///nonexistent"}) is None  # a daemon's
    assert front.forward(command, {**environment, "DOCKER_HOST": "unix:///nonexistent"}) is None
    assert front.forward(command, {**environment, "TZ": "Asia/Tokyo"}) is None  # another identity
    assert capfd.readouterr() == ("", "")


def test_a_worker_has_the_environment_the_command_was_forwarded_with(cached, capfd):
    """``forward(argv, environ)`` keys the fork server on ``environ`` and sends it, not the
    calling process's own (which names no data root here: the default one)."""
    environment = {**cached.environment, "FORWARDED_ONLY": "from the mapping"}
    assert "FORWARDED_ONLY" not in os.environ and "LAMINA_DATA_ROOT" not in os.environ
    command = ["run", "--rm", "-e", "FORWARDED_ONLY", *_QUIET, "sh", "-c", 'echo "$FORWARDED_ONLY"']
    assert front.forward(command, environment) == 0
    assert capfd.readouterr() == ("from the mapping\n", "")


def test_the_worker_is_a_child_of_the_fork_server_on_the_callers_descriptors(cached, tmp_path):
    with _running(cached, "run", "--rm", *_QUIET, "sleep", "2", cwd=tmp_path, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE) as run:
        worker = _worker(cached, run)
        assert children(run.pid) == []  # the caller forked nothing: it waits for the worker's status
        # (a mount of the command's changes it for an instant, as in-process: lamina.mount)
        assert wait_until(lambda: os.readlink(f"/proc/{worker}/cwd") == str(tmp_path), 10)
        pipe = os.readlink(f"/proc/self/fd/{run.stdout.fileno()}")
        assert os.readlink(f"/proc/{worker}/fd/1") == pipe
        assert os.readlink(f"/proc/{worker}/fd/2") == os.readlink(f"/proc/self/fd/{run.stderr.fileno()}")
        assert b"lamina.cli.enginecache" in cmdline(worker)
        assert run.wait(60) == 0
    assert wait_until(lambda: not _workers(cached.fork_server_pid()))


def _sockets(pid: int) -> set[str]:
    """The sockets process ``pid`` holds (``socket:[inode]``)."""
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:"):
                found.add(target)
    return found


def test_a_command_runs_in_the_spare_forked_ahead_and_the_next_spare_waits_while_it_runs(cached):
    spare = cached.spare_pid()
    with _running(cached, "run", "--rm", "-i", *_QUIET, "sh", "-c", "echo ready; read line",
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE) as run:
        assert _read_until(run.stdout.fileno(), b"ready") == b"ready\n"
        assert _worker(cached, run) == spare
        assert comm(spare) == comm(cached.fork_server_pid())  # the fork server's name again
        following = cached.spare_pid()  # forked as the command began, not once it ended
        assert following != spare and run.poll() is None
        # the running command's client connection (the fork server's and its worker's) is not
        # the new spare's: held open there, it would keep the client waiting for its end
        connection = _sockets(cached.fork_server_pid()) & _sockets(spare)
        assert connection
        assert not connection & _sockets(following)
        run.stdin.write(b"go\n")  # the container's line: it ends
        run.stdin.flush()
        assert run.wait(60) == 0
    assert cached.spare_pid() == following  # it waits for the next command


def test_a_worker_records_the_pages_it_wrote_beside_the_fork_servers_socket(cached):
    from lamina import warmpages

    record = warmpages.pages_path(cached.fork_socket)
    assert not os.path.exists(record)  # a new engine: its first spare faults nothing in, its worker records
    run = _front(cached, "run", "--rm", *_QUIET, "true", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.wait(60) == 0
    assert wait_until(lambda: os.path.exists(record), 20)
    size = os.path.getsize(record)
    assert size and size % 16 == 0  # (start, length) pairs


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL])
def test_the_spare_leaves_with_its_fork_server(cached, number):
    spare = cached.spare_pid()
    os.kill(cached.fork_server_pid(), number)
    assert wait_until(lambda: not os.path.exists(f"/proc/{spare}") or cmdline(spare) == b"", 20)


def test_the_callers_environment_umask_working_directory_and_stdin(cached, tmp_path):
    environment = {"GREETING": "hello from the caller"}
    got = cached.lamina("run", "--rm", "-e", "GREETING", *_QUIET, "sh", "-c", 'echo "$GREETING"',
                        GREETING=environment["GREETING"])
    assert (got.returncode, got.stdout) == (0, b"hello from the caller\n")
    got = subprocess.run([*cached.program, "run", "--rm", "-i", *_QUIET, "cat"],
                         env=cached.environment, input=b"piped in\n", capture_output=True, timeout=120, cwd=REPOSITORY)
    assert (got.returncode, got.stdout) == (0, b"piped in\n")
    modes = []
    for where, extra in (("forked", {}), ("in-process", {"LAMINA_FORWARD": "0"})):
        directory = tmp_path / where
        directory.mkdir()
        done = subprocess.run([*cached.program, "save", "-o", "busybox.tar", "busybox"],
                              env={**cached.environment, **extra}, cwd=directory, capture_output=True, timeout=120,
                              preexec_fn=lambda: os.umask(0o027))
        assert done.returncode == 0, done.stderr
        modes.append(os.stat(directory / "busybox.tar").st_mode & 0o777)
    assert modes[0] == modes[1] and not modes[0] & 0o007


def test_the_callers_terminal_and_its_size_changes(cached):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    program = "stty size; trap 'stty size; exit 4' WINCH; echo ready; while :; do sleep 0.1; done"
    run = _front(cached, "run", "--rm", "-t", "--name", "c2", *_QUIET, "sh", "-c", program, stdin=slave,
                 stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        seen = _read_until(master, b"ready")
        assert b"33 77" in seen
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        run.send_signal(signal.SIGWINCH)  # as the kernel does to the terminal's foreground group
        seen += _read_until(master, b"40 100")
        assert run.wait(60) == 4, seen
    finally:
        run.kill()
        run.wait()
        os.close(master)


def test_a_signal_to_the_caller_reaches_the_command(cached):
    program = "trap 'exit 7' INT; echo ready; while :; do sleep 0.1; done"
    with _running(cached, "run", "--rm", "--name", "c2", *_QUIET, "sh", "-c", program, stdout=subprocess.PIPE) as run:
        assert _read_until(run.stdout.fileno(), b"ready") == b"ready\n"
        # the compiled front sent the command itself (it did not leave it to the Python front)
        assert os.path.realpath(f"/proc/{run.pid}/exe") == os.path.realpath(
            cached.program[0] if len(cached.program) == 1 else sys.executable)
        worker = _worker(cached, run)
        run.send_signal(signal.SIGINT)  # proxied to the container, as by an in-process run
        try:
            code = run.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the SIGINT did not end the container within 60 s:\n{_signal_diagnosis(cached, worker)}")
        assert code == 7


def _signal_diagnosis(engine, worker: int) -> str:
    """What a lost signal leaves to read: each thread of the worker (its signal masks, pending
    signals and kernel stack), the container's record and its processes' signal state."""
    def signal_state(path: str) -> str:
        with open(f"{path}/status", encoding="ascii") as handle:
            fields = [line.strip() for line in handle if line.startswith(("Name", "State", "Sig", "ShdPnd"))]
        return " ".join(fields)

    lines = []
    for tid in sorted(os.listdir(f"/proc/{worker}/task")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{worker}/task/{tid}/stack", encoding="ascii") as handle:
                stack = handle.read().split()[1::2][:6]
            lines.append(f"worker thread {tid}: {signal_state(f'/proc/{worker}/task/{tid}')} kernel stack {stack}")
    inspected = engine.in_process("inspect", "--format", "{{json .State}}", "c2")
    lines.append(f"container state: {inspected.stdout.decode().strip()} {inspected.stderr.decode().strip()}")
    top = engine.in_process("top", "c2", "-o", "pid")
    for pid in top.stdout.decode().split()[1:]:
        with contextlib.suppress(OSError):
            lines.append(f"container process {pid}: {signal_state(f'/proc/{pid}')}")
    return "\n".join(lines)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return handle.read().rpartition(")")[2].split()[0]


def test_job_control_stops_and_continues_the_command(cached):
    program = "echo ready; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"
    with _running(cached, "run", "--rm", "--name", "c2", *_QUIET, "sh", "-c", program, stdout=subprocess.PIPE) as run:
        assert _read_until(run.stdout.fileno(), b"ready").startswith(b"ready")
        worker = _worker(cached, run)
        assert os.path.realpath(f"/proc/{run.pid}/exe") == os.path.realpath(
            cached.program[0] if len(cached.program) == 1 else sys.executable)
        run.send_signal(signal.SIGTSTP)  # the terminal's suspend key
        assert wait_until(lambda: _state(run.pid) == "T" and _state(worker) == "T", 20)
        run.send_signal(signal.SIGCONT)  # fg
        assert wait_until(lambda: _state(run.pid) != "T" and _state(worker) != "T", 20)


def test_a_caller_that_dies_takes_its_worker(cached):
    with _running(cached, "run", "--rm", "--name", "c2", *_QUIET, "sh", "-c", "echo ready; sleep 60",
                  stdout=subprocess.PIPE) as run:
        # once the command runs: before, the one child of the fork server may be its spare,
        # forked as the cache started and not yet named (a front killed then sent nothing)
        assert _read_until(run.stdout.fileno(), b"ready") == b"ready\n"
        worker = _worker(cached, run)
        run.kill()
        run.wait()
        assert wait_until(lambda: not os.path.exists(f"/proc/{worker}") or cmdline(worker) == b"", 20)


def test_a_worker_killed_by_a_signal_takes_its_caller(cached):
    with _running(cached, "run", "--rm", "--name", "c2", *_QUIET, "sh", "-c", "echo ready; sleep 60",
                  stdout=subprocess.PIPE) as run:
        # once the command runs (a worker killed before it said so ran nothing: the front would
        # run the command itself)
        assert _read_until(run.stdout.fileno(), b"ready") == b"ready\n"
        os.kill(_worker(cached, run), signal.SIGKILL)
        assert run.wait(60) == -signal.SIGKILL  # killed as the command's own process would be


def test_a_killed_fork_server_leaves_its_running_command_whole(cached):
    fork_server, cache = cached.fork_server_pid(), cached.cache_pid()
    with _running(cached, "run", "--rm", *_QUIET, "sh", "-c", "sleep 2; echo finished", stdout=subprocess.PIPE) as run:
        _worker(cached, run)
        os.kill(fork_server, signal.SIGKILL)
        out, _ = run.communicate(timeout=60)  # the worker tells its client its end itself
        assert (run.returncode, out) == (0, b"finished\n")
    # the cache leaves without its fork server; the next command runs in-process, starts another
    assert wait_until(lambda: not os.path.exists(f"/proc/{cache}") or cmdline(cache) == b"", 20)
    done = cached.lamina("run", "--rm", *_QUIET, "echo", "again")
    assert (done.returncode, done.stdout) == (0, b"again\n")
    # the new cache's socket listens once its fork server's pid file is written
    assert wait_until(lambda: serving(cached.socket) and serving(cached.fork_socket))
    assert cached.fork_server_pid() != fork_server


def test_commands_side_by_side(cached):
    runs = [_front(cached, "run", "--rm", *_QUIET, "echo", str(number), stdout=subprocess.PIPE) for number in range(4)]
    for number, run in enumerate(runs):
        out, _ = run.communicate(timeout=120)
        assert (run.returncode, out) == (0, f"{number}\n".encode())


def test_a_running_worker_keeps_the_cache_and_its_fork_server(engine):
    pid = enginecache.start(engine.socket, engine.environment, idle_seconds=1.0)
    try:
        assert wait_until(lambda: serving(engine.socket) and serving(engine.fork_socket))
        done = engine.lamina("run", "--rm", *_QUIET, "sh", "-c", "sleep 3; echo done")
        assert (done.returncode, done.stdout) == (0, b"done\n")
        assert serving(engine.socket) and serving(engine.fork_socket)  # the run was activity
        assert wait_until(lambda: not engine.processes(), 30)  # then both leave, idle
        assert not os.path.exists(engine.socket) and not os.path.exists(engine.fork_socket)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_bad_request_is_refused_and_the_fork_server_serves_on(cached):
    for request, descriptors in ((b"garbage\n", []), (b"3\n1\x000", [0, 1, 2, 0]), (b"99999999999999\n", [0, 1, 2, 0])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(cached.fork_socket)
            sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(descriptors)}i",
                                                                                        *descriptors))]
                           if descriptors else [])
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""  # closed: no worker ran
    done = cached.lamina("run", "--rm", *_QUIET, "echo", "still serving")
    assert (done.returncode, done.stdout) == (0, b"still serving\n")
    assert os.stat(cached.fork_socket).st_mode & 0o777 == 0o600


_WORDS = st.lists(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20),
                  max_size=8)
_ENVIRONMENT = st.dictionaries(st.binary(min_size=1, max_size=10).filter(lambda name: b"=" not in name and b"\0" not in name),
                               st.binary(max_size=30).filter(lambda value: b"\0" not in value), max_size=8)


@settings(max_examples=60, deadline=None)
@given(words=_WORDS, environ=_ENVIRONMENT, umask=st.integers(0, 0o777))
def test_a_request_reads_back_as_sent(words, environ, umask):
    left, right = socket.socketpair()
    descriptors = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]
    try:
        message = forkserver.encode_request(words, environ, umask)
        sent = left.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("4i", *descriptors))])
        left.sendall(message[sent:])
        got_words, got_environ, got_umask, fds = forkserver._read_request(right)
        for fd in fds:
            os.close(fd)
        assert ([os.fsdecode(word) for word in got_words], got_environ, got_umask, len(fds)) == \
            (words, environ, umask, 4)
    finally:
        for fd in descriptors:
            os.close(fd)
        left.close()
        right.close()


class _ClosingSpare:
    """A spare's control socket whose spare reads the whole request at once and closes its end
    before the fork server's send returns (a spare that went on to run the command)."""

    def __init__(self, control: socket.socket, spare_end: socket.socket) -> None:
        self.control = control
        self.spare_end = spare_end
        self.received = b""

    def sendmsg(self, *arguments):
        sent = self.control.sendmsg(*arguments)
        data, ancillary, _flags, _address = self.spare_end.recvmsg(1 << 16, socket.CMSG_SPACE(5 * 4))
        self.received = data
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for index in range(0, len(payload) - 3, 4):
                    os.close(int.from_bytes(payload[index:index + 4], sys.byteorder))
        self.spare_end.close()
        return sent

    def sendall(self, data: bytes) -> None:
        self.control.sendall(data)

    def close(self) -> None:
        self.control.close()


def test_a_spare_that_took_its_request_at_once_is_that_clients_worker():
    # the fork server used to send the rest of the request even when nothing was left: that
    # empty send failed on the spare's closed end, it took the spare for dead, waited for it
    # (the command ran meanwhile: a long one hung the fork server) and forked a second worker
    import selectors

    spare = subprocess.Popen(["sleep", "60"])
    control, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]
    selector = selectors.DefaultSelector()
    pidfd = os.pidfd_open(spare.pid)
    try:
        selector.register(pidfd, selectors.EVENT_READ, "spare")
        racing = _ClosingSpare(control, spare_end)
        spares = [forkserver._Spare(spare.pid, pidfd, racing)]
        workers: dict = {}
        request = forkserver.encode_request(["run", "busybox"], {b"A": b"b"}, 0o022)
        assert forkserver._hand_over(selector, spares, workers, conn, request, fds)
        assert racing.received == request and spares == []
        assert [worker.pid for worker in workers.values()] == [spare.pid]  # the client's worker now
    finally:
        spare.kill()
        spare.wait()
        selector.close()
        for fd in [*fds, pidfd]:
            os.close(fd)
        for sock in (control, client, conn):
            sock.close()
