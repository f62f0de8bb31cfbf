"""resolve_mounts: Binds, Mounts, Tmpfs, VolumesFrom and image VOLUMEs into MountPoints and
runtime MountSpecs, with Docker's precedence, errors and references; nothing is left behind
when it fails."""

from __future__ import annotations

import os

import pytest

from lamina import errdefs
from lamina.runtime.api import MountSpec
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.api import ANONYMOUS_LABEL
from lamina.volume.resolve import (
    inspect_mounts,
    load_mount_points,
    mount_points_json,
    release_mounts,
    resolve_mounts,
    runtime_mounts,
    volume_names,
)

CONTAINER = "c" * 64
OTHER = "d" * 64


def by_destination(resolved):
    return {item.destination: item for item in resolved}


def test_named_anonymous_bind_and_tmpfs(volumes: VolumeServiceImpl, tmp_path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    resolved = resolve_mounts(
        {"Volumes": {"/anon": {}}},
        {"Binds": ["data:/data:ro", f"{host}:/host", "/anon-bind"],
         "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1 << 20}}],
         "Tmpfs": {"/run": "size=64k"}},
        {"/image-vol": {}}, volumes, CONTAINER)
    mounts = by_destination(resolved)
    assert [item.destination for item in resolved] == sorted(mounts, key=lambda d: d.count("/"))
    data = volumes.inspect("data")
    assert mounts["/data"].spec == MountSpec("/data", "bind", data["Mountpoint"], ("rbind", "ro", "rprivate"))
    assert mounts["/data"].mount_point.to_inspect() == {
        "Type": "volume", "Name": "data", "Source": data["Mountpoint"], "Destination": "/data",
        "Driver": "local", "Mode": "ro", "RW": False, "Propagation": ""}
    assert mounts["/host"].spec == MountSpec("/host", "bind", str(host), ("rbind", "rprivate"))
    assert mounts["/host"].mount_point.to_inspect() == {
        "Type": "bind", "Source": str(host), "Destination": "/host", "Mode": "", "RW": True,
        "Propagation": "rprivate"}
    assert mounts["/scratch"].spec == MountSpec("/scratch", "tmpfs", "tmpfs",
                                                ("noexec", "nosuid", "nodev", "rprivate", "size=1m"))
    assert mounts["/run"].spec == MountSpec("/run", "tmpfs", "tmpfs", ("noexec", "nosuid", "nodev", "rprivate",
                                                                      "size=64k"))
    assert mounts["/run"].mount_point is None, "--tmpfs mounts are not MountPoints, as in Docker"
    anonymous = [mounts[d].mount_point for d in ("/anon", "/image-vol", "/anon-bind")]
    for point in anonymous:
        volume = volumes.inspect(point.name)
        assert volume["Labels"] == {ANONYMOUS_LABEL: ""}
        assert point.source == volume["Mountpoint"] and point.mode == "z" and point.rw
        assert volumes.users(point.name) == [CONTAINER]
    assert volumes.users("data") == [CONTAINER]
    assert mounts["/anon"].copy_data and mounts["/data"].copy_data and not mounts["/host"].copy_data


def test_json_round_trip_gives_the_same_runtime_mounts(volumes: VolumeServiceImpl) -> None:
    host_config = {"Binds": ["data:/data", "/srv:/srv:ro,rslave"], "Tmpfs": {"/run": ""}}
    resolved = resolve_mounts({}, host_config, None, volumes, CONTAINER)
    stored = mount_points_json(resolved)
    assert set(stored) == {"/data", "/srv"}
    assert stored["/srv"] == {"Source": "/srv", "Destination": "/srv", "RW": False, "Name": "", "Driver": "",
                              "Type": "bind", "Relabel": "ro,rslave", "Propagation": "rslave",
                              "Spec": {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": True,
                                       "BindOptions": {"Propagation": "rslave"}},
                              "SkipMountpointCreation": False}
    assert runtime_mounts(stored, host_config["Tmpfs"]) == tuple(item.spec for item in resolved)
    assert [point.destination for point in load_mount_points(stored)] == ["/data", "/srv"]
    assert [item["Destination"] for item in inspect_mounts(stored)] == ["/data", "/srv"]
    assert volume_names(stored) == ["data"]


def test_mounts_are_ordered_parents_first(volumes: VolumeServiceImpl) -> None:
    resolved = resolve_mounts({}, {"Binds": ["/tmp:/a/b/c", "/tmp:/a", "inner:/a/b"]}, None, volumes, CONTAINER)
    assert [item.destination for item in resolved] == ["/a", "/a/b", "/a/b/c"]


@pytest.mark.parametrize("host_config,message", [
    ({"Binds": ["/tmp:/x", "data:/x"]}, "Duplicate mount point: /x"),
    ({"Binds": ["/tmp:/x/"], "Tmpfs": {"/x": ""}}, "Duplicate mount point: /x"),
    ({"Binds": ["/tmp:/x"], "Mounts": [{"Type": "volume", "Target": "/x"}]}, "Duplicate mount point: /x"),
    ({"Mounts": [{"Type": "volume", "Target": "/x"}, {"Type": "tmpfs", "Target": "/x"}]}, "Duplicate mount point: /x"),
    ({"Binds": ["./data:/x"]}, 'create ./data: "./data" includes invalid characters for a local volume name, '
                               'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                               "directory, use absolute path"),
    ({"Binds": ["data/sub:/x"]}, "If you intended to pass a host directory, use absolute path"),
    ({"Binds": ["/tmp:relative"]}, "mount path must be absolute"),
    ({"Mounts": [{"Type": "bind", "Source": "/nonexistent-lamina", "Target": "/x"}]},
     "bind source path does not exist: /nonexistent-lamina"),
    ({"Tmpfs": {"relative": ""}}, "mount path must be absolute"),
    ({"Tmpfs": {"/t": "sizes=1"}}, 'invalid tmpfs option "sizes=1"'),
    ({"Binds": "data:/x"}, "invalid HostConfig.Binds"),
    ({"VolumesFrom": ["web:shared"]}, "invalid mode: shared"),
])
def test_bad_configurations_fail_before_anything_is_created(volumes: VolumeServiceImpl, host_config: dict,
                                                            message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        resolve_mounts({"Volumes": {"/anon": {}}}, {"Binds": ["named:/named"], **host_config}
                       if "Binds" not in host_config else host_config, {"/img": {}}, volumes, CONTAINER,
                       volumes_from=lambda name: {})
    assert message in str(caught.value)
    assert volumes.list()["Volumes"] == []


def test_image_volumes_must_be_absolute(volumes: VolumeServiceImpl) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="must be absolute"):
        resolve_mounts({}, {}, {"data": {}}, volumes, CONTAINER)


def test_a_failure_half_way_releases_and_removes_what_it_made(volumes: VolumeServiceImpl) -> None:
    volumes.create("existing")
    with pytest.raises(errdefs.NotFound, match="plugin"):
        resolve_mounts({"Volumes": {"/anon": {}}},
                       {"Binds": ["existing:/a", "/b"],
                        "Mounts": [{"Type": "volume", "Source": "new", "Target": "/c",
                                    "VolumeOptions": {"DriverConfig": {"Name": "flocker"}}}]},
                       None, volumes, CONTAINER)
    assert [volume["Name"] for volume in volumes.list()["Volumes"]] == ["existing"]
    assert volumes.users("existing") == []


def test_explicit_mounts_replace_image_volumes_and_tmpfs_covers_them(volumes: VolumeServiceImpl) -> None:
    resolved = resolve_mounts({"Volumes": {"/data": {}, "/cache": {}}}, {"Binds": ["named:/data"],
                                                                          "Tmpfs": {"/cache": ""}},
                              {"/data": {}, "/logs": {}}, volumes, CONTAINER)
    mounts = by_destination(resolved)
    assert mounts["/data"].mount_point.name == "named"
    assert mounts["/cache"].spec.type == "tmpfs"
    assert len([v for v in volumes.list()["Volumes"] if v["Labels"] and ANONYMOUS_LABEL in v["Labels"]]) == 1


def test_volume_options_and_labels_from_mounts(volumes: VolumeServiceImpl) -> None:
    resolve_mounts({}, {"Mounts": [{"Type": "volume", "Source": "cache", "Target": "/c", "VolumeOptions": {
        "Labels": {"a": "b"}, "NoCopy": True,
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}}]},
        None, volumes, CONTAINER)
    volume = volumes.inspect("cache")
    assert volume["Labels"] == {"a": "b"} and volume["Options"] == {"type": "tmpfs", "device": "tmpfs"}


def test_volumes_from_inherits_modes_and_references(volumes: VolumeServiceImpl) -> None:
    provider = resolve_mounts({}, {"Binds": ["shared:/shared", "readonly:/readonly:ro", "/tmp:/hosttmp"]},
                              {"/anon": {}}, volumes, OTHER)
    stored = {OTHER: mount_points_json(provider)}

    def lookup(name: str):
        if name not in ("provider", OTHER):
            raise errdefs.NotFound(f"No such container: {name}")
        return stored[OTHER]

    for mode, expected in (("", {"/shared": True, "/readonly": False, "/hosttmp": True, "/anon": True}),
                           (":ro", {"/shared": False, "/readonly": False, "/hosttmp": False, "/anon": False}),
                           (":rw", {"/shared": True, "/readonly": False, "/hosttmp": True, "/anon": True})):
        container = f"{mode or 'none'}-container"
        resolved = resolve_mounts({}, {"VolumesFrom": [f"provider{mode}"]}, None, volumes, container,
                                  volumes_from=lookup)
        mounts = by_destination(resolved)
        assert {d: item.mount_point.rw for d, item in mounts.items()} == expected
        assert not any(item.copy_data for item in resolved), "volumes-from never copies image data"
        for item in resolved:
            if item.mount_point.type == "volume":
                assert container in volumes.users(item.mount_point.name)
        assert mounts["/readonly"].spec.options == ("rbind", "ro", "rprivate")
    with pytest.raises(errdefs.InvalidArgument, match="No such container: nobody"):
        resolve_mounts({}, {"VolumesFrom": ["nobody"]}, None, volumes, "x", volumes_from=lookup)
    with pytest.raises(errdefs.InvalidArgument, match="volumes-from"):
        resolve_mounts({}, {"VolumesFrom": ["provider"]}, None, volumes, "x")


def test_a_bind_replaces_a_volumes_from_mount_and_drops_its_reference(volumes: VolumeServiceImpl) -> None:
    provider = mount_points_json(resolve_mounts({}, {"Binds": ["shared:/shared"]}, None, volumes, OTHER))
    resolved = resolve_mounts({}, {"VolumesFrom": ["p"], "Binds": ["/tmp:/shared"]}, None, volumes, CONTAINER,
                              volumes_from=lambda name: provider)
    assert by_destination(resolved)["/shared"].mount_point.type == "bind"
    assert volumes.users("shared") == [OTHER]


def test_the_same_volume_twice_keeps_its_reference_when_one_is_replaced(volumes: VolumeServiceImpl) -> None:
    provider = mount_points_json(resolve_mounts({}, {"Binds": ["shared:/a"]}, None, volumes, OTHER))
    resolve_mounts({}, {"VolumesFrom": ["p"], "Binds": ["shared:/b", "/tmp:/a"]}, None, volumes, CONTAINER,
                   volumes_from=lambda name: provider)
    assert volumes.users("shared") == sorted([OTHER, CONTAINER])


def test_dash_v_creates_a_missing_host_directory_but_mount_does_not(volumes: VolumeServiceImpl, tmp_path) -> None:
    missing = tmp_path / "made" / "by-v"
    resolve_mounts({}, {"Binds": [f"{missing}:/x"]}, None, volumes, CONTAINER)
    assert missing.is_dir()


def test_release_mounts_drops_references_and_removes_anonymous_volumes(volumes: VolumeServiceImpl) -> None:
    resolved = resolve_mounts({}, {"Binds": ["named:/named", "/anon", "/tmp:/tmp"],
                                   "Mounts": [{"Type": "volume", "Target": "/mounted-anon"}]},
                              {"/image": {}}, volumes, CONTAINER)
    stored = mount_points_json(resolved)
    anonymous = [point.name for point in load_mount_points(stored) if point.anonymous]
    assert len(anonymous) == 3
    # another container shares one anonymous volume (--volumes-from): it survives rm -v
    volumes.acquire(anonymous[0], OTHER)
    assert release_mounts(stored, volumes, CONTAINER, remove_anonymous=True) == []
    assert sorted(v["Name"] for v in volumes.list()["Volumes"]) == sorted(["named", anonymous[0]])
    assert volumes.users("named") == [] and volumes.users(anonymous[0]) == [OTHER]


def test_release_without_remove_keeps_every_volume(volumes: VolumeServiceImpl) -> None:
    stored = mount_points_json(resolve_mounts({}, {"Binds": ["/anon", "named:/n"]}, None, volumes, CONTAINER))
    release_mounts(stored, volumes, CONTAINER)
    assert len(volumes.list()["Volumes"]) == 2
    assert all(volumes.users(v["Name"]) == [] for v in volumes.list()["Volumes"])


def test_runtime_mounts_of_bind_options(volumes: VolumeServiceImpl) -> None:
    resolved = resolve_mounts({}, {"Mounts": [
        {"Type": "bind", "Source": "/tmp", "Target": "/t", "BindOptions": {"NonRecursive": True,
                                                                           "Propagation": "slave"}},
        {"Type": "tmpfs", "Target": "/ro-tmp", "ReadOnly": True, "TmpfsOptions": {"Mode": 0o700}},
    ]}, None, volumes, CONTAINER)
    mounts = by_destination(resolved)
    assert mounts["/t"].spec.options == ("bind", "slave")
    assert mounts["/ro-tmp"].spec.options == ("noexec", "nosuid", "nodev", "rprivate", "ro", "mode=700")
    assert os.path.isabs(mounts["/t"].spec.source)
