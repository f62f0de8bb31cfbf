"""The pure parts of ``container:<name|id>`` modes: names resolved to ids at create, Docker's
refusals, the start order after a reboot, and what a start takes from the other container."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from lamina import errdefs
from lamina.container import joining
from lamina.container.store import Container
from lamina.runtime.cgroups import CgroupManager
from lamina.runtime.api import ContainerSpec, MountSpec, ProcessSpec

WEB = "a" * 64
DB = "b" * 64


def _container(container_id: str, name: str, host: dict | None = None, **state) -> Container:
    return Container({"ID": container_id, "Name": "/" + name, "State": state,
                      "Config": {"Hostname": name + "-host", "Domainname": ""}}, host or {})


def _lookup(*containers: Container):
    def lookup(reference: str) -> Container:
        for container in containers:
            if reference in (container.id, container.name.lstrip("/")) or container.id.startswith(reference):
                return container
        raise errdefs.NotFound(f"No such container: {reference}")
    return lookup


def test_create_names_the_other_container_by_its_full_id() -> None:
    host = {"NetworkMode": "container:web", "PidMode": f"container:{WEB[:12]}", "IpcMode": "shareable"}
    joining.resolve_modes(host, {}, _lookup(_container(WEB, "web")))
    assert host == {"NetworkMode": f"container:{WEB}", "PidMode": f"container:{WEB}", "IpcMode": "shareable"}
    with pytest.raises(errdefs.NotFound, match="No such container: nosuch"):
        joining.resolve_modes({"UTSMode": "container:nosuch"}, {}, _lookup())
    with pytest.raises(errdefs.InvalidArgument, match="domainname and the UTS mode"):
        joining.resolve_modes({"UTSMode": "container:web"}, {"Domainname": "example.org"},
                              _lookup(_container(WEB, "web")))


def test_a_mac_address_is_refused_with_the_host_network_too() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="mac-address and the network mode"):
        joining.check_network_conflicts({"MacAddress": "02:42:ac:11:00:02"}, {"NetworkMode": "host"})
    joining.check_network_conflicts({"MacAddress": "02:42:ac:11:00:02"}, {"NetworkMode": "bridge"})
    with pytest.raises(errdefs.InvalidArgument, match="invalid container format"):
        joining.check_network_conflicts({}, {"NetworkMode": "container:"})


@pytest.fixture
def running() -> Iterator[tuple[str, int]]:
    """(container id, pid): a process in a cgroup ``lamina/<id>``, as a running container's."""
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    container_id = secrets.token_hex(32)
    manager = CgroupManager(f"lamina/{container_id}")
    manager.create()
    process = subprocess.Popen(["sleep", "60"])
    try:
        for fd in manager.open_procs_files():
            try:
                os.write(fd, str(process.pid).encode())
            finally:
                os.close(fd)
        yield container_id, process.pid
    finally:
        process.kill()
        process.wait()
        manager.remove(timeout=5)


@pytest.mark.privileged
def test_a_start_takes_the_namespaces_files_and_names_of_the_running_container(running) -> None:
    web_id, pid = running
    web = _container(web_id, "web", {"IpcMode": "shareable"}, Running=True, Pid=pid)
    web.data.update(HostsPath="/data/containers/web/hosts", HostnamePath="/data/containers/web/hostname",
                    ResolvConfPath="/data/containers/web/resolv.conf")
    host = {"NetworkMode": f"container:{web_id}", "PidMode": "container:web", "IpcMode": f"container:{web_id}"}
    joined = joining.join(DB, host, _lookup(web), lambda container_id: f"/data/containers/{container_id}")
    assert joined.network_namespace == f"/proc/{pid}/ns/net"
    assert joined.namespace_paths == (("pid", f"/proc/{pid}/ns/pid"), ("ipc", f"/proc/{pid}/ns/ipc"))
    assert joined.files["/etc/hosts"] == "/data/containers/web/hosts" and joined.hostname == "web-host"
    assert joined.shm == f"/data/containers/{web_id}/mounts/shm"
    spec = ContainerSpec(id=DB, rootfs="/r", process=ProcessSpec(args=("true",)),
                         mounts=(MountSpec("/dev/shm/sub", "tmpfs", "tmpfs"),))
    applied = joining.apply(spec, joined)
    assert applied.shm_size == 0 and applied.network_namespace == f"/proc/{pid}/ns/net"
    assert [mount.destination for mount in applied.mounts] == ["/dev/shm", "/dev/shm/sub"]
    with pytest.raises(errdefs.InvalidArgument, match="cannot join own"):
        joining.join(web_id, {"PidMode": "container:web"}, _lookup(web), str)
    # a recorded pid that is not (any more) in the container's cgroup is not the container's
    stale = _container(WEB, "stale", {}, Running=True, Pid=pid)
    with pytest.raises(errdefs.Conflict, match="cannot join network of a non running container: stale"):
        joining.join(DB, {"NetworkMode": "container:stale"}, _lookup(stale), str)


@pytest.mark.parametrize(("mode", "state", "kind", "message"), [
    ("NetworkMode", {}, errdefs.Conflict, "^cannot join network of a non running container: web$"),
    ("PidMode", {}, errdefs.Conflict, "^failed to join PID namespace: container web is not running$"),
    ("IpcMode", {"Running": True, "Pid": 9, "Restarting": True}, errdefs.Conflict,
     "^failed to join IPC namespace: Container web is restarting"),
    ("NetworkMode", None, errdefs.NotFound, "^No such container: web$"),
    ("UTSMode", None, errdefs.InvalidArgument, "^failed to join UTS namespace: No such container: web$"),
], ids=["a stopped network", "a stopped pid namespace", "a restarting IPC namespace", "a missing network",
        "a missing UTS namespace"])
def test_the_other_container_must_exist_and_run(mode, state, kind, message) -> None:
    others = () if state is None else (_container(WEB, "web", **state),)
    with pytest.raises(kind, match=message):
        joining.join(DB, {mode: "container:web"}, _lookup(*others), str)


@pytest.mark.privileged
def test_a_private_ipc_namespace_is_not_shareable(running) -> None:
    web_id, pid = running
    web = _container(web_id, "web", {"IpcMode": "private"}, Running=True, Pid=pid)
    with pytest.raises(errdefs.InvalidArgument, match="non-shareable IPC"):
        joining.join(DB, {"IpcMode": "container:web"}, _lookup(web), str)


def test_the_start_order_puts_the_joined_containers_first() -> None:
    first = _container("c" * 64, "first", {"NetworkMode": f"container:{DB}"})
    database = _container(DB, "db", {"PidMode": f"container:{WEB}"})
    web = _container(WEB, "web", {})
    loop = _container("d" * 64, "loop", {"NetworkMode": "container:" + "d" * 64})
    ordered = joining.start_order([first, database, loop, web])
    assert [container.name for container in ordered] == ["/loop", "/web", "/db", "/first"]
