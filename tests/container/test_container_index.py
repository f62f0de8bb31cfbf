"""The container store's name index (``.names/``, one link per name) and its in-memory records:
lookups and name conflicts stay right whatever state the index is in (missing, damaged,
hostile, left stale by a crash, written beside by an older lamina), writers keep it complete
under ``.names.lock`` while other processes create, rename, remove and list, a create costs the
same whatever the number of containers, ``check_index`` reports what is wrong and ``repair``
rebuilds it."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from typing import Any

import pytest

from lamina import errdefs
from lamina.container.nameindex import link_name
from lamina.container.state import new_state
from lamina.container.store import CONFIG_FILE, HOST_CONFIG_FILE, Container, ContainerStore, new_container_id


def record(name: str) -> Container:
    return Container({"ID": new_container_id(), "Name": name, "State": new_state(), "Config": {"Image": "busybox"}},
                     {"NetworkMode": "default"})


def write_record_unindexed(store: ContainerStore, container: Container) -> None:
    """A container's record written into the store's directory without the store (no name
    claimed): what an older lamina, or a damage, leaves."""
    directory = os.path.join(store.root, container.id)
    os.mkdir(directory)
    with open(os.path.join(directory, CONFIG_FILE), "w") as handle:
        json.dump(container.data, handle)
    with open(os.path.join(directory, HOST_CONFIG_FILE), "w") as handle:
        json.dump(container.host_config, handle)


def links_of(store: ContainerStore) -> dict[str, str]:
    """entry -> target of every name's link in ``.names/`` (all but the boot marker)."""
    directory = os.path.join(store.root, ".names")
    return {entry: os.readlink(os.path.join(directory, entry)) for entry in os.listdir(directory) if entry != ".boot"}


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as handle:
        return handle.read().strip()


def write_legacy_index(store: ContainerStore, table: dict[str, str]) -> None:
    """``.names.json`` as lamina wrote it before the directory (and as an older lamina still does)."""
    with open(os.path.join(store.root, ".names.json"), "w") as handle:
        json.dump({"Version": 1, "Containers": table}, handle)


