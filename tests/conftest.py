"""Shared pytest hooks: tests marked ``privileged`` need root and are skipped otherwise."""

from __future__ import annotations

import logging
import os
import time

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real mounts, devices, ownership)")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def private_exec_root(tmp_path_factory: pytest.TempPathFactory):
    """A command a test runs without naming an exec root (``lamina --data-root X ...``, a CLI
    with only ``LAMINA_DATA_ROOT``) would use the host's ``/run/lamina``: its monitor template,
    run directories, network namespaces and build state.  For the session, ``LAMINA_EXEC_ROOT``
    names one of the session's own (a test that sets its own, or removes it, still does)."""
    if os.environ.get("LAMINA_EXEC_ROOT"):
        yield
        return
    os.environ["LAMINA_EXEC_ROOT"] = str(tmp_path_factory.mktemp("exec-root"))
    try:
        yield
    finally:
        del os.environ["LAMINA_EXEC_ROOT"]


@pytest.fixture(autouse=True)
def restore_lamina_logger():
    """main() configures the "lamina" logger like a CLI process would (a handler on stderr);
    undo it per test, in every package, so a test that runs the CLI in-process cannot leave a
    handler behind for the tests after it."""
    logger = logging.getLogger("lamina")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture(autouse=True)
def remove_network_bridges(request: pytest.FixtureRequest):
    """A network's bridge outlives its containers (lamina.network.bridges): after a test, the
    bridges of the engines whose data roots are in the test's temporary directory are taken
    down, whichever fixture built the engine."""
    if "tmp_path" not in request.fixturenames or not os.path.isdir("/sys/class/net"):
        yield
        return
    base = str(request.getfixturevalue("tmp_path"))
    yield
    _remove_bridges_under(base)


def _remove_bridges_under(base: str) -> None:
    from lamina.network import bridges

    roots = {owner for owner in map(bridges.owner, bridges.anchors())
             if owner is not None and (owner[0] + "/").startswith(base + "/")}
    if roots:
        from lamina.network.run import RunNetwork

        for data_root, exec_root in sorted(roots):
            # an exec root a fixture removed already (a server's, beside its socket) is made
            # again by the network's locks: removed again below, with its directory if empty
            existed = os.path.isdir(exec_root)
            network = RunNetwork(data_root, exec_root)
            # a bridge with an endpoint stays: the teardown of a run that ended (an --rm run's
            # monitor finishes it after its waiters woke) is waited for, briefly
            deadline = time.monotonic() + 15
            while any(network.is_live(container_id) for container_id in network.recorded_ids()) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            network.sweep()  # the sandboxes of runs whose monitor is gone
            network.remove_bridges()
            if not existed:
                import shutil

                shutil.rmtree(exec_root, ignore_errors=True)
                try:
                    os.rmdir(os.path.dirname(exec_root))
                except OSError:
                    pass  # not empty: another fixture's, it removes it


@pytest.fixture(scope="session", autouse=True)
def remove_session_network_bridges(tmp_path_factory: pytest.TempPathFactory):
    """The same for module- and session-scoped engines (``tmp_path_factory.mktemp``), at the
    end of the session (of this xdist worker: its own base directory)."""
    yield
    if os.path.isdir("/sys/class/net"):
        _remove_bridges_under(str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors of every ``os.fsync`` made in this process while the test runs."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls
