"""The image list kept in memory (``lamina.services.image_listing``): answered again from memory
while the image store is unchanged, and rebuilt after every kind of change, also one made by
another process on the same data root.

The stores trust a stamp a second after it changed; the tests shorten that to 0.2 s (the
kernel's timestamp tick is at most 10 ms) so that a stale answer, if one were kept, would be
served by the listing that follows a change."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from typing import Any

import pytest

from lamina import errdefs
from lamina.image.config import ContainerConfig
from lamina.image.reference import parse_normalized_named
from lamina.services.image_listing import ImageListing

SETTLED_NANOSECONDS = 200_000_000
QUERIES: list[dict[str, Any]] = [
    {}, {"all": True}, {"digests": True}, {"all": True, "digests": True},
    {"filters": {"dangling": ["true"]}}, {"filters": {"reference": ["listed*"]}},
    {"filters": {"label": ["n"]}}, {"all": True, "filters": {"dangling": ["false"]}},
]


@pytest.fixture
def settle(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    monkeypatch.setattr("lamina.fsutil.SETTLED_NANOSECONDS", SETTLED_NANOSECONDS)

    def wait() -> None:
        time.sleep(SETTLED_NANOSECONDS / 1e9 + 0.05)
    return wait


def new_listing(images: Any) -> ImageListing:
    """The listing of a new process on the same stores (nothing in memory; it reads the index)."""
    return ImageListing(images=images.images, references=images.references, layers=images.layers)


def fresh_answers(images: Any) -> list[bytes]:
    """What a listing built from the records alone answers to every query."""
    listing = new_listing(images)
    entries = listing.from_records()
    return [json.dumps(listing._summaries(entries, images.resolve, query.get("all", False), query.get("filters", {}),
                                          query.get("digests", False)),
                       ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for query in QUERIES]


def new_process_answers(images: Any) -> list[bytes]:
    listing = new_listing(images)
    return [listing.encoded(resolve=images.resolve, **query) for query in QUERIES]


def answers(images: Any) -> list[bytes]:
    return [images.list_images_json(**query) for query in QUERIES]


def commit(images: Any, parent: str, label: str, tag: str | None) -> str:
    return str(images.commit(None, parent=parent, config=ContainerConfig(labels={"n": label}),
                             container_config=ContainerConfig(),
                             reference=parse_normalized_named(tag) if tag else None))


def _child_of_busybox(engine: Any, settle: Callable[[], None]) -> tuple[Any, str, str]:
    """(the image service, busybox's id, a child committed on it as ``listed:1``), settled."""
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    child = commit(images, busybox, "1", "listed:1")
    settle()
    return images, busybox, child


def filesystem_tar() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        entry = tarfile.TarInfo("hello")
        entry.size = 5
        archive.addfile(entry, io.BytesIO(b"hello"))
    return data.getvalue()


def test_the_list_is_answered_from_memory_while_the_store_is_unchanged(engine, settle) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    commit(images, busybox, "1", "listed:1")
    first = images.list_images_json()
    assert images.list_images_json() is not first, "a store changed less than a second ago is not trusted"
    settle()
    kept = images.list_images_json()
    assert images.list_images_json() is kept
    assert kept == first
    assert [image["RepoTags"] for image in json.loads(kept)] == [["listed:1"], ["busybox:latest"]]


def test_the_list_is_newest_first(engine) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    made = [commit(images, busybox, str(number), f"listed:{number}") for number in range(3)]
    listed = json.loads(images.list_images_json())
    assert [image["Created"] for image in listed] == sorted((image["Created"] for image in listed), reverse=True)
    same_second = [image["Id"] for image in listed if image["Id"] in made]
    created = {image["Id"]: image["Created"] for image in listed}
    assert same_second == sorted(made, key=lambda image_id: (created[image_id], image_id), reverse=True)
    assert listed == images.list_images()


def _tag(images: Any, state: dict[str, str]) -> None:
    images.tag_image(state["child"], "listed", "again")


def _retag(images: Any, state: dict[str, str]) -> None:
    images.tag_image(state["busybox"], "listed", "1")  # the tag moves; the child is left dangling


def _untag(images: Any, state: dict[str, str]) -> None:
    images.tag_image(state["child"], "listed", "2")
    images.remove_image("listed:1")


def _remove(images: Any, state: dict[str, str]) -> None:
    images.remove_image(state["child"], force=True)


def _remove_a_parent(images: Any, state: dict[str, str]) -> None:
    grandchild = commit(images, state["child"], "3", "listed:3")
    images.remove_image("listed:1")  # untagged, not deleted: it has a child
    images.remove_image(grandchild, force=True)  # prunes the untagged parent with it


def _set_a_parent(images: Any, state: dict[str, str]) -> None:
    # what a build cache hit does to an image that exists: only its parent record changes
    orphan = commit(images, "", "orphan", "orphan:1")
    time.sleep(SETTLED_NANOSECONDS / 1e9 + 0.05)
    assert images.list_images_json(all=True) == images.list_images_json(all=True)
    images.images.set_parent(orphan, state["child"])


def _add_a_digest(images: Any, state: dict[str, str]) -> None:
    images.references.add_digest(parse_normalized_named("listed@sha256:" + "d" * 64), state["child"])


def _commit(images: Any, state: dict[str, str]) -> None:
    commit(images, state["child"], "2", None)  # untagged child of a tagged image: shown with --all


def _import(images: Any, state: dict[str, str]) -> None:
    images.import_image(io.BytesIO(filesystem_tar()), repository="imported", tag="1", progress=lambda message: None)


def _load(images: Any, state: dict[str, str]) -> None:
    archive = b"".join(images.save(["listed:1"]))
    images.remove_image(state["child"], force=True)
    images.load(io.BytesIO(archive), progress=lambda message: None)


def _prune(images: Any, state: dict[str, str]) -> None:
    images.tag_image(state["busybox"], "listed", "1")
    images.prune_images()


CHANGES = {
    "a tag added": _tag,
    "a tag moved to another image": _retag,
    "a tag removed": _untag,
    "an image removed": _remove,
    "an untagged parent pruned with its child": _remove_a_parent,
    "a parent recorded for an existing image": _set_a_parent,
    "a digest reference added": _add_a_digest,
    "an image committed": _commit,
    "an image imported": _import,
    "an image loaded": _load,
    "dangling images pruned": _prune,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=list(CHANGES))
def test_every_change_shows_in_the_next_list(engine, settle, change) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    state = {"busybox": busybox, "child": commit(images, busybox, "1", "listed:1")}
    settle()
    before = answers(images)
    assert answers(images) == before and images.list_images_json() is images.list_images_json()
    assert new_process_answers(images) == before  # from the index written under the same stamp
    change(images, state)
    assert answers(images) == fresh_answers(images)
    settle()
    assert new_process_answers(images) == fresh_answers(images)  # the index of the old stamp is not used
    after = answers(images)
    assert after == fresh_answers(images)
    assert after != before


OTHER_PROCESS = (
    "import sys\n"
    "from lamina.config import EngineConfig\n"
    "from lamina.services.compose import build_services\n"
    "images = build_services(EngineConfig(data_root=sys.argv[1], exec_root=sys.argv[2])).images\n"
    "if sys.argv[3] == 'tag':\n"
    "    images.tag_image(sys.argv[4], 'other', 'process')\n"
    "else:\n"
    "    images.images.set_parent(sys.argv[4], sys.argv[5])\n"
)


def test_changes_made_by_another_process_show_in_the_next_list(engine, settle) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    child = commit(images, busybox, "1", "listed:1")
    orphan = commit(images, "", "orphan", None)

    def other_process(*arguments: str) -> dict[str, dict[str, Any]]:
        settle()
        kept = images.list_images_json(all=True)
        assert images.list_images_json(all=True) is kept
        subprocess.run([sys.executable, "-c", OTHER_PROCESS, engine.config.data_root, engine.config.exec_root,
                        *arguments], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        settle()
        answer = images.list_images_json(all=True)
        assert answer == fresh_answers(images)[1]
        return {image["Id"]: image for image in json.loads(answer)}

    assert other_process("tag", child)[child]["RepoTags"] == ["listed:1", "other:process"]
    assert other_process("parent", orphan, child)[orphan]["ParentId"] == child


def test_a_damaged_repositories_file_is_reported_not_listed_from_memory(engine, settle) -> None:
    images = engine.services.images
    settle()
    assert json.loads(images.list_images_json())[0]["RepoTags"] == ["busybox:latest"]
    with open(images.references.path, "wb") as handle:
        handle.write(b"{\x00damaged")
    settle()
    with pytest.raises(errdefs.DataLoss, match="damaged"):
        images.list_images_json()


def test_filters_answer_like_a_fresh_listing_and_bad_ones_are_refused(engine, settle) -> None:
    images, busybox, child = _child_of_busybox(engine, settle)
    for query in ({"filters": {"before": ["listed:1"]}}, {"filters": {"since": ["busybox"]}}):
        assert images.list_images_json(**query) == images.list_images_json(**query)
    assert [image["Id"] for image in json.loads(images.list_images_json(filters={"since": ["busybox"]}))] == [child]
    assert [image["Id"] for image in json.loads(images.list_images_json(filters={"before": ["listed:1"]}))] == [busybox]
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'colour'"):
        images.list_images_json(filters={"colour": ["red"]})
    with pytest.raises(errdefs.NotFound):
        images.list_images_json(filters={"before": ["missing:1"]})


def test_a_damaged_image_is_left_out_with_a_warning_and_reported_by_check(engine, caplog) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    child = commit(images, busybox, "1", "listed:1")
    with open(os.path.join(images.images.content_dir, child[len("sha256:"):]), "r+b") as handle:
        handle.write(b"[")  # same size, other bytes: the config no longer hashes to its id
    listed = json.loads(images.list_images_json(all=True))
    assert [image["Id"] for image in listed] == [busybox]
    assert any("is not listed" in record.getMessage() and child in record.getMessage() for record in caplog.records)
    assert any(child in problem["Message"] for problem in engine.services.system.check()["Problems"])
    usage = engine.services.system.disk_usage()
    assert [image["Id"] for image in usage["Images"]] == [busybox]


def test_a_new_process_reads_the_index_instead_of_the_records(engine, settle, monkeypatch) -> None:
    images, busybox, child = _child_of_busybox(engine, settle)
    expected = images.list_images_json(all=True)
    assert os.path.exists(images.listing.index.path)

    def unread(*arguments: Any, **options: Any) -> Any:
        raise AssertionError("the records were read")
    for name in ("ids", "get_config", "get_parent"):
        monkeypatch.setattr(images.images, name, unread)
    monkeypatch.setattr(images.references, "all", unread)
    assert new_listing(images).encoded(resolve=images.resolve, all=True) == expected


def test_a_damaged_index_is_rebuilt_and_reported_by_check(engine, settle, caplog) -> None:
    images, busybox, child = _child_of_busybox(engine, settle)
    expected = images.list_images_json(all=True)
    system = engine.services.system
    assert system.check() == {"Problems": [], "Repaired": []}
    path = images.listing.index.path
    with open(path, "wb") as handle:
        handle.write(b"\x00 not json")
    problems = system.check()["Problems"]
    assert [(problem["Kind"], problem["Object"]) for problem in problems] == [("image", "imagedb/listing.json")]
    assert "is damaged" in problems[0]["Message"]
    assert new_listing(images).encoded(resolve=images.resolve, all=True) == expected
    assert any("rebuilding it" in record.getMessage() for record in caplog.records)
    assert system.check() == {"Problems": [], "Repaired": []}, "the listing rewrote it"


def test_check_finds_an_index_that_describes_images_otherwise_and_repair_rewrites_it(engine, settle) -> None:
    images, busybox, child = _child_of_busybox(engine, settle)
    images.list_images_json()
    path = images.listing.index.path
    with open(path, "rb") as handle:
        document = json.load(handle)
    for entry in document["Images"]:
        if entry["Id"] == child:
            entry["RepoTags"] = ["forged:1"]
    with open(path, "w") as handle:
        json.dump(document, handle)
    system = engine.services.system
    problems = system.check()["Problems"]
    assert [problem["Message"] for problem in problems] == [
        f"the image listing index {path} describes {child} otherwise than its records"]
    answer = system.check(repair=True)
    assert answer == {"Problems": [], "Repaired": [f"rewrote the image listing index {path}"]}
    tags = {image["Id"]: image["RepoTags"] for image in json.loads(new_process_answers(images)[1])}
    assert tags[child] == ["listed:1"]


def test_an_index_entry_of_the_wrong_shape_is_damage(engine, settle) -> None:
    images = engine.services.images
    settle()
    images.list_images_json()
    path = images.listing.index.path
    with open(path, "rb") as handle:
        document = json.load(handle)
    document["Images"][0]["Size"] = "big"
    with open(path, "w") as handle:
        json.dump(document, handle)
    assert "is damaged" in engine.services.system.check()["Problems"][0]["Message"]
    assert json.loads(new_process_answers(images)[0])[0]["RepoTags"] == ["busybox:latest"]
