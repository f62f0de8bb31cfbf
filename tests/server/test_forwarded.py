"""Read-only commands handed to a running ``lamina serve`` (lamina.cli.front, lamina.cli.forwarded).

What a forwarded command prints (stdout, stderr, exit code) must be what the same command
prints in-process against the same data root; the front must load nothing of the CLI when the
daemon takes the command, and run it in-process whenever the daemon does not (no daemon, not
lamina, another data root, an answer cut short), having printed nothing."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lamina import config, stdcopy
from lamina.api.http import Headers, Request, Response
from lamina.cli import front, main
from lamina.cli.context import Context, GlobalOptions
from lamina.cli.forwarded import CommandHandler
from lamina.cli.main import COMMANDS, run_command
from tests.server.conftest import BUSYBOX_ARCHIVE, REPOSITORY

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lamina serve with overlay2 needs root")

COMMAND_LOG = "POST /lamina/command"


def _environment(server, **extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_FORWARD", "LAMINA_DATA_ROOT",
                                  "LAMINA_LOG_LEVEL", "COLUMNS", "TZ")}
    environment["LAMINA_EXEC_ROOT"] = server.exec_root
    environment.update(extra)
    return environment


def _lamina(server, *argv: str, **extra: str) -> subprocess.CompletedProcess:
    """The ``lamina`` program (its front first), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "lamina.cli.front", *argv], env=_environment(server, **extra),
                          capture_output=True, cwd=REPOSITORY, timeout=60)


@pytest.fixture
def engine(server) -> Iterator:
    """A server holding busybox, a created container c1 (port 80 published) and a volume."""
    for argv in (("load", "-q", "-i", BUSYBOX_ARCHIVE), ("create", "--name", "c1", "-p", "127.0.0.1::80", "busybox", "true"),
                 ("volume", "create", "v1")):
        done = _lamina(server, "-H", server.host, *argv)
        assert done.returncode == 0, done.stderr.decode()
    yield server


def _forwarded(server) -> int:
    return server.output().count(COMMAND_LOG)


