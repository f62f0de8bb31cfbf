"""``system df``, ``info`` and ``system check`` with containers: df lists every container with its
sizes and counts each image's containers (it once reported 0 containers with 1,000 present),
info counts them by state, check verifies the container name index and repair rebuilds it; and
the image listing answered from memory still sees an image removed or changed underneath."""

from __future__ import annotations

import os

from lamina.image.config import ContainerConfig
from lamina.image.reference import parse_normalized_named


def test_system_df_lists_every_container_with_its_sizes(engine) -> None:
    busybox = str(engine.services.images.resolve("busybox"))
    created = [engine.create("true", name=f"df-{number}") for number in range(3)]
    writer = engine.run("sh", "-c", "head -c 70000 /dev/zero > /written")
    assert engine.wait(writer) == 0
    answer = engine.services.system.disk_usage()
    listed = {summary["Id"]: summary for summary in answer["Containers"]}
    assert set(listed) == {*created, writer}
    assert {summary["Names"][0] for summary in answer["Containers"]} >= {"/df-0", "/df-1", "/df-2"}
    image_size = next(image["Size"] for image in answer["Images"] if image["Id"] == busybox)
    assert listed[writer]["SizeRw"] >= 70000
    assert listed[writer]["SizeRootFs"] == listed[writer]["SizeRw"] + image_size
    for container_id in created:
        assert listed[container_id]["SizeRootFs"] == listed[container_id]["SizeRw"] + image_size
    assert next(image["Containers"] for image in answer["Images"] if image["Id"] == busybox) == 4
    info = engine.services.system.info()
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (4, 0, 4)


def test_system_check_verifies_the_container_name_index_and_repair_rebuilds_it(engine) -> None:
    container_id = engine.create("true", name="indexed")
    system = engine.services.system
    assert system.check()["Problems"] == []
    index = os.path.join(engine.config.data_root, "containers", ".names")
    os.unlink(os.path.join(index, "indexed"))
    with open(os.path.join(index, "indexed"), "wb") as handle:
        handle.write(b"\x00garbage")  # a file where the name's link was
    problems = system.check()["Problems"]
    assert [(problem["Kind"], problem["Object"]) for problem in problems] == [("container", "containers/.names")]
    assert problems[0]["Message"] == ("the container name index holds 'indexed', which is not a link from a "
                                      "name to a container id")
    assert engine.container_views.inspect("indexed")["Id"] == container_id  # lookups read past it
    answer = system.check(repair=True)
    assert answer["Problems"] == []
    assert answer["Repaired"] == ["rebuilt the container name index (1 containers)"]
    assert system.check() == {"Problems": [], "Repaired": []}


def test_the_image_listing_from_memory_sees_removals_and_new_images(engine) -> None:
    images = engine.services.images
    busybox = str(images.resolve("busybox"))
    first = images.commit(None, parent=busybox, config=ContainerConfig(labels={"n": "1"}),
                          container_config=ContainerConfig(), reference=parse_normalized_named("listed:1"))
    assert {summary["Id"] for summary in images.list_images()} == {busybox, str(first)}
    again = {summary["Id"]: summary for summary in images.list_images()}
    assert again[str(first)]["Labels"] == {"n": "1"}
    assert again[str(first)]["ParentId"] == busybox
    images.remove_image("listed:1")
    second = images.commit(None, parent=busybox, config=ContainerConfig(labels={"n": "2"}),
                           container_config=ContainerConfig(), reference=parse_normalized_named("listed:2"))
    listed = {summary["Id"]: summary for summary in images.list_images()}
    assert set(listed) == {busybox, str(second)}
    assert listed[str(second)]["RepoTags"] == ["listed:2"]
