"""imagedb: Docker's layout, verified reads, idempotent writes, short ids, metadata, check."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

import pytest

from lamina import errdefs
from lamina.digest import Digest
from lamina.image.rfc3339 import parse_time
from lamina.image.store import ImageStore

from .test_config import FIXTURE_IMAGE_ID, fixture_config_bytes

D1 = "sha256:" + "1" * 64


def config_bytes(number: int, **extra) -> bytes:
    value = {"architecture": "amd64", "os": "linux", "comment": f"image {number}",
             "rootfs": {"type": "layers", "diff_ids": [D1]}, **extra}
    return json.dumps(value, separators=(",", ":")).encode()


def image_id_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(str(tmp_path / "image" / "overlay2"))


def test_put_writes_dockers_layout_with_private_modes(store: ImageStore) -> None:
    data = fixture_config_bytes()
    image_id = store.put(data)
    assert image_id == FIXTURE_IMAGE_ID
    path = os.path.join(store.root, "imagedb", "content", "sha256", image_id[7:])
    with open(path, "rb") as handle:
        assert handle.read() == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for directory in ("imagedb/content/sha256", "imagedb/metadata/sha256"):
        assert stat.S_IMODE(os.stat(os.path.join(store.root, directory)).st_mode) == 0o700
    assert store.get(image_id) == data
    assert store.get(image_id[7:]) == data
    assert store.get_config(image_id).diff_ids == ["sha256:a8cc1059680454e58aa2d5a4ebdebe9e83b1ae7b769ab1d0221b9637448b0b51"]


def test_put_is_idempotent_and_leaves_no_temporary_files(store: ImageStore) -> None:
    data = config_bytes(1)
    first = store.put(data)
    path = os.path.join(store.content_dir, first.hex)
    inode = os.stat(path).st_ino
    assert store.put(data) == first
    assert os.stat(path).st_ino == inode, "an identical put must not rewrite the file"
    assert os.listdir(store.content_dir) == [first.hex]
    assert store.ids() == [first]
    assert store.check() == []


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"{}", "no rootfs"),
    (b'{"rootfs":{"type":"layers","diff_ids":["nope"]}}', "diff_ids"),
    (json.dumps({"rootfs": {"type": "layers", "diff_ids": [D1]},
                 "history": [{"created_by": "a"}, {"created_by": "b"}]}).encode(), "too many non-empty layers"),
], ids=["empty bytes are refused", "a config without rootfs is refused", "a bad diff_id is refused",
        "more layer-making history entries than layers is refused"])
def test_put_refuses_what_is_not_an_image_config(store: ImageStore, data: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        store.put(data)
    assert store.ids() == []


def test_a_tampered_config_is_data_loss_and_check_reports_it(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    path = os.path.join(store.content_dir, image_id.hex)
    with open(path, "r+b") as handle:
        handle.seek(5)
        handle.write(b"X")
    with pytest.raises(errdefs.DataLoss, match=image_id.hex):
        store.get(image_id)
    with pytest.raises(errdefs.DataLoss):
        store.get_config(image_id)
    problems = store.check()
    assert len(problems) == 1 and "damaged" in problems[0]
    # putting the genuine bytes again repairs it
    assert store.put(config_bytes(1)) == image_id
    assert store.check() == []


def test_a_config_replaced_by_different_valid_json_is_also_data_loss(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    with open(os.path.join(store.content_dir, image_id.hex), "wb") as handle:
        handle.write(config_bytes(2))
    with pytest.raises(errdefs.DataLoss):
        store.get(image_id)


def test_missing_images_are_not_found(store: ImageStore) -> None:
    with pytest.raises(errdefs.NotFound, match="No such image"):
        store.get("sha256:" + "a" * 64)
    assert not store.exists("sha256:" + "a" * 64)
    assert not store.exists("not an id")
    with pytest.raises(errdefs.NotFound):
        store.delete("sha256:" + "a" * 64)
    with pytest.raises(errdefs.InvalidArgument):
        store.get("sha512:" + "a" * 128)


def _ids_sharing_a_first_character(store: ImageStore) -> tuple[list[Digest], Digest]:
    ids = [store.put(config_bytes(number)) for number in range(40)]
    by_first: dict[str, list[Digest]] = {}
    for image_id in ids:
        by_first.setdefault(image_id.hex[0], []).append(image_id)
    shared = next(group for group in by_first.values() if len(group) > 1)
    return shared, ids[0]


def test_short_ids_resolve_like_docker(store: ImageStore) -> None:
    shared, some_id = _ids_sharing_a_first_character(store)
    assert store.search(some_id) == some_id
    assert store.search(some_id.hex) == some_id
    assert store.search(some_id.hex[:12]) == some_id
    assert store.search("sha256:" + some_id.hex[:12]) == some_id
    with pytest.raises(errdefs.InvalidArgument, match="ambiguous"):
        store.search(shared[0].hex[0])
    with pytest.raises(errdefs.InvalidArgument, match="ambiguous"):
        store.search("sha256:" + shared[0].hex[0])


@pytest.mark.parametrize("prefix", ["", "xyz", "ABC", "busybox", "0" * 65],
                         ids=["an empty prefix", "non-hex text", "uppercase hex", "a name", "too long"])
def test_search_of_something_that_is_no_id_prefix_is_not_found(store: ImageStore, prefix: str) -> None:
    store.put(config_bytes(1))
    with pytest.raises(errdefs.NotFound, match="No such image"):
        store.search(prefix)


def test_search_without_a_match_is_not_found_with_dockers_message(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    other = "0" if image_id.hex[0] != "0" else "1"
    with pytest.raises(errdefs.NotFound) as caught:
        store.search(other + "abc")
    assert str(caught.value) == f"No such image: {other}abc"


def test_parent_children_and_delete_unlinks_children(store: ImageStore) -> None:
    parent = store.put(config_bytes(1))
    child = store.put(config_bytes(2))
    other = store.put(config_bytes(3))
    assert store.get_parent(child) is None
    store.set_parent(child, parent)
    store.set_parent(other, parent)
    assert store.get_parent(child) == parent
    with open(os.path.join(store.metadata_dir, child.hex, "parent"), "rb") as handle:
        assert handle.read() == str(parent).encode()
    assert sorted(store.children(parent)) == sorted([child, other])
    store.delete(parent)
    assert not store.exists(parent)
    assert store.get_parent(child) is None and store.get_parent(other) is None
    assert not os.path.exists(os.path.join(store.metadata_dir, parent.hex))
    assert store.check() == []


def test_metadata_needs_existing_images(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    missing = "sha256:" + "e" * 64
    with pytest.raises(errdefs.NotFound, match="unknown parent"):
        store.set_parent(image_id, missing)
    with pytest.raises(errdefs.NotFound):
        store.set_last_updated(missing)
    with pytest.raises(errdefs.InvalidArgument):
        store.set_parent(image_id, image_id)


def test_last_updated_is_rfc3339_nano_and_built_locally_is_a_flag(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    assert store.get_last_updated(image_id) is None
    before = time.time_ns()
    store.set_last_updated(image_id)
    text = store.get_last_updated(image_id)
    assert text is not None and text.endswith("Z")
    assert before - 1_000_000 <= parse_time(text) <= time.time_ns()
    store.set_last_updated(image_id, 1_500_000_000)
    assert store.get_last_updated(image_id) == "1970-01-01T00:00:01.5Z"
    assert store.is_built_locally(image_id) is False
    store.set_built_locally(image_id)
    assert store.is_built_locally(image_id) is True
    assert stat.S_IMODE(os.stat(os.path.join(store.metadata_dir, image_id.hex, "lastUpdated")).st_mode) == 0o600


def test_a_damaged_parent_record_is_data_loss(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    os.makedirs(os.path.join(store.metadata_dir, image_id.hex))
    with open(os.path.join(store.metadata_dir, image_id.hex, "parent"), "w") as handle:
        handle.write("garbage")
    with pytest.raises(errdefs.DataLoss):
        store.get_parent(image_id)
    assert any("parent" in problem for problem in store.check())


def test_check_reports_leftovers_and_sweep_removes_only_old_ones(store: ImageStore) -> None:
    image_id = store.put(config_bytes(1))
    temporary = os.path.join(store.content_dir, ".tmp-" + image_id.hex + "-deadbeef")
    with open(temporary, "wb") as handle:
        handle.write(b"partial")
    orphan = os.path.join(store.metadata_dir, "f" * 64)
    os.makedirs(orphan)
    stray = os.path.join(store.content_dir, "notes.txt")
    with open(stray, "w") as handle:
        handle.write("x")
    problems = store.check()
    assert any("stray temporary file" in problem for problem in problems)
    assert any("belongs to no image" in problem for problem in problems)
    assert any("unexpected file" in problem for problem in problems)
    assert store.ids() == [image_id]

    assert store.sweep() == [], "young leftovers may belong to a writer in another process"
    old = time.time() - 3600
    os.utime(temporary, (old, old))
    os.utime(orphan, (old, old))
    removed = store.sweep()
    assert sorted(removed) == sorted([temporary, orphan])
    assert store.get(image_id) == config_bytes(1)


def test_an_image_written_by_another_store_instance_is_visible_at_once(tmp_path) -> None:
    first = ImageStore(str(tmp_path))
    second = ImageStore(str(tmp_path))
    image_id = first.put(config_bytes(1))
    assert second.exists(image_id) and second.search(image_id.hex[:8]) == image_id
    second.delete(image_id)
    assert not first.exists(image_id)


def test_the_stores_satisfy_the_protocols_of_api(tmp_path) -> None:
    import inspect

    from lamina.image import api
    from lamina.image.refstore import ReferenceStore

    for protocol, implementation in ((api.ImageConfigs, ImageStore), (api.References, ReferenceStore)):
        for name, member in vars(protocol).items():
            if name.startswith("_") or not callable(member):
                continue
            assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
            wanted = list(inspect.signature(member).parameters)
            assert list(inspect.signature(getattr(implementation, name)).parameters) == wanted, name


def test_the_stamp_changes_with_the_image_set_and_parent_links(store: ImageStore, monkeypatch) -> None:
    monkeypatch.setattr("lamina.fsutil.SETTLED_NANOSECONDS", 100_000_000)

    def settled() -> tuple[int, int, int, int]:
        time.sleep(0.15)
        stamp = store.stamp()
        assert stamp is not None and store.stamp() == stamp
        return stamp

    seen = [settled()]
    first = store.put(config_bytes(1))
    assert store.stamp() is None, "a directory changed less than a second ago is not trusted"
    seen.append(settled())
    second = store.put(config_bytes(2))
    seen.append(settled())
    store.set_parent(second, first)
    seen.append(settled())
    store.set_last_updated(first)  # not shown by a listing: may leave the stamp
    store.put(config_bytes(2))  # already stored: nothing changes
    assert settled() == seen[-1]
    store.delete(first)  # the child loses its parent link too
    assert store.get_parent(second) is None
    seen.append(settled())
    assert len(set(seen)) == len(seen)