def _wait_forwarded(server, count: int) -> int:
    """The number of forwarded commands the server logged, once it is ``count`` (a request's
    line is logged just after its answer) or after 10 s."""
    deadline = time.monotonic() + 10
    while (logged := _forwarded(server)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return logged


CASES = [
    ("images",),
    ("image", "ls", "--digests", "--no-trunc"),
    ("images", "-q"),
    ("images", "--format", "{{json .}}"),
    ("inspect", "c1"),
    ("container", "inspect", "--format", "{{.Name}} {{.State.Status}} {{.HostConfig.PortBindings}}", "c1"),
    ("image", "inspect", "busybox"),
    ("inspect", "--type", "image", "--format", "{{.Id}}", "busybox"),
    ("history", "busybox"),
    ("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "busybox"),
    ("ps", "-a", "--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Status}}\t{{.Names}}"),
    ("container", "ls", "-aq"),
    ("ps", "-a", "--filter", "name=c1", "--format", "{{.Names}} {{.Labels}}"),
    ("volume", "ls"),
    ("volume", "inspect", "v1"),
    ("network", "ls"),
    ("network", "inspect", "--format", "{{.Name}} {{.Driver}}", "none"),
    ("port", "c1"),
    ("system", "df"),
    # failures: an unknown object, a usage error, a template error, a name that is not a command's
    ("inspect", "nope"),
    ("ps", "--bogus"),
    ("ps", "-n", "x"),
    ("inspect", "--format", "{{.Nope}}", "c1"),
    ("volume", "inspect", "nope", "v1"),
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(case) for case in CASES])
def test_a_forwarded_command_prints_what_it_prints_in_process(engine, argv):
    in_process = _lamina(engine, "--data-root", engine.data_root, *argv)
    before = _forwarded(engine)
    forwarded = _lamina(engine, "-H", engine.host, *argv)
    assert (forwarded.returncode, forwarded.stdout.decode(), forwarded.stderr.decode()) == \
        (in_process.returncode, in_process.stdout.decode(), in_process.stderr.decode())
    assert _wait_forwarded(engine, before + 1) == before + 1, "the daemon did not run the command"


def test_usage_errors_are_as_wide_as_the_clients_terminal(engine):
    printed = {}
    for columns in ("40", "200"):
        forwarded = _lamina(engine, "-H", engine.host, "ps", "--bogus", COLUMNS=columns)
        in_process = _lamina(engine, "--data-root", engine.data_root, "ps", "--bogus", COLUMNS=columns)
        assert forwarded.returncode == in_process.returncode == 2
        assert forwarded.stderr == in_process.stderr
        printed[columns] = forwarded.stderr.decode().splitlines()
    assert len(printed["40"]) > len(printed["200"]) == 2  # the usage wrapped, and on one line
    assert _wait_forwarded(engine, 2) == 2


def test_what_is_not_forwarded_runs_as_api_requests(engine):
    before = _forwarded(engine)
    for argv in (("version",), ("ps", "--help"), ("--log-level", "info", "-H", engine.host, "ps"),
                 ("tag", "busybox", "other:1"), ("rmi", "other:1")):
        done = _lamina(engine, *argv) if argv[0] == "--log-level" else _lamina(engine, "-H", engine.host, *argv)
        assert done.returncode == 0, (argv, done.stderr.decode())
    assert _lamina(engine, "-H", engine.host, "ps", "-a", LAMINA_FORWARD="0").returncode == 0
    assert _forwarded(engine) == before


def test_the_front_loads_nothing_of_the_cli_when_the_daemon_takes_the_command(engine):
    code = ("import os, sys\nfrom lamina.cli.front import forward\n"
            "code = forward(sys.argv[1:], os.environ)\n"
            "print(code, *sorted(sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, "-H", engine.host, "images", "-q"],
                          env=_environment(engine), capture_output=True, cwd=REPOSITORY, timeout=60)
    code_text, *modules = done.stderr.decode().split()
    loaded = set(modules)
    assert code_text == "0" and done.stdout.strip()
    assert {module for module in loaded if module.startswith("lamina")} == {
        "lamina", "lamina.cli", "lamina.cli.front", "lamina.cli.errors", "lamina.defaults",
        "lamina.stdcopy", "lamina.errdefs", "lamina.protocols"}
    assert not loaded & {"argparse", "re", "enum", "typing", "socket", "collections"}


def test_the_default_socket_serves_only_the_engine_the_command_would_build(engine, capfd):
    environment = {"LAMINA_DATA_ROOT": engine.data_root, "LAMINA_EXEC_ROOT": engine.exec_root}
    assert front.forward(["ps", "-aq"], environment, default_socket=engine.socket_path) == 0
    assert capfd.readouterr().out.strip()
    assert front.forward(["ps", "-aq"], {**environment, "LAMINA_DATA_ROOT": engine.data_root + "-other"},
                         default_socket=engine.socket_path) is None
    assert front.forward(["ps", "-aq"], {**environment, "LAMINA_EXEC_ROOT": "/run/lamina-other"},
                         default_socket=engine.socket_path) is None
    assert front.forward(["ps", "-aq"], {**environment, "LAMINA_STORAGE_DRIVER": "vfs"},
                         default_socket=engine.socket_path) is None
    assert front.forward(["ps", "-aq"], environment, default_socket=engine.socket_path + ".none") is None
    assert capfd.readouterr() == ("", "")


def test_a_client_in_another_time_zone_gets_its_local_times(engine):
    argv = ("ps", "-a", "--format", "{{.Names}} {{.CreatedAt}}")
    expected = _lamina(engine, "--data-root", engine.data_root, *argv, TZ="Asia/Tokyo")
    before = _forwarded(engine)
    got = _lamina(engine, "-H", engine.host, *argv, TZ="Asia/Tokyo")
    assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert b"+0900 JST" in got.stdout
    # the daemon (no TZ) refused it: the client asked the API and printed the times itself
    assert _wait_forwarded(engine, before + 1) == before + 1
    assert engine.wait_logged('"POST /lamina/command HTTP/1.1" 409')


def test_forwarded_commands_run_side_by_side(engine):
    expected = _lamina(engine, "--data-root", engine.data_root, "inspect", "c1").stdout
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda: results.append(_lamina(engine, "-H", engine.host, "inspect", "c1")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(done.returncode, done.stdout) for done in results] == [(0, expected)] * 8


def test_the_daemon_refuses_what_it_does_not_run(engine):
    def post(body: bytes, headers: dict[str, str] | None = None, method: str = "POST"):
        connection = engine.connect()
        try:
            connection.request(method, front.COMMAND_PATH, headers, body)
            return connection.read_response(method)
        finally:
            connection.close()

    assert post(b"ps\0-a").status == 200
    assert post(b"rm\0-f\0c1").status == 400
    assert post(b"").status == 400
    assert post(b"ps", method="PUT").status == 405
    assert post(b"ps", {front.DATA_ROOT_HEADER: "/elsewhere"}).status == 409
    assert post(b"ps", {front.DATA_ROOT_HEADER: engine.data_root, front.EXEC_ROOT_HEADER: engine.exec_root}).status == 200
    assert post(b"ps\0" + b"x" * (1 << 20)).status == 413
    assert _lamina(engine, "-H", engine.host, "ps", "-aq").stdout.strip()  # c1 is still there


class _FakeDaemon:
    """A unix socket that answers every connection with ``answer`` and closes."""

    def __init__(self, path: str, answer: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(self.answer)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\n404 page not found\n",
    b"HTTP/1.1 200 OK\r\nLamina-Exit-Code: 0\r\nContent-Length: 100\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02ok",
    b"HTTP/1.1 200 OK\r\nLamina-Exit-Code: 0\r\nContent-Length: 10\r\n\r\n\x07\x00\x00\x00\x00\x00\x00\x02ok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02ok",
    b"HTTP/1.1 200 OK\r\nLamina-Exit-Code: 0\r\n",
    b"garbage",
    b"",
], ids=["dockerd", "cut short", "bad frame", "no exit code", "no end of head", "not http", "closed"])
def test_a_daemon_that_does_not_take_the_command_leaves_it_to_run_in_process(tmp_path, capfd, answer):
    path = str(tmp_path / "d.sock")
    daemon = _FakeDaemon(path, answer)
    try:
        assert front.forward(["-H", f"unix://{path}", "ps"], {}) is None
        assert front.forward(["ps"], {"DOCKER_HOST": f"unix://{path}"}) is None
    finally:
        daemon.close()
    assert capfd.readouterr() == ("", "")


