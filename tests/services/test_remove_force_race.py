"""``rm -f`` of a container whose process exits on its own at about the same moment.

The monitor releases a run (it deletes ``runtime.json``) before it records the exit in the
container's record, and a container with a restart policy is recorded as restarting, with no
process, until its next run starts.  A forced removal that read the record as running in
between once found no process to kill and answered 409 "Container ... is not running"
instead of removing the container, as Docker's ``rm -f`` always does.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from lamina import errdefs

pytestmark = pytest.mark.privileged

_ITERATIONS = 30


def _force_remove_around_exits(engine: Any, seed: int, host_config: dict[str, Any], pause_milliseconds: int) -> None:
    randomness = random.Random(seed)
    for iteration in range(_ITERATIONS):
        milliseconds = randomness.randrange(0, 50)
        # the trap makes pid 1 (sh) exit on SIGTERM as well
        container_id = engine.run("sh", "-c", f'trap "exit 0" TERM; usleep {milliseconds * 1000}; exit 3',
                                  HostConfig=dict(host_config))
        time.sleep(randomness.randrange(0, pause_milliseconds) / 1000)
        try:
            engine.containers.remove(container_id, force=True)
        except errdefs.Conflict as exc:
            raise AssertionError(f"iteration {iteration} (exit after {milliseconds} ms): {exc}") from exc
        with pytest.raises(errdefs.NotFound):
            engine.container_views.inspect(container_id)
    assert engine.container_ids() == []


def test_force_remove_of_containers_exiting_at_random_moments_removes_them(engine) -> None:
    _force_remove_around_exits(engine, seed=1, host_config={}, pause_milliseconds=50)


def test_force_remove_of_restarting_containers_exiting_at_random_moments_removes_them(engine) -> None:
    _force_remove_around_exits(engine, seed=2, host_config={"RestartPolicy": {"Name": "always"}},
                               pause_milliseconds=300)


def test_remove_without_force_of_a_running_container_is_still_a_conflict(engine) -> None:
    container_id = engine.run("sleep", "30")
    with pytest.raises(errdefs.Conflict, match="You cannot remove a running container"):
        engine.containers.remove(container_id)
    assert engine.state(container_id)["Running"] is True
    engine.containers.remove(container_id, force=True)
    with pytest.raises(errdefs.NotFound):
        engine.container_views.inspect(container_id)
