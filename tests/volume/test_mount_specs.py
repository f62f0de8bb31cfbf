"""The -v / --mount / --tmpfs / --volumes-from parsers: Docker's own test vectors (moby's
linux_parser_test.go, the docker CLI's mount option tests), the shapes they produce, and
hypothesis: any text gives a MountPoint or an errdefs error, never another exception."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.volume.parse import (
    MountPoint,
    mount_point_from_spec,
    parse_mount_spec,
    parse_tmpfs_spec,
    parse_volume_spec,
    parse_volumes_from,
    split_volume_flags,
    tmpfs_options,
)

# moby daemon/volume/mounts/linux_parser_test.go TestLinuxParseMountRaw
VALID = [
    "/home",
    "/home:/home",
    "/home:/something/else",
    "/with space",
    "/home:/with space",
    "relative:/absolute-path",
    "hostPath:/containerPath:ro",
    "/hostPath:/containerPath:rw",
    "/rw:/ro",
    "/hostPath:/containerPath:shared",
    "/hostPath:/containerPath:rshared",
    "/hostPath:/containerPath:slave",
    "/hostPath:/containerPath:rslave",
    "/hostPath:/containerPath:private",
    "/hostPath:/containerPath:rprivate",
    "/hostPath:/containerPath:ro,shared",
    "/hostPath:/containerPath:ro,slave",
    "/hostPath:/containerPath:ro,private",
    "/hostPath:/containerPath:ro,z,shared",
    "/hostPath:/containerPath:ro,Z,slave",
    "/hostPath:/containerPath:Z,ro,slave",
    "/hostPath:/containerPath:slave,Z,ro",
    "/hostPath:/containerPath:Z,slave,ro",
    "/hostPath:/containerPath:slave,ro,Z",
    "/hostPath:/containerPath:rslave,ro,Z",
    "/hostPath:/containerPath:ro,rshared,Z",
    "/hostPath:/containerPath:ro,Z,rprivate",
    "name:/data:nocopy",
    "name:/data:ro,nocopy,cached",
]

INVALID = {
    "": "invalid volume specification",
    "./": "mount path must be absolute",
    "../": "mount path must be absolute",
    "/:../": "mount path must be absolute",
    "/:path": "mount path must be absolute",
    ":": "invalid volume specification",
    "/tmp:": "invalid volume specification",
    ":test": "invalid volume specification",
    ":/test": "invalid volume specification",
    "tmp:": "invalid volume specification",
    ":test:": "invalid volume specification",
    "::": "invalid volume specification",
    ":::": "invalid volume specification",
    "/tmp:::": "invalid volume specification",
    ":/tmp::": "invalid volume specification",
    "/path:rw": "invalid volume specification",
    "/path:ro": "invalid volume specification",
    "/rw:rw": "invalid volume specification",
    "path:ro": "invalid volume specification",
    "/path:/path:sw": "invalid mode",
    "/path:/path:rwz": "invalid mode",
    "/path:/path:ro,rshared,rslave": "invalid mode",
    "/path:/path:ro,z,rshared,rslave": "invalid mode",
    "/path:shared": "invalid volume specification",
    "/path:slave": "invalid volume specification",
    "/path:private": "invalid volume specification",
    "name:/absolute-path:shared": "invalid volume specification",
    "name:/absolute-path:rshared": "invalid volume specification",
    "name:/absolute-path:slave": "invalid volume specification",
    "name:/absolute-path:rslave": "invalid volume specification",
    "name:/absolute-path:private": "invalid volume specification",
    "name:/absolute-path:rprivate": "invalid volume specification",
    "/": "destination can't be '/'",
    "name:/": "destination can't be '/'",
    "/a:/b:ro,": "invalid mode",
}


@pytest.mark.parametrize("text", VALID)
def test_docker_valid_volume_specs_parse(text: str) -> None:
    parse_volume_spec(text, "local")


@pytest.mark.parametrize("text,message", sorted(INVALID.items()))
def test_docker_invalid_volume_specs_fail_with_docker_messages(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=None) as caught:
        parse_volume_spec(text, "local")
    assert message in str(caught.value)


def test_a_bind_with_a_relative_destination_has_dockers_full_message() -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        parse_volume_spec("/tmp:tmp")
    assert str(caught.value) == ("invalid volume specification: '/tmp:tmp': invalid mount config for type "
                                 "\"bind\": invalid mount path: 'tmp' mount path must be absolute")


# moby TestLinuxParseMountRawSplit
@pytest.mark.parametrize("text,driver,expected", [
    ("/tmp:/tmp1", "", MountPoint(type="bind", destination="/tmp1", source="/tmp", rw=True,
                                  propagation="rprivate")),
    ("/tmp:/tmp2:ro", "", MountPoint(type="bind", destination="/tmp2", source="/tmp", rw=False, mode="ro",
                                     propagation="rprivate")),
    ("/tmp:/tmp3:rw", "", MountPoint(type="bind", destination="/tmp3", source="/tmp", rw=True, mode="rw",
                                     propagation="rprivate")),
    ("name:/named1", "", MountPoint(type="volume", destination="/named1", name="name")),
    ("name:/named2", "external", MountPoint(type="volume", destination="/named2", name="name", driver="external")),
    ("name:/named3:ro", "local", MountPoint(type="volume", destination="/named3", name="name", driver="local",
                                            rw=False, mode="ro")),
    ("/hostPath:/containerPath:ro,Z,rshared", "", MountPoint(
        type="bind", destination="/containerPath", source="/hostPath", rw=False, mode="ro,Z,rshared",
        propagation="rshared")),
    ("/data", "", MountPoint(type="volume", destination="/data")),
    ("/a//b/../c:/x//y/", "", MountPoint(type="bind", destination="/x/y", source="/a/c", propagation="rprivate")),
], ids=lambda value: value if isinstance(value, str) else "")
def test_volume_specs_split_like_docker(text: str, driver: str, expected: MountPoint) -> None:
    assert parse_volume_spec(text, driver) == expected


def test_volume_spec_records_the_request_as_spec() -> None:
    point = parse_volume_spec("data:/srv:ro,nocopy", "local")
    assert point.spec == {"Type": "volume", "Source": "data", "Target": "/srv", "ReadOnly": True,
                          "VolumeOptions": {"DriverConfig": {"Name": "local"}, "NoCopy": True}}
    assert not point.copy_data and not point.anonymous
    assert parse_volume_spec("/srv").anonymous and parse_volume_spec("/srv").copy_data
    assert not parse_volume_spec("/h:/srv").copy_data


def test_a_relative_host_path_is_a_volume_name_not_a_bind() -> None:
    # Docker's daemon: anything not absolute is a volume name; the resolver then refuses
    # names like "./data" (see test_resolver)
    point = parse_volume_spec("./data:/x")
    assert point.type == "volume" and point.name == "./data"


def test_split_volume_flags_like_the_docker_cli() -> None:
    binds, volumes = split_volume_flags(["/data", "name:/x", "/h:/y:ro"])
    assert binds == ["name:/x", "/h:/y:ro"]
    assert volumes == {"/data": {}}
    with pytest.raises(errdefs.InvalidArgument):
        split_volume_flags(["/h:rel"])


# -- --mount -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("type=volume,target=/foo,volume-nocopy", {
        "Type": "volume", "Target": "/foo", "VolumeOptions": {"Labels": {}, "DriverConfig": {}, "NoCopy": True}}),
    ("type=bind,source=/source,target=/target", {"Type": "bind", "Source": "/source", "Target": "/target"}),
    ("type=bind,src=/source,dst=/target,readonly", {
        "Type": "bind", "Source": "/source", "Target": "/target", "ReadOnly": True}),
    ("type=bind,source=/s,destination=/t,ro=false,bind-propagation=RSHARED", {
        "Type": "bind", "Source": "/s", "Target": "/t", "ReadOnly": False, "BindOptions": {"Propagation": "rshared"}}),
    ("target=/foo,source=vol,volume-driver=local,volume-label=a=b,volume-opt=type=tmpfs,volume-opt=device=tmpfs", {
        "Type": "volume", "Target": "/foo", "Source": "vol",
        "VolumeOptions": {"Labels": {"a": "b"}, "DriverConfig": {"Name": "local",
                                                                  "Options": {"type": "tmpfs", "device": "tmpfs"}}}}),
    ("type=tmpfs,target=/tmp,tmpfs-size=64m,tmpfs-mode=1770", {
        "Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}),
    ('type=bind,"source=/a,b",target=/c', {"Type": "bind", "Source": "/a,b", "Target": "/c"}),
    ("type=VOLUME,target=/x,ro=1", {"Type": "volume", "Target": "/x", "ReadOnly": True}),
    ('"type=bind","src=/a""b",target=/c', {"Type": "bind", "Source": "/a\"b", "Target": "/c"}),
])
def test_mount_csv_like_the_docker_cli(text: str, expected: dict) -> None:
    assert parse_mount_spec(text) == expected


@pytest.mark.parametrize("text,message", [
    ("type=volume", "target is required"),
    ("type=,target=/x", "type is required"),
    ("type=volume,target=/foo,readonly=maybe", "invalid value for readonly: maybe"),
    ("type=volume,target=/foo,volume-nocopy=what", "invalid value for volume-nocopy: what"),
    ("type=bind,target=/foo,junk", "invalid field 'junk' must be a key=value pair"),
    ("type=bind,target=/foo,colour=red", "unexpected key 'colour' in 'colour=red'"),
    ("type=bind,target=/foo,volume-nocopy", "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,target=/foo,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=bind,target=/foo,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'bind'"),
    ("type=tmpfs,target=/foo,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
    ("type=tmpfs,target=/foo,tmpfs-mode=999", "invalid value for tmpfs-mode: 999"),
    ("", "empty"),
    ('type=bind,sou"rce=/x,target=/y', 'bare " in non-quoted-field'),
    ('type=bind,"src=/x"y,target=/y', 'extraneous or missing " in quoted-field'),
    ('type=bind,"src=/x', 'extraneous or missing " in quoted-field'),
])
def test_mount_csv_errors_like_the_docker_cli(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        parse_mount_spec(text)
    assert message in str(caught.value)


def test_mount_source_dot_slash_becomes_absolute_like_the_docker_cli(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_mount_spec("type=bind,src=./data,dst=/d")["Source"] == str(tmp_path / "data")


@pytest.mark.parametrize("mount,message", [
    ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/x"},
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/nonexistent-lamina-test", "Target": "/x"},
     'invalid mount config for type "bind": bind source path does not exist: /nonexistent-lamina-test'),
    ({"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"Propagation": "sideways"}},
     'invalid mount config for type "bind": invalid propagation mode: sideways'),
    ({"Type": "volume", "Target": "x"},
     "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must be absolute"),
    ({"Type": "volume", "Target": "/"},
     "invalid mount config for type \"volume\": invalid specification: destination can't be '/'"),
    ({"Type": "volume", "Source": "v"}, 'invalid mount config for type "volume": field Target must not be empty'),
    ({"Type": "volume", "Target": "/x", "BindOptions": {}},
     'invalid mount config for type "volume": field BindOptions must not be specified'),
    ({"Type": "tmpfs", "Target": "/x", "Source": "s"},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Options": [["uid", "0"]]}},
     'invalid mount config for type "tmpfs": invalid option: uid'),
    ({"Type": "npipe", "Target": "/x"}, 'invalid mount config for type "npipe": mount type unknown'),
    ({"Type": "volume", "Target": 7}, "Target must be a string"),
    ({"Type": "bind", "Source": "/", "Target": "/x", "ReadOnly": "yes"}, "ReadOnly must be a boolean"),
])
def test_api_mounts_are_validated_like_dockerd(mount: dict, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        mount_point_from_spec(mount)
    assert message in str(caught.value)


def test_api_mount_points() -> None:
    assert mount_point_from_spec({"Type": "bind", "Source": "/", "Target": "/host", "ReadOnly": True}) == MountPoint(
        type="bind", destination="/host", source="/", rw=False, propagation="rprivate", skip_mountpoint_creation=True)
    assert mount_point_from_spec({"Type": "volume", "Target": "/v/"}) == MountPoint(type="volume", destination="/v")
    assert mount_point_from_spec({"Type": "tmpfs", "Target": "/t"}) == MountPoint(type="tmpfs", destination="/t")
    created = mount_point_from_spec({"Type": "bind", "Source": "/nonexistent-lamina", "Target": "/x",
                                     "BindOptions": {"CreateMountpoint": True}})
    assert not created.skip_mountpoint_creation
    subpath = mount_point_from_spec({"Type": "volume", "Source": "v", "Target": "/x",
                                     "VolumeOptions": {"Subpath": "a/b"}})
    assert subpath.spec["VolumeOptions"] == {"Subpath": "a/b"} and not subpath.copy_data
    for bad in ("../a", "a/../..", "/a"):
        with pytest.raises(errdefs.InvalidArgument, match="subpath must be a relative path within the volume"):
            mount_point_from_spec({"Type": "volume", "Source": "v", "Target": "/x", "VolumeOptions": {"Subpath": bad}})
    with pytest.raises(errdefs.InvalidArgument, match="must not set Subpath when using anonymous volumes"):
        mount_point_from_spec({"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a"}})


def test_tmpfs_options_convert_like_docker() -> None:
    assert tmpfs_options({"SizeBytes": 64 << 20, "Mode": 0o1777}, True) == "ro,mode=1777,size=64m"
    assert tmpfs_options({"SizeBytes": 1000}, False) == "size=1000"
    assert tmpfs_options({"SizeBytes": 3 << 30, "Options": [["exec"]]}, False) == "size=3g,exec"
    assert tmpfs_options(None, False) == ""


# -- --tmpfs and --volumes-from --------------------------------------------------------------

def test_tmpfs_specs() -> None:
    assert parse_tmpfs_spec("/run") == ("/run", "")
    assert parse_tmpfs_spec("/run:rw,noexec,nosuid,size=65536k,mode=1777") == (
        "/run", "rw,noexec,nosuid,size=65536k,mode=1777")
    for text, message in (("run", "must be absolute"), ("/", "destination can't be '/'"),
                          ("/run:sizes=1", 'invalid tmpfs option "sizes=1"'),
                          ("/run:bind", 'invalid tmpfs option "bind"')):
        with pytest.raises(errdefs.InvalidArgument, match=None) as caught:
            parse_tmpfs_spec(text)
        assert message in str(caught.value)


def test_volumes_from_specs_like_docker() -> None:
    assert parse_volumes_from("web") == ("web", "rw")
    assert parse_volumes_from("web:ro") == ("web", "ro")
    assert parse_volumes_from("web:rw,z") == ("web", "rw,z")
    for text, message in (("", "volumes-from specification cannot be an empty string"),
                          ("web:shared", "invalid mode: shared"), ("web:nocopy", "invalid mode: nocopy"),
                          ("web:rx", "invalid mode: rx")):
        with pytest.raises(errdefs.InvalidArgument) as caught:
            parse_volumes_from(text)
        assert str(caught.value) == message


# -- hypothesis: nothing but errdefs errors, and what parses is well formed ---------------------

_SPEC_ALPHABET = st.sampled_from(list("/:,.=ab_-zZ \"'") + ["ro", "rw", "nocopy", "shared", "rslave", "type",
                                                               "volume", "bind", "tmpfs", "target", "src"])
_spec_text = st.lists(_SPEC_ALPHABET, max_size=16).map("".join) | st.text(max_size=40)


@settings(max_examples=400, deadline=None)
@given(_spec_text)
def test_volume_spec_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        point = parse_volume_spec(text)
    except errdefs.LaminaError:
        return
    assert point.destination.startswith("/") and point.destination != "/"
    assert point.type in ("bind", "volume")
    assert os.path.normpath(point.destination) == point.destination or point.destination.startswith("//")


@settings(max_examples=400, deadline=None)
@given(_spec_text)
def test_mount_csv_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        mount = parse_mount_spec(text)
    except errdefs.LaminaError:
        return
    assert mount["Target"]
    try:
        mount_point_from_spec(mount, check_bind_source=False)
    except errdefs.LaminaError:
        pass


@settings(max_examples=300, deadline=None)
@given(_spec_text)
def test_tmpfs_and_volumes_from_parsers_never_fail_unexpectedly(text: str) -> None:
    for parser in (parse_tmpfs_spec, parse_volumes_from):
        try:
            parser(text)
        except errdefs.LaminaError:
            pass


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                            lambda children: st.lists(children, max_size=3)
                            | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["Type", "Source", "Target", "ReadOnly", "BindOptions", "VolumeOptions",
                                        "TmpfsOptions"]), _json_values, max_size=6)
       | st.fixed_dictionaries({"Type": st.sampled_from(["bind", "volume", "tmpfs"]), "Target": st.just("/x")},
                               optional={"TmpfsOptions": st.dictionaries(
                                   st.sampled_from(["SizeBytes", "Mode", "Options"]), _json_values, max_size=3),
                                   "VolumeOptions": st.dictionaries(st.sampled_from(
                                       ["NoCopy", "Labels", "DriverConfig", "Subpath"]), _json_values, max_size=3)}))
def test_api_mount_validation_never_fails_unexpectedly(mount: dict) -> None:
    try:
        mount_point_from_spec(mount)
    except errdefs.LaminaError:
        pass
