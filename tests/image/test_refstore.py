"""repositories.json: Docker's bytes, tag/digest rules, and writers in several processes."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time

import pytest

from lamina import errdefs
from lamina.image.reference import parse_normalized_named
from lamina.image.refstore import ReferenceStore

IMAGE_A = "sha256:657c25c9202d852638f95a0f738d8582b72f68be37cf845fec02f34fb0f8d6ed"
IMAGE_B = "sha256:" + "b" * 64
MANIFEST = "sha256:" + "3" * 64

# What moby's reference store writes (json.Marshal of the store: one line, keys sorted,
# familiar names outside, familiar strings inside) after
#   docker pull busybox@<digest>; docker tag <a> busybox; docker tag <a> localhost:5000/app:1;
#   docker import - my/img; docker tag <b> registry.example.com:5000/team/tool:v1.2
DOCKER_WRITTEN = (
    '{"Repositories":{'
    f'"busybox":{{"busybox:latest":"{IMAGE_A}","busybox@{MANIFEST}":"{IMAGE_A}"}},'
    f'"localhost:5000/app":{{"localhost:5000/app:1":"{IMAGE_A}"}},'
    f'"my/img":{{"my/img:latest":"{IMAGE_B}"}},'
    f'"registry.example.com:5000/team/tool":{{"registry.example.com:5000/team/tool:v1.2":"{IMAGE_B}"}}'
    '}}'
).encode()


def ref(text: str):
    return parse_normalized_named(text)


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "image" / "overlay2" / "repositories.json")


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_a_docker_written_file_reads_with_normalised_references(path: str) -> None:
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(DOCKER_WRITTEN)
    store = ReferenceStore(path)
    assert store.get(ref("busybox")) == IMAGE_A
    assert store.get(ref("docker.io/library/busybox:latest")) == IMAGE_A
    assert store.get(ref(f"index.docker.io/library/busybox@{MANIFEST}")) == IMAGE_A
    assert store.get(ref("my/img")) == IMAGE_B
    assert [r.string() for r in store.references(IMAGE_A)] == [
        "docker.io/library/busybox:latest",
        f"docker.io/library/busybox@{MANIFEST}",
        "localhost:5000/app:1",
    ]
    assert store.all() == {
        "docker.io/library/busybox:latest": IMAGE_A,
        f"docker.io/library/busybox@{MANIFEST}": IMAGE_A,
        "localhost:5000/app:1": IMAGE_A,
        "docker.io/my/img:latest": IMAGE_B,
        "registry.example.com:5000/team/tool:v1.2": IMAGE_B,
    }
    assert store.check() == []


def test_the_same_references_written_in_any_order_give_dockers_bytes(path: str) -> None:
    store = ReferenceStore(path)
    store.add_tag(ref("registry.example.com:5000/team/tool:v1.2"), IMAGE_B)
    store.add_tag(ref("docker.io/my/img"), IMAGE_B)
    store.add_tag(ref("localhost:5000/app:1"), IMAGE_A)
    store.add_digest(ref(f"busybox@{MANIFEST}"), IMAGE_A)
    store.add_tag(ref("busybox"), IMAGE_A)
    assert read(path) == DOCKER_WRITTEN
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # and a change that is undone gives the same bytes again
    store.add_tag(ref("extra:1"), IMAGE_B)
    assert store.delete(ref("extra:1")) is True
    assert read(path) == DOCKER_WRITTEN


def test_an_empty_store_reads_as_empty_and_writes_nothing_until_changed(path: str) -> None:
    store = ReferenceStore(path)
    assert store.all() == {} and store.references(IMAGE_A) == []
    with pytest.raises(errdefs.NotFound, match="No such image: busybox:latest"):
        store.get(ref("busybox"))
    assert store.delete(ref("busybox")) is False
    assert not os.path.exists(path)


def test_a_tag_moves_when_forced_and_conflicts_otherwise(path: str) -> None:
    store = ReferenceStore(path)
    store.add_tag(ref("app:1"), IMAGE_A)
    store.add_tag(ref("app:1"), IMAGE_A, force=False)  # unchanged: fine
    with pytest.raises(errdefs.Conflict, match="Tag app:1 is already set to image"):
        store.add_tag(ref("app:1"), IMAGE_B, force=False)
    assert store.get(ref("app:1")) == IMAGE_A
    store.add_tag(ref("app:1"), IMAGE_B)
    assert store.get(ref("app:1")) == IMAGE_B
    assert store.references(IMAGE_A) == []


def test_a_digest_reference_never_moves(path: str) -> None:
    store = ReferenceStore(path)
    store.add_digest(ref(f"app@{MANIFEST}"), IMAGE_A)
    store.add_digest(ref(f"app@{MANIFEST}"), IMAGE_A)  # the same pair again: fine
    for force in (False, True):
        with pytest.raises(errdefs.Conflict, match="Cannot overwrite digest"):
            store.add_digest(ref(f"app@{MANIFEST}"), IMAGE_B, force=force)
    assert store.get(ref(f"app@{MANIFEST}")) == IMAGE_A


def test_a_reference_with_tag_and_digest_is_stored_and_found_by_its_digest(path: str) -> None:
    store = ReferenceStore(path)
    store.add_digest(ref(f"app:1@{MANIFEST}"), IMAGE_A)
    assert [r.familiar_string() for r in store.references(IMAGE_A)] == [f"app@{MANIFEST}"]
    assert store.get(ref(f"app:other@{MANIFEST}")) == IMAGE_A
    assert store.delete(ref(f"app:1@{MANIFEST}")) is True
    assert store.all() == {}


@pytest.mark.parametrize("reference, method, message", [
    (f"app@{MANIFEST}", "add_tag", "refusing to create a tag with a digest reference"),
    ("app:1", "add_digest", "is not a digest reference"),
    ("sha256:abc", "add_tag", "refusing to create an ambiguous tag using digest algorithm as name"),
], ids=["a digest reference cannot be a tag", "a tag cannot be a digest reference",
        "a repository named sha256 is refused"])
def test_references_of_the_wrong_kind_are_refused(path: str, reference: str, method: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        getattr(ReferenceStore(path), method)(ref(reference), IMAGE_A)


def test_delete_image_removes_every_reference_and_empty_repositories(path: str) -> None:
    store = ReferenceStore(path)
    store.add_tag(ref("a:1"), IMAGE_A)
    store.add_tag(ref("a:2"), IMAGE_B)
    store.add_tag(ref("b"), IMAGE_A)
    store.add_digest(ref(f"b@{MANIFEST}"), IMAGE_A)
    removed = store.delete_image(IMAGE_A)
    assert [r.familiar_string() for r in removed] == ["a:1", "b:latest", f"b@{MANIFEST}"]
    assert store.all() == {"docker.io/library/a:2": IMAGE_B}
    assert read(path) == f'{{"Repositories":{{"a":{{"a:2":"{IMAGE_B}"}}}}}}'.encode()


def test_references_by_name_lists_one_repository(path: str) -> None:
    store = ReferenceStore(path)
    store.add_tag(ref("a:2"), IMAGE_B)
    store.add_tag(ref("a:1"), IMAGE_A)
    store.add_tag(ref("other"), IMAGE_A)
    pairs = store.references_by_name(ref("docker.io/library/a:whatever"))
    assert [(r.familiar_string(), image_id) for r, image_id in pairs] == [("a:1", IMAGE_A), ("a:2", IMAGE_B)]


def test_a_damaged_file_is_data_loss_and_is_not_overwritten(path: str) -> None:
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b'{"Repositories":{"busybox":')
    store = ReferenceStore(path)
    with pytest.raises(errdefs.DataLoss):
        store.all()
    with pytest.raises(errdefs.DataLoss):
        store.add_tag(ref("x"), IMAGE_A)
    assert read(path) == b'{"Repositories":{"busybox":'
    assert store.check() and "damaged" in store.check()[0]


def test_check_reports_entries_docker_could_not_use(path: str) -> None:
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(f'{{"Repositories":{{"a":{{"a:1":"not-an-id","b:1":"{IMAGE_A}","Bad Key":"{IMAGE_A}"}}}}}}'.encode())
    problems = ReferenceStore(path).check()
    assert len(problems) == 3
    assert ReferenceStore(path).all() == {"docker.io/library/b:1": IMAGE_A}


def test_a_second_store_instance_sees_changes_at_once(path: str) -> None:
    first, second = ReferenceStore(path), ReferenceStore(path)
    first.add_tag(ref("a"), IMAGE_A)
    assert second.get(ref("a")) == IMAGE_A
    second.add_tag(ref("a"), IMAGE_B)
    assert first.get(ref("a")) == IMAGE_B


def _add_tags(path: str, prefix: str, count: int) -> None:
    store = ReferenceStore(path)
    for number in range(count):
        store.add_tag(ref(f"{prefix}:{number}"), IMAGE_A if number % 2 else IMAGE_B)
        store.add_tag(ref("shared:moving"), IMAGE_A)


def test_two_processes_adding_tags_at_once_lose_none(path: str) -> None:
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_add_tags, args=(path, prefix, 40)) for prefix in ("left", "right")]
    for writer in writers:
        writer.start()
    reader = ReferenceStore(path)
    seen = 0
    deadline = time.monotonic() + 60
    while any(writer.is_alive() for writer in writers):
        seen = max(seen, len(reader.all()))  # a reader never sees a half-written file
        assert time.monotonic() < deadline, "the two tag writers did not finish within 60 s"
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    everything = ReferenceStore(path).all()
    for prefix in ("left", "right"):
        for number in range(40):
            assert f"docker.io/library/{prefix}:{number}" in everything
    assert len(everything) == 81
    assert len(reader.all()) >= seen
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".tmp-")]


def test_a_file_rewritten_within_a_second_is_read_again_though_its_inode_size_and_mtime_match(path: str) -> None:
    """A rename can reuse the inode of the file it replaced a rename earlier, within one timestamp
    tick: only a file a second old is served from the parsed copy (git's "racily clean")."""
    store = ReferenceStore(path)
    store.add_tag(ref("busybox"), IMAGE_A)
    assert store.get(ref("busybox")) == IMAGE_A
    before = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read().replace(IMAGE_A.encode(), IMAGE_B.encode())
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert store.get(ref("busybox")) == IMAGE_B
    assert store.all() == {"docker.io/library/busybox:latest": IMAGE_B}


def test_the_stamp_is_none_while_the_file_is_young_and_changes_with_it(path: str, monkeypatch) -> None:
    monkeypatch.setattr("lamina.fsutil.SETTLED_NANOSECONDS", 100_000_000)
    store = ReferenceStore(path)
    missing = store.stamp()
    assert missing is not None and missing == store.stamp()
    store.add_tag(ref("busybox"), IMAGE_A)
    assert store.stamp() is None
    time.sleep(0.15)
    first = store.stamp()
    assert first is not None and first != missing and store.stamp() == first
    assert store.all() is not store.all() and store.all() == store.all()  # copies of one parsed answer
    store.add_tag(ref("busybox"), IMAGE_B)
    time.sleep(0.15)
    assert store.stamp() not in (None, first)
    assert store.all() == {"docker.io/library/busybox:latest": IMAGE_B}
