"""Events emitted by the real services and container monitors, in the order Docker emits them."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from services.conftest import Engine

pytestmark = pytest.mark.privileged


def events(engine: Engine, **filters: str) -> list[dict[str, Any]]:
    return list(engine.services.events.events(since_ns=0, until_ns=time.time_ns(),
                                              filters={key: [value] for key, value in filters.items()}))


def actions(engine: Engine, actor: str, type: str = "container") -> list[str]:
    return [message["Action"] for message in events(engine, type=type) if message["Actor"]["ID"] == actor]


def attributes(engine: Engine, actor: str, action: str) -> dict[str, str]:
    found = [m for m in events(engine) if m["Actor"]["ID"] == actor and m["Action"] == action]
    assert len(found) == 1, found
    return found[0]["Actor"]["Attributes"]


def test_a_run_emits_create_attach_start_die_destroy_in_order(engine) -> None:
    container_id = engine.create("sh", "-c", "exit 3", name="job", Labels={"team": "a"})
    sock = engine.container_streams.attach(container_id, stdin=False, stdout=True, stderr=True)
    engine.containers.start(container_id)
    assert engine.wait(container_id) == 3
    sock.close()
    engine.containers.remove(container_id)
    assert actions(engine, container_id) == ["create", "attach", "start", "die", "destroy"]
    die = attributes(engine, container_id, "die")
    assert die == {"team": "a", "image": "busybox", "name": "job", "exitCode": "3", "execDuration": "0"}
    message = next(m for m in events(engine) if m["Actor"]["ID"] == container_id and m["Action"] == "start")
    assert (message["status"], message["id"], message["from"], message["scope"]) == (
        "start", container_id, "busybox", "local")


def test_an_auto_removed_container_is_destroyed_by_its_monitor(engine) -> None:
    container_id = engine.create("true", HostConfig={"AutoRemove": True})
    engine.start_and_wait(container_id)
    assert actions(engine, container_id) == ["create", "start", "die", "destroy"]


def test_stop_kill_restart_pause_and_rename(engine) -> None:
    # PID 1 ignores a SIGTERM it has no trap for: each stop waits until the run said it has one
    container_id = engine.run("sh", "-c", "trap 'exit 143' TERM; echo trapped; while true; do sleep 0.1; done",
                              name="sleeper")
    engine.wait_for(lambda: engine.output(container_id).count("trapped") == 1, message="the first run's trap")
    engine.containers.pause(container_id)
    engine.containers.unpause(container_id)
    engine.containers.restart(container_id, timeout=5)
    engine.containers.rename(container_id, "dozer")
    engine.wait_for(lambda: engine.output(container_id).count("trapped") == 2, message="the second run's trap")
    engine.containers.stop(container_id, timeout=5)
    engine.containers.start(container_id)
    engine.containers.kill(container_id)
    assert actions(engine, container_id) == [
        "create", "start", "pause", "unpause",
        "kill", "die", "stop", "start", "restart",
        "rename",
        "kill", "die", "stop",
        "start", "kill", "die"]
    found = [m["Actor"]["Attributes"] for m in events(engine, container=container_id)]
    assert [a["signal"] for a in found if "signal" in a] == ["15", "15", "9"]
    assert [a["exitCode"] for a in found if "exitCode" in a] == ["143", "143", "137"]
    assert attributes(engine, container_id, "rename") == {"image": "busybox", "name": "dozer",
                                                           "oldName": "/sleeper"}
    assert found[-1]["name"] == "dozer"


def test_exec_events_carry_the_command_and_exit_code(engine) -> None:
    container_id = engine.run("sleep", "100")
    exec_id = engine.execs.create(container_id, {"Cmd": ["sh", "-c", "exit 7"]})["Id"]
    engine.execs.start(exec_id, detach=True)
    engine.wait_for(lambda: engine.execs.inspect(exec_id)["ExitCode"] is not None, message="the exec's exit")
    engine.wait_for(lambda: "exec_die" in actions(engine, container_id), message="exec_die")
    assert actions(engine, container_id)[-3:] == ["exec_create: sh -c exit 7", "exec_start: sh -c exit 7", "exec_die"]
    assert attributes(engine, container_id, "exec_die")["exitCode"] == "7"
    assert attributes(engine, container_id, "exec_start: sh -c exit 7")["execID"] == exec_id
    assert [m["Action"] for m in events(engine, event="exec_start")] == ["exec_start: sh -c exit 7"]


def test_image_load_tag_untag_commit_delete(engine) -> None:
    busybox = str(engine.services.images.resolve("busybox"))
    assert actions(engine, busybox, "image") == ["load"]
    engine.services.images.tag_image("busybox", "example.org/box", "1.0")
    engine.services.images.remove_image("example.org/box:1.0")
    container_id = engine.run("sh", "-c", "echo hi > /file")
    engine.wait(container_id)
    committed = engine.container_files.commit(container_id, repository="snapshot", comment="take one")["Id"]
    engine.containers.remove(container_id)
    engine.services.images.remove_image("snapshot")
    assert actions(engine, busybox, "image") == ["load", "tag", "untag"]
    assert attributes(engine, busybox, "tag")["name"] == "example.org/box:1.0"
    assert actions(engine, committed, "image") == ["untag", "delete"]
    assert attributes(engine, container_id, "commit") == {
        "image": "busybox", "name": attributes(engine, container_id, "create")["name"], "comment": "take one",
        "imageID": committed, "imageRef": "snapshot:latest"}
    engine.services.images.prune_images()
    assert [m["Actor"]["Attributes"] for m in events(engine, type="image", event="prune")] == [{"reclaimed": "0"}]


def test_volume_events(engine) -> None:
    engine.services.volumes.create("data")
    container_id = engine.run("true", HostConfig={"Binds": ["data:/data"]})
    engine.wait(container_id)
    engine.containers.remove(container_id)
    engine.services.volumes.remove("data")
    assert actions(engine, "data", "volume") == ["create", "mount", "unmount", "destroy"]
    assert attributes(engine, "data", "mount") == {"driver": "local", "container": container_id,
                                                   "destination": "/data", "read/write": "true",
                                                   "propagation": ""}
    anonymous = engine.run("true", HostConfig={"Binds": ["/scratch"]})
    engine.wait(anonymous)
    engine.containers.remove(anonymous, volumes=True)
    volume_actions = [m["Action"] for m in events(engine, type="volume") if m["Actor"]["ID"] != "data"]
    assert volume_actions == ["create", "mount", "unmount", "destroy"]


def test_container_prune_reports_each_destroy_then_the_prune(engine) -> None:
    first, second = engine.run("true"), engine.run("true")
    engine.wait(first)
    engine.wait(second)
    engine.containers.prune()
    pruned = [m for m in events(engine, type="container") if m["Action"] in ("destroy", "prune")]
    assert sorted(m["Actor"]["ID"] for m in pruned[:2]) == sorted([first, second])
    assert pruned[2]["Action"] == "prune" and "reclaimed" in pruned[2]["Actor"]["Attributes"]
    assert os.path.isfile(os.path.join(engine.config.data_root, "events", "events.log"))


def test_a_run_whose_monitor_died_is_reported_as_a_die_with_255(engine) -> None:
    container_id = engine.run("sleep", "100")
    monitor = engine.run_dir(container_id).monitor_pid()
    assert monitor
    os.kill(monitor, signal.SIGKILL)
    engine.wait_for(lambda: not engine.run_dir(container_id).monitor_alive(), message="the monitor's end")
    assert engine.state(container_id)["ExitCode"] == 255
    assert actions(engine, container_id) == ["create", "start", "die"]
    assert attributes(engine, container_id, "die")["exitCode"] == "255"
