"""The local driver, the store and the service: lifecycle, Docker's shapes and errors, options,
references, prune, crash leftovers, several processes at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat

import pytest

from lamina import errdefs, fsutil
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.api import ANONYMOUS_LABEL
from lamina.volume.local import LocalDriver, parse_ram_size, rfc3339
from lamina.volume.store import VolumeStore

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


def test_create_inspect_list_remove_round_trip(volumes: VolumeServiceImpl, data_root: str) -> None:
    created = volumes.create("data", labels={"tier": "db"}, driver_opts=None)
    mountpoint = os.path.join(data_root, "volumes", "data", "_data")
    assert created == {"CreatedAt": created["CreatedAt"], "Driver": "local", "Labels": {"tier": "db"},
                       "Mountpoint": mountpoint, "Name": "data", "Options": None, "Scope": "local"}
    assert RFC3339.match(created["CreatedAt"])
    assert os.path.isdir(mountpoint)
    assert stat.S_IMODE(os.stat(mountpoint).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.dirname(mountpoint)).st_mode) == 0o701
    assert volumes.inspect("data") == created
    assert volumes.list() == {"Volumes": [created], "Warnings": []}
    volumes.remove("data")
    assert volumes.list() == {"Volumes": [], "Warnings": []}
    assert not os.path.exists(os.path.dirname(mountpoint))
    with pytest.raises(errdefs.NotFound, match=r"^get data: no such volume$"):
        volumes.inspect("data")


def test_creating_an_existing_volume_returns_it_unchanged(volumes: VolumeServiceImpl) -> None:
    first = volumes.create("data", labels={"a": "1"})
    marker = os.path.join(first["Mountpoint"], "kept")
    open(marker, "w").close()
    again = volumes.create("data", labels={"b": "2"}, driver="local")
    assert again == first
    assert os.path.exists(marker)


def test_anonymous_volumes_get_random_names_and_the_label(volumes: VolumeServiceImpl) -> None:
    one = volumes.create()
    two = volumes.create(labels={"x": "y"})
    for volume in (one, two):
        assert re.fullmatch(r"[0-9a-f]{64}", volume["Name"])
        assert volume["Labels"][ANONYMOUS_LABEL] == ""
    assert one["Name"] != two["Name"] and two["Labels"]["x"] == "y"


@pytest.mark.parametrize("name,message", [
    ("a", "create a: volume name is too short, names should be at least two alphanumeric characters"),
    ("-x", 'create -x: "-x" includes invalid characters for a local volume name, only '
           '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'),
    ("../etc", 'create ../etc: "../etc" includes invalid characters'),
    ("a/b", 'create a/b: "a/b" includes invalid characters'),
    (".hidden", 'create .hidden: ".hidden" includes invalid characters'),
    ("x" * 2 + "\n", "includes invalid characters"),
])
def test_bad_names_are_refused_like_docker(volumes: VolumeServiceImpl, name: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        volumes.create(name)
    assert message in str(caught.value)
    assert volumes.list()["Volumes"] == []


@pytest.mark.parametrize("options,message", [
    ({"colour": "red"}, 'create data: invalid option: "colour"'),
    ({"type": "tmpfs"}, 'create data: missing required option: "device"'),
    ({"device": "tmpfs"}, 'create data: missing required option: "type"'),
    ({"o": "size=1m"}, 'create data: missing required option: "device"'),
    ({"size": "10m"}, "create data: quota size requested but no quota support"),
    ({"size": "lots"}, "create data: invalid size: 'lots'"),
    ({"type": "none", "device": "relative", "o": "bind"}, "of a bind volume must be an absolute host path"),
])
def test_bad_options_are_refused_like_docker(volumes: VolumeServiceImpl, options: dict, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        volumes.create("data", driver_opts=options)
    assert message in str(caught.value)
    assert volumes.list()["Volumes"] == []


def test_unknown_driver_is_plugin_not_found(volumes: VolumeServiceImpl) -> None:
    with pytest.raises(errdefs.NotFound) as caught:
        volumes.create("data", driver="flocker")
    assert str(caught.value) == 'create data: error looking up volume plugin flocker: plugin "flocker" not found'
    with pytest.raises(errdefs.NotFound, match='plugin "flocker" not found'):
        volumes.create(driver="flocker")
    volumes.create("data")
    with pytest.raises(errdefs.Conflict) as conflict:
        volumes.create("data", driver="flocker")
    assert str(conflict.value) == ("create data: driver 'local' already has volume 'data': "
                                   "volume name must be unique")


def test_options_are_stored_in_dockers_opts_json(volumes: VolumeServiceImpl, data_root: str) -> None:
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}
    volume = volumes.create("cache", driver_opts=options)
    assert volume["Options"] == options
    with open(os.path.join(data_root, "volumes", "cache", "opts.json")) as handle:
        assert json.load(handle) == {"MountType": "tmpfs", "MountOpts": "size=1m,uid=1000",
                                     "MountDevice": "tmpfs", "Quota": {"Size": 0}}
    assert not os.path.exists(os.path.join(data_root, "volumes", "cache", "mounts.json"))


def test_a_volume_directory_made_by_docker_is_read(store: VolumeStore) -> None:
    directory = os.path.join(store.root, "fromdocker")
    os.makedirs(os.path.join(directory, "_data"))
    fsutil.atomic_write_json(os.path.join(directory, "opts.json"),
                             {"MountType": "tmpfs", "MountOpts": "", "MountDevice": "tmpfs", "Quota": {"Size": 0}})
    os.makedirs(os.path.join(store.root, "not-a-volume"))
    volume = store.get("fromdocker")
    assert volume.options == {"type": "tmpfs", "device": "tmpfs"}
    assert volume.labels is None and RFC3339.match(volume.created_at)
    assert [item.name for item in store.list()] == ["fromdocker"]


def test_references_block_remove_and_are_released(volumes: VolumeServiceImpl) -> None:
    volumes.create("data")
    volumes.acquire("data", "c" * 64)
    volumes.acquire("data", "b" * 64)
    assert volumes.users("data") == ["b" * 64, "c" * 64]
    for force in (False, True):
        with pytest.raises(errdefs.Conflict) as caught:
            volumes.remove("data", force=force)
        assert str(caught.value) == f"remove data: volume is in use - [{'b' * 64}, {'c' * 64}]"
    volumes.release("data", "c" * 64)
    volumes.release("data", "c" * 64)   # twice is fine
    volumes.release("data", "b" * 64)
    assert volumes.users("data") == []
    volumes.remove("data")


def test_remove_missing_volume(volumes: VolumeServiceImpl) -> None:
    with pytest.raises(errdefs.NotFound, match=r"^get nope: no such volume$"):
        volumes.remove("nope")
    volumes.remove("nope", force=True)
    with pytest.raises(errdefs.NotFound):
        volumes.acquire("nope", "c1")
    with pytest.raises(errdefs.NotFound):
        volumes.users("nope")


def test_create_with_a_reference_is_protected_from_prune(volumes: VolumeServiceImpl) -> None:
    anonymous = volumes.create(reference="c1")["Name"]
    assert volumes.users(anonymous) == ["c1"]
    assert volumes.prune(filters={"all": ["true"]}) == {"VolumesDeleted": [], "SpaceReclaimed": 0}


def test_list_filters_like_docker(volumes: VolumeServiceImpl) -> None:
    volumes.create("web-data", labels={"app": "web", "tier": "front"})
    volumes.create("db-data", labels={"app": "db"})
    anonymous = volumes.create()["Name"]
    volumes.acquire("db-data", "c1")

    def names(**filters: list[str]) -> list[str]:
        return [volume["Name"] for volume in volumes.list(filters=filters)["Volumes"]]

    assert names() == sorted(["web-data", "db-data", anonymous])
    assert names(dangling=["true"]) == sorted([anonymous, "web-data"])
    assert names(dangling=["false"]) == ["db-data"]
    assert names(name=["data"]) == ["db-data", "web-data"]
    assert names(name=["^web"]) == ["web-data"]
    assert names(name=["[bad"]) == []
    assert names(label=["app"]) == ["db-data", "web-data"]
    assert names(label=["app=web"]) == ["web-data"]
    assert names(label=["app=web", "tier=back"]) == []
    assert names(label=[ANONYMOUS_LABEL]) == [anonymous]
    assert names(driver=["local"]) == sorted(["web-data", "db-data", anonymous])
    assert names(driver=["other"]) == []
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'colour'"):
        volumes.list(filters={"colour": ["red"]})
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'dangling=maybe'"):
        volumes.list(filters={"dangling": ["maybe"]})


def test_usage_data_counts_bytes_and_references(volumes: VolumeServiceImpl) -> None:
    volume = volumes.create("data")
    with open(os.path.join(volume["Mountpoint"], "blob"), "wb") as handle:
        handle.write(b"x" * 5000)
    os.link(os.path.join(volume["Mountpoint"], "blob"), os.path.join(volume["Mountpoint"], "again"))
    volumes.acquire("data", "c1")
    assert volumes.inspect("data", usage=True)["UsageData"] == {"Size": 5000, "RefCount": 1}
    assert volumes.list(usage=True)["Volumes"][0]["UsageData"] == {"Size": 5000, "RefCount": 1}
    assert "UsageData" not in volumes.inspect("data")
    volumes.create("mounted", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    assert volumes.inspect("mounted", usage=True)["UsageData"]["Size"] == -1


def test_prune_removes_only_unused_anonymous_volumes_by_default(volumes: VolumeServiceImpl) -> None:
    named = volumes.create("named")["Name"]
    unused = volumes.create()
    used = volumes.create()["Name"]
    volumes.acquire(used, "c1")
    with open(os.path.join(unused["Mountpoint"], "f"), "wb") as handle:
        handle.write(b"12345")
    assert volumes.prune() == {"VolumesDeleted": [unused["Name"]], "SpaceReclaimed": 5}
    assert sorted(v["Name"] for v in volumes.list()["Volumes"]) == sorted([named, used])
    assert volumes.prune(filters={"all": ["false"]})["VolumesDeleted"] == []
    assert volumes.prune(filters={"all": ["1"]})["VolumesDeleted"] == [named]
    assert [v["Name"] for v in volumes.list()["Volumes"]] == [used]


def test_prune_label_filters_and_options(volumes: VolumeServiceImpl) -> None:
    volumes.create("keep", labels={"keep": "yes"})
    volumes.create("drop", labels={"keep": "no"})
    volumes.create("plain")
    volumes.create("mounted", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    everything = {"all": ["true"]}
    assert volumes.prune(filters={**everything, "label!": ["keep=yes"], "label": ["keep"]}) == {
        "VolumesDeleted": ["drop"], "SpaceReclaimed": 0}
    # volumes with driver options are never pruned (their data is not local)
    assert volumes.prune(filters={**everything, "label!": ["keep"]})["VolumesDeleted"] == ["plain"]
    assert sorted(v["Name"] for v in volumes.list()["Volumes"]) == ["keep", "mounted"]
    for filters, message in (({"dangling": ["true"]}, "invalid filter 'dangling'"),
                             ({"all": ["yes", "no"]}, "only one value is expected"),
                             ({"all": ["maybe"]}, "invalid filter 'all=maybe'")):
        with pytest.raises(errdefs.InvalidArgument, match=message):
            volumes.prune(filters=filters)


def test_stale_references_of_missing_containers_do_not_pin_volumes(store: VolumeStore) -> None:
    existing = {"alive"}
    store.container_exists = existing.__contains__
    store.create("data", reference="alive")
    store.acquire("data", "gone")
    assert store.references("data") == ["alive", "gone"]  # "gone" may still be being created
    raw = fsutil.read_json(os.path.join(store.root, ".references.json"))
    raw["data"]["gone"] -= 3600
    fsutil.atomic_write_json(os.path.join(store.root, ".references.json"), raw)
    assert store.references("data") == ["alive"]
    store.release("data", "alive")
    store.remove("data")
    assert fsutil.read_json(os.path.join(store.root, ".references.json")) == {}


def test_sweep_removes_interrupted_creations_and_removals(store: VolumeStore, caplog) -> None:
    store.create("data")
    os.makedirs(os.path.join(store.root, ".tmp-abc", "_data"))
    os.makedirs(os.path.join(store.root, ".removing-old-123", "_data", "deep"))
    assert [volume.name for volume in store.list()] == ["data"]
    removed = store.sweep()
    assert sorted(os.path.basename(path) for path in removed) == [".removing-old-123", ".tmp-abc"]
    assert sorted(os.listdir(store.root)) == [".lock", "data"]
    assert "interrupted volume" in caplog.text


def test_a_failed_creation_leaves_nothing(store: VolumeStore, monkeypatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lamina.fsutil.publish_dir", explode)
    with pytest.raises(errdefs.System, match="create data: create volume data: no space left on device"):
        store.create("data")
    assert sorted(os.listdir(store.root)) == [".lock"]


def test_damaged_metadata_is_data_loss(store: VolumeStore) -> None:
    store.create("data")
    with open(os.path.join(store.root, "data", "metadata.json"), "w") as handle:
        handle.write("{not json")
    with pytest.raises(errdefs.DataLoss, match="volume data: unreadable metadata.json"):
        store.get("data")


def _create_many(root: str, prefix: str, count: int, queue: multiprocessing.Queue) -> None:
    store = VolumeStore(root)
    names = []
    for index in range(count):
        store.create("shared")
        store.acquire("shared", f"{prefix}{index}")
        names.append(store.create(f"{prefix}-{index}")[0].name)
    queue.put(names)


def test_several_processes_share_one_store(store: VolumeStore) -> None:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_create_many, args=(store.root, prefix, 15, queue))
               for prefix in ("a", "b", "c")]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sum(len(names) for names in results) == 45
    assert len(store.list()) == 46
    assert len(store.references("shared")) == 45


def test_parse_ram_size_like_go_units() -> None:
    assert parse_ram_size("64m") == 64 << 20
    assert parse_ram_size("1.5g") == 3 << 29
    assert parse_ram_size("10 KiB") == 10240
    assert parse_ram_size("7") == 7
    for bad in ("", "m", "-1m", "1.2.3k", "inf", "1e9", "10x", "١٢"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_ram_size(bad)


def test_rfc3339_has_no_fraction() -> None:
    assert RFC3339.match(rfc3339(0))


def test_driver_get_refuses_names_that_are_not_volume_names(tmp_path) -> None:
    driver = LocalDriver(str(tmp_path))
    os.makedirs(tmp_path / ".tmp-x" / "_data")
    with pytest.raises(errdefs.NotFound):
        driver.get(".tmp-x")
    with pytest.raises(errdefs.NotFound):
        driver.get("../x")


def test_sweep_drops_references_to_volumes_that_are_gone(store: VolumeStore) -> None:
    store.create("kept", reference="c1")
    store.create("lost", reference="c1")
    fsutil.remove_tree(os.path.join(store.root, "lost"))   # removed behind the store's back
    store.sweep()
    assert fsutil.read_json(os.path.join(store.root, ".references.json")).keys() == {"kept"}
    assert store.references("kept") == ["c1"]
