"""The container store's name index (``.names.json``) and its in-memory records: lookups and
name conflicts stay right whatever state the index is in (missing, damaged, behind the records,
ahead of them), writers keep it up to date under ``.names.lock`` while other processes create,
remove and list, ``check_index`` reports what is wrong and ``repair`` rebuilds it."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from lamina import errdefs
from lamina.container.state import new_state
from lamina.container.store import CONFIG_FILE, HOST_CONFIG_FILE, Container, ContainerStore, new_container_id


def record(name: str) -> Container:
    return Container({"ID": new_container_id(), "Name": name, "State": new_state(), "Config": {"Image": "busybox"}},
                     {"NetworkMode": "default"})


def index_of(store: ContainerStore) -> dict[str, str]:
    with open(os.path.join(store.root, ".names.json"), "rb") as handle:
        document = json.load(handle)
    assert document["Version"] == 1
    return document["Containers"]


def test_create_and_rename_keep_the_index_in_step_with_the_records(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    web, db = record("/web"), record("/data")
    store.create(web)
    store.create(db)
    assert index_of(store) == {web.id: "/web", db.id: "/data"}
    assert store.rename(db.id, "store") == "/data"
    assert index_of(store) == {web.id: "/web", db.id: "/store"}
    assert store.lookup("store").id == db.id
    with pytest.raises(errdefs.NotFound):
        store.lookup("data")  # not hex: never an id prefix
    store.begin_removal(web.id)
    with pytest.raises(errdefs.NotFound):
        store.lookup("web")
    store.create(record("/web"))  # the name of a removed container is free again
    assert sorted(index_of(store).values()) == ["/store", "/web"]
    assert store.check_index() == ([], [])


def test_a_missing_or_damaged_index_is_rebuilt_from_the_records(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}") for number in range(20)]
    for container in containers:
        store.create(container)
    path = os.path.join(store.root, ".names.json")
    for damage in (None, b"{not json", b'{"Version": 7, "Containers": {}}', b'{"Version": 1, "Containers": []}'):
        if damage is None:
            os.unlink(path)
        else:
            with open(path, "wb") as handle:
                handle.write(damage)
        problems, _ = store.check_index()
        assert bool(problems) == (damage is not None), problems
        # every lookup and every conflict is still right
        assert store.lookup("c7").id == containers[7].id
        with pytest.raises(errdefs.Conflict, match='"/c3" is already in use'):
            store.create(record("/c3"))
        # a lookup that had to read many records, or the next create, wrote the index back
        assert index_of(store) == {c.id: c.name for c in containers}
        assert store.check_index() == ([], [])


def test_an_index_behind_or_ahead_of_the_records_is_read_past(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    first, second = record("/first"), record("/second")
    store.create(first)
    store.create(second)
    # a container published by a process that crashed before indexing it (or an older lamina)
    index = index_of(store)
    del index[second.id]
    gone = new_container_id()
    index[gone] = "/ghost"  # a removed container the index still lists
    with open(os.path.join(store.root, ".names.json"), "w") as handle:
        json.dump({"Version": 1, "Containers": index}, handle)
    assert store.lookup("second").id == second.id
    with pytest.raises(errdefs.NotFound):
        store.lookup("ghost")
    with pytest.raises(errdefs.Conflict):
        store.create(record("/second"))
    store.create(record("/ghost"))  # the ghost's name is free, and the writer dropped it
    assert gone not in index_of(store)
    assert second.id in index_of(store)


def test_a_wrong_name_in_the_index_is_a_problem_that_repair_fixes(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    container = record("/right")
    store.create(container)
    with open(os.path.join(store.root, ".names.json"), "w") as handle:
        json.dump({"Version": 1, "Containers": {container.id: "/wrong"}}, handle)
    # a hit is checked against the record it names
    with pytest.raises(errdefs.NotFound):
        store.lookup("wrong")
    problems, repairs = store.check_index()
    assert problems == [f"the container name index names {container.id} '/wrong', its record '/right'"]
    assert repairs == []
    problems, repairs = store.check_index(repair=True)
    assert problems and repairs == ["rebuilt the container name index (1 containers)"]
    assert index_of(store) == {container.id: "/right"}
    assert store.check_index() == ([], [])
    assert store.lookup("right").id == container.id


def test_a_rename_interrupted_between_its_steps_leaves_no_wrong_name(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    container = record("/before")
    store.create(container)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("crash after the record changed")

    original_modify = store.modify

    def modify_then_crash(container_id, **kwargs):
        context = original_modify(container_id, **kwargs)

        class Wrapped:
            def __enter__(self):
                return context.__enter__()

            def __exit__(self, *exc):
                context.__exit__(*exc)
                crash()

        return Wrapped()

    monkeypatch.setattr(store, "modify", modify_then_crash)
    with pytest.raises(KeyboardInterrupt):
        store.rename(container.id, "after")
    monkeypatch.undo()
    assert container.id not in index_of(store)  # uncovered, not indexed under its old name
    assert store.check_index() == ([], [])
    assert store.lookup("after").id == container.id
    with pytest.raises(errdefs.Conflict):
        store.create(record("/after"))
    store.create(record("/before"))


def _settle(store: ContainerStore, container_id: str) -> None:
    """Make the record's files look older than the in-memory cache's settling time."""
    past = time.time() - 10
    for name in (CONFIG_FILE, HOST_CONFIG_FILE):
        os.utime(os.path.join(store.root, container_id, name), (past, past))


def test_list_keeps_settled_records_in_memory_and_sees_every_change(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}") for number in range(5)]
    for container in containers:
        store.create(container)
    reads = []
    original_get = store.get
    monkeypatch.setattr(store, "get", lambda container_id: reads.append(container_id) or original_get(container_id))
    assert len(store.list()) == 5
    assert len(reads) == 5
    reads.clear()
    assert len(store.list()) == 5
    assert len(reads) == 5  # just written: not settled, read again
    for container in containers:
        _settle(store, container.id)
    store.list()
    reads.clear()
    assert {c.name for c in store.list()} == {f"/c{number}" for number in range(5)}
    assert reads == []  # settled and unchanged: from memory
    with store.modify(containers[2].id) as changed:
        changed.state["Running"] = True
    reads.clear()
    listed = {c.id: c for c in store.list()}
    assert reads == [containers[2].id]
    assert listed[containers[2].id].state["Running"] is True
    store.begin_removal(containers[0].id)
    assert containers[0].id not in {c.id for c in store.list()}


def _create_and_remove(root: str, prefix: str, count: int, queue) -> None:
    store = ContainerStore(root)
    try:
        for number in range(count):
            container = record(f"/{prefix}-{number}")
            store.create(container)
            if number % 2:
                store.begin_removal(container.id)
            elif number % 5 == 0:
                store.rename(container.id, f"{prefix}-renamed-{number}")
        queue.put(("ok", prefix))
    except BaseException as exc:  # reported to the test
        queue.put(("error", f"{prefix}: {exc!r}"))


def _read_while_writers_run(root: str, stable: dict[str, str], rounds: int, queue) -> None:
    store = ContainerStore(root)
    try:
        for _ in range(rounds):
            for name, container_id in stable.items():
                found = store.lookup(name)
                if found.id != container_id:
                    raise AssertionError(f"{name} is {found.id}, not {container_id}")
            names = [container.name for container in store.list()]
            if len(names) != len(set(names)):
                raise AssertionError(f"duplicate names listed: {sorted(names)}")
        queue.put(("ok", "reader"))
    except BaseException as exc:
        queue.put(("error", f"reader: {exc!r}"))


def _take_name(root: str, queue) -> None:
    try:
        ContainerStore(root).create(record("/contested"))
        queue.put("won")
    except errdefs.Conflict:
        queue.put("conflict")


def test_concurrent_creators_removers_and_readers_agree_with_the_records(tmp_path) -> None:
    root = str(tmp_path)
    store = ContainerStore(root)
    stable = {}
    for number in range(10):
        container = record(f"/stable-{number}")
        store.create(container)
        stable[container.name] = container.id
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_create_and_remove, args=(root, f"w{number}", 20, queue)) for number in range(3)]
    processes += [context.Process(target=_read_while_writers_run, args=(root, stable, 15, queue)) for _ in range(2)]
    processes += [context.Process(target=_take_name, args=(root, queue)) for _ in range(4)]
    try:
        for process in processes:
            process.start()
        results = [queue.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    errors = [item for item in results if isinstance(item, tuple) and item[0] == "error"]
    assert errors == []
    assert sorted(item for item in results if isinstance(item, str)) == ["conflict"] * 3 + ["won"]
    # what the readers and writers left agrees with the records
    assert store.check_index() == ([], [])
    names = [container.name for container in store.list()]
    assert len(names) == len(set(names)) == 10 + 3 * 10 + 1
    for number in range(3):
        assert store.lookup(f"w{number}-renamed-0").name == f"/w{number}-renamed-0"
        assert store.lookup(f"w{number}-2").name == f"/w{number}-2"


def test_a_lookup_the_index_answers_reads_one_record_and_lists_nothing(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}") for number in range(50)]
    for container in containers:
        store.create(container)
    reads: list[str] = []
    real_get = store.get

    def counting_get(container_id: str) -> Container:
        reads.append(container_id)
        return real_get(container_id)

    def no_listing() -> list[str]:
        raise AssertionError("the directory was listed")

    monkeypatch.setattr(store, "get", counting_get)
    monkeypatch.setattr(store, "ids", no_listing)
    assert store.lookup("c17").id == containers[17].id
    assert store.lookup("/c3").id == containers[3].id
    assert reads == [containers[17].id, containers[3].id]
    monkeypatch.undo()
    # an index behind the records (a create that crashed before indexing, a removal): a name
    # it lacks is read from the records, a name it still gives a removed container is not found
    with open(os.path.join(store.root, ".names.json"), "w") as handle:
        json.dump({"Version": 1, "Containers": {containers[5].id: "/c5"}}, handle)
    assert store.lookup("c6").id == containers[6].id
    assert store.lookup("c5").id == containers[5].id
    store.begin_removal(containers[5].id)
    with pytest.raises(errdefs.NotFound):
        store.lookup("c5")
