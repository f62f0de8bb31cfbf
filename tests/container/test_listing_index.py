"""The container store's listing index (``.list.json``): ``listing`` returns exactly the listed
fields of every record whatever state the index is in (missing, damaged, of another version,
behind the records), reads only the records whose ``config.v2.json`` changed, indexes only
settled records, stays right while other processes create, change and remove containers, and
``check_index`` reports an entry that disagrees with its current record (``repair`` rebuilds)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

from lamina.container.state import new_state
from lamina.container.store import CONFIG_FILE, HOST_CONFIG_FILE, Container, ContainerStore, new_container_id

LISTED = ("ID", "Name", "Created", "Path", "Args", "Image", "State", "MountPoints")


def record(name: str, number: int = 0) -> Container:
    data = {"ID": new_container_id(), "Name": name, "Created": f"2026-12-06T08:00:{number % 60:02d}.5Z",
            "Path": "sh", "Args": ["-c", "true"], "Image": "sha256:" + "ab" * 32, "State": new_state(),
            "Config": {"Image": "busybox", "Labels": {"n": str(number)}, "Env": ["A=1"], "Cmd": ["sh"]},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ""}}, "Ports": {}},
            "MountPoints": {}, "LogPath": "/x", "RestartCount": 0}
    return Container(data, {"NetworkMode": "default", "Binds": None, "Privileged": False})


def expected(container: Container) -> tuple[dict, dict]:
    """What a listing must show of a record: the listed fields, written out by hand."""
    data = {key: container.data[key] for key in LISTED if key in container.data}
    config = container.data["Config"]
    data["Config"] = {key: config[key] for key in ("Image", "Labels") if key in config}
    data["NetworkSettings"] = {"Networks": container.data["NetworkSettings"]["Networks"]}
    return data, {"NetworkMode": container.host_config["NetworkMode"]}


def listed(store: ContainerStore) -> dict[str, tuple[dict, dict]]:
    return {container.id: (container.data, container.host_config) for container in store.listing()}


def settle(store: ContainerStore, container_id: str) -> None:
    """Make the record's files look older than the settling time."""
    past = time.time() - 10
    for name in (CONFIG_FILE, HOST_CONFIG_FILE):
        os.utime(os.path.join(store.root, container_id, name), (past, past))


def index_file(store: ContainerStore) -> str:
    return os.path.join(store.root, ".list.json")


def indexed_ids(store: ContainerStore) -> set[str]:
    with open(index_file(store), "rb") as handle:
        document = json.load(handle)
    assert document["Version"] == 1
    return set(document["Containers"])


def counting_reads(store: ContainerStore, monkeypatch) -> list[str]:
    reads: list[str] = []
    original = store._read
    monkeypatch.setattr(store, "_read", lambda container_id: reads.append(container_id) or original(container_id))
    return reads


def test_listing_reads_only_what_changed_and_indexes_only_settled_records(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}", number) for number in range(6)]
    for container in containers:
        store.create(container)
    reads = counting_reads(store, monkeypatch)
    assert listed(store) == {container.id: expected(container) for container in containers}
    assert len(reads) == 6
    assert not os.path.exists(index_file(store))  # nothing settled yet: nothing worth indexing
    for container in containers:
        settle(store, container.id)
    reads.clear()
    assert listed(store) == {container.id: expected(container) for container in containers}
    assert len(reads) == 6
    assert indexed_ids(store) == {container.id for container in containers}
    reads.clear()
    fresh = ContainerStore(str(tmp_path))  # another process: the index on disk, nothing in memory
    fresh_reads = counting_reads(fresh, monkeypatch)
    assert listed(fresh) == {container.id: expected(container) for container in containers}
    assert fresh_reads == []
    # a change: only that record is read, and its new state is shown at once (not yet settled)
    with store.modify(containers[2].id) as changed:
        changed.state["Running"] = True
        changed.state["Pid"] = 4242
        changed.data["Config"]["Labels"] = {"changed": "yes"}
    assert listed(fresh)[containers[2].id] == expected(changed)
    assert fresh_reads == [containers[2].id]
    # a host config change rewrites config.v2.json after hostconfig.json: seen too
    settle(store, changed.id)
    with store.modify(changed.id, host_config=True) as changed:
        changed.host_config["NetworkMode"] = "host"
    assert listed(fresh)[changed.id][1] == {"NetworkMode": "host"}
    settle(store, changed.id)  # settled: indexed again, with its new fields
    listed(fresh)
    with open(index_file(store), "rb") as handle:
        entry = json.load(handle)["Containers"][changed.id]
    assert (entry["Container"], entry["HostConfig"]) == expected(changed)
    # removal
    store.begin_removal(containers[0].id)
    assert containers[0].id not in listed(fresh)
    assert containers[0].id not in indexed_ids(store)
    assert store.check_index() == ([], [])


def test_a_missing_damaged_or_foreign_index_is_rebuilt(tmp_path, caplog) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}", number) for number in range(5)]
    for container in containers:
        store.create(container)
        settle(store, container.id)
    want = {container.id: expected(container) for container in containers}
    assert listed(store) == want
    path = index_file(store)
    some_id = containers[1].id
    damages = [None, b"{not json", b'{"Version": 2, "Containers": {}}', b'{"Version": 1, "Containers": []}',
               json.dumps({"Version": 1, "Containers": {some_id: {"Key": "x", "Container": {},
                                                                  "HostConfig": {}}}}).encode(),
               json.dumps({"Version": 1, "Containers": {"not-an-id": {}}}).encode()]
    for damage in damages:
        if damage is None:
            os.unlink(path)
        else:
            with open(path, "wb") as handle:
                handle.write(damage)
        assert listed(ContainerStore(str(tmp_path))) == want
        assert indexed_ids(store) == set(want)  # rewritten whole
        if damage is not None:
            assert "container listing index" in caplog.text
        caplog.clear()
        assert store.check_index() == ([], [])


