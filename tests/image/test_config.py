"""Image configs: parsing with field-naming errors, Docker-identical bytes for new images."""

from __future__ import annotations

import hashlib
import json
import pathlib
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.digest import Digest, chain_id
from lamina.image import gojson
from lamina.image.config import (
    EMPTY_LAYER_DIFF_ID,
    ContainerConfig,
    HealthConfig,
    HistoryEntry,
    ImageConfig,
    apply_changes,
    new_child_config,
    new_config,
)
from lamina.image.rfc3339 import format_time, parse_time

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "busybox-docker-archive.tar"
FIXTURE_IMAGE_ID = "sha256:657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed"
FIXTURE_DIFF_ID = "sha256:a8cc1059680454e58aa2d5a4ebdebe9e83b1ae7b769ab1d0221b9637448b0b51"
FIXTURE_CREATED = "2026-11-23T02:44:34.662391651Z"
FIXTURE_COMMENT = "busybox-static rootfs (Debian 1.35.0)"
FIXTURE_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def fixture_config_bytes() -> bytes:
    """The config JSON that Docker 20.10 wrote for ``docker import`` of the busybox rootfs."""
    with tarfile.open(FIXTURE) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        return archive.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]


def minimal(**overrides) -> dict:
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [D1]}}
    config.update(overrides)
    return config


def test_the_docker_written_fixture_parses_with_every_field() -> None:
    data = fixture_config_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == FIXTURE_IMAGE_ID
    config = ImageConfig.from_json(data)
    assert config.architecture == "amd64" and config.os == "linux"
    assert config.created == FIXTURE_CREATED
    assert config.comment == FIXTURE_COMMENT
    assert config.docker_version == "20.10.24+dfsg1"
    assert config.diff_ids == [FIXTURE_DIFF_ID]
    assert config.config is not None
    assert config.config.env == (FIXTURE_PATH_ENV,)
    assert config.config.cmd == ("sh",)
    assert config.config.get("Labels") is None and config.config.get("Labels", {}) == {}
    assert config.config["Cmd"] == ["sh"]
    assert dict(config.config) == config.config.to_dict()
    assert config.history == (HistoryEntry(created=FIXTURE_CREATED, comment=FIXTURE_COMMENT),)
    assert config.chain_id() == FIXTURE_DIFF_ID


def test_re_serialising_the_docker_config_gives_the_same_bytes() -> None:
    data = fixture_config_bytes()
    assert ImageConfig.from_json(data).to_json() == data


def test_a_new_import_config_is_byte_identical_to_what_docker_wrote() -> None:
    """``docker import --change 'ENV PATH=...' --change 'CMD ["sh"]' -m <comment>`` on Docker
    20.10 produced the fixture; the same inputs give the same bytes, hence the same image id."""
    container = ContainerConfig.from_dict(apply_changes({}, [f"ENV {FIXTURE_PATH_ENV}", 'CMD ["sh"]']))
    config = new_config(
        diff_ids=[FIXTURE_DIFF_ID],
        history=[HistoryEntry(created=FIXTURE_CREATED, comment=FIXTURE_COMMENT)],
        config=container,
        architecture="amd64",
        created=FIXTURE_CREATED,
        comment=FIXTURE_COMMENT,
        docker_version="20.10.24+dfsg1",
    )
    data = config.to_json()
    assert data == fixture_config_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == FIXTURE_IMAGE_ID


def test_container_config_keeps_go_field_order_and_omitempty_rules() -> None:
    container = ContainerConfig(
        exposed_ports=("80/tcp", "443/tcp"), healthcheck=HealthConfig(test=("CMD", "true"), interval=5_000_000_000),
        shell=("/bin/bash", "-c"), stop_signal="SIGINT", labels={"b": "2", "a": "1"}, on_build=("RUN x",),
        volumes=("/data",),
    )
    text = gojson.dumps(container.to_dict()).decode()
    assert text == (
        '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
        '"AttachStderr":false,"ExposedPorts":{"443/tcp":{},"80/tcp":{}},"Tty":false,"OpenStdin":false,'
        '"StdinOnce":false,"Env":null,"Cmd":null,"Healthcheck":{"Test":["CMD","true"],"Interval":5000000000},'
        '"Image":"","Volumes":{"/data":{}},"WorkingDir":"","Entrypoint":null,"OnBuild":["RUN x"],'
        '"Labels":{"a":"1","b":"2"},"StopSignal":"SIGINT","Shell":["/bin/bash","-c"]}')
    assert ContainerConfig.from_dict(json.loads(text)) == container


