"""Loading an archive that arrives as a stream (a pipe, a request body): its layer members are
extracted while it arrives (overlay2), and the result is the same as loading it from a file;
hostile or broken input still stores nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina import mount as lmount
from lamina.config import EngineConfig
from lamina.digest import chain_ids
from lamina.distribution import archive_index
from lamina.distribution.archive_index import open_archive
from lamina.services.compose import build_services

from .test_archive_spool import Stream

pytestmark = pytest.mark.privileged


def tar_of(entries: list[tuple[str, bytes | None]], format: int = tarfile.USTAR_FORMAT) -> bytes:
    """A tar of files (bytes) and directories (None), in order."""
    output = io.BytesIO()
    with tarfile.open(fileobj=output, mode="w", format=format) as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(data))
    return output.getvalue()


BASE = tar_of([("etc/", None), ("etc/hostname", b"base\n"), ("big.bin", os.urandom(200_000)),
               ("gone", b"removed by the top layer\n")])
TOP = tar_of([("etc/", None), ("etc/hostname", b"top\n"), (".wh.gone", b""), ("new", os.urandom(5000))])
OTHER = tar_of([("other", os.urandom(3000))])


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def docker_archive(images: list[tuple[str, list[str]]], layers: dict[str, bytes],
                   diff_ids: dict[str, str] | None = None, format: int = tarfile.USTAR_FORMAT) -> bytes:
    """A docker-save archive: layer members first, then configs, manifest.json last."""
    members: list[tuple[str, bytes | None]] = [(name, data) for name, data in layers.items()]
    manifest = []
    for tag, layer_names in images:
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": [
                                 (diff_ids or {}).get(name, digest(layers[name])) for name in layer_names]}},
                            sort_keys=True).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        members.append((config_name, config))
        manifest.append({"Config": config_name, "RepoTags": [tag], "Layers": layer_names})
    members.append(("manifest.json", json.dumps(manifest).encode()))
    return tar_of(members, format)


@pytest.fixture(params=["overlay2", "vfs"])
def engine(request, tmp_path) -> Iterator:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts)")
    config = EngineConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "run"),
                          storage_driver=request.param)
    services = build_services(config)
    try:
        yield services
    finally:
        lmount.unmount_all_under(str(tmp_path))


def stored_state(services) -> tuple[list, list, list]:
    """What the store holds: layers, driver directories (besides overlay2's l/), write-sets."""
    layers = services.images.layers
    tmp = os.path.join(layers.root, "tmp")
    return layers.chain_ids(), layers.driver.list_ids(), os.listdir(tmp) if os.path.isdir(tmp) else []


def saved_layers(services, name: str) -> list[bytes]:
    """The layer tars of ``name`` as ``save`` writes them."""
    data = b"".join(services.images.save([name]))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        return [archive.extractfile(layer).read() for layer in manifest[0]["Layers"]]  # type: ignore[union-attr]


def test_a_streamed_archive_loads_as_from_a_file_with_its_layers_extracted_as_they_arrive(engine, monkeypatch):
    prepared: list[str] = []
    layers = engine.images.layers
    original = type(layers).prepare

    def recording(self, stream):
        result = original(self, stream)
        prepared.append(str(result.diff_id))
        return result

    monkeypatch.setattr(type(layers), "prepare", recording)
    data = docker_archive([("a:latest", ["base/layer.tar", "top/layer.tar"]), ("b:latest", ["other/layer.tar"])],
                          {"base/layer.tar": BASE, "top/layer.tar": TOP, "other/layer.tar": OTHER})
    names = engine.images.load(Stream(data, piece=4096), progress=lambda message: None)
    assert sorted(names) == ["a:latest", "b:latest"]
    if layers.driver.name == "overlay2":
        assert sorted(prepared) == sorted(digest(layer) for layer in (BASE, TOP, OTHER))
    else:
        assert prepared == []  # vfs copies the parent's tree first: registered from the spool
    base_chain, top_chain = chain_ids([digest(BASE), digest(TOP)])
    assert layers.get(top_chain).parent == base_chain
    assert saved_layers(engine, "a:latest") == [BASE, TOP]
    assert saved_layers(engine, "b:latest") == [OTHER]
    # the top layer stacks on the base: the whiteout hides "gone", etc/hostname is the top's
    root = layers.driver.get(layers.get(top_chain).cache_id)
    try:
        assert sorted(os.listdir(root)) == ["big.bin", "etc", "new"]
        with open(os.path.join(root, "etc/hostname"), "rb") as handle:
            assert handle.read() == b"top\n"
    finally:
        layers.driver.put(layers.get(top_chain).cache_id)
    assert stored_state(engine)[2] == []  # no write-set left behind
    assert layers.check(engine.images.referenced_layers())[0] == []


def test_a_layer_used_on_two_parents_is_extracted_once_ahead_and_once_from_the_spool(engine):
    data = docker_archive([("a:latest", ["base/layer.tar"]), ("b:latest", ["other/layer.tar", "base/layer.tar"])],
                          {"base/layer.tar": BASE, "other/layer.tar": OTHER})
    assert sorted(engine.images.load(Stream(data), progress=lambda message: None)) == ["a:latest", "b:latest"]
    assert saved_layers(engine, "a:latest") == [BASE]
    assert saved_layers(engine, "b:latest") == [OTHER, BASE]
    assert len(engine.images.layers.chain_ids()) == 3
    assert stored_state(engine)[2] == []


def test_long_member_names_in_pax_headers_are_followed(engine):
    name = "x" * 120 + "/layer.tar"
    data = docker_archive([("a:latest", [name])], {name: BASE}, format=tarfile.PAX_FORMAT)
    assert engine.images.load(Stream(data), progress=lambda message: None) == ["a:latest"]
    assert saved_layers(engine, "a:latest") == [BASE]


def test_a_member_whose_content_does_not_match_its_diff_id_loads_nothing(engine):
    data = docker_archive([("a:latest", ["base/layer.tar", "top/layer.tar"])],
                          {"base/layer.tar": BASE, "top/layer.tar": TOP},
                          diff_ids={"top/layer.tar": digest(OTHER)})
    with pytest.raises(errdefs.InvalidArgument, match="digest mismatch"):
        engine.images.load(Stream(data), progress=lambda message: None)
    assert stored_state(engine) == ([], [], [])


@pytest.mark.parametrize("cut", [300, len(BASE) // 2, len(BASE) + 3000],
                         ids=["in the first header", "inside the first layer", "inside the second layer"])
def test_a_truncated_stream_loads_nothing_and_leaves_nothing(engine, cut):
    data = docker_archive([("a:latest", ["base/layer.tar", "top/layer.tar"])],
                          {"base/layer.tar": BASE, "top/layer.tar": TOP})
    with pytest.raises(errdefs.InvalidArgument, match="truncated"):
        engine.images.load(Stream(data[:cut]), progress=lambda message: None)
    assert stored_state(engine) == ([], [], [])


def test_a_stream_that_fails_midway_loads_nothing_and_leaves_nothing(engine):
    data = docker_archive([("a:latest", ["base/layer.tar", "top/layer.tar"])],
                          {"base/layer.tar": BASE, "top/layer.tar": TOP})
    failure = errdefs.InvalidArgument("the client closed the connection before the end of the request body")
    with pytest.raises(errdefs.InvalidArgument, match="client closed"):
        engine.images.load(Stream(data, fail_after=len(BASE) + 2000, error=failure), progress=lambda message: None)
    assert stored_state(engine) == ([], [], [])


def test_members_that_are_not_layer_tars_are_read_from_the_spool(engine):
    # a member the follower tries (big, not JSON) that is no tar: it fails to prepare, and the
    # loader's own read of it gives the error a load from a file gives
    data = docker_archive([("a:latest", ["base/layer.tar"])], {"base/layer.tar": os.urandom(50_000)})
    with pytest.raises(errdefs.InvalidArgument):
        engine.images.load(Stream(data), progress=lambda message: None)
    assert stored_state(engine) == ([], [], [])


class HashingLayers:
    """What the follower needs of a layer store, recording the bytes it is handed per member
    (their sha256) instead of extracting them."""

    def __init__(self) -> None:
        self.discarded: list[str] = []

    def can_prepare(self) -> bool:
        return True

    def prepare(self, stream) -> str:
        hasher = hashlib.sha256()
        buffer = bytearray(4096)
        while size := stream.readinto(buffer):
            hasher.update(buffer[:size])
        return hasher.hexdigest()

    def discard_prepared(self, prepared: str) -> None:
        self.discarded.append(prepared)


member_names = st.text(alphabet="abcdefghij/_.-", min_size=1, max_size=180).map(
    lambda name: "d/" + name.strip("/").replace("//", "/") or "d/x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(st.tuples(member_names, st.integers(0, 5000)), min_size=1, max_size=6),
       format=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
       piece=st.integers(1, 9000), memory_limit=st.sampled_from([1 << 30, 6000, 0]))
def test_the_follower_hands_over_exactly_each_members_bytes(tmp_path_factory, members, format, piece, memory_limit):
    entries = []
    for index, (name, size) in enumerate(members):
        entries.append((name, bytes([index % 251]) * size))
    try:
        data = tar_of(entries, format)
    except ValueError:  # a name USTAR cannot hold
        return
    layers = HashingLayers()
    archive = open_archive(Stream(data, piece=piece), str(tmp_path_factory.mktemp("spool")),
                           memory_limit=memory_limit, layers=layers)  # type: ignore[arg-type]
    try:
        last = {}
        for name, content in entries:
            last[archive_index._normalise(name)] = content
        for name, content in last.items():
            expected = hashlib.sha256(content).hexdigest() if len(content) >= 1024 else None
            assert archive.take_prepared(name) == expected
    finally:
        archive.close()
    assert not set(layers.discarded) - {hashlib.sha256(content).hexdigest() for _, content in entries}
