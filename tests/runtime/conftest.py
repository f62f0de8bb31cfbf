"""Fixtures for the runtime tests: a busybox root filesystem extracted once per session with
GNU tar from the ``docker save`` fixture, an overlay mount of it per test (the base stays
clean), and a harness that starts real containers and, in teardown, kills every process it
started, removes their cgroups and unmounts everything under the test's directory, even when
the test failed."""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lamina import errdefs
from lamina.records import replace
from lamina import mount as lmount
from lamina.records import fields as record_fields
from lamina.runtime.api import (
    ContainerSpec,
    ProcessSpec,
    Resources,
    RuntimeState,
    Stdio,
)
from lamina.runtime.cgroups import CgroupManager
from lamina.runtime.native import NativeRuntime

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
LAYER = "77ef5fe66347c286b797d89189a7af81f3880e0f523dd1394b60324536f9ebbe/layer.tar"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def busybox_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to extract device-free layers with ownership")
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    root.mkdir()
    # the layer is a member of the docker-save archive: stream it from one GNU tar into another
    extract = subprocess.Popen(["tar", "-xOf", FIXTURE, LAYER], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "--numeric-owner", "-p", "-C", str(root)], stdin=extract.stdout, check=True)
    assert extract.wait() == 0
    return str(root)


@pytest.fixture
def rootfs(busybox_base: str, tmp_path) -> Iterator[str]:
    """A writable copy-on-write root filesystem (overlay on the session's base)."""
    layers = tmp_path / "overlay"
    for name in ("upper", "work", "merged"):
        (layers / name).mkdir(parents=True)
    merged = str(layers / "merged")
    lmount.Mount("overlay", "overlay", (f"lowerdir={busybox_base}", f"upperdir={layers / 'upper'}",
                                        f"workdir={layers / 'work'}")).mount(merged)
    try:
        yield merged
    finally:
        lmount.unmount_all_under(str(tmp_path))


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    state: RuntimeState


@dataclass
class Harness:
    rootfs: str
    runtime: NativeRuntime = field(default_factory=NativeRuntime)
    states: list[RuntimeState] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    # (container id, host id, size): every container in a new user namespace with this map
    remap: tuple[int, int, int] | None = None

    def spec(self, *args: str, env: tuple[str, ...] = (PATH_ENV,), cwd: str = "/", **fields: object) -> ContainerSpec:
        process_fields = {key: fields.pop(key) for key in list(fields) if key in {item.name for item in record_fields(ProcessSpec)}}
        process = ProcessSpec(args=args, env=env, cwd=cwd, **process_fields)  # type: ignore[arg-type]
        if self.remap is not None:
            namespaces = fields.pop("namespaces", None) or next(
                item.default for item in record_fields(ContainerSpec) if item.name == "namespaces")
            fields.update(namespaces=frozenset(namespaces) | {"user"}, uid_mappings=(self.remap,),  # type: ignore[arg-type]
                          gid_mappings=(self.remap,))
        return ContainerSpec(id=secrets.token_hex(32), rootfs=self.rootfs, process=process,
                             hostname=str(fields.pop("hostname", "box")), **fields)  # type: ignore[arg-type]

    def start(self, spec: ContainerSpec) -> tuple[RuntimeState, int, int]:
        """Start ``spec`` with pipes; returns (state, stdout read end, stderr read end)."""
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            state = self.runtime.start(spec, Stdio(null, out_write, err_write))
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            for fd in (out_write, err_write, null):
                os.close(fd)
        self.states.append(state)
        self.children.append(state.pid)
        return state, out_read, err_read

    def exec(self, state: RuntimeState, process: ProcessSpec) -> tuple[int, int, int]:
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = self.runtime.exec(state, process, Stdio(null, out_write, err_write))
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            for fd in (out_write, err_write, null):
                os.close(fd)
        self.children.append(pid)
        return pid, out_read, err_read

    @staticmethod
    def collect(out_read: int, err_read: int, timeout: float = 20.0) -> tuple[str, str]:
        """Read both pipes to EOF (closing them)."""
        buffers = {out_read: bytearray(), err_read: bytearray()}
        selector = selectors.DefaultSelector()
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("container output did not end in time")
                for key, _ in selector.select(remaining):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        buffers[key.fd] += chunk
                    else:
                        selector.unregister(key.fd)
        finally:
            selector.close()
            for fd in buffers:
                os.close(fd)
        return buffers[out_read].decode(errors="replace"), buffers[err_read].decode(errors="replace")

    def wait(self, pid: int, timeout: float = 20.0) -> int:
        """Reap ``pid``; its exit code (128 + n when killed by signal n)."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if pid in self.children:
                    self.children.remove(pid)
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} did not exit in {timeout}s")
            time.sleep(0.005)

    def alive(self, pid: int) -> bool:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            self.children.remove(pid)
            # keep the status out of the way: the test only asked whether it runs
            return False
        return True

    def run(self, *args: str, timeout: float = 20.0, **fields: object) -> Result:
        spec = self.spec(*args, **fields)
        state, out_read, err_read = self.start(spec)
        stdout, stderr = self.collect(out_read, err_read, timeout)
        return Result(self.wait(state.pid, timeout), stdout, stderr, state)

    def cgroup(self, state: RuntimeState) -> CgroupManager:
        return CgroupManager(state.cgroup)

    def cleanup(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for state in self.states:
            manager = self.cgroup(state)
            if manager.exists():
                try:
                    manager.thaw()
                except errdefs.LaminaError:
                    pass
                manager.kill_all(signal.SIGKILL)
        for pid in list(self.children):
            try:
                self.wait(pid, 10)
            except ChildProcessError:
                self.children.remove(pid)
        for state in self.states:
            CgroupManager(state.cgroup).remove(timeout=5)


@pytest.fixture
def harness(rootfs: str) -> Iterator[Harness]:
    instance = Harness(rootfs)
    try:
        yield instance
    finally:
        instance.cleanup()


def with_resources(spec: ContainerSpec, **values: object) -> ContainerSpec:
    return replace(spec, resources=Resources(**values))  # type: ignore[arg-type]