def test_which_command_lines_are_forwarded(tmp_path, capfd):
    path = str(tmp_path / "d.sock")
    daemon = _FakeDaemon(path, b"HTTP/1.1 200 OK\r\nLamina-Exit-Code: 3\r\nContent-Length: 10\r\n\r\n"
                               + stdcopy.frame(stdcopy.STDOUT, b"ok"))
    try:
        environment = {"LAMINA_HOST": f"unix://{path}"}
        assert front.forward(["ps"], environment) == 3  # a daemon that takes it
        assert front.forward(["-H", f"unix://{path}", "images", "-q"], {}) == 3
        assert front.forward(["--data-root", "/x", "ps"], environment) is None  # a global option
        assert front.forward(["ps", "--help"], environment) is None
        assert front.forward(["rm", "-f", "x"], environment) is None
        assert front.forward(["ps"], {**environment, "LAMINA_FORWARD": "0"}) is None
        assert front.forward([], environment) is None
    finally:
        daemon.close()
    assert capfd.readouterr().out == "okok"
    assert front.forward(["-H", "tcp://127.0.0.1:1", "ps"], {}) is None
    assert front.is_forwarded(["ps", "-a"]) and front.is_forwarded(["image", "inspect", "x"])
    assert not front.is_forwarded(["image", "rm", "x"]) and not front.is_forwarded(["run", "busybox"])
    assert not front.is_forwarded([]) and not front.is_forwarded(["volume"])
    # every forwarded command line names a command of the table, and only commands that read
    readers = {"ps", "images", "inspect", "history", "port", "top", "diff", "volume_ls", "volume_inspect",
               "network_ls", "network_inspect", "system_df"}
    table = {command.words: command.module for command in COMMANDS}
    assert {table.get(words) for words in front.FORWARDED} <= readers


