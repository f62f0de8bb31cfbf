"""The monitor template's spare monitor (lamina.container.monitor.template): forked ahead once
a spawn was served and the template idled for SPARE_DELAY, it is the next container's monitor
(no fork on that start's path); it leaves with its template, and one that dies is not replaced.
Its spare helper (lamina.container.monitor.launch), forked ahead by the spare, starts its first
run; it leaves with its spare, and one that died first leaves the start to a forked helper."""

from __future__ import annotations

import glob
import os
import signal

import pytest

from lamina import errdefs
from lamina.container.monitor.launch import SPARE_HELPER_NAME
from lamina.container.monitor.template import SPARE_NAME
from tests.processes import children, comm, gone


def _template(engine) -> int:
    [pid_file] = glob.glob(os.path.join(engine.config.exec_root, "monitor-template", "*.pid"))
    with open(pid_file, encoding="ascii") as handle:
        return int(handle.read())


def _spares(template: int) -> list[int]:
    return [child for child in children(template) if comm(child) == SPARE_NAME]


def _spare(engine) -> int:
    template = _template(engine)
    engine.wait_for(lambda: _spares(template), message="a spare monitor")
    [spare] = _spares(template)
    return spare


def _spare_helper(engine, spare: int) -> int:
    """The spare helper of ``spare``, once it named itself (it is forked before the spare names
    itself, and names itself first thing)."""
    def helpers() -> list[int]:
        return [child for child in children(spare) if comm(child) == SPARE_HELPER_NAME]

    engine.wait_for(helpers, message="the spare helper")
    [helper] = helpers()
    return helper


def test_the_next_start_is_served_by_the_spare_monitor_and_another_is_forked(engine) -> None:
    first = engine.run("sleep", "60", HostConfig={"NetworkMode": "none"})
    spare = _spare(engine)
    second = engine.run("sh", "-c", "echo from the spare; sleep 60", HostConfig={"NetworkMode": "none"})
    assert engine.run_dir(second).monitor_pid() == spare
    assert comm(spare) != SPARE_NAME  # the template's name again
    engine.wait_for(lambda: engine.output(second) == "from the spare\n", message="the output")
    engine.wait_for(lambda: _spares(_template(engine)) not in ([], [spare]), message="the next spare")
    for container_id in (first, second):
        engine.containers.kill(container_id, signal="SIGKILL")
        assert engine.wait(container_id) == 137


def test_a_spare_for_the_runs_that_remove_themselves(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    container_id = engine.create("sh", "-c", "sleep 1; exit 3", HostConfig={"NetworkMode": "none", "AutoRemove": True})
    finish = engine.containers.begin_wait(container_id, condition="removed")
    engine.containers.start(container_id)
    assert engine.run_dir(container_id).monitor_pid() == spare
    assert int(finish()["StatusCode"]) == 3
    engine.wait_for(lambda: gone(spare), message="the monitor's exit")


def test_the_spare_monitor_leaves_with_its_template(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    os.kill(_template(engine), signal.SIGKILL)
    engine.wait_for(lambda: gone(spare), message="the spare's exit")


def test_a_spare_that_dies_is_not_replaced_and_starts_go_on(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    template = _template(engine)
    os.kill(spare, signal.SIGKILL)
    engine.wait_for(lambda: not os.path.exists(f"/proc/{spare}"), message="the dead spare reaped")
    for _ in range(2):
        assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    assert _spares(template) == []
    with open(os.path.join(engine.config.exec_root, "monitor-template", "template.log"), encoding="utf-8") as handle:
        assert "the spare monitor died: none is forked ahead" in handle.read()


def test_the_spare_monitors_first_run_is_started_by_its_spare_helper(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    helper = _spare_helper(engine, spare)
    container_id = engine.run("sh", "-c", "echo started by the spare helper; sleep 60", HostConfig={"NetworkMode": "none"})
    assert engine.run_dir(container_id).monitor_pid() == spare
    engine.wait_for(lambda: engine.output(container_id) == "started by the spare helper\n", message="the output")
    # an unused helper waits until its monitor's end: this one started the run and exited
    engine.wait_for(lambda: gone(helper), message="the spare helper's exit")
    assert comm(spare) != SPARE_NAME and not gone(spare)
    engine.containers.kill(container_id, signal="SIGKILL")
    assert engine.wait(container_id) == 137
    # a start that fails in the spare helper fails as in a forked one: the runtime's error
    engine.wait_for(lambda: _spares(_template(engine)) not in ([], [spare]), message="the next spare")
    failing = engine.create("no-such-command", HostConfig={"NetworkMode": "none"})
    with pytest.raises(errdefs.LaminaError, match='exec: "no-such-command": executable file not found'):
        engine.containers.start(failing)


def test_a_spare_helper_that_died_leaves_the_start_to_a_forked_helper(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    helper = _spare_helper(engine, spare)
    os.kill(helper, signal.SIGKILL)
    engine.wait_for(lambda: gone(helper), message="the helper's death")
    assert engine.run_removed("echo", "forked", HostConfig={"NetworkMode": "none"}) == 0


def test_the_spare_helper_leaves_with_its_spare(engine) -> None:
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    helper = _spare_helper(engine, spare)
    os.kill(_template(engine), signal.SIGKILL)  # the spare leaves, then its helper
    engine.wait_for(lambda: gone(spare) and gone(helper), message="the spare's and its helper's exit")


def _sockets(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def test_the_spare_helper_holds_none_of_its_spares_sockets(engine) -> None:
    # the spare's socket to the template must close when the spare dies (the template then
    # forks a monitor for the request instead of sending it to a dead spare): its helper holds
    # only its own end of their socket pair
    assert engine.run_removed("true", HostConfig={"NetworkMode": "none"}) == 0
    spare = _spare(engine)
    helper = _spare_helper(engine, spare)
    assert _sockets(helper) and not _sockets(helper) & _sockets(spare)
