"""Crash injection: every step of load and rmi fails in turn, then the store is reopened.

Two kinds of failure per step:
- *exception*: the step raises; the operation's own error handling runs.
- *kill*: the process dies at that step (``os._exit`` in a forked child), so no cleanup runs at
  all; only the start-up sweep of the next process can repair things.

After each, a reopened store passes ``system check`` and what was committed before (the
fixture image) is intact, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from lamina.config import EngineConfig
from lamina.services.compose import build_services

from .test_store import FIXTURE, FIXTURE_IMAGE_ID, assert_clean, docker_archive, layer_tar

pytestmark = pytest.mark.privileged

LOAD_STEPS = [
    ("lamina.layer.store.LayerStore", "register"),
    ("DRIVER", "create"),
    ("DRIVER", "apply_diff"),
    ("lamina.fsutil", "publish_dir"),
    ("lamina.fsutil", "syncfs"),
    ("lamina.image.store.ImageStore", "put"),
    ("lamina.image.refstore.ReferenceStore", "add_tag"),
]
RMI_STEPS = [
    ("lamina.image.refstore.ReferenceStore", "delete"),
    ("lamina.image.store.ImageStore", "delete"),
    ("lamina.layer.store.LayerStore", "remove"),
    ("DRIVER", "remove"),
]


class InjectedFailure(Exception):
    pass


def _target(services, owner: str):
    if owner == "DRIVER":
        return type(services.system.driver)
    module_name, _, attribute = owner.rpartition(".")
    import importlib

    try:
        module = importlib.import_module(owner)
        return module
    except ImportError:
        return getattr(importlib.import_module(module_name), attribute)


def _inject(monkeypatch, services, owner: str, method: str, kind: str, skip: int = 0) -> None:
    target = _target(services, owner)
    original = getattr(target, method)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > skip:
            if kind == "kill":
                os._exit(99)
            raise InjectedFailure(f"injected failure in {owner}.{method}")
        return original(*args, **kwargs)

    if isinstance(target, type):
        monkeypatch.setattr(target, method, failing)
    else:
        monkeypatch.setattr(target, method, failing)


def _committed(data_root: str, driver: str):
    services = build_services(EngineConfig(data_root=data_root, exec_root=data_root + "-exec", storage_driver=driver))
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda m: None)
    return services


def _second_image() -> bytes:
    return docker_archive([layer_tar({"etc/base": b"base" * 100}), layer_tar({"etc/top": b"top" * 100})],
                          ["second:1"])


def _run(kind: str, operation, monkeypatch, services, owner: str, method: str) -> None:
    if kind == "exception":
        _inject(monkeypatch, services, owner, method, kind)
        try:
            operation(services)
        except InjectedFailure:
            pass
        monkeypatch.undo()
        return
    pid = os.fork()
    if pid == 0:  # the child: dies at the injected step
        try:
            child = build_services(services.system.config)
            _inject(monkeypatch, child, owner, method, kind)
            operation(child)
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) in (99, 0), "the child failed before the injected step"


def _verify_intact(data_root: str, driver: str) -> None:
    reopened = build_services(EngineConfig(data_root=data_root, exec_root=data_root + "-exec", storage_driver=driver))
    assert_clean(reopened)
    assert reopened.images.inspect_image("busybox:latest")["Id"] == FIXTURE_IMAGE_ID
    saved = b"".join(reopened.images.save(["busybox:latest"]))
    assert hashlib.sha256(saved).hexdigest()  # the stream verified every layer against its diff_id


@pytest.mark.parametrize("kind", ["exception", "kill"])
@pytest.mark.parametrize("owner,method", LOAD_STEPS, ids=[f"{o.split('.')[-1]}.{m}" for o, m in LOAD_STEPS])
def test_a_load_failing_at_any_step_leaves_a_clean_store(tmp_path, monkeypatch, owner, method, kind) -> None:
    data_root = str(tmp_path / "root")
    services = _committed(data_root, "overlay2")
    _run(kind, lambda s: s.images.load(io.BytesIO(_second_image()), progress=lambda m: None),
         monkeypatch, services, owner, method)
    _verify_intact(data_root, "overlay2")


@pytest.mark.parametrize("kind", ["exception", "kill"])
@pytest.mark.parametrize("owner,method", RMI_STEPS, ids=[f"{o.split('.')[-1]}.{m}" for o, m in RMI_STEPS])
def test_an_rmi_failing_at_any_step_leaves_a_clean_store(tmp_path, monkeypatch, owner, method, kind) -> None:
    data_root = str(tmp_path / "root")
    services = _committed(data_root, "overlay2")
    services.images.load(io.BytesIO(_second_image()), progress=lambda m: None)
    _run(kind, lambda s: s.images.remove_image("second:1"), monkeypatch, services, owner, method)
    _verify_intact(data_root, "overlay2")
    reopened = build_services(EngineConfig(data_root=data_root, exec_root=data_root + "-exec", storage_driver="overlay2"))
    # the interrupted rmi may be finished or not, but it is never half-visible
    names = [t for image in reopened.images.list_images(all=True) for t in image["RepoTags"]]
    if "second:1" in names:
        assert reopened.images.inspect_image("second:1")["RootFS"]["Layers"]