frames = st.lists(st.tuples(st.sampled_from([stdcopy.STDOUT, stdcopy.STDERR]), st.binary(max_size=40)), max_size=6)


@given(frames)
def test_the_front_reads_the_frames_stdcopy_writes(pieces):
    body = b"".join(stdcopy.frame(stream, payload) for stream, payload in pieces)
    assert front._frames(body) == pieces


@given(st.binary(max_size=64))
def test_the_front_refuses_a_malformed_stream_rather_than_printing_part_of_it(data):
    decoded = front._frames(data)
    if decoded is not None:
        assert b"".join(stdcopy.frame(stream, payload) for stream, payload in decoded) == data


class _Router:
    def __init__(self) -> None:
        self.requests: list[str] = []

    def handle(self, request):
        self.requests.append(request.path)
        return Response(200, Headers(), b"{}")


@pytest.mark.parametrize("options", [{"storage_driver": "vfs"}, {"userns_remap": "default"}])
def test_a_daemon_with_its_own_engine_options_takes_no_command_from_the_default_socket(tmp_path, options):
    engine_config = config.EngineConfig.from_environment(data_root=str(tmp_path / "data"), **options)
    router = _Router()
    handler = CommandHandler(router, engine_config)
    named = Request("POST", front.COMMAND_PATH, headers=Headers({front.DATA_ROOT_HEADER: engine_config.data_root}),
                    body=io.BytesIO(b"version"))
    assert handler.handle(named).status == 409
    assert handler.handle(Request("GET", "/_ping")).status == 200 and router.requests == ["/_ping"]


def test_argparse_prints_on_the_commands_streams(capsys):
    out, err = io.StringIO(), io.StringIO()
    context = Context(GlobalOptions(), stdin=io.StringIO(), stdout=out, stderr=err, columns=200)
    assert run_command(["ps", "--bogus"], context) == 2
    assert run_command(["ps", "--help"], context) == 0
    assert capsys.readouterr() == ("", "")
    assert "unrecognized arguments: --bogus" in err.getvalue() and "usage: lamina ps" in out.getvalue()


def test_a_daemon_that_keeps_silent_is_left_after_the_timeout(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(front, "ANSWER_TIMEOUT", 0.2)
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)  # never accepted: the connect and the request go into the backlog
        started = time.monotonic()
        assert front.forward(["-H", f"unix://{path}", "ps"], {}) is None
        assert time.monotonic() - started < 5
    finally:
        listener.close()
    assert capfd.readouterr() == ("", "")


def test_top_of_a_running_container_is_forwarded(engine):
    started = _lamina(engine, "-H", engine.host, "run", "-d", "--name", "t1", "--network", "none", "busybox",
                      "sleep", "1000")
    assert started.returncode == 0, started.stderr.decode()
    before = _forwarded(engine)
    top = _lamina(engine, "-H", engine.host, "top", "t1")
    assert top.returncode == 0, top.stderr.decode()
    assert top.stdout.decode().splitlines()[0].split()[:2] == ["UID", "PID"] and "sleep 1000" in top.stdout.decode()
    assert _wait_forwarded(engine, before + 1) == before + 1
    assert _lamina(engine, "-H", engine.host, "rm", "-f", "t1").returncode == 0


