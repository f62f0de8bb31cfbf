"""``container:<name|id>`` for ``PidMode``, ``IpcMode`` and ``UTSMode``, ``IpcMode``
``shareable`` and ``none``, end to end through the container service on the native runtime:
what one container sees of the other's processes, IPC objects and hostname."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from lamina import errdefs

pytestmark = pytest.mark.privileged


@pytest.fixture
def donor(engine):
    """A running container named ``donor`` (hostname ``alpha``) with a shareable IPC namespace
    holding a /dev/shm file."""
    container_id = engine.run("sh", "-c", "echo from-donor > /dev/shm/marker && echo ready && exec sleep 300",
                              name="donor", Hostname="alpha", HostConfig={"IpcMode": "shareable"})
    engine.wait_for(lambda: "ready" in engine.output(container_id), message="the donor")
    yield container_id
    engine.containers.remove(container_id, force=True)


@pytest.mark.parametrize("runtime", ["native", "crun", "runc"])
def test_a_shared_pid_namespace_shows_the_other_containers_processes(engine, donor, runtime) -> None:
    if runtime != "native" and shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    joiner = engine.run("sh", "-c", "ps -o args; cat /proc/1/cmdline | tr '\\0' ' '; cat /dev/shm/marker",
                        HostConfig={"PidMode": "container:donor", "IpcMode": "container:donor", "Runtime": runtime})
    assert engine.wait(joiner) == 0, engine.output(joiner)
    output = engine.output(joiner)
    assert "sleep 300" in output and output.endswith("sleep 300 from-donor\n")
    assert engine.container_views.inspect(joiner)["HostConfig"]["PidMode"] == f"container:{donor}"


def test_a_shared_uts_namespace_has_the_other_containers_hostname(engine, donor) -> None:
    joiner = engine.run("sh", "-c", "hostname; readlink /proc/self/ns/uts",
                        HostConfig={"UTSMode": f"container:{donor[:12]}"})
    assert engine.wait(joiner) == 0
    assert engine.output(joiner) == f"alpha\n{_namespace(engine, donor, 'uts')}\n"
    with pytest.raises(errdefs.InvalidArgument, match="hostname and the UTS mode"):
        engine.create("true", Hostname="beta", HostConfig={"UTSMode": "container:donor"})


def _namespace(engine, container_id: str, name: str) -> str:
    return os.readlink(f"/proc/{engine.state(container_id)['Pid']}/ns/{name}")


def test_a_shared_ipc_namespace_sees_the_dev_shm_and_none_has_no_dev_shm(engine, donor) -> None:
    joiner = engine.run("sh", "-c", "cat /dev/shm/marker; readlink /proc/self/ns/ipc",
                        HostConfig={"IpcMode": "container:donor"})
    assert engine.wait(joiner) == 0, engine.output(joiner)
    assert engine.output(joiner) == f"from-donor\n{_namespace(engine, donor, 'ipc')}\n"
    inspected = engine.container_views.inspect(donor)  # the donor's /dev/shm lives on the host
    assert os.path.exists(os.path.join(engine.config.data_root, "containers", donor, "mounts", "shm", "marker"))
    assert inspected["HostConfig"]["IpcMode"] == "shareable"
    private = engine.run("sh", "-c", "cat /dev/shm/marker 2>/dev/null || echo missing; readlink /proc/self/ns/ipc; "
                         "grep -c ' /dev/shm ' /proc/mounts", HostConfig={"IpcMode": "private"})
    engine.wait(private)
    lines = engine.output(private).splitlines()
    assert lines[0] == "missing" and lines[1] != _namespace(engine, donor, "ipc") and lines[2] == "1", lines
    none = engine.run("sh", "-c", "grep -c ' /dev/shm ' /proc/mounts", HostConfig={"IpcMode": "none"})
    engine.wait(none)
    assert engine.output(none) == "0\n"


def test_joining_needs_a_running_shareable_container(engine) -> None:
    stopped = engine.create("true", name="stopped", HostConfig={"IpcMode": "shareable"})
    private = engine.run("sleep", "300", name="private")
    with pytest.raises(errdefs.NotFound, match="No such container: nosuch"):
        engine.create("true", HostConfig={"PidMode": "container:nosuch"})
    for mode in ("PidMode", "IpcMode", "UTSMode"):
        joiner = engine.create("true", HostConfig={mode: "container:stopped"})
        with pytest.raises(errdefs.Conflict, match=f"container {stopped} is not running"):
            engine.containers.start(joiner)
    joiner = engine.create("true", HostConfig={"IpcMode": "container:private"})
    with pytest.raises(errdefs.InvalidArgument, match="non-shareable IPC"):
        engine.containers.start(joiner)
    engine.containers.remove(private, force=True)


def test_a_shareable_dev_shm_is_unmounted_when_the_run_ends(engine) -> None:
    container_id = engine.run("sh", "-c", "echo x > /dev/shm/y", HostConfig={"IpcMode": "shareable"})
    assert engine.wait(container_id) == 0
    path = os.path.join(engine.config.data_root, "containers", container_id, "mounts", "shm")
    engine.wait_for(lambda: not os.path.ismount(path), message="the unmount of /dev/shm")
    engine.containers.remove(container_id)
    assert not os.path.exists(path)


def test_a_crashed_monitor_leaves_no_shm_mount_and_boot_starts_the_joined_container_first(engine) -> None:
    always = {"RestartPolicy": {"Name": "always"}}
    shared = engine.run("sleep", "300", name="shared", HostConfig={"IpcMode": "shareable", **always})
    joiner = engine.run("sleep", "300", HostConfig={"IpcMode": "container:shared", **always})
    shm = os.path.join(engine.config.data_root, "containers", shared, "mounts", "shm")
    assert os.path.ismount(shm)
    for container_id in (joiner, shared):
        os.kill(engine.run_dir(container_id).monitor_pid(), signal.SIGKILL)
        engine.wait_for(lambda container_id=container_id: engine.run_dir(container_id).monitor_pid() is None,
                        message="the monitor to die")
    assert engine.state(shared)["ExitCode"] == 255  # the dead run recorded, what it held released
    assert not os.path.ismount(shm)
    report = engine.containers.boot()
    assert report["Failed"] == [] and {joiner, shared} <= set(report["Restarted"]), report
    assert os.readlink(f"/proc/{engine.state(joiner)['Pid']}/ns/ipc") == \
        os.readlink(f"/proc/{engine.state(shared)['Pid']}/ns/ipc")


def test_the_host_ipc_namespace_comes_with_the_hosts_dev_shm_and_a_joiner_of_a_joiner_gets_it_too(engine,
                                                                                                  donor) -> None:
    marker = f"/dev/shm/lamina-test-{os.getpid()}-{donor[:12]}"
    with open(marker, "w", encoding="ascii") as handle:
        handle.write("from-host\n")
    try:
        host = engine.run("cat", marker, HostConfig={"IpcMode": "host"})
        assert engine.wait(host) == 0, engine.output(host)
        assert engine.output(host) == "from-host\n"
    finally:
        os.unlink(marker)
    middle = engine.run("sleep", "300", name="middle", HostConfig={"IpcMode": "container:donor"})
    last = engine.run("cat", "/dev/shm/marker", HostConfig={"IpcMode": "container:middle"})
    assert engine.wait(last) == 0, engine.output(last)
    assert engine.output(last) == "from-donor\n"
    engine.containers.remove(middle, force=True)
