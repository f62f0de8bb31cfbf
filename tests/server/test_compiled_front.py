"""The compiled front (lamina/cli/front.c) against a fork server played by the test: it finds
the fork server the Python front would choose (the same identity, locale coercion and path
normalisation included), sends the request the Python front would send (words, environment,
umask, descriptors 0-2 and the working directory), ends as the worker ended, relays signals,
and leaves everything else to the Python front.  test_forkserver.py runs the real fork server's
tests with both fronts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lamina import errdefs
from lamina.cli import forkserver, frontbuild
from tests.server.cacheengine import compiled_front, wait_until  # noqa: F401 - fixtures
from tests.processes import kill_until_gone
from tests.server.conftest import REPOSITORY, _processes_naming

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the fronts as root and as another user")

_PYTHON_VIEW = """
import json, os, sys
from lamina.cli import front
engine = front._default_engine(os.environ)
path = front.cache_socket(*engine, os.environ) if engine else None
print(json.dumps({"socket": front.fork_socket(path) if path else None, "engine": engine,
                  "environ": {os.fsdecode(k): os.fsdecode(v) for k, v in os.environb.items()}}))
"""


@dataclass
class Request:
    executable: str          # the client's program at the time it sent (the binary, or Python)
    words: list[str]
    environ: dict[str, str]
    umask: int
    descriptors: list[tuple[int, int]]   # (st_dev, st_ino) of stdin, stdout, stderr, cwd


@dataclass
class FakeForkServer:
    """A fork server at ``path`` that records each request and answers the next of ``answers``
    (bytes sent, then the connection closed; None: closed at once)."""
    path: str
    answers: list[bytes | None]
    requests: list[Request] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    #: the socket's mode (None: the umask's), for a client of another user
    mode: int | None = None

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        if self.mode is not None:
            os.chmod(self.path, self.mode)
        listener.listen(8)
        listener.settimeout(0.2)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._answer(conn)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self.hold.set()
            thread.join(10)
            listener.close()
            os.unlink(self.path)

    def _answer(self, conn: socket.socket) -> None:
        pid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        executable = os.path.realpath(f"/proc/{pid}/exe")
        conn.settimeout(10)
        words, environ, umask, fds = forkserver._read_request(conn)
        identities = []
        for fd in fds:
            status = os.fstat(fd)
            identities.append((status.st_dev, status.st_ino))
            os.close(fd)
        self.requests.append(Request(executable, [os.fsdecode(word) for word in words],
                                     {os.fsdecode(k): os.fsdecode(v) for k, v in environ.items()}, umask, identities))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            conn.sendall(answer)
            if answer.count(b"\n") < 2:  # a "P" alone: the command "runs" until the test ends it
                self.hold.wait(30)


@pytest.fixture
def base() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="lcf-", dir="/tmp")  # short: the socket's path fits a unix address
    try:
        yield path
    finally:
        kill_until_gone(lambda: _processes_naming(path))  # an engine cache a Python-front fallback started
        subprocess.run(["umount", "-R", "-l", path], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)


def _environment(base: str, **extra: str) -> dict[str, str]:
    environment = {"PATH": os.environ["PATH"], "LAMINA_DATA_ROOT": f"{base}/data", "LAMINA_EXEC_ROOT": f"{base}/exec"}
    environment.update(extra)
    return {name: value for name, value in environment.items() if value is not None}


def _python_view(environment: dict[str, str], cwd: str, user: int | None = None) -> dict:
    """The fork server's socket, the engine's roots and the environment as the Python front
    sees them (as ``user``: None for root)."""
    done = subprocess.run([sys.executable, "-c", _PYTHON_VIEW], env=environment, cwd=cwd, capture_output=True,
                          check=True, timeout=60, user=user)
    return json.loads(done.stdout)


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


VARIANTS = {
    "plain": {},
    "a time zone": {"TZ": "Europe/Paris"},
    "the C locale (coerced)": {"LANG": "C"},
    "the POSIX locale (coerced)": {"LANG": "POSIX"},
    "a locale the system lacks (coerced)": {"LANG": "xx_XX.UTF-8"},
    "LC_ALL=C (not coerced)": {"LC_ALL": "C"},
    "coercion turned off": {"PYTHONCOERCECLOCALE": "0"},
    "a UTF-8 locale": {"LANG": "C.UTF-8"},
    "an import path": {"PYTHONPATH": REPOSITORY},
    "a relative data root": {"LAMINA_DATA_ROOT": "data/../other//x/./"},
    "two leading slashes": {"LAMINA_DATA_ROOT": "//srv//lamina/"},
    "three leading slashes": {"LAMINA_DATA_ROOT": "///srv/../lamina"},
    "dots above the root": {"LAMINA_DATA_ROOT": "/../../srv"},
    "an exec root to normalise": {"LAMINA_EXEC_ROOT": "{base}/x/../exec/"},
    "an empty data root (the default)": {"LAMINA_DATA_ROOT": ""},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_compiled_front_sends_the_python_fronts_request_to_its_fork_server(compiled_front, base, variant):
    extra = {name: value.replace("{base}", base) for name, value in VARIANTS[variant].items()}
    environment = _environment(base, **extra)
    view = _python_view(environment, base)
    server = FakeForkServer(view["socket"], [b"P1\nX7\n"])
    stdout, stderr = os.path.join(base, "out"), os.path.join(base, "err")
    argv = ["run", "--rm", "-e", "A=b c", "busybox", "sh", "-c", "echo 'é'"]
    with server.serving(), open(stdout, "wb") as out, open(stderr, "wb") as err:
        done = subprocess.run([compiled_front, *argv], env=environment, cwd=base, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=err, timeout=60, preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 7, open(stderr, encoding="utf-8").read()
    [request] = server.requests
    assert request.executable == os.path.realpath(compiled_front)  # not left to the Python front
    assert request.words == argv
    assert request.environ == view["environ"]
    assert request.umask == 0o027
    assert request.descriptors == [_identity(os.devnull), _identity(stdout), _identity(stderr), _identity(base)]


#: an unprivileged user (nobody): its front chooses its rootless engine's cache
UNPRIVILEGED = 65534
#: (its environment, the data root and exec root of its engine) for an unprivileged user
ROOTLESS_VARIANTS = {
    "HOME": ({"HOME": "{base}/home", "XDG_RUNTIME_DIR": "{base}/run"}, ("{base}/home/.local/share/lamina", "{base}/run/lamina")),
    "a relative XDG_DATA_HOME": ({"HOME": "{base}/home", "XDG_DATA_HOME": "share/../data//", "XDG_RUNTIME_DIR": "{base}//run/"},
                                ("{base}/data/lamina", "{base}/run/lamina")),
    "the roots named": ({"LAMINA_DATA_ROOT": "{base}/d", "LAMINA_EXEC_ROOT": "{base}/e"}, ("{base}/d", "{base}/e")),
}


def _as_unprivileged(compiled_front: str, base: str) -> str:
    """The compiled front where ``nobody`` can run it, in ``base`` (which it can enter)."""
    os.chmod(base, 0o755)
    program = os.path.join(base, "lamina")
    shutil.copy(compiled_front, program)
    return program


@pytest.mark.parametrize("variant", list(ROOTLESS_VARIANTS))
def test_an_unprivileged_users_front_finds_the_python_fronts_rootless_fork_server(compiled_front, base, variant):
    program = _as_unprivileged(compiled_front, base)
    variables, roots = ROOTLESS_VARIANTS[variant]
    environment = {"PATH": os.environ["PATH"], **{name: value.replace("{base}", base) for name, value in variables.items()}}
    view = _python_view(environment, base, user=UNPRIVILEGED)
    data_root, exec_root = (root.replace("{base}", base) for root in roots)
    assert view["engine"] == [data_root, exec_root]
    assert os.path.dirname(view["socket"]) == os.path.join(exec_root, "engine-cache")
    assert view["socket"] != _python_view(environment, base)["socket"]  # root's cache is another one
    server = FakeForkServer(view["socket"], [b"P1\nX7\n"], mode=0o777)
    with server.serving():
        done = subprocess.run([program, "rm", "x"], env=environment, cwd=base, capture_output=True, timeout=60,
                              user=UNPRIVILEGED)
    assert done.returncode == 7, done.stderr
    [request] = server.requests
    assert request.executable == os.path.realpath(program)  # not left to the Python front
    assert request.words == ["rm", "x"]
    assert request.environ == view["environ"]


@pytest.mark.parametrize("variables", [{"XDG_RUNTIME_DIR": "{base}/run"}, {"HOME": "{base}/home", "XDG_RUNTIME_DIR": "run"},
                                       {"HOME": "{base}/home"}], ids=["no HOME", "a relative runtime directory",
                                                                     "no runtime directory"])
def test_an_unprivileged_user_without_a_rootless_engine_to_name_is_left_to_the_python_front(compiled_front, base,
                                                                                            variables):
    program = _as_unprivileged(compiled_front, base)
    environment = {"PATH": os.environ["PATH"], **{name: value.replace("{base}", base) for name, value in variables.items()}}
    assert _python_view(environment, base, user=UNPRIVILEGED)["engine"] is None
    # where a front that filled in what is missing (the relative runtime directory from the
    # working directory, a home) would go: nothing is sent there either
    resolved = {**environment, "HOME": environment.get("HOME", f"{base}/home"), "XDG_RUNTIME_DIR": f"{base}/run"}
    tempted = FakeForkServer(_python_view(resolved, base, user=UNPRIVILEGED)["socket"], [b"P1\nX0\n"], mode=0o777)
    with tempted.serving():
        compiled = subprocess.run([program, "rm", "x"], env=environment, cwd=base, capture_output=True, timeout=120,
                                  user=UNPRIVILEGED)
    assert tempted.requests == []
    python = subprocess.run([sys.executable, "-m", "lamina.cli.front", "rm", "x"], env=environment, cwd=base,
                            capture_output=True, timeout=120, user=UNPRIVILEGED)
    assert compiled.returncode != 0
    assert (compiled.returncode, compiled.stdout, compiled.stderr) == (python.returncode, python.stdout, python.stderr)


def test_a_repeated_variable_is_sent_once_with_its_first_value(compiled_front, base):
    environment = _environment(base)
    view = _python_view(environment, base)
    server = FakeForkServer(view["socket"], [b"P1\nX0\n"])
    block = [f"{name}={value}" for name, value in environment.items()] + ["PATH=/second", "NOT A VARIABLE"]
    # os.execve takes a mapping (one value per name): the raw block goes through libc's execve
    program = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True)\n"
               f"argv = (ctypes.c_char_p * 4)(*[a.encode() for a in ({compiled_front!r}, 'rm', 'x')], None)\n"
               f"env = (ctypes.c_char_p * {len(block) + 1})(*[e.encode() for e in {block!r}], None)\n"
               f"libc.execve({compiled_front.encode()!r}, argv, env); raise SystemExit(ctypes.get_errno())")
    with server.serving():
        done = subprocess.run([sys.executable, "-c", program], cwd=base, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [request] = server.requests
    assert request.environ["PATH"] == environment["PATH"]
    assert "NOT A VARIABLE" not in request.environ


def test_a_refused_command_is_left_to_the_python_front(compiled_front, base):
    environment = _environment(base)
    view = _python_view(environment, base)
    # the first connection (the compiled front's) gets no "P": nothing ran; the Python front
    # then sends the command again, and it runs
    server = FakeForkServer(view["socket"], [None, b"P1\nX5\n"])
    with server.serving():
        done = subprocess.run([compiled_front, "rm", "nothing"], env=environment, cwd=base, capture_output=True,
                              timeout=120)
    assert done.returncode == 5, done.stderr
    assert [request.executable for request in server.requests] == [
        os.path.realpath(compiled_front), os.path.realpath(sys.executable)]
    assert server.requests[0].words == server.requests[1].words == ["rm", "nothing"]


@pytest.mark.parametrize(("answer", "code", "message"), [
    (b"P1\nK15\n", -signal.SIGTERM, b""),           # the worker was killed: so is the front
    (b"P1\nX300\n", 300 & 0xff, b""),               # as os._exit(300)
    (b"P1\n", 125, b"Error: the engine cache's fork server went away while the command ran\n"),
    (b"P1\nbogus\n", 125, b"Error: the engine cache's fork server went away while the command ran\n"),
])
def test_the_front_ends_as_the_worker_ended(compiled_front, base, answer, code, message):
    environment = _environment(base)
    server = FakeForkServer(_python_view(environment, base)["socket"], [answer])
    server.hold.set()  # a "P" alone: the connection closes at once
    with server.serving():
        done = subprocess.run([compiled_front, "rm", "x"], env=environment, cwd=base, capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (code, message)


def _catches(pid: int, number: int) -> bool:
    """Whether process ``pid`` has a handler for signal ``number`` (``SigCgt`` in its status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    return False


def test_signals_are_relayed_to_the_worker(compiled_front, base):
    environment = _environment(base)
    worker = subprocess.Popen(["sleep", "60"])
    try:
        server = FakeForkServer(_python_view(environment, base)["socket"], [b"P%d\n" % worker.pid])
        with server.serving():
            front = subprocess.Popen([compiled_front, "rm", "x"], env=environment, cwd=base)
            try:
                # once the front read the "P" line it relays: its SIGTERM is caught
                assert wait_until(lambda: _catches(front.pid, signal.SIGTERM), 30)
                front.send_signal(signal.SIGTERM)
                assert worker.wait(30) == -signal.SIGTERM
            finally:
                server.hold.set()  # the connection closes: the front reports the lost fork server
                assert front.wait(30) == 125
    finally:
        worker.kill()
        worker.wait()


LEFT_TO_PYTHON = {
    "a global option": (["--log-level", "error", "rm", "x"], {}),
    "a daemon named": (["-H", "unix:///nonexistent", "rm", "x"], {}),
    "no command": ([], {}),
    "serve": (["serve", "--help"], {}),
    "login": (["login", "--help"], {}),
    "forwarding turned off": (["rm", "x"], {"LAMINA_FORWARD": "0"}),
    "LAMINA_HOST": (["rm", "x"], {"LAMINA_HOST": "unix:///nonexistent"}),
    "DOCKER_HOST": (["rm", "x"], {"DOCKER_HOST": "unix:///nonexistent"}),
    "another storage driver": (["rm", "x"], {"LAMINA_STORAGE_DRIVER": "vfs"}),
    "a locale coercion that warns": (["rm", "x"], {"PYTHONCOERCECLOCALE": "warn", "LANG": "C"}),
}


@pytest.mark.parametrize("case", list(LEFT_TO_PYTHON))
def test_what_the_compiled_front_leaves_to_the_python_front(compiled_front, base, case):
    argv, extra = LEFT_TO_PYTHON[case]
    environment = _environment(base, **extra)
    socket_path = _python_view(_environment(base), base)["socket"]
    server = FakeForkServer(socket_path, [b"P1\nX0\n"] * 2)
    with server.serving():
        compiled = subprocess.run([compiled_front, *argv], env=environment, cwd=base, capture_output=True, timeout=120)
        python = subprocess.run([sys.executable, "-m", "lamina.cli.front", *argv], env=environment, cwd=REPOSITORY,
                                capture_output=True, timeout=120)
    assert all(request.executable != os.path.realpath(compiled_front) for request in server.requests)
    assert (compiled.returncode, compiled.stdout, compiled.stderr) == (python.returncode, python.stdout, python.stderr)


def test_a_closed_descriptor_is_left_to_the_python_front(compiled_front, base):
    environment = _environment(base)
    server = FakeForkServer(_python_view(environment, base)["socket"], [b"P1\nX0\n"])
    with server.serving():
        done = subprocess.run([compiled_front, "rm", "x"], env=environment, cwd=base, capture_output=True,
                              timeout=120, preexec_fn=lambda: os.close(0))
    assert server.requests == []  # the Python front ran it in-process: no such container
    assert (done.returncode, done.stderr) == (4, b"Error response from daemon: No such container: x\n")


def test_a_compiler_that_fails_leaves_the_installed_front(tmp_path, monkeypatch):
    installed = tmp_path / "lamina"
    installed.write_bytes(b"#!/bin/sh\n")
    monkeypatch.setenv("CC", "false")
    with pytest.raises(errdefs.System, match="could not compile"):
        frontbuild.build(str(installed))
    assert installed.read_bytes() == b"#!/bin/sh\n"
    assert sorted(os.listdir(tmp_path)) == ["lamina"]
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.raises(errdefs.FailedPrecondition, match="cannot run the C compiler"):
        frontbuild.build(str(installed))


def test_the_config_header_carries_the_python_values_in_order():
    header = frontbuild.config_header()
    assert 'IDENTITY_ENVIRONMENT[] = {"TZ", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8", ' \
           '"PYTHONPATH", "PYTHONHOME", NULL};' in header
    assert "static const int RELAYED[] = {" + ", ".join([*forkserver.RELAYED, "0"]) + "};" in header
    assert frontbuild._literal('a"b\\c\n?é') == '"a\\042b\\134c\\012\\077\\303\\251"'


_SEGMENTS = st.sampled_from(["", ".", "..", "a", "bb", "c.d", "...", " x"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leading=st.integers(min_value=0, max_value=3), segments=st.lists(_SEGMENTS, max_size=6))
def test_a_data_root_is_normalised_as_os_path_abspath(compiled_front, base, leading, segments):
    # the data root is only hashed into the key: any path, absolute or relative to the cwd
    data_root = "/" * leading + "/".join(segments)
    environment = _environment(base, LAMINA_DATA_ROOT=data_root)
    view = _python_view(environment, base)
    server = FakeForkServer(view["socket"], [b"P1\nX3\n"])
    with server.serving():
        done = subprocess.run([compiled_front, "rm", "x"], env=environment, cwd=base, capture_output=True, timeout=60)
    assert done.returncode == 3, (data_root, done.stderr)
    assert [request.executable for request in server.requests] == [os.path.realpath(compiled_front)], data_root


def test_an_output_that_cannot_be_replaced_is_refused_whole(tmp_path):
    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler to build lamina/cli/front.c (`make` installs gcc)")
    occupied = tmp_path / "lamina"
    occupied.mkdir()  # a directory where the program goes: rename(2) refuses to replace it
    (occupied / "kept").write_text("")
    with pytest.raises(errdefs.System, match="cannot install the compiled front"):
        frontbuild.build(str(occupied))
    assert sorted(os.listdir(tmp_path)) == ["lamina"] and os.listdir(occupied) == ["kept"]
