"""The container commands end to end: the ``lamina`` program as a separate process, the
in-process engine with real overlay mounts, namespaces, cgroups and monitors, busybox loaded
from Docker's archive.  Teardown kills every monitor and container the test started and
unmounts everything under the test's directory, even when the test failed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")


@dataclass
class Result:
    code: int
    out: str
    err: str
    out_bytes: bytes


class Lamina:
    def __init__(self, root: str) -> None:
        self.root = root
        self.environment = dict(os.environ, LAMINA_DATA_ROOT=os.path.join(root, "data"),
                                LAMINA_EXEC_ROOT=os.path.join(root, "run"))
        for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER", "PYTHONDONTWRITEBYTECODE"):
            self.environment.pop(name, None)
        # Every command is a new interpreter: keep its bytecode (outside the repository).
        self.environment["PYTHONPYCACHEPREFIX"] = os.path.join(root, "pycache")

    def __call__(self, *argv: str, stdin: bytes = b"", timeout: float = 60) -> Result:
        process = subprocess.run([sys.executable, "-m", "lamina.cli.main", *argv], input=stdin, check=False,
                                 capture_output=True, env=self.environment, timeout=timeout)
        return Result(process.returncode, process.stdout.decode("utf-8", "replace"),
                      process.stderr.decode("utf-8", "replace"), process.stdout)

    def ok(self, *argv: str, stdin: bytes = b"") -> str:
        result = self(*argv, stdin=stdin)
        assert result.code == 0, f"lamina {' '.join(argv)}: {result.code}\n{result.err}"
        return result.out

    def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)


@contextlib.contextmanager
def loaded_engine(prefix: str) -> Iterator[Lamina]:
    """A data root under /tmp with the busybox fixture loaded, removed afterwards.  Short
    paths: the exec root holds unix sockets (108-byte limit)."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    runner = Lamina(root)
    try:
        runner.ok("load", "-i", FIXTURE)
        yield runner
    finally:
        _cleanup(root)


@pytest.fixture(scope="module")
def lamina() -> Iterator[Lamina]:
    with loaded_engine("lce-") as runner:
        yield runner


def _cleanup(root: str) -> None:
    from services.conftest import Engine

    from lamina.config import EngineConfig
    from lamina.services.compose import build_services

    config = EngineConfig(data_root=os.path.join(root, "data"), exec_root=os.path.join(root, "run"))
    try:
        Engine(root, config, build_services(config)).cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- run ----------------------------------------------------------------------------------------

def test_run_rm_output_exit_code_and_removal(lamina) -> None:
    result = lamina("run", "--rm", "--name", "once", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.code, result.out, result.err) == (3, "out\n", "err\n")
    assert "once" not in lamina.ok("ps", "-a", "--format", "{{.Names}}")
    assert lamina("run", "--rm", "busybox", "true").code == 0


@pytest.mark.parametrize("argv, code, message", [
    (["busybox", "nosuchcommand"], 127, "executable file not found"),
    (["busybox", "/etc"], 126, "permission denied"),
    # a registry on a closed local port: the implicit pull fails without leaving the machine
    (["127.0.0.1:9/nosuchimage"], 125, "Unable to find image '127.0.0.1:9/nosuchimage:latest' locally"),
    (["-m", "12zz", "busybox", "true"], 125, "invalid size: '12zz'"),
    (["--cpus", "-1", "busybox", "true"], 125, "--cpus"),
    (["-u", "nobody-here", "busybox", "true"], 125, "nobody-here"),
], ids=["command not found", "command cannot be invoked", "unknown image", "bad memory size",
        "negative cpus", "unknown user"])
def test_run_exit_codes(lamina, argv, code, message) -> None:
    result = lamina("run", "--rm", *argv)
    assert result.code == code, result.err
    assert message in result.err


def test_run_interactive_pipes_stdin(lamina) -> None:
    result = lamina("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", stdin=b"piped in\n")
    assert (result.code, result.out) == (0, "piped in\ndone\n")