def test_a_wrong_current_entry_is_a_problem_that_repair_fixes(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}", number) for number in range(3)]
    for container in containers:
        store.create(container)
        settle(store, container.id)
    listed(store)
    with open(index_file(store), "rb") as handle:
        document = json.load(handle)
    document["Containers"][containers[1].id]["Container"]["Name"] = "/liar"
    with open(index_file(store), "w") as handle:
        json.dump(document, handle)
    problems, repairs = store.check_index()
    assert problems == [f"the container listing index describes {containers[1].id} otherwise than its record"]
    assert repairs == []
    problems, repairs = store.check_index(repair=True)
    assert len(problems) == 1 and repairs == ["rebuilt the container listing index (3 containers)"]
    assert store.check_index() == ([], [])
    assert listed(ContainerStore(str(tmp_path)))[containers[1].id][0]["Name"] == "/c1"
    # an entry whose record changed since is outdated, not wrong: no problem
    with store.modify(containers[0].id) as changed:
        changed.state["ExitCode"] = 3
    assert store.check_index() == ([], [])


def _change_repeatedly(root: str, container_id: str, rounds: int, queue) -> None:
    store = ContainerStore(root)
    try:
        for number in range(1, rounds + 1):
            with store.modify(container_id) as container:
                container.state["Pid"] = number
                container.data["Config"]["Labels"] = {"round": str(number)}
            settle(store, container_id)  # indexable at once: the index is used while it changes
        queue.put(("ok", container_id))
    except BaseException as exc:
        queue.put(("error", f"changer: {exc!r}"))


def _create_and_remove(root: str, prefix: str, count: int, queue) -> None:
    store = ContainerStore(root)
    try:
        for number in range(count):
            container = record(f"/{prefix}-{number}", number)
            store.create(container)
            settle(store, container.id)
            if number % 2:
                store.begin_removal(container.id)
        queue.put(("ok", prefix))
    except BaseException as exc:
        queue.put(("error", f"{prefix}: {exc!r}"))


def _list_while_writers_run(root: str, watched: list[str], rounds: int, queue) -> None:
    store = ContainerStore(root)
    try:
        seen = dict.fromkeys(watched, 0)
        for _ in range(rounds):
            by_id = listed(store)
            for container_id in watched:
                data = by_id[container_id][0]
                pid = data["State"]["Pid"]
                if pid < seen[container_id]:
                    raise AssertionError(f"{container_id} went back from round {seen[container_id]} to {pid}")
                if pid and data["Config"]["Labels"] != {"round": str(pid)}:
                    raise AssertionError(f"{container_id}: labels {data['Config']['Labels']} in round {pid}")
                seen[container_id] = pid
            names = [value[0]["Name"] for value in by_id.values()]
            if len(names) != len(set(names)):
                raise AssertionError("a container listed twice")
        queue.put(("ok", "reader"))
    except BaseException as exc:
        queue.put(("error", f"reader: {exc!r}"))


def test_concurrent_changers_creators_removers_and_listers_agree_with_the_records(tmp_path) -> None:
    root = str(tmp_path)
    store = ContainerStore(root)
    watched = []
    for number in range(4):
        container = record(f"/watched-{number}", number)
        store.create(container)
        settle(store, container.id)
        watched.append(container.id)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_change_repeatedly, args=(root, container_id, 40, queue))
                 for container_id in watched[:2]]
    processes += [context.Process(target=_create_and_remove, args=(root, f"w{number}", 20, queue))
                  for number in range(2)]
    processes += [context.Process(target=_list_while_writers_run, args=(root, watched, 25, queue)) for _ in range(3)]
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
    assert [item for item in results if item[0] == "error"] == []
    assert store.check_index() == ([], [])
    want = {container_id: expected(store.get(container_id)) for container_id in store.ids()}
    assert len(want) == 4 + 2 * 10
    assert listed(ContainerStore(root)) == want
    assert listed(store) == want
    assert want[watched[0]][0]["State"]["Pid"] == 40


def test_a_few_outdated_entries_are_read_past_and_many_rewrite_the_index(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}", number) for number in range(300)]
    for container in containers:
        store.create(container)
        settle(store, container.id)
    listed(store)
    written = os.stat(index_file(store)).st_ino
    for container in containers[:3]:
        with store.modify(container.id) as changed:
            changed.state["ExitCode"] = 7
        settle(store, container.id)
    store.begin_removal(containers[-1].id)
    reads = counting_reads(store, monkeypatch)
    for _ in range(2):
        by_id = listed(store)
        assert [by_id[container.id][0]["State"]["ExitCode"] for container in containers[:4]] == [7, 7, 7, 0]
        assert containers[-1].id not in by_id
    assert os.stat(index_file(store)).st_ino == written  # 4 outdated of 300: not worth a rewrite
    assert len(reads) == 6
    for container in containers[3:16]:
        with store.modify(container.id) as changed:
            changed.state["ExitCode"] = 8
        settle(store, container.id)
    reads.clear()
    listed(store)
    assert len(reads) == 16 and os.stat(index_file(store)).st_ino != written
    reads.clear()
    assert listed(store)[containers[15].id][0]["State"]["ExitCode"] == 8
    assert reads == []
