"""Fixtures for ``lamina serve`` tests: a real server process on a temporary socket with a
temporary data root, and a minimal raw HTTP/1.1 reader for asserting on the wire format.

The socket lives in a short directory under /tmp (a unix socket path must fit in 108 bytes,
pytest's tmp_path may not); the data root is the test's tmp_path.  The server is stopped on
teardown even when the test failed: SIGTERM, then SIGKILL after a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX_ARCHIVE = os.path.join(REPOSITORY, "tests", "fixtures", "busybox-docker-archive.tar")
DOCKER = "/usr/local/bin/docker"


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]             # lower-case names
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)   # chunk sizes as sent (chunked answers)
    complete: bool = True               # the terminating chunk / the full Content-Length arrived

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RawConnection:
    """One client connection: send bytes, read responses exactly as they are framed."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buffer = b""

    @classmethod
    def connect(cls, path: str, timeout: float = 10.0) -> RawConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls(sock, timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: lamina"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None and not any(name.lower() in ("content-length", "transfer-encoding")
                                        for name in (headers or {})):
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_exact(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> RawResponse:
        line = self.read_line()
        assert line is not None, "the server closed the connection instead of answering"
        version, status, *reason = line.decode().split(" ", 2)
        assert version == "HTTP/1.1", line
        headers: dict[str, str] = {}
        while True:
            header = self.read_line()
            assert header is not None
            if not header:
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return RawResponse(int(status), reason[0] if reason else "", headers)

    def read_response(self, method: str = "GET") -> RawResponse:
        response = self.read_head()
        while 100 <= response.status < 200 and response.status != 101:
            response = self.read_head()
        if method == "HEAD" or response.status in (204, 304):
            return response
        if response.header("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line = self.read_line()
                if size_line is None:
                    response.complete = False
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    assert self.read_line() == b""
                    break
                data = self.read_exact(size + 2)
                if data is None:
                    response.complete = False
                    break
                response.chunks.append(data[:-2])
                body += data[:-2]
            response.body = body
        elif response.header("content-length") is not None:
            data = self.read_exact(int(response.header("content-length")))
            response.complete = data is not None
            response.body = data or b""
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (nothing more arrives)."""
        self.sock.settimeout(timeout)
        if self.buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()


class ServeProcess:
    """``lamina serve`` running in a subprocess."""

    def __init__(self, socket_path: str, data_root: str, extra: tuple[str, ...] = ()) -> None:
        self.socket_path = socket_path
        self.data_root = data_root
        self.host = f"unix://{socket_path}"
        self.exec_root = os.path.join(os.path.dirname(socket_path), "exec")
        self.log_path = os.path.join(os.path.dirname(socket_path), "serve.log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the fixture after the process ends
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lamina.cli.main", "--data-root", data_root, "--log-level", "info",
             "serve", "-H", self.host, "--shutdown-timeout", "3", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPOSITORY,
            env=self.server_environment())

    def server_environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_LOG_LEVEL")}
        environment["LAMINA_EXEC_ROOT"] = self.exec_root
        return environment

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"lamina serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                connection = RawConnection.connect(self.socket_path, timeout=2)
                try:
                    connection.request("GET", "/_ping")
                    if connection.read_response().status == 200:
                        return
                finally:
                    connection.close()
            except (OSError, AssertionError):
                time.sleep(0.02)
        raise AssertionError(f"lamina serve did not answer /_ping within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")

    def wait_logged(self, text: str, timeout: float = 10.0) -> str:
        """The server's log once it contains ``text``; it fails after ``timeout`` seconds.  A
        request's line is written after its answer was sent (it reports the bytes sent, the
        time taken and how the answer ended), so a client can see the answer before the line."""
        deadline = time.monotonic() + timeout
        while text not in (output := self.output()):
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} was not logged within {timeout} s:\n{output[-4000:]}")
            time.sleep(0.02)
        return output

    def connect(self, timeout: float = 10.0) -> RawConnection:
        return RawConnection.connect(self.socket_path, timeout)

    def remove_containers(self) -> None:
        """Force-remove every container through the API (teardown: no monitor, mount or
        cgroup may outlive the test)."""
        if self.process.poll() is not None:
            return
        try:
            connection = self.connect(timeout=30)
            connection.request("GET", "/containers/json?all=1")
            response = connection.read_response()
            if response.status != 200:
                return
            for container in json.loads(response.body):
                connection.request("DELETE", f"/containers/{container['Id']}?force=1&v=1")
                connection.read_response()
            connection.close()
        except (OSError, AssertionError, ValueError):
            pass

    def terminate(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.kill_monitor_templates()
        return self.process.returncode

    def kill_monitor_templates(self) -> None:
        """The server starts a monitor template and keeps it while it lives; it would leave by
        itself 30 s after the server: the test does not leave it behind."""
        kill_monitor_templates(self.exec_root)

    def environment(self) -> dict[str, str]:
        """An environment for docker / lamina clients pointed at this server."""
        environment = dict(os.environ)
        environment.pop("LAMINA_HOST", None)
        environment["DOCKER_HOST"] = self.host
        environment["DOCKER_CONFIG"] = os.path.join(os.path.dirname(self.socket_path), "docker-config")
        return environment


def kill_monitor_templates(exec_root: str) -> None:
    """Kill the monitor templates of ``exec_root`` (by their pid files, checked against their
    command lines): a server or an engine cache keeps one while it lives, and it would leave
    by itself only 30 s later."""
    directory = os.path.join(exec_root, "monitor-template")
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if not name.endswith(".pid"):
            continue
        with open(os.path.join(directory, name), encoding="ascii") as handle:
            text = handle.read().strip()
        try:
            with open(f"/proc/{int(text)}/cmdline", "rb") as handle:
                if exec_root.encode() not in handle.read().split(b"\0"):
                    continue  # not this exec root's template (the pid was reused)
            os.kill(int(text), signal.SIGKILL)
        except (ValueError, OSError):
            pass


def _processes_naming(path: str) -> list[int]:
    """Processes whose command line names ``path`` (a server's monitors carry their exec root
    there, from their template's)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if path.encode() in handle.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.fixture
def socket_dir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="lsrv-", dir="/tmp")
    try:
        yield directory
    finally:
        # an --rm container's monitor finishes its network teardown after its waiters woke,
        # maybe after the server left: its exec root (in here) goes once the monitor is done
        deadline = time.monotonic() + 15
        while _processes_naming(directory) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_server(socket_dir, tmp_path) -> Iterator:
    """``start_server(*extra_args, socket_name="s.sock", wait=True)`` -> ServeProcess."""
    started: list[ServeProcess] = []

    def start(*extra: str, socket_name: str = "s.sock", wait: bool = True,
              data_root: str | None = None) -> ServeProcess:
        server = ServeProcess(os.path.join(socket_dir, socket_name), data_root or str(tmp_path / "data"), extra)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.remove_containers()
        server.terminate()
        server.log.close()


@pytest.fixture
def server(start_server) -> ServeProcess:
    return start_server()


@pytest.fixture
def docker(server):
    """Run the real docker CLI against the server: ``docker("images", "-q")``."""

    def run(*argv: str, check: bool = True, input: bytes | None = None, timeout: float = 60,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([DOCKER, *argv], env={**server.environment(), **(env_extra or {})},
                                input=input, capture_output=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout.decode()}\n"
                f"stderr: {result.stderr.decode()}\nserver log:\n{server.output()[-4000:]}")
        return result

    return run