def test_create_rename_and_removal_keep_one_link_per_name(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    web, db = record("/web"), record("/data")
    store.create(web)
    store.create(db)
    assert links_of(store) == {"web": web.id, "data": db.id}
    assert store.rename(db.id, "store") == "/data"
    assert links_of(store) == {"web": web.id, "store": db.id}
    assert store.lookup("store").id == db.id
    with pytest.raises(errdefs.NotFound):
        store.lookup("data")  # not hex: never an id prefix
    store.begin_removal(web.id)
    assert links_of(store) == {"store": db.id}
    with pytest.raises(errdefs.NotFound):
        store.lookup("web")
    again = record("/web")
    store.create(again)  # the name of a removed container is free again
    assert links_of(store) == {"web": again.id, "store": db.id}
    assert store.check_index() == ([], [])
    assert not os.path.exists(os.path.join(store.root, ".names.json"))


def test_a_name_longer_than_a_file_name_is_linked_by_its_digest(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    long_name = "/" + "n" * 300
    container = record(long_name)
    store.create(container)
    entry = link_name(long_name)
    assert entry.startswith("#") and len(entry) == 65
    assert links_of(store) == {entry: container.id}
    assert store.lookup(long_name[1:]).id == container.id
    with pytest.raises(errdefs.Conflict):
        store.create(record(long_name))
    store.create(record("/" + "n" * 299))  # another name, another digest
    assert store.rename(container.id, "short") == long_name
    assert entry not in links_of(store)
    assert store.check_index() == ([], [])


def test_a_create_lists_nothing_and_reads_no_record_but_a_stale_links(tmp_path, monkeypatch) -> None:
    """What makes a create cost the same whatever the number of containers."""
    store = ContainerStore(str(tmp_path))
    for number in range(30):
        store.create(record(f"/c{number}"))
    gone = record("/gone")
    store.create(gone)
    store.begin_removal(gone.id)
    os.symlink(gone.id, os.path.join(store.root, ".names", "gone"))  # as a removal that died would leave it
    reads: list[str] = []
    real_name_of = store.name_of

    def counting_name_of(container_id: str) -> str | None:
        reads.append(container_id)
        return real_name_of(container_id)

    def no_listing(*args: object) -> list[str]:
        raise AssertionError("the containers directory was listed")

    monkeypatch.setattr(store, "name_of", counting_name_of)
    monkeypatch.setattr(store, "ids", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    store.create(record("/fresh"))
    assert reads == []
    with pytest.raises(errdefs.Conflict):
        store.create(record("/c7"))
    assert len(reads) == 1  # the owner's record, to tell a live link from a stale one
    reads.clear()
    replacement = record("/gone")
    store.create(replacement)
    assert reads == [gone.id]  # found stale, replaced
    renamed = record("/to-rename")
    store.create(renamed)
    store.rename(renamed.id, "renamed")
    monkeypatch.undo()
    assert links_of(store)["gone"] == replacement.id
    assert store.check_index() == ([], [])


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
    with pytest.raises(errdefs.NotFound):
        store.lookup("nothing")  # a miss of a complete index is final
    for hostile in ("../c3", "c3/../c4", ".", "..", "/", "c3\x00"):
        with pytest.raises((errdefs.NotFound, errdefs.InvalidArgument)):
            store.lookup(hostile)


def test_a_data_root_of_the_single_file_index_is_migrated(tmp_path) -> None:
    """A data root written before the directory: records and ``.names.json``, no ``.names/``."""
    store = ContainerStore(str(tmp_path))
    containers = [record(f"/c{number}") for number in range(20)]
    for container in containers:
        store.create(container)
    os.rename(os.path.join(store.root, ".names"), os.path.join(str(tmp_path), "..", "moved-away"))
    os.system(f"rm -rf {tmp_path}/../moved-away")
    # the index that lamina wrote, one entry missing (a create that crashed before indexing)
    write_legacy_index(store, {c.id: c.name for c in containers[:-1]})
    old = ContainerStore(str(tmp_path))
    assert old.check_index() == ([], [])  # not built yet is no problem
    # readers ask the records (and a free lock lets one of them build the index)
    assert old.lookup("c19").id == containers[19].id
    assert old.lookup("c3").id == containers[3].id
    with pytest.raises(errdefs.Conflict, match='"/c19" is already in use'):
        old.create(record("/c19"))
    assert links_of(old) == {c.name[1:]: c.id for c in containers}
    assert not os.path.exists(os.path.join(store.root, ".names.json"))
    assert old.check_index() == ([], [])


def test_an_older_lamina_writing_beside_the_directory_is_caught_up_with(tmp_path) -> None:
    """An older lamina creates without linking and rewrites ``.names.json``: found, it makes
    the index incomplete (the records answer) until the next writer rebuilds it."""
    store = ContainerStore(str(tmp_path))
    first = record("/first")
    store.create(first)
    # what an older lamina's create does: the record under .names.lock, then .names.json
    written = record("/written-by-old")
    write_record_unindexed(store, written)
    write_legacy_index(store, {first.id: "/first", written.id: "/written-by-old"})
    reader = ContainerStore(str(tmp_path))
    lock = os.open(os.path.join(store.root, ".names.lock"), os.O_RDWR)
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX)  # another writer holds it: the reader must not wait
    try:
        assert reader.lookup("written-by-old").id == written.id
    finally:
        os.close(lock)
    with pytest.raises(errdefs.Conflict):
        store.create(record("/written-by-old"))
    assert links_of(store) == {"first": first.id, "written-by-old": written.id}
    assert not os.path.exists(os.path.join(store.root, ".names.json"))


def test_an_index_of_another_boot_is_rebuilt_by_the_first_writer_of_this_one(tmp_path, monkeypatch) -> None:
    """After a host crash a record may have reached the disk and its link not (links are not
    synced): the index of another boot answers hits (checked against their records) but not
    misses, and the first writer rebuilds it from the records."""
    store = ContainerStore(str(tmp_path))
    kept = record("/kept")
    store.create(kept)
    marker = os.path.join(store.root, ".names", ".boot")
    assert os.readlink(marker) == boot_id()
    # what a host crash may leave: the record, not its link; the marker of the boot before
    lost = record("/lost-link")
    store.create(lost)
    os.unlink(os.path.join(store.root, ".names", "lost-link"))
    os.unlink(marker)
    os.symlink("00000000-0000-0000-0000-000000000000", marker)
    assert store.check_index() == ([], [])  # another boot's index is no problem: it is rebuilt
    reader = ContainerStore(str(tmp_path))
    lock = os.open(os.path.join(store.root, ".names.lock"), os.O_RDWR)
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX)  # a writer holds it: the reader reads the records, waits for nothing
    try:
        assert reader.lookup("kept").id == kept.id
        assert reader.lookup("lost-link").id == lost.id
    finally:
        os.close(lock)
    with pytest.raises(errdefs.Conflict):
        store.create(record("/lost-link"))
    assert os.readlink(marker) == boot_id()
    assert links_of(store) == {"kept": kept.id, "lost-link": lost.id}
    assert store.check_index() == ([], [])


def test_a_claim_costs_no_fsync_but_without_a_boot_id(tmp_path, monkeypatch) -> None:
    store = ContainerStore(str(tmp_path))
    store.create(record("/first"))
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    store.create(record("/second"))
    assert len(synced) == 4  # the record's two files, its directory, the containers directory
    synced.clear()
    store.create(record("/third"), durable=False)
    assert synced == []
    blind = ContainerStore(str(tmp_path))
    monkeypatch.setattr(type(blind._names), "boot", property(lambda self: ""))
    synced.clear()
    blind.create(record("/fourth"))
    assert len(synced) == 5  # and the claim's
    assert blind.lookup("fourth").name == "/fourth"


def _damage(store: ContainerStore, kind: str, victim: Container, other: Container) -> None:
    names = os.path.join(store.root, ".names")
    entry = os.path.join(names, victim.name[1:])
    if kind == "missing directory":
        os.system(f"rm -rf {names}")
    elif kind == "directory is a file":
        os.system(f"rm -rf {names}")
        with open(names, "w") as handle:
            handle.write("{}")
    elif kind == "directory is a link elsewhere":
        elsewhere = os.path.join(os.path.dirname(store.root), "elsewhere")
        os.rename(names, elsewhere)
        os.symlink(elsewhere, names)
    elif kind == "link to a path":
        os.unlink(entry)
        os.symlink("../../../etc/passwd", entry)
    elif kind == "a file for a link":
        os.unlink(entry)
        with open(entry, "w") as handle:
            handle.write(victim.id)
    elif kind == "a directory for a link":
        os.unlink(entry)
        os.mkdir(entry)
        os.mkdir(os.path.join(entry, "inside"))
    elif kind == "link to another container":
        os.unlink(entry)
        os.symlink(other.id, entry)
    elif kind == "link missing":
        os.unlink(entry)
    elif kind == "entry that is no name":
        os.symlink(victim.id, os.path.join(names, "#not-a-digest"))
    else:
        raise AssertionError(kind)


# (kind, whether a create still sees the name taken: a link that is missing or names another
# container whose record exists looks like a stale one, which only a check tells from damage)
DAMAGES = [
    ("missing directory", True), ("directory is a file", True), ("directory is a link elsewhere", True),
    ("link to a path", True), ("a file for a link", True), ("a directory for a link", True),
    ("entry that is no name", True), ("link to another container", False), ("link missing", False),
]


def _damaged_store(tmp_path: Any, kind: str) -> tuple[Any, ContainerStore, Container, Container]:
    """(root, store, victim, other): two containers, then the index damaged as ``kind`` says."""
    root = tmp_path / "containers"
    store = ContainerStore(str(root))
    victim, other = record("/victim"), record("/other")
    store.create(victim)
    store.create(other)
    _damage(store, kind, victim, other)
    return root, store, victim, other


@pytest.mark.parametrize("kind,conflicts_seen", DAMAGES, ids=[kind for kind, _ in DAMAGES])
def test_a_damaged_or_hostile_index_is_read_past(tmp_path, kind, conflicts_seen) -> None:
    _, store, victim, other = _damaged_store(tmp_path, kind)
    problems, repairs = store.check_index()
    assert repairs == []
    assert bool(problems) == (kind != "missing directory"), problems
    # lookups are checked against the records: never a wrong container, never outside
    try:
        assert store.lookup("victim").id == victim.id
    except errdefs.NotFound:
        assert not conflicts_seen
    assert store.lookup("other").id == other.id
    if conflicts_seen:
        with pytest.raises(errdefs.Conflict):
            store.create(record("/victim"))
        if kind != "entry that is no name":  # an entry of no name is in nobody's way
            assert store.check_index() == ([], [])  # the writer rebuilt what it found damaged
    assert os.path.exists("/etc/passwd")
    if kind == "directory is a link elsewhere":
        assert os.path.isdir(tmp_path / "elsewhere")  # the link was moved aside, not followed


@pytest.mark.parametrize("kind", [kind for kind, _ in DAMAGES])
def test_a_damaged_or_hostile_index_is_reported_and_repaired(tmp_path, kind) -> None:
    root, store, victim, other = _damaged_store(tmp_path, kind)
    problems, repairs = store.check_index(repair=True)
    assert bool(problems) == (kind != "missing directory"), problems
    assert repairs == ["rebuilt the container name index (2 containers)"]
    assert store.check_index() == ([], [])
    assert links_of(store) == {"victim": victim.id, "other": other.id}
    assert os.path.isdir(root / ".names") and not os.path.islink(root / ".names")
    assert store.lookup("victim").id == victim.id
    with pytest.raises(errdefs.Conflict):
        store.create(record("/victim"))


def test_two_records_with_one_name_are_a_problem(tmp_path) -> None:
    store = ContainerStore(str(tmp_path))
    first = record("/twin")
    store.create(first)
    second = record("/twin")
    write_record_unindexed(store, second)
    problems, _ = store.check_index()
    assert any("are both named '/twin'" in problem for problem in problems), problems


# -- crash injection: the process dies at each system call of a writer --------------------------

_CALLS = ("symlink", "unlink", "rename", "fsync", "mkdir")


def _die_at(call_number: int) -> None:
    """Make this (forked) process exit at its ``call_number``-th call of the writers' system calls."""
    count = [0]

    def wrap(name: str) -> None:
        original = getattr(os, name)

        def dying(*args: object, **kwargs: object) -> object:
            count[0] += 1
            if count[0] == call_number:
                os._exit(99)
            return original(*args, **kwargs)

        setattr(os, name, dying)

    for name in _CALLS:
        wrap(name)


def _crash_at_each_step(root: str, operation, limit: int = 60) -> list[int]:
    """Fork, run ``operation(store)`` dying at the 1st, 2nd, ... system call until one run
    completes; the parent checks the store after each.  Returns the exit codes."""
    codes = []
    for call_number in range(1, limit):
        snapshot = os.path.join(os.path.dirname(root), f"snapshot-{call_number}")
        os.system(f"cp -a {root} {snapshot}")
        pid = os.fork()
        if pid == 0:
            try:
                _die_at(call_number)
                operation(ContainerStore(snapshot))
                os._exit(0)
            except BaseException:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 99), f"the operation failed (exit {code}) before dying at call {call_number}"
        _check_sound(ContainerStore(snapshot))
        codes.append(code)
        os.system(f"rm -rf {snapshot}")
        if code == 0:
            return codes
    raise AssertionError("the operation never completed")


