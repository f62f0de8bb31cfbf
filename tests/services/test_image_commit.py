"""The image service's commit (Docker's ``CommitImage``), which ``docker commit`` and every
build step go through: a read-write layer's changes become an image on top of its parent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lamina.digest import chain_ids
from lamina.image.config import EMPTY_LAYER_DIFF_ID, ContainerConfig
from lamina.image.reference import parse_normalized_named


@pytest.fixture
def layer(engine) -> Iterator[str]:
    """A read-write layer on busybox, named as the builder names its own."""
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    top = images.images.get_config(busybox).chain_id()
    engine.services.mounts.create("test-commit-1", str(top))
    try:
        yield "test-commit-1"
    finally:
        engine.services.mounts.remove("test-commit-1")


def write(engine, layer: str, name: str, data: bytes) -> None:
    root = engine.services.mounts.mount(layer)
    try:
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(data)
    finally:
        engine.services.mounts.unmount(layer)


def test_the_changes_of_a_layer_become_an_image_on_its_parent_tagged_and_linked(engine, layer) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    write(engine, layer, "hello", b"hi\n")
    stored: list[str] = []
    image_id = images.commit(layer, parent=busybox, config=ContainerConfig(cmd=("cat", "/hello")),
                             container_config=ContainerConfig(cmd=("/bin/sh", "-c", "echo hi > /hello")),
                             author="me", comment="a comment", reference=parse_normalized_named("made:v1"),
                             stored=lambda image: stored.append(str(image)))
    assert stored == [str(image_id)]
    assert str(images.resolve("made:v1")) == str(image_id)
    assert str(images.images.get_parent(str(image_id))) == busybox
    parent, child = images.images.get_config(busybox), images.images.get_config(str(image_id))
    assert child.rootfs_diff_ids[:-1] == parent.rootfs_diff_ids and len(child.rootfs_diff_ids) == 2
    assert images.layers.exists(str(child.chain_id()))
    last = child.history[-1]
    assert (last.author, last.comment, last.created_by, last.empty_layer) == (
        "me", "a comment", "/bin/sh -c echo hi > /hello", False)
    assert not images.images.is_built_locally(str(image_id))


def test_an_unchanged_layer_adds_an_empty_history_entry_and_keeps_no_layer(engine, layer) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    layers_before = set(images.layers.chain_ids())
    image_id = images.commit(layer, parent=busybox, config=ContainerConfig(), container_config=ContainerConfig(),
                             built_locally=True)
    child = images.images.get_config(str(image_id))
    assert child.rootfs_diff_ids == images.images.get_config(busybox).rootfs_diff_ids
    assert child.history[-1].empty_layer
    assert images.images.is_built_locally(str(image_id))
    assert set(images.layers.chain_ids()) == layers_before  # the empty diff registered nothing that stays
    assert EMPTY_LAYER_DIFF_ID not in child.rootfs_diff_ids


def test_a_removed_parent_is_stood_for_by_the_layers_below_the_read_write_layer(engine, layer) -> None:
    images = engine.services.images
    busybox_layers = images.images.get_config(str(images.resolve("busybox"))).rootfs_diff_ids
    write(engine, layer, "x", b"x")
    gone = "sha256:" + "0" * 64
    image_id = images.commit(layer, parent=gone, config=ContainerConfig(), container_config=ContainerConfig())
    child = images.images.get_config(str(image_id))
    assert child.rootfs_diff_ids[:-1] == busybox_layers
    assert len(child.history) == len(busybox_layers) + 1
    assert images.images.get_parent(str(image_id)) is None


def test_a_commit_that_fails_releases_the_layer_it_registered(engine, layer, monkeypatch) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    write(engine, layer, "lost", b"never stored\n")
    layers_before = set(images.layers.chain_ids())

    def refuse(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.images, "put", refuse)
    with pytest.raises(OSError):
        images.commit(layer, parent=busybox, config=ContainerConfig(), container_config=ContainerConfig())
    assert set(images.layers.chain_ids()) == layers_before
    top = images.images.get_config(busybox).diff_ids
    assert set(chain_ids(top)) <= layers_before
