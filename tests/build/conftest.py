"""Fixtures for the builder's end-to-end tests: an engine on its own data root and exec root
with busybox loaded from Docker's archive, helpers to build a context directory and to look
at an image's files, and a teardown that kills what containers the test left running,
removes their cgroups and unmounts everything under the test's directory, even on failure."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.build.api import BuildOptions
from lamina.config import EngineConfig
from lamina.container.rundir import RunDirectory
from lamina.network.run import RunNetwork
from lamina.services.compose import EngineServices, build_services

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")


@dataclass
class BuildEngine:
    root: pathlib.Path
    config: EngineConfig
    services: EngineServices
    messages: list[dict[str, Any]] = field(default_factory=list)

    def context(self, files: dict[str, str | bytes], name: str = "ctx") -> pathlib.Path:
        """A context directory holding ``files`` (a path ending in "/" is a directory)."""
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        for path, content in files.items():
            target = directory / path
            if path.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return directory

    def build(self, directory: pathlib.Path, *, tags: tuple[str, ...] = (), dockerfile: str = "",
              **options: Any) -> str:
        """Build the context directory in place; the messages land in :attr:`messages`."""
        self.messages = []
        return self.services.builds.build(progress=self.messages.append, directory=str(directory),
                                          dockerfile=dockerfile, tags=tags, options=BuildOptions(**options))

    @property
    def output(self) -> str:
        return "".join(message.get("stream", "") for message in self.messages)

    def config_of(self, image: str) -> dict[str, Any]:
        import json

        image_id = self.services.images.resolve(image)
        return json.loads(self.services.images.images.get(image_id))

    @contextlib.contextmanager
    def files(self, image: str) -> Iterator[pathlib.Path]:
        """The image's root filesystem, mounted on a throwaway read-write layer."""
        image_id = self.services.images.resolve(image)
        top = self.services.images.images.get_config(image_id).chain_id()
        name = "test-view-" + os.urandom(6).hex()
        mounts = self.services.images.mounts
        mounts.create(name, str(top) if top else None)
        try:
            yield pathlib.Path(mounts.mount(name))
        finally:
            mounts.unmount(name)
            mounts.remove(name)

    def container_ids(self) -> list[str]:
        directory = self.root / "data" / "containers"
        return sorted(name for name in os.listdir(directory) if not name.startswith(".")) if directory.is_dir() else []

    def build_layers(self) -> list[str]:
        directory = self.root / "data" / "image" / self.services.images.driver.name / "layerdb" / "mounts"
        return sorted(name for name in os.listdir(directory) if name.startswith("build-"))

    def mounts_under_root(self) -> list[str]:
        prefix = str(self.root).rstrip("/") + "/"
        return [target for target in lmount.mounted_targets() if target.startswith(prefix)]

    def cleanup(self) -> None:
        from lamina.runtime.cgroups import CgroupManager

        runs = self.root / "run" / "containers"
        ids = set(self.container_ids()) | (set(os.listdir(runs)) if runs.is_dir() else set())
        for container_id in ids:
            pid = RunDirectory(str(self.root / "run"), container_id).monitor_pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            manager = CgroupManager(f"lamina/{container_id}")
            if manager.exists():
                with contextlib.suppress(errdefs.LaminaError):
                    manager.thaw()
                manager.kill_all(signal.SIGKILL)
                with contextlib.suppress(errdefs.LaminaError):
                    manager.remove(timeout=5)
        time.sleep(0.05 if ids else 0)
        network = RunNetwork(str(self.root / "data"), str(self.root / "run"))
        deadline = time.monotonic() + 5
        while any(network.is_live(container_id) for container_id in ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        network.sweep()  # the network sandboxes of the killed runs
        network.remove_bridges()  # and the networks' bridges, which outlive their containers
        lmount.unmount_all_under(str(self.root))


@pytest.fixture
def engine(tmp_path: pathlib.Path) -> Iterator[BuildEngine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, namespaces, cgroups)")
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"))
    services = build_services(config)
    instance = BuildEngine(tmp_path, config, services)
    try:
        with open(FIXTURE, "rb") as handle:
            services.images.load(handle, progress=lambda message: None)
        yield instance
    finally:
        instance.cleanup()
