"""Fixtures for end-to-end service tests: an engine on its own data root and exec root with
busybox loaded from Docker's archive, and a teardown that kills every monitor and container
process the test started, removes their cgroups and unmounts everything under the test's
directory, even when the test failed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.config import EngineConfig
from lamina.container.rundir import RunDirectory
from lamina.network.run import RunNetwork
from lamina.services.compose import EngineServices, build_services
from tests.processes import gone

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")


@dataclass
class Engine:
    root: str
    config: EngineConfig
    services: EngineServices

    def __getattr__(self, name: str) -> Any:
        # the engine's services by name (containers, container_views, container_files, ...)
        if name == "services":
            raise AttributeError(name)
        return getattr(self.services, name)

    def create(self, *command: str, name: str | None = None, **fields: Any) -> str:
        host = fields.pop("HostConfig", {})
        body = {"Image": fields.pop("Image", "busybox"), "Cmd": list(command) if command else None,
                "HostConfig": host, **fields}
        return str(self.containers.create(body, name=name)["Id"])

    def run(self, *command: str, **fields: Any) -> str:
        container_id = self.create(*command, **fields)
        self.containers.start(container_id)
        return container_id

    def wait(self, container_id: str, condition: str = "not-running") -> int:
        return int(self.containers.wait(container_id, condition=condition)["StatusCode"])

    def start_and_wait(self, container_id: str, condition: str = "removed") -> int:
        """Start and wait as the docker CLI's ``run`` does: the wait is registered first (a
        --rm container can be gone before a wait begun after its start looks for it)."""
        finish = self.containers.begin_wait(container_id, condition=condition)
        self.containers.start(container_id)
        return int(finish()["StatusCode"])

    def run_removed(self, *command: str, **fields: Any) -> int:
        """``run --rm``: create, then :meth:`start_and_wait` its removal; the exit code."""
        fields.setdefault("HostConfig", {})["AutoRemove"] = True
        return self.start_and_wait(self.create(*command, **fields))

    def output(self, container_id: str) -> str:
        return b"".join(payload for _, payload in self.container_streams.logs(container_id)).decode()

    def state(self, container_id: str) -> dict[str, Any]:
        return self.container_views.inspect(container_id)["State"]

    def run_dir(self, container_id: str) -> RunDirectory:
        return RunDirectory(self.config.exec_root, container_id)

    def wait_for(self, predicate: Any, timeout: float = 10.0, message: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {message}")
            time.sleep(0.02)

    def container_ids(self) -> list[str]:
        directory = os.path.join(self.config.data_root, "containers")
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return [name.split("-")[0] for name in names if len(name.split("-")[0]) == 64]

    def cleanup(self) -> None:
        from lamina.runtime.cgroups import CgroupManager

        ids = set(self.container_ids())
        runs = os.path.join(self.config.exec_root, "containers")
        if os.path.isdir(runs):
            ids.update(os.listdir(runs))
        monitors = []
        for container_id in ids:
            pid = self.run_dir(container_id).monitor_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    monitors.append(pid)
                except ProcessLookupError:
                    pass
        for container_id in ids:
            manager = CgroupManager(f"lamina/{container_id}")
            if not manager.exists():
                continue
            try:
                manager.thaw()
            except errdefs.LaminaError:
                pass
            manager.kill_all(signal.SIGKILL)
            try:
                manager.remove(timeout=5)
            except errdefs.LaminaError:
                pass
        # the monitor templates of this exec root (they would leave by themselves once idle).
        # A create starts one in the background: its lock is held until it listens (its pid
        # file written), so taking the lock first finds a template still starting too
        templates = os.path.join(self.config.exec_root, "monitor-template")
        lock = None
        if os.path.exists(os.path.join(templates, "lock")):
            lock = os.open(os.path.join(templates, "lock"), os.O_RDWR | os.O_CLOEXEC)
            deadline = time.monotonic() + 30
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break  # kill what the pid files name all the same
                    time.sleep(0.01)
        try:
            for name in os.listdir(templates) if os.path.isdir(templates) else []:
                if name.endswith(".pid"):
                    with open(os.path.join(templates, name), encoding="ascii") as handle:
                        pid = int(handle.read().strip() or 0)
                    if pid and not gone(pid):
                        os.kill(pid, signal.SIGKILL)
                        monitors.append(pid)
        finally:
            if lock is not None:
                os.close(lock)
        deadline = time.monotonic() + 5
        while monitors and time.monotonic() < deadline:
            monitors = [pid for pid in monitors if not gone(pid)]
            time.sleep(0.01)
        # the network sandboxes of the killed runs: veths, rules, the bridge, netns mounts
        network = RunNetwork(self.config.data_root, self.config.exec_root)
        network.sweep()
        network.remove_bridges()  # the networks' bridges outlive their containers
        lmount.unmount_all_under(self.root)


@contextlib.contextmanager
def loaded_engine(root: str) -> Iterator[Engine]:
    """An engine with its data and exec roots under ``root``, holding busybox; cleaned up after."""
    config = EngineConfig(data_root=os.path.join(root, "data"), exec_root=os.path.join(root, "run"))
    services = build_services(config)
    instance = Engine(root, config, services)
    try:
        with open(FIXTURE, "rb") as handle:
            services.images.load(handle, progress=lambda message: None)
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def engine(tmp_path: Any) -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    with loaded_engine(str(tmp_path)) as instance:
        yield instance