def _check_sound(store: ContainerStore) -> None:
    """No name taken twice, none lost: every record's name finds it and conflicts."""
    names = {}
    for container in store.list():
        assert container.name not in names, f"{container.name} is taken twice"
        names[container.name] = container.id
    problems, _ = store.check_index()
    assert problems == []
    for name, container_id in names.items():
        assert store.lookup(name).id == container_id
        with pytest.raises(errdefs.Conflict):
            store.create(record(name))
    for name in ("/web", "/renamed", "/base"):
        if name not in names:
            store.create(record(name))  # free: taken now
            names[name] = store.lookup(name).id
    problems, _ = store.check_index(repair=True)
    assert problems == []
    assert store.check_index() == ([], [])
    assert links_of(store) == {name[1:]: container_id for name, container_id in names.items()}


def _base(tmp_path) -> tuple[str, Container]:
    root = str(tmp_path / "containers")
    store = ContainerStore(root)
    base = record("/base")
    store.create(base)
    return root, base


def test_a_create_that_dies_at_any_step_leaves_its_name_free_or_taken_once(tmp_path) -> None:
    root, _ = _base(tmp_path)
    codes = _crash_at_each_step(root, lambda store: store.create(record("/web")))
    assert codes.count(99) >= 4  # the record's files, the claim, its fsync, the publish


