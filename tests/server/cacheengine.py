"""The engine cache's test engine (``engine``: a data root with busybox loaded and a container
``c1``; ``cached``: the same once a read left its cache serving), shared by the tests of the
cache (test_enginecache.py) and of its fork server (test_forkserver.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lamina.cli import front
from tests.processes import children, comm
from tests.server.conftest import BUSYBOX_ARCHIVE, REPOSITORY, kill_monitor_templates

_DROPPED = ("TZ", "LAMINA_HOST", "DOCKER_HOST", "LAMINA_FORWARD", "LAMINA_DATA_ROOT", "LAMINA_EXEC_ROOT", "LAMINA_LOG_LEVEL",
            "LAMINA_STORAGE_DRIVER", "LAMINA_USERNS_REMAP", "LAMINA_USERNS_REMAP_LAYERS", "COLUMNS")


#: the Python front, as the virtual environment's entry script runs it
PYTHON_FRONT = (sys.executable, "-m", "lamina.cli.front")


@dataclass
class Engine:
    base: str
    environment: dict[str, str]
    #: the ``lamina`` program the tests run: the Python front, or the compiled one
    #: (``compiled_front``, lamina/cli/front.c)
    program: tuple[str, ...] = PYTHON_FRONT

    @property
    def data_root(self) -> str:
        return self.environment["LAMINA_DATA_ROOT"]

    @property
    def exec_root(self) -> str:
        return self.environment["LAMINA_EXEC_ROOT"]

    @property
    def socket(self) -> str:
        path = front.cache_socket(self.data_root, self.exec_root, self.environment)
        assert path is not None
        return path

    def lamina(self, *argv: str, **extra: str) -> subprocess.CompletedProcess:
        """The ``lamina`` program as a user runs it (its front first)."""
        return subprocess.run([*self.program, *argv], env={**self.environment, **extra},
                              capture_output=True, cwd=REPOSITORY, timeout=120)

    def in_process(self, *argv: str) -> subprocess.CompletedProcess:
        """The same command, run in-process whatever serves (no forwarding, no cache)."""
        return self.lamina(*argv, LAMINA_FORWARD="0")

    @property
    def fork_socket(self) -> str:
        return front.fork_socket(self.socket)

    def processes(self) -> list[int]:
        """The engine caches of this engine, their fork servers, spare workers and workers (starting,
        serving or leaving)."""
        return [int(name) for name in os.listdir("/proc") if name.isdigit()
                and b"lamina.cli.enginecache" in (line := cmdline(int(name))) and self.exec_root.encode() in line]

    def cache_pid(self) -> int:
        """The pid of the cache serving now (from its pid file)."""
        with open(self.socket[:-len(".sock")] + ".pid", encoding="ascii") as handle:
            return int(handle.read())

    def spare_pid(self) -> int:
        """The spare worker of the fork server, once forked (``lamina.cli.forkserver``)."""
        from lamina.cli.forkserver import SPARE_NAME

        fork_server = self.fork_server_pid()
        found: list[int] = []

        def forked() -> bool:
            found[:] = [child for child in children(fork_server) if comm(child) == SPARE_NAME]
            return bool(found)

        assert wait_until(forked), "no spare worker"
        return found[0]

    def fork_server_pid(self) -> int:
        with open(self.fork_socket[:-len(".sock")] + ".pid", encoding="ascii") as handle:
            return int(handle.read())


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def wait_until(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def serving(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


@pytest.fixture(scope="session")
def compiled_front(tmp_path_factory) -> str:
    """The compiled front (lamina/cli/front.c), built for this interpreter as ``make`` builds it."""
    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler to build lamina/cli/front.c (`make` installs gcc)")
    from lamina.cli.frontbuild import build

    path = str(tmp_path_factory.mktemp("front") / "lamina")
    build(path)
    return path


@pytest.fixture
def engine() -> Iterator[Engine]:
    base = tempfile.mkdtemp(prefix="lec-", dir="/tmp")  # short: the socket's path fits a unix address
    environment = {key: value for key, value in os.environ.items() if key not in _DROPPED}
    environment.update(LAMINA_DATA_ROOT=os.path.join(base, "data"), LAMINA_EXEC_ROOT=os.path.join(base, "exec"))
    made = Engine(base, environment)
    try:
        for argv in (("load", "-q", "-i", BUSYBOX_ARCHIVE), ("create", "--name", "c1", "busybox", "true")):
            done = made.in_process(*argv)
            assert done.returncode == 0, done.stderr.decode()
        yield made
    finally:
        for pid in made.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not made.processes(), 10)
        made.in_process("rm", "-f", "c1", "c2")
        kill_monitor_templates(made.exec_root)  # the cache's, or a run's: it would stay 30 s
        subprocess.run(["umount", "-R", "-l", base], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cached(engine: Engine) -> Engine:
    """``engine`` once a read left its cache (and its fork server) serving."""
    assert engine.lamina("ps", "-a").returncode == 0
    assert wait_until(lambda: serving(engine.socket) and serving(engine.fork_socket)), "no engine cache started"
    return engine