def test_unknown_keys_are_kept_at_both_levels() -> None:
    raw = minimal(config={"Cmd": ["x"], "FutureField": {"a": 1}}, moby_extension=[1, 2])
    config = ImageConfig.from_json(json.dumps(raw))
    assert config.extra == {"moby_extension": [1, 2]}
    assert config.config is not None and config.config.extra == {"FutureField": {"a": 1}}
    again = json.loads(config.to_json())
    assert again["moby_extension"] == [1, 2]
    assert again["config"]["FutureField"] == {"a": 1}


def test_an_old_plain_string_cmd_is_read_as_one_argument() -> None:
    config = ImageConfig.from_json(json.dumps(minimal(config={"Cmd": "/bin/sh", "Entrypoint": None})))
    assert config.config is not None and config.config.cmd == ("/bin/sh",)


INVALID = [
    ("not JSON at all", b"{not json", "not valid JSON"),
    ("a JSON array", b"[]", "expected a JSON object"),
    ("no rootfs", json.dumps({"os": "linux"}).encode(), "no rootfs"),
    ("rootfs of another type", json.dumps(minimal(rootfs={"type": "zfs"})).encode(), "rootfs.type"),
    ("a diff_id that is not a digest", json.dumps(minimal(rootfs={"type": "layers", "diff_ids": ["abc"]})).encode(),
     r"rootfs.diff_ids\[0\]"),
    ("a diff_id that is a number", json.dumps(minimal(rootfs={"type": "layers", "diff_ids": [D1, 5]})).encode(),
     r"rootfs.diff_ids\[1\]"),
    ("architecture as a number", json.dumps(minimal(architecture=64)).encode(), "architecture: expected a string"),
    ("created that is not a time", json.dumps(minimal(created="yesterday")).encode(), "created"),
    ("Env with a number", json.dumps(minimal(config={"Env": ["A=1", 2]})).encode(), r"config.Env\[1\]"),
    ("Labels with a list value", json.dumps(minimal(config={"Labels": {"a": []}})).encode(), "config.Labels"),
    ("Tty as a string", json.dumps(minimal(container_config={"Tty": "yes"})).encode(), "container_config.Tty"),
    ("Healthcheck retries as text", json.dumps(minimal(config={"Healthcheck": {"Retries": "3"}})).encode(),
     "config.Healthcheck.Retries"),
    ("history that is an object", json.dumps(minimal(history={})).encode(), "history"),
    ("a history entry that is a string", json.dumps(minimal(history=["x"])).encode(), r"history\[0\]"),
    ("empty_layer as a string", json.dumps(minimal(history=[{"empty_layer": "true"}])).encode(),
     r"history\[0\].empty_layer"),
    ("NaN in the JSON", b'{"rootfs":{"type":"layers"},"x":NaN}', "not valid JSON"),
]


@pytest.mark.parametrize("data, message", [(data, message) for _, data, message in INVALID],
                         ids=[f"{name} is refused" for name, _, _ in INVALID])