def test_a_create_replacing_a_stale_link_that_dies_at_any_step(tmp_path) -> None:
    root, _ = _base(tmp_path)
    os.symlink(new_container_id(), os.path.join(root, ".names", "web"))  # a claim whose create died
    _crash_at_each_step(root, lambda store: store.create(record("/web")))


def test_a_rename_that_dies_at_any_step_leaves_one_name(tmp_path) -> None:
    root, base = _base(tmp_path)
    codes = _crash_at_each_step(root, lambda store: store.rename(base.id, "renamed"))
    assert codes.count(99) >= 3


def test_a_removal_that_dies_at_any_step_frees_the_name_or_keeps_it(tmp_path) -> None:
    root, base = _base(tmp_path)
    _crash_at_each_step(root, lambda store: store.begin_removal(base.id))


def test_a_migration_that_dies_at_any_step_is_done_again(tmp_path) -> None:
    root, base = _base(tmp_path)
    store = ContainerStore(root)
    for number in range(3):
        store.create(record(f"/c{number}"))
    os.system(f"rm -rf {root}/.names")
    write_legacy_index(store, {base.id: "/base"})
    codes = _crash_at_each_step(root, lambda store: store.create(record("/web")))
    assert codes.count(99) >= 6  # the links, the fsyncs, the renames, the legacy file's removal