def test_run_tty_in_a_real_terminal(lamina) -> None:
    """``run -it`` on a pty: the container sees the terminal's size and a tty, the exit code
    comes back, and the local terminal is restored."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 111, 0, 0))
    before = termios.tcgetattr(slave)
    process = subprocess.Popen(
        [sys.executable, "-m", "lamina.cli.main", "run", "--rm", "-it", "busybox", "sh", "-c",
         "stty size; tty; exit 9"],
        stdin=slave, stdout=slave, stderr=slave, env=lamina.environment, start_new_session=True)
    output = b""
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    output += os.read(master, 65536)
                except OSError:
                    break
        assert process.wait(10) == 9, output
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert b"37 111" in output
        assert b"/dev/" in output
        assert termios.tcgetattr(slave) == before
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(slave)


# -- a long-running container -------------------------------------------------------------------

def test_detached_container_lifecycle(lamina) -> None:
    id = lamina.ok("run", "-d", "--name", "ticker", "-l", "role=test", "busybox",
                   "sh", "-c", "trap 'exit 0' TERM; echo started; while true; do sleep 0.1; done").strip()
    assert len(id) == 64
    table = lamina.ok("ps", "--filter", "label=role=test")
    assert table.splitlines()[0].startswith("CONTAINER ID") and id[:12] in table and "ticker" in table
    lamina.wait_for(lambda: "started" in lamina.ok("logs", "ticker"))
    assert lamina.ok("logs", "-t", "--tail", "1", "ticker").split(" ", 1)[1] == "started\n"

    result = lamina("exec", "ticker", "sh", "-c", "echo in-exec; hostname; exit 4")
    assert result.code == 4 and result.out == f"in-exec\n{id[:12]}\n"
    assert lamina.ok("exec", "-i", "ticker", "cat", stdin=b"exec stdin\n") == "exec stdin\n"
    assert lamina.ok("exec", "-e", "A=from-exec", "-w", "/tmp", "ticker", "sh", "-c", "echo $A $PWD") == \
        "from-exec /tmp\n"
    top = lamina.ok("top", "ticker").splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and any("sleep" in line or "sh -c" in line for line in top)
    stats = lamina.ok("stats", "--no-stream", "ticker").splitlines()
    assert stats[0].startswith("CONTAINER ID") and stats[1].startswith(id[:12]) and "ticker" in stats[1]

    state = json.loads(lamina.ok("inspect", "ticker"))[0]
    assert state["State"]["Running"] is True and state["Name"] == "/ticker"
    assert lamina.ok("pause", "ticker") == "ticker\n"
    assert lamina.ok("inspect", "-f", "{{.State.Status}}", "ticker") == "paused\n"
    assert lamina.ok("unpause", "ticker") == "ticker\n"
    assert lamina.ok("update", "-m", "64m", "--restart", "on-failure:2", "ticker") == "ticker\n"
    assert lamina.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
                     "ticker") == f"{64 << 20} on-failure\n"
    lamina.ok("rename", "ticker", "clock")
    assert lamina.ok("stop", "-t", "5", "clock") == "clock\n"
    assert lamina.ok("wait", "clock") == "0\n"
    assert lamina.ok("stop", "clock") == "clock\n"
    assert lamina.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "clock") == "exited 0\n"
    assert lamina("exec", "clock", "true").code == 125
    assert lamina.ok("rm", "clock") == "clock\n"
    assert lamina("inspect", "clock").code == 4


def test_start_attach_restart_kill_rm(lamina) -> None:
    lamina.ok("create", "--name", "later", "busybox", "sh", "-c", "echo from-start; exit 6")
    result = lamina("start", "-a", "later")
    assert (result.code, result.out) == (6, "from-start\n")
    lamina.ok("run", "-d", "--name", "victim", "busybox", "sleep", "300")
    assert lamina.ok("restart", "-t", "1", "victim") == "victim\n"
    assert lamina.ok("inspect", "-f", "{{.State.Running}}", "victim") == "true\n"
    result = lamina("rm", "victim")
    assert result.code == 5 and "Stop the container" in result.err or "running" in result.err
    assert lamina.ok("kill", "-s", "KILL", "victim") == "victim\n"
    assert lamina.ok("wait", "victim") == "137\n"
    assert lamina.ok("rm", "-f", "victim", "later") == "victim\nlater\n"


def test_files_diff_cp_commit_export(lamina, tmp_path) -> None:
    lamina.ok("run", "-d", "--name", "files", "busybox", "sleep", "300")
    lamina.ok("exec", "files", "sh", "-c", "echo data > /etc/added; rm /etc/shadow; mkdir -p /work/sub")
    diff = lamina.ok("diff", "files").splitlines()
    assert "A /etc/added" in diff and "D /etc/shadow" in diff and "C /etc" in diff

    local = tmp_path / "local"
    (local / "dir").mkdir(parents=True)
    (local / "dir" / "inner.txt").write_text("inner\n")
    lamina.ok("cp", str(local / "dir"), "files:/work/")
    assert lamina.ok("exec", "files", "cat", "/work/dir/inner.txt") == "inner\n"
    lamina.ok("cp", "files:/etc/added", str(tmp_path / "added.txt"))
    assert (tmp_path / "added.txt").read_text() == "data\n"
    lamina.ok("cp", "files:/work", str(tmp_path / "copied"))
    assert (tmp_path / "copied" / "dir" / "inner.txt").read_text() == "inner\n"
    archive = lamina("cp", "files:/etc/added", "-").out_bytes
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.getnames() == ["added"]

    image_id = lamina.ok("commit", "-m", "snapshot", "-c", "ENV FROM_COMMIT=1", "files", "snap:e2e").strip()
    assert image_id.startswith("sha256:")
    result = lamina("run", "--rm", "snap:e2e", "sh", "-c",
                    "cat /etc/added; test -e /etc/shadow || echo shadow-hidden; echo $FROM_COMMIT")
    assert result.out == "data\nshadow-hidden\n1\n", result.err

    exported = lamina("export", "files").out_bytes
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        names = set(tar.getnames())
    assert "etc/added" in names and "etc/shadow" not in names and "bin/sh" in names
    assert lamina("export", "-o", str(tmp_path / "fs.tar"), "files").code == 0
    assert (tmp_path / "fs.tar").stat().st_size == len(exported)
    lamina.ok("rm", "-f", "files")
    lamina.ok("rmi", "snap:e2e")


def test_cp_cannot_write_through_a_symlink_in_the_container(lamina, tmp_path) -> None:
    """CVE-2018-15664 class: a symlink inside the container pointing at a host path must be
    resolved inside the container's root."""
    victim = tmp_path / "victim"
    victim.mkdir()
    lamina.ok("run", "-d", "--name", "hostile", "busybox", "sh", "-c",
              f"ln -s {victim} /escape; sleep 300")
    lamina.wait_for(lambda: lamina("exec", "hostile", "test", "-L", "/escape").code == 0)
    payload = tmp_path / "payload.txt"
    payload.write_text("pwned\n")
    lamina("cp", str(payload), "hostile:/escape/payload.txt")
    lamina("cp", str(payload), "hostile:/escape")
    assert list(victim.iterdir()) == []
    lamina.ok("rm", "-f", "hostile")