def test_invalid_configs_are_refused_naming_the_field(data: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        ImageConfig.from_json(data)


def test_history_entries_are_paired_with_layers_skipping_empty_ones() -> None:
    config = ImageConfig.from_json(json.dumps(minimal(
        rootfs={"type": "layers", "diff_ids": [D1, D2]},
        history=[{"created_by": "ADD"}, {"created_by": "ENV", "empty_layer": True}, {"created_by": "RUN"},
                 {"created_by": "CMD", "empty_layer": True}])))
    pairs = config.non_empty_history()
    assert [(entry.created_by, diff_id) for entry, diff_id in pairs] == [("ADD", D1), ("RUN", D2)]


def test_more_non_empty_history_entries_than_layers_is_an_error() -> None:
    config = ImageConfig.from_json(json.dumps(minimal(history=[{"created_by": "a"}, {"created_by": "b"}])))
    with pytest.raises(errdefs.InvalidArgument, match="too many non-empty layers"):
        config.non_empty_history()


def test_a_child_image_appends_its_layer_and_one_history_entry_like_docker_commit() -> None:
    parent = ImageConfig.from_json(fixture_config_bytes())
    container_config = ContainerConfig(cmd=("/bin/sh", "-c", "touch /x"))
    child = new_child_config(parent, diff_id=D2, config=parent.config or ContainerConfig(),
                             container_config=container_config, author="me", comment="made x",
                             container="c" * 64, created="2027-01-01T00:00:00Z")
    assert child.diff_ids == [FIXTURE_DIFF_ID, D2]
    assert child.chain_id() == chain_id([FIXTURE_DIFF_ID, D2])
    assert child.history[:-1] == parent.history
    assert child.history[-1] == HistoryEntry(created="2027-01-01T00:00:00Z", created_by="/bin/sh -c touch /x",
                                             author="me", comment="made x")
    assert child.comment == "" and child.author == "me" and child.architecture == "amd64"
    raw = json.loads(child.to_json())
    assert list(raw) == sorted(raw)
    assert raw["container"] == "c" * 64 and "comment" not in raw


def test_a_child_with_the_empty_layer_adds_no_diff_id_and_marks_history_empty() -> None:
    parent = ImageConfig.from_json(fixture_config_bytes())
    child = new_child_config(parent, diff_id=EMPTY_LAYER_DIFF_ID, config=ContainerConfig(user="nobody"))
    assert child.diff_ids == parent.diff_ids
    assert child.history[-1].empty_layer is True
    assert child.config is not None and child.config.user == "nobody"


def test_new_config_defaults_created_to_now_and_serialises_without_variant() -> None:
    before = parse_time(format_time())
    config = new_config(diff_ids=[D1, D3], architecture="arm64")
    assert parse_time(config.created or "") >= before
    raw = json.loads(config.to_json())
    assert raw["rootfs"] == {"type": "layers", "diff_ids": [D1, D3]}
    assert "variant" not in raw and "history" not in raw
    assert raw["container_config"]["OnBuild"] is None


def test_container_config_apply_changes_returns_a_new_config() -> None:
    base = ContainerConfig(env=("A=1",), cmd=("old",))
    changed = base.apply_changes(["ENV B=$A", "ENTRYPOINT /app"])
    assert changed.env == ("A=1", "B=1")
    assert changed.entrypoint == ("/bin/sh", "-c", "/app")
    assert changed.cmd is None
    assert base.cmd == ("old",)


# ---- times


@pytest.mark.parametrize("nanoseconds, text", [
    (0, "1970-01-01T00:00:00Z"),
    (1_500_000_000, "1970-01-01T00:00:01.5Z"),
    (1_795_401_874_662_391_651, "2026-11-23T02:44:34.662391651Z"),
    (1_000_000_001, "1970-01-01T00:00:01.000000001Z"),
], ids=["the epoch", "half a second has one fraction digit", "nanoseconds are kept", "a trailing 1 keeps all zeros"])
def test_times_are_formatted_like_go_rfc3339nano(nanoseconds: int, text: str) -> None:
    assert format_time(nanoseconds) == text
    assert parse_time(text) == nanoseconds


def test_times_with_offsets_parse_to_the_same_instant() -> None:
    assert parse_time("2024-05-01T14:00:00.25+02:00") == parse_time("2024-05-01T12:00:00.25Z")
    for bad in ("2024-05-01", "2024-13-01T00:00:00Z", "2024-05-01T00:00:00", "x"):
        with pytest.raises(errdefs.InvalidArgument):
            parse_time(bad)


# ---- Go's JSON encoding


def test_gojson_escapes_like_go() -> None:
    value = {"html": "<a href='x'>&</a>", "lines": "\u2028\u2029", "control": "\x00\x01\x1f\x7f\t\n\r\b\f",
             "unicode": "héllo ☃", "quote": "\"\\", "lone": "\ud800"}
    assert gojson.dumps(value) == (
        '{"html":"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e","lines":"\\u2028\\u2029",'
        '"control":"\\u0000\\u0001\\u001f\x7f\\t\\n\\r\\b\\f","unicode":"héllo ☃","quote":"\\"\\\\",'
        '"lone":"\ufffd"}').encode()


def test_gojson_sorted_map_orders_keys_bytewise() -> None:
    assert list(gojson.sorted_map({"b": 1, "B": 2, "a": 3, "é": 4, "z": 5})) == ["B", "a", "b", "z", "é"]


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20))
def test_gojson_output_is_json_that_reads_back_to_the_value(value) -> None:
    data = gojson.dumps(value)
    expected = json.loads(json.dumps(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    assert json.loads(data) == expected
    assert b"<" not in data and b">" not in data and b"&" not in data


def test_image_config_diff_ids_are_digests() -> None:
    config = ImageConfig.from_json(json.dumps(minimal()))
    assert all(isinstance(diff_id, Digest) for diff_id in config.diff_ids)