class _RefusingRouter:
    """A router that knows nothing: every request gets Docker's 404 answer."""

    def handle(self, request):
        return Response(404, Headers({"Content-Type": "application/json"}), b'{"message":"page not found"}')


_words = st.lists(st.one_of(st.sampled_from(["-a", "-q", "--format", "{{json .}}", "{{.Id", "-f", "name=x",
                                             "--no-trunc", "--type", "image", "-s", "--", "-", "x" * 300]),
                            st.text(max_size=12)), max_size=6)


@given(st.sampled_from(sorted(front.FORWARDED)), _words, st.text(max_size=6))
@example(("ps",), [], "\u00b9")  # a digit to str.isdigit, not to int()
def test_any_forwarded_command_line_gets_an_answer_never_an_exception(words, rest, columns):
    handler = CommandHandler(_RefusingRouter(), config.EngineConfig.from_environment(data_root="/nonexistent"))
    body = b"\0".join(os.fsencode(word) for word in [*words, *rest])
    response = handler.handle(Request("POST", front.COMMAND_PATH, headers=Headers({front.COLUMNS_HEADER: columns}),
                                      body=io.BytesIO(body)))
    assert response.status == 200
    assert response.headers[front.EXIT_CODE_HEADER].isdigit()
    assert front._frames(bytes(response.body)) is not None


@given(st.binary(max_size=200))
def test_any_body_gets_an_answer_never_an_exception(body):
    handler = CommandHandler(_RefusingRouter(), config.EngineConfig.from_environment(data_root="/nonexistent"))
    response = handler.handle(Request("POST", front.COMMAND_PATH, body=io.BytesIO(body)))
    assert response.status in (200, 400)


def test_ctrl_c_while_the_daemon_answers_exits_as_the_cli_does(tmp_path):
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)  # never accepted: the front waits for its answer
        # as from a terminal: SIGINT at its default (a runner started in the background by a
        # shell without job control ignores it, and that is inherited)
        front_process = subprocess.Popen([sys.executable, "-m", "lamina.cli.front", "-H", f"unix://{path}", "ps"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPOSITORY,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not _waits_on_a_socket(front_process.pid):
                time.sleep(0.02)
            front_process.send_signal(signal.SIGINT)
            try:
                out, err = front_process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the front did not exit on SIGINT: {_signal_state(front_process.pid)}")
        finally:
            front_process.kill()
            front_process.wait()
    finally:
        listener.close()
    assert (front_process.returncode, out, err) == (130, b"", b"interrupted\n")
    assert main.EXIT_INTERRUPTED == 130


def _signal_state(pid: int) -> str:
    """What /proc says of ``pid``'s signals and where it waits (for a failure's message)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            fields = [line.strip() for line in handle if line.startswith(("State", "SigPnd", "ShdPnd", "SigBlk",
                                                                          "SigIgn", "SigCgt"))]
        with open(f"/proc/{pid}/wchan", encoding="ascii") as handle:
            fields.append(f"wchan: {handle.read()}")
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as handle:
            fields += [f"test process {line.strip()}" for line in handle if line.startswith(("SigBlk", "SigIgn"))]
    except OSError as exc:
        return str(exc)
    return "; ".join(fields)


def _waits_on_a_socket(pid: int) -> bool:
    """Whether ``pid`` opened a socket (the front's connection: it then waits for the answer)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@given(st.text(max_size=6))
@example("\u00b9")
def test_the_terminal_width_of_any_columns_value(value):
    columns = front.terminal_columns({"COLUMNS": value})
    assert isinstance(columns, int) and columns >= 0
    if value.isascii() and value.isdigit() and int(value) > 0:
        assert columns == int(value)
