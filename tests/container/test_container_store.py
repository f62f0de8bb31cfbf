"""The container store: Docker's files, names, lookups, commit points and sweeps; plus the
State texts."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from lamina import errdefs
from lamina.container.names import random_name, validate_name
from lamina.container.state import human_duration, new_state, status, status_text
from lamina.container.store import Container, ContainerStore, new_container_id


def record(name: str, container_id: str | None = None) -> Container:
    container_id = container_id or new_container_id()
    return Container({"ID": container_id, "Name": name, "State": new_state(), "Config": {"Image": "busybox"}},
                     {"NetworkMode": "default"})


def test_a_record_is_two_docker_files_published_at_once(tmp_path) -> None:
    store = ContainerStore(str(tmp_path / "containers"))
    container = record("/web")
    store.create(container)
    directory = tmp_path / "containers" / container.id
    assert sorted(os.listdir(directory)) == ["config.v2.json", "hostconfig.json"]
    assert json.loads((directory / "config.v2.json").read_text())["Name"] == "/web"
    assert json.loads((directory / "hostconfig.json").read_text()) == {"NetworkMode": "default"}
    assert [name for name in os.listdir(tmp_path / "containers") if name.startswith(".tmp-")] == []


def test_lookups_by_id_name_and_prefix(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    first = record("/web", "ab" + "0" * 62)
    second = record("/db", "ac" + "1" * 62)
    store.create(first)
    store.create(second)
    assert store.lookup(first.id).name == "/web"
    assert store.lookup("web").id == first.id
    assert store.lookup("/db").id == second.id
    assert store.lookup("ab").id == first.id
    with pytest.raises(errdefs.InvalidArgument, match="Multiple IDs found with provided prefix: a"):
        store.lookup("a")
    with pytest.raises(errdefs.NotFound, match="No such container: nothing"):
        store.lookup("nothing")
    # a name made of hex digits is found by name before prefixes are tried
    named_like_hex = record("/" + "ab" * 3)
    store.create(named_like_hex)
    assert store.lookup("ababab").id == named_like_hex.id


def test_names_are_unique_and_renames_keep_them_so(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    first = record("/web")
    store.create(first)
    with pytest.raises(errdefs.Conflict) as raised:
        store.create(record("/web"))
    assert str(raised.value) == (f'Conflict. The container name "/web" is already in use by container "{first.id}". '
                                 "You have to remove (or rename) that container to be able to reuse that name.")
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] == []
    other = record("/api")
    store.create(other)
    with pytest.raises(errdefs.Conflict):
        store.rename(other.id, "web")
    assert store.rename(other.id, "api2") == "/api"
    assert store.lookup("api2").id == other.id
    with pytest.raises(errdefs.InvalidArgument):
        store.rename(other.id, "api2")


def _create_named(root: str, name: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        ContainerStore(root).create(record(name))
        queue.put("created")
    except errdefs.Conflict:
        queue.put("conflict")


def test_concurrent_processes_cannot_take_the_same_name(tmp_path) -> None:
    queue: multiprocessing.Queue[str] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_create_named, args=(str(tmp_path), "/same", queue))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    results = sorted(queue.get(timeout=5) for _ in workers)
    assert results == ["conflict"] * 5 + ["created"]


def test_modify_writes_only_what_changed(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    container = record("/web")
    store.create(container)
    host_file = tmp_path / container.id / "hostconfig.json"
    before = host_file.stat().st_ino
    with store.modify(container.id) as changing:
        changing.state["Running"] = True
    assert store.get(container.id).state["Running"] is True
    assert host_file.stat().st_ino == before
    with store.modify(container.id, host_config=True) as changing:
        changing.host_config["Memory"] = 1 << 30
    assert store.get(container.id).host_config["Memory"] == 1 << 30
    with pytest.raises(RuntimeError), store.modify(container.id) as changing:
        changing.state["Running"] = False
        raise RuntimeError("abandoned")
    assert store.get(container.id).state["Running"] is True


def test_removal_commit_point_and_sweep(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    container = record("/web")
    store.create(container)
    path = store.begin_removal(container.id)
    assert path.endswith("-removing")
    with pytest.raises(errdefs.NotFound):
        store.lookup("web")
    assert store.removing() == [(container.id, path)]
    assert not store.removal_in_progress(path)
    os.mkdir(tmp_path / ".tmp-old")
    os.utime(tmp_path / ".tmp-old", (1, 1))
    os.mkdir(tmp_path / ".tmp-fresh")
    store.sweep_temporary()
    assert not (tmp_path / ".tmp-old").exists()
    assert (tmp_path / ".tmp-fresh").exists()  # may be another process's creation in progress


def test_damaged_records_are_data_loss_and_skipped_by_list(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    good = record("/good")
    bad = record("/bad")
    store.create(good)
    store.create(bad)
    (tmp_path / bad.id / "config.v2.json").write_text("{not json")
    with pytest.raises(errdefs.DataLoss):
        store.get(bad.id)
    assert [c.id for c in store.list()] == [good.id]


def test_ids_never_look_like_numbers() -> None:
    for _ in range(200):
        container_id = new_container_id()
        assert len(container_id) == 64 and not container_id[:12].isdigit()


@pytest.mark.parametrize(("name", "valid"), [("web", True), ("/web", True), ("a_b.c-d", True), ("x", False),
                                             ("-web", False), ("we b", False), ("web/1", False), ("", False)],
                         ids=lambda value: repr(value))
def test_name_rules(name: str, valid: bool) -> None:
    if valid:
        assert validate_name(name) == "/" + name.lstrip("/")
    else:
        with pytest.raises(errdefs.InvalidArgument, match=r"only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed"):
            validate_name(name)


def test_random_names() -> None:
    names = {random_name() for _ in range(200)}
    assert all(validate_name(name) for name in names)
    assert "boring_wozniak" not in names
    assert random_name(3)[-1].isdigit()


@pytest.mark.parametrize(("seconds", "text"), [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                               (60, "About a minute"), (150, "2 minutes"), (3600, "About an hour"),
                                               (3 * 3600, "3 hours"), (3 * 86400, "3 days"),
                                               (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
                                               (800 * 86400, "2 years")])
def test_human_duration_like_go(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_state_status_and_text() -> None:
    state = new_state()
    assert (status(state), status_text(state)) == ("created", "Created")
    state.update(Running=True, StartedAt="2020-01-01T00:00:00Z")
    at = 1577836803.0  # three seconds later
    assert (status(state), status_text(state, at)) == ("running", "Up 3 seconds")
    state["Paused"] = True
    assert (status(state), status_text(state, at)) == ("paused", "Up 3 seconds (Paused)")
    state.update(Paused=False, Restarting=True, ExitCode=3, FinishedAt="2020-01-01T00:00:02Z")
    assert (status(state), status_text(state, at)) == ("restarting", "Restarting (3) 1 second ago")
    state.update(Running=False, Restarting=False, ExitCode=0)
    assert (status(state), status_text(state, at)) == ("exited", "Exited (0) 1 second ago")
    state["Dead"] = True
    assert (status(state), status_text(state, at)) == ("dead", "Dead")
    state["RemovalInProgress"] = True
    assert status(state) == "removing"