def test_prune_and_boot(lamina) -> None:
    lamina.ok("create", "--name", "stale", "busybox", "true")
    result = lamina("container", "prune", stdin=b"n\n")
    assert result.code == 1 and "stale" in lamina.ok("ps", "-a", "--format", "{{.Names}}")
    pruned = lamina.ok("container", "prune", "-f")
    assert pruned.startswith("Deleted Containers:\n") and "Total reclaimed space:" in pruned
    assert "stale" not in lamina.ok("ps", "-a", "--format", "{{.Names}}")
    result = lamina("system", "boot")
    assert result.code == 0, result.err


def test_an_exec_attached_when_the_monitor_dies_fails(lamina) -> None:
    from lamina.container.rundir import RunDirectory

    id = lamina.ok("run", "-d", "--name", "orphaned", "busybox", "sleep", "60").strip()
    exec_process = subprocess.Popen([sys.executable, "-m", "lamina.cli.main", "exec", "orphaned", "sh", "-c",
                                     "echo attached; exec sleep 60"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=lamina.environment)
    try:
        assert exec_process.stdout is not None
        ready, _, _ = select.select([exec_process.stdout], [], [], 20)
        assert ready and exec_process.stdout.readline() == b"attached\n", "the exec did not attach within 20 s"
        monitor = RunDirectory(os.path.join(lamina.root, "run"), id).monitor_pid()
        assert monitor is not None
        os.kill(monitor, signal.SIGKILL)
        try:
            code = exec_process.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the exec did not end within 30 s of its monitor's death") from None
        assert code != 0, exec_process.stderr.read().decode() if exec_process.stderr else ""
    finally:
        if exec_process.poll() is None:
            exec_process.kill()
            exec_process.wait()
        lamina("rm", "-f", "orphaned")
