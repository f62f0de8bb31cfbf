"""Ready read-write layers (lamina.layer.mounts): a ``--rm`` container's removal keeps its
layer pair, emptied, for the next disposable container on the same image, which takes it with
one rename.  Nothing of the first container reaches the next; a durable create never takes
one; at most two wait per image; a damaged one is removed; those of a removed image go; and
``system check`` finds nothing wrong with them."""

from __future__ import annotations

import os

from lamina.layer.mounts import READY_DIR, READY_PER_PARENT

from .conftest import Engine


def _ready(engine: Engine) -> list[str]:
    directory = os.path.join(engine.mounts.layers.root, "mounts", READY_DIR)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _ready_mount_ids(engine: Engine) -> set[str]:
    directory = os.path.join(engine.mounts.layers.root, "mounts", READY_DIR)
    ids = set()
    for name in _ready(engine):
        with open(os.path.join(directory, name, "mount-id"), encoding="utf-8") as handle:
            ids.add(handle.read().strip())
    return ids


def _image_cache_ids(engine: Engine) -> list[str]:
    layers = engine.mounts.layers
    return sorted(layers.get(str(chain)).cache_id for chain in layers.chain_ids())


def test_the_next_disposable_container_gets_the_layers_emptied(engine: Engine) -> None:
    assert engine.run_removed("sh", "-c", "echo secret > /etc/leak; mkdir -p /x/y; chmod 700 /") == 0
    engine.wait_for(lambda: len(_ready(engine)) == 1, message="the layers kept for reuse")
    [kept] = _ready_mount_ids(engine)
    second = engine.create("sh", "-c", "test ! -e /etc/leak && test ! -e /x && test $(stat -c %a /) = 755 && "
                           "test -c /dev/null && test -s /etc/hostname", HostConfig={"AutoRemove": True})
    assert engine.mounts.get(second).mount_id == kept  # taken: one rename, no layer made
    assert _ready(engine) == []
    assert engine.start_and_wait(second) == 0
    report = engine.system.check(repair=False)
    assert report["Problems"] == [], report


def test_what_a_container_wrote_is_gone_from_the_layer_kept(engine: Engine) -> None:
    assert engine.run_removed("sh", "-c", "echo secret > /etc/leak") == 0
    engine.wait_for(lambda: len(_ready(engine)) == 1, message="the layers kept for reuse")
    [kept] = _ready_mount_ids(engine)
    diff = engine.mounts.driver.diff_path(kept)
    assert os.listdir(diff) == []
    assert oct(os.stat(diff).st_mode & 0o7777) == oct(0o755)


def test_a_durable_create_makes_its_own_layers(engine: Engine) -> None:
    assert engine.run_removed("true") == 0
    engine.wait_for(lambda: len(_ready(engine)) == 1, message="the layers kept for reuse")
    kept = _ready_mount_ids(engine)
    durable = engine.create("true")
    assert engine.mounts.get(durable).mount_id not in kept
    assert _ready_mount_ids(engine) == kept
    engine.containers.remove(durable)
    assert _ready_mount_ids(engine) == kept  # a durable container's removal keeps nothing


def test_at_most_a_few_wait_per_image_and_the_others_are_removed(engine: Engine) -> None:
    mounts = engine.mounts
    top = str(mounts.layers.chain_ids()[0])
    ids = [f"{n:02d}" * 32 for n in range(READY_PER_PARENT + 1)]
    made = [mounts.create(container_id, top, durable=False).mount_id for container_id in ids]
    for container_id in ids:
        mounts.remove(container_id, durable=False)
    assert len(_ready(engine)) == READY_PER_PARENT
    kept = _ready_mount_ids(engine)
    assert kept < set(made)
    # the one not kept is gone from the driver: only the image's layers and the kept pairs stay
    expected = sorted(_image_cache_ids(engine) + [i for m in kept for i in (m, m + "-init")])
    assert sorted(mounts.driver.list_ids()) == expected
    assert engine.system.check(repair=False)["Problems"] == []


def test_a_damaged_ready_layer_is_removed_and_the_create_makes_its_own(engine: Engine) -> None:
    mounts = engine.mounts
    top = str(mounts.layers.chain_ids()[0])
    first = "aa" * 32
    damaged = mounts.create(first, top, durable=False).mount_id
    mounts.remove(first, durable=False)
    assert _ready_mount_ids(engine) == {damaged}
    os.rmdir(mounts.driver.diff_path(damaged))  # what a host crash may lose: it was not synced
    layer = mounts.create("bb" * 32, top, durable=False)
    assert layer.mount_id != damaged
    assert _ready(engine) == []
    assert not mounts.driver.exists(damaged) and not mounts.driver.exists(damaged + "-init")
    mounts.remove("bb" * 32)
    assert sorted(mounts.driver.list_ids()) == _image_cache_ids(engine)


def test_the_ready_layers_of_a_removed_image_go_with_it(engine: Engine) -> None:
    assert engine.run_removed("true") == 0
    engine.wait_for(lambda: len(_ready(engine)) == 1, message="the layers kept for reuse")
    engine.images.remove_image("busybox")
    assert _ready(engine) == []
    assert engine.mounts.driver.list_ids() == []
    assert engine.system.check(repair=False)["Problems"] == []


def test_two_removals_keeping_at_once_never_leave_more_than_the_bound(engine: Engine, monkeypatch) -> None:
    """The count before the keeping is not locked: a removal that finds one too many after it
    kept its pair (another kept one meanwhile) removes its own."""
    from lamina.layer.mounts import MountStore

    mounts = engine.mounts
    top = str(mounts.layers.chain_ids()[0])
    ids = [f"{n:02d}" * 32 for n in range(READY_PER_PARENT + 1)]
    made = [mounts.create(container_id, top, durable=False).mount_id for container_id in ids]
    for container_id in ids[:READY_PER_PARENT]:
        mounts.remove(container_id, durable=False)
    assert len(_ready(engine)) == READY_PER_PARENT
    counted = MountStore._ready_on
    calls: list[str] = []

    def first_sees_none(self, parent_cache_id):  # the count before the keeping sees none
        calls.append(parent_cache_id)
        return [] if len(calls) == 1 else counted(self, parent_cache_id)

    monkeypatch.setattr(MountStore, "_ready_on", first_sees_none)
    mounts.remove(ids[-1], durable=False)
    assert _ready_mount_ids(engine) == set(made[:READY_PER_PARENT])
    assert not mounts.driver.exists(made[-1]) and not mounts.driver.exists(made[-1] + "-init")
