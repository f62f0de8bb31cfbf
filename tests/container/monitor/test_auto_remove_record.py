"""The exit of an ``--rm`` container's last run: one record write marks it exited and being
removed (the removal writes no record of its own before its commit point); a removal that
fails leaves it dead with the error, as Docker, not "removing" for ever (``rm`` may try again)."""

from __future__ import annotations

import types

from lamina import errdefs
from lamina.container.monitor import run as run_module
from lamina.container.removal import destroy
from lamina.container.state import new_state, status
from lamina.container.store import Container, ContainerStore, new_container_id


def _runner(tmp_path, auto_remove: bool) -> tuple[run_module.Runner, ContainerStore, str, list[str]]:
    store = ContainerStore(str(tmp_path / "containers"))
    container_id = new_container_id()
    state = {**new_state(), "Running": True, "Pid": 4242, "StartedAt": "2026-12-07T00:00:00Z"}
    store.create(Container({"ID": container_id, "Name": "/disposable", "State": state, "Config": {}},
                           {"AutoRemove": auto_remove}))
    events: list[str] = []
    monitor = types.SimpleNamespace(
        id=container_id, store=store, mounts=None, execs=None,
        context=types.SimpleNamespace(volumes=None, exec_root=str(tmp_path / "run")),
        event=lambda container, action, extra=None: events.append(action))
    return run_module.Runner(monitor), store, container_id, events  # type: ignore[arg-type]


def test_the_last_exit_of_an_rm_container_is_recorded_as_being_removed(tmp_path) -> None:
    runner, store, container_id, _ = _runner(tmp_path, auto_remove=True)
    runner._record_exit(3, False, restarting=False, removing=True)
    state = store.get(container_id).state
    assert (state["Running"], state["ExitCode"], state["RemovalInProgress"]) == (False, 3, True)
    assert status(state) == "removing"
    kept, _, other_id, _ = _runner(tmp_path / "kept", auto_remove=False)
    kept._record_exit(3, False, restarting=False)
    assert not kept.store.get(other_id).state["RemovalInProgress"]


def test_the_removal_writes_no_record_when_the_exit_marked_it(tmp_path, monkeypatch) -> None:
    runner, store, container_id, _ = _runner(tmp_path, auto_remove=True)
    runner._record_exit(0, False, restarting=False, removing=True)
    saved: list[str] = []
    monkeypatch.setattr(ContainerStore, "save", lambda self, container, **options: saved.append(container.id))
    monkeypatch.setattr(ContainerStore, "begin_removal",
                        lambda self, container_id, durable=True: (_ for _ in ()).throw(errdefs.System("stop here")))
    try:
        destroy(store, None, None, str(tmp_path / "run"), container_id)  # type: ignore[arg-type]
    except errdefs.System:
        pass
    assert saved == []


def test_an_rm_container_whose_removal_fails_is_dead_with_the_error(tmp_path, monkeypatch) -> None:
    runner, store, container_id, events = _runner(tmp_path, auto_remove=True)
    runner._record_exit(0, False, restarting=False, removing=True)

    def failing(*arguments, **options) -> None:
        raise errdefs.System("the disk said no")

    monkeypatch.setattr(run_module, "destroy", failing)
    assert runner._auto_remove(store.get(container_id)) is False
    state = store.get(container_id).state
    assert (state["RemovalInProgress"], state["Dead"]) == (False, True)
    assert "the disk said no" in state["Error"]
    assert status(state) == "dead"
    assert events == []  # no "destroy": it is still there
