"""The storage core end to end: load, save, import, rmi, check, on every graph driver.

Everything goes through the real services (``build_services``) on a fresh data root per test:
real overlay mounts, real layer directories, Docker's formats.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
import zstandard

from lamina import errdefs
from lamina.config import EngineConfig
from lamina.services.compose import build_services

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
FIXTURE_IMAGE_ID = "sha256:657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed"
FIXTURE_DIFF_ID = "sha256:a8cc1059680454e58aa2d5a4ebdebe9e83b1ae7b769ab1d0221b9637448b0b51"
FIXTURE_LAYER = "77ef5fe66347c286b797d89189a7af81f3880e0f523dd1394b60324536f9ebbe/layer.tar"

DRIVERS = ["overlay2", "vfs"]


def _fixture_member(name: str) -> bytes:
    with tarfile.open(FIXTURE) as archive:
        handle = archive.extractfile(name)
        assert handle is not None
        return handle.read()


@pytest.fixture(params=DRIVERS)
def engine(request: pytest.FixtureRequest, tmp_path):
    root = tmp_path / "root"
    config = EngineConfig(data_root=str(root), exec_root=str(tmp_path / "exec"), storage_driver=request.param)
    services = build_services(config)
    yield services
    from lamina.mount import unmount_all_under

    unmount_all_under(str(root))


def reopen(services):
    return build_services(services.system.config)


def messages():
    out: list[dict] = []
    return out, out.append


def load_bytes(services, data: bytes) -> list[str]:
    out, progress = messages()
    return services.images.load(io.BytesIO(data), progress=progress)


def save_bytes(services, names: list[str], format: str = "docker") -> bytes:
    return b"".join(services.images.save(names, format=format))


def assert_clean(services) -> None:
    report = services.system.check()
    assert report["Problems"] == [], json.dumps(report, indent=2)


def layer_tar(files: dict[str, bytes], whiteouts: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1700000000
            archive.addfile(info, io.BytesIO(content))
        for name in whiteouts:
            info = tarfile.TarInfo(name)
            archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def docker_archive(layers: list[bytes], tags: list[str], *, compress: str | None = None,
                   diff_ids: list[str] | None = None) -> bytes:
    """A docker-save archive of an image made of ``layers`` (each an uncompressed tar)."""
    computed = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or computed},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        paths = []
        for index, layer in enumerate(layers):
            if compress == "gzip":
                layer = gzip.compress(layer)
            elif compress == "zstd":
                layer = zstandard.ZstdCompressor().compress(layer)
            path = f"l{index}/layer.tar"
            paths.append(path)
            info = tarfile.TarInfo(path)
            info.size = len(layer)
            archive.addfile(info, io.BytesIO(layer))
        for name, body in ((config_name, config),
                           ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": tags,
                                                          "Layers": paths}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def image_state(services) -> dict:
    images = services.images.list_images(all=True)
    return {image["Id"]: sorted(image["RepoTags"]) for image in images}


# -- load and save ------------------------------------------------------------------------------


def test_loading_dockers_archive_keeps_its_image_id_and_diff_id(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        names = engine.images.load(handle, progress=lambda m: None)
    assert names == ["busybox:latest"]
    inspect = engine.images.inspect_image("busybox")
    assert inspect["Id"] == FIXTURE_IMAGE_ID
    assert inspect["RepoTags"] == ["busybox:latest"]
    assert inspect["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    assert inspect["GraphDriver"]["Name"] == engine.system.driver.name
    assert inspect["Size"] > 1_000_000
    assert_clean(engine)


def test_save_after_load_reproduces_the_layer_byte_for_byte(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    saved = save_bytes(engine, ["busybox:latest"])
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        layer = archive.extractfile(manifest[0]["Layers"][0]).read()
        config = archive.extractfile(manifest[0]["Config"]).read()
    assert layer == _fixture_member(FIXTURE_LAYER)
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == FIXTURE_DIFF_ID
    assert "sha256:" + hashlib.sha256(config).hexdigest() == FIXTURE_IMAGE_ID


@pytest.mark.parametrize("format", ["docker", "oci"])
def test_a_saved_archive_loads_into_a_fresh_store_with_the_same_ids(engine, tmp_path, format: str) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    saved = save_bytes(engine, ["busybox"], format=format)
    other = build_services(EngineConfig(data_root=str(tmp_path / "other"), exec_root=str(tmp_path / "other-exec"),
                                        storage_driver=engine.system.driver.name))
    names = load_bytes(other, saved)
    assert names == ["busybox:latest"]
    assert other.images.inspect_image("busybox:latest")["Id"] == FIXTURE_IMAGE_ID
    assert other.images.inspect_image("busybox:latest")["RootFS"]["Layers"] == [FIXTURE_DIFF_ID]
    assert_clean(other)


@pytest.mark.parametrize("compress", [None, "gzip", "zstd"], ids=["plain layers", "gzip layers", "zstd layers"])
def test_compressed_layers_load_with_the_uncompressed_diff_id(engine, compress) -> None:
    base = layer_tar({"etc/os": b"base\n", "bin/tool": b"x" * 5000})
    top = layer_tar({"etc/app": b"app\n"}, whiteouts=("bin/.wh.tool",))
    names = load_bytes(engine, docker_archive([base, top], ["app:1"], compress=compress))
    assert names == ["app:1"]
    layers = engine.images.inspect_image("app:1")["RootFS"]["Layers"]
    assert layers == ["sha256:" + hashlib.sha256(base).hexdigest(), "sha256:" + hashlib.sha256(top).hexdigest()]
    assert_clean(engine)


def test_layers_shared_by_two_images_are_stored_once_and_outlive_the_first_rmi(engine) -> None:
    base = layer_tar({"etc/os": b"base\n"})
    load_bytes(engine, docker_archive([base, layer_tar({"a": b"a"})], ["first:1"]))
    load_bytes(engine, docker_archive([base, layer_tar({"b": b"b"})], ["second:1"]))
    layers = engine.images.layers.layers()
    assert len(layers) == 3
    report = engine.images.remove_image("first:1")
    assert {"Untagged": "first:1"} in report
    assert len(engine.images.layers.layers()) == 2
    assert engine.images.inspect_image("second:1")
    assert_clean(engine)
    engine.images.remove_image("second:1")
    assert engine.images.layers.layers() == []
    assert engine.system.driver.list_ids() == []
    assert_clean(engine)


def test_untagging_one_of_two_tags_keeps_the_image(engine) -> None:
    load_bytes(engine, docker_archive([layer_tar({"a": b"a"})], ["one:1"]))
    engine.images.tag_image("one:1", "two", "2")
    assert engine.images.remove_image("two:2") == [{"Untagged": "two:2"}]
    assert image_state(engine) == {engine.images.resolve("one:1"): ["one:1"]}


def test_an_image_tagged_in_two_repositories_needs_force_to_delete_by_id(engine) -> None:
    load_bytes(engine, docker_archive([layer_tar({"a": b"a"})], ["one:1"]))
    engine.images.tag_image("one:1", "two", "2")
    image_id = engine.images.resolve("one:1")
    with pytest.raises(errdefs.Conflict, match="must be forced"):
        engine.images.remove_image(image_id[7:19])
    engine.images.remove_image(image_id[7:19], force=True)
    assert image_state(engine) == {}
    assert_clean(engine)


def test_import_makes_a_one_layer_image_with_changes_applied(engine) -> None:
    data = layer_tar({"bin/hello": b"#!/bin/sh\necho hi\n"})
    out, progress = messages()
    image_id = engine.images.import_image(io.BytesIO(data), repository="hello", tag="v1",
                                          changes=['CMD ["/bin/hello"]', "ENV A=b"], message="made by test",
                                          progress=progress)
    inspect = engine.images.inspect_image("hello:v1")
    assert inspect["Id"] == image_id
    assert inspect["Config"]["Cmd"] == ["/bin/hello"]
    assert "A=b" in inspect["Config"]["Env"]
    assert inspect["Comment"] == "made by test"
    history = engine.images.image_history("hello:v1")
    assert history[0]["Id"] == image_id and history[0]["Comment"] == "made by test"
    assert_clean(engine)


# -- bad input ----------------------------------------------------------------------------------


def _bad_inputs() -> list[tuple[str, bytes, type]]:
    fixture = open(FIXTURE, "rb").read()
    good_layer = layer_tar({"a": b"a" * 3000})
    cases = [
        ("a truncated archive", fixture[: len(fixture) // 2], errdefs.InvalidArgument),
        ("an archive without manifest", layer_tar({"hello": b"x"}), errdefs.InvalidArgument),
        ("a layer whose digest does not match the config",
         docker_archive([good_layer], ["bad:1"], diff_ids=["sha256:" + "0" * 64]), errdefs.InvalidArgument),
        ("a malformed tag in the manifest", docker_archive([good_layer], ["Bad Name:1"]), errdefs.InvalidArgument),
        ("a corrupt gzip layer",
         docker_archive([good_layer], ["bad:2"], compress="gzip").replace(b"\x1f\x8b\x08", b"\x1f\x8b\x09", 1),
         errdefs.InvalidArgument),
        ("random bytes", os.urandom(4096), errdefs.InvalidArgument),
    ]
    return cases


@pytest.mark.parametrize("name,data,error", _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
def test_bad_archives_fail_clearly_and_change_nothing(engine, name, data, error) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    before = image_state(engine)
    layers_before = sorted(layer.chain_id for layer in engine.images.layers.layers())
    with pytest.raises(error):
        load_bytes(engine, data)
    assert image_state(engine) == before
    assert sorted(layer.chain_id for layer in engine.images.layers.layers()) == layers_before
    assert_clean(engine)
    assert engine.images.inspect_image("busybox")["Id"] == FIXTURE_IMAGE_ID


def test_unknown_oci_layer_media_type_is_refused(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    saved = save_bytes(engine, ["busybox"], format="oci")
    source = tarfile.open(fileobj=io.BytesIO(saved))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        index = json.load(source.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(source.extractfile(f"blobs/sha256/{manifest_digest}"))
        manifest["layers"][0]["mediaType"] = "application/x-unknown"
        body = json.dumps(manifest).encode()
        new_digest = hashlib.sha256(body).hexdigest()
        index["manifests"][0]["digest"] = "sha256:" + new_digest
        index["manifests"][0]["size"] = len(body)
        for member in source.getmembers():
            if member.name == "index.json":
                continue
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, data in ((f"blobs/sha256/{new_digest}", body), ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    with pytest.raises(errdefs.InvalidArgument, match="unknown layer media type"):
        load_bytes(engine, buffer.getvalue())


def test_a_damaged_config_is_reported_by_check(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    path = os.path.join(engine.system.config.data_root, "image", engine.system.driver.name,
                        "imagedb", "content", "sha256", FIXTURE_IMAGE_ID[7:])
    with open(path, "ab") as handle:
        handle.write(b" ")
    problems = engine.system.check()["Problems"]
    assert any(FIXTURE_IMAGE_ID[7:] in json.dumps(p) for p in problems)


def test_check_repair_removes_orphan_driver_directories(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    engine.system.driver.create("f" * 64, None)
    problems = engine.system.check()["Problems"]
    assert any("f" * 64 in p["Object"] for p in problems)
    report = engine.system.check(repair=True)
    assert report["Problems"] == []
    assert any("f" * 64 in line for line in report["Repaired"])
    assert engine.images.inspect_image("busybox")["Id"] == FIXTURE_IMAGE_ID


def test_history_names_the_parent_images_a_build_or_commit_recorded(engine) -> None:
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    parent = json.loads(_fixture_member("657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed.json"))
    child = dict(parent)
    child["history"] = parent["history"] + [{"created": "2026-11-23T03:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"true\"]",
                                             "empty_layer": True}]
    child_id = engine.images.images.put(json.dumps(child).encode())
    engine.images.images.set_parent(child_id, FIXTURE_IMAGE_ID)
    engine.images.tag_image(child_id, "child", "1")
    history = engine.images.image_history("child:1")
    assert [entry["Id"] for entry in history] == [child_id, FIXTURE_IMAGE_ID]
    assert history[0]["Tags"] == ["child:1"] and history[1]["Tags"] == ["busybox:latest"]


# -- a damaged layer never leaves as a valid archive ---------------------------------------------


def _busybox_layer(engine):
    with open(FIXTURE, "rb") as handle:
        engine.images.load(handle, progress=lambda m: None)
    layers = engine.images.layers
    layer = layers.get(FIXTURE_DIFF_ID)  # a base layer's chainID is its diff_id
    return layers, layer, layers.driver.diff_path(layer.cache_id)


def test_a_changed_file_in_a_layer_fails_the_save_naming_the_file(engine) -> None:
    layers, layer, diff = _busybox_layer(engine)
    path = os.path.join(diff, "bin", "busybox")
    with open(path, "r+b") as handle:  # same size, one byte different
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(errdefs.DataLoss, match="bin/busybox"):
        save_bytes(engine, ["busybox"])
    with pytest.raises(errdefs.DataLoss, match="bin/busybox"):
        b"".join(layers.tar_stream(FIXTURE_DIFF_ID, verify_digest=True))


def test_a_truncated_file_in_a_layer_fails_the_save(engine) -> None:
    layers, layer, diff = _busybox_layer(engine)
    os.truncate(os.path.join(diff, "bin", "busybox"), 100)
    with pytest.raises(errdefs.DataLoss, match="shorter than recorded"):
        save_bytes(engine, ["busybox"])


def test_verify_digest_catches_a_rewritten_record_the_per_file_checks_cannot(engine) -> None:
    # A tar-split record rewritten with a changed header (a valid gzip, so its CRC-32 passes;
    # headers carry no CRC-64): only the digest of the whole stream tells.
    layers, layer, diff = _busybox_layer(engine)
    record = os.path.join(layers.root, "sha256", FIXTURE_DIFF_ID[7:], "tar-split.json.gz")
    with gzip.open(record, "rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    first = json.loads(lines[0])
    assert first["type"] == 2
    header = bytearray(base64.b64decode(first["payload"]))
    header[0:1] = b"X"  # the first entry's name now starts with X
    first["payload"] = base64.b64encode(bytes(header)).decode()
    lines[0] = json.dumps(first, separators=(",", ":")).encode() + b"\n"
    with gzip.open(record, "wb") as handle:
        handle.write(b"".join(lines))
    os.unlink(os.path.join(os.path.dirname(record), "tar-split.index"))  # else the index is used
    plain = b"".join(layers.tar_stream(FIXTURE_DIFF_ID))
    assert hashlib.sha256(plain).hexdigest() != FIXTURE_DIFF_ID[7:]
    with pytest.raises(errdefs.DataLoss, match="hashes to"):
        b"".join(layers.tar_stream(FIXTURE_DIFF_ID, verify_digest=True))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_the_reassembly_index_is_used_and_a_damaged_one_rebuilt(engine, damage) -> None:
    layers, layer, diff = _busybox_layer(engine)
    index = os.path.join(layers.root, "sha256", FIXTURE_DIFF_ID[7:], "tar-split.index")
    assert os.path.getsize(index) > 0  # written by the load
    first = save_bytes(engine, ["busybox"])
    assert first == save_bytes(engine, ["busybox"])
    os.unlink(index)
    assert save_bytes(engine, ["busybox"]) == first  # decoded from the record, index written again
    assert os.path.getsize(index) > 0
    with open(index, "r+b") as handle:
        data = bytearray(handle.read())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            data = data[: len(data) // 3]
        elif damage == "garbage":
            data = bytearray(b"LTSI1\n" + b"\0" * 64)
        else:
            data = bytearray()
        handle.seek(0)
        handle.truncate()
        handle.write(data)
    assert save_bytes(engine, ["busybox"]) == first
    with open(index, "rb") as handle:
        assert handle.read(6) == b"LTSI1\n"
    assert "sha256:" + hashlib.sha256(
        b"".join(layers.tar_stream(FIXTURE_DIFF_ID, verify_digest=True))).hexdigest() == FIXTURE_DIFF_ID
    assert_clean(engine)


def _load_fixture(services) -> None:
    with open(FIXTURE, "rb") as handle:
        services.images.load(handle, progress=lambda m: None)


def _dead_lease(services) -> None:
    """What a process killed inside an image write leaves: a lease file nobody holds."""
    leases = os.path.join(services.images.layers.root, "leases")
    with open(os.path.join(leases, "killed"), "w", encoding="ascii"):
        pass


def test_driver_leftovers_alone_are_swept_at_start_up_and_by_repair(engine) -> None:
    _load_fixture(engine)
    driver = engine.system.driver
    driver.create("e" * 64, None)
    home = os.path.dirname(os.path.normpath(driver.diff_path("e" * 64)))
    if driver.name == "overlay2":
        home = os.path.dirname(home)
    os.rename(os.path.join(home, "e" * 64), os.path.join(home, "e" * 64 + "-removing"))  # a killed removal
    assert driver.leftovers() == ["e" * 64 + "-removing"]
    assert engine.images.layers.needs_sweep()
    reopened = reopen(engine)  # the next command
    assert reopened.system.driver.leftovers() == []
    assert reopened.system.check()["Problems"] == []
    driver.create("d" * 64, None)
    os.rename(os.path.join(home, "d" * 64), os.path.join(home, "d" * 64 + "-incomplete"))
    report = engine.system.check(repair=True)
    assert report["Problems"] == [] and driver.leftovers() == []
    assert engine.images.inspect_image("busybox")["Id"] == FIXTURE_IMAGE_ID


def test_an_image_write_killed_midway_is_swept_by_the_next_command_and_by_repair(engine) -> None:
    _load_fixture(engine)
    metadata = os.path.join(engine.system.config.data_root, "image", engine.system.driver.name,
                            "imagedb", "metadata", "sha256", FIXTURE_IMAGE_ID[7:])
    os.makedirs(metadata, exist_ok=True)
    leftover = os.path.join(metadata, ".tmp-parent-killed")
    with open(leftover, "w", encoding="ascii") as handle:
        handle.write("sha256:")
    assert engine.system.check()["Problems"] != []
    _dead_lease(engine)
    reopened = reopen(engine)  # the next command sweeps what the killed write left
    assert not os.path.exists(leftover)
    assert reopened.system.check()["Problems"] == []
    with open(leftover, "w", encoding="ascii") as handle:
        handle.write("sha256:")
    report = engine.system.check(repair=True)  # no dead lease: repair finds it all the same
    assert report["Problems"] == [] and not os.path.exists(leftover)


def test_a_read_write_layer_creation_killed_midway_leaves_only_what_its_record_names(engine) -> None:
    _load_fixture(engine)
    top = engine.images.images.get_config(FIXTURE_IMAGE_ID).chain_id()
    mounts = engine.mounts
    pid = os.fork()
    if pid == 0:  # killed once its init layer exists, before its read-write layer does
        try:
            real = mounts.driver.create

            def create(cache_id, parent, **options):
                if options.get("read_write"):
                    os._exit(9)
                return real(cache_id, parent, **options)

            mounts.driver.create = create  # type: ignore[method-assign]
            mounts.create("c" * 64, str(top))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    leftovers = mounts.interrupted()
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    assert engine.system.check()["Problems"] != []  # the init layer's directory
    reopened = reopen(engine)
    assert reopened.mounts.interrupted() == []
    assert reopened.system.check()["Problems"] == []