# -- the in-memory records -----------------------------------------------------------------------

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


# -- concurrency -------------------------------------------------------------------------------------

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


def _contest(root: str, rounds: int, queue) -> None:
    """Take, give up and take again a few names, with other processes doing the same."""
    store = ContainerStore(root)
    won = 0
    try:
        for number in range(rounds):
            container = record(f"/contested-{number % 3}")
            try:
                store.create(container)
            except errdefs.Conflict:
                continue
            won += 1
            try:
                store.rename(container.id, f"moved-{number % 2}")
            except errdefs.Conflict:
                pass
            store.begin_removal(container.id)
        queue.put(("ok", won))
    except BaseException as exc:
        queue.put(("error", f"contest: {exc!r}"))


def _take_name(root: str, queue) -> None:
    try:
        ContainerStore(root).create(record("/contested"))
        queue.put("won")
    except errdefs.Conflict:
        queue.put("conflict")


def test_concurrent_creators_renamers_removers_and_readers_agree_with_the_records(tmp_path) -> None:
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
    processes += [context.Process(target=_contest, args=(root, 30, queue)) for _ in range(3)]
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
    containers = store.list()
    names = [container.name for container in containers]
    assert len(names) == len(set(names)) == 10 + 3 * 10 + 1
    assert links_of(store) == {container.name[1:]: container.id for container in containers}
    for number in range(3):
        assert store.lookup(f"w{number}-renamed-0").name == f"/w{number}-renamed-0"
        assert store.lookup(f"w{number}-2").name == f"/w{number}-2"
