"""Commit of a container that exits while commit pauses it (docker-py's ``test_commit`` runs
``touch /test`` and commits at once): Docker commits it as exited instead of failing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.privileged


def test_a_container_that_exits_while_being_paused_is_committed_as_exited(engine) -> None:
    container_id = engine.run("sh", "-c", "echo x > /x; sleep 30", HostConfig={"Init": True})
    engine.wait_for(lambda: any(c["Path"] == "/x" for c in engine.container_files.changes(container_id)),
                    message="the write")
    seen_running = engine.container_files.store.get(container_id)
    assert seen_running.state.get("Running")
    engine.containers.kill(container_id)
    engine.wait(container_id)
    # commit read the container while it ran; its pause then meets a container without cgroup
    assert engine.container_files._pause_for_commit(seen_running) is None
    image_id = engine.container_files.commit(container_id, pause=True)["Id"]
    child = engine.run("cat", "/x", Image=image_id)
    assert engine.wait(child) == 0 and engine.output(child) == "x\n"
