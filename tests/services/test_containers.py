"""End-to-end tests of the container service: real overlay mounts, namespaces, cgroups and a
monitor process per container, on the busybox image loaded from Docker's archive."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time

from typing import Any

import pytest

from lamina import errdefs
from lamina import mount as lmount
from lamina.container.logs import demultiplex
from lamina.container.monitor import StartError

pytestmark = pytest.mark.privileged


def read_until(sock: socket.socket, wanted: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{wanted!r} not received; got {data!r}")
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


# -- exit codes, logs ---------------------------------------------------------------------------


def test_exit_codes_of_commands(engine) -> None:
    assert engine.wait(engine.run("true")) == 0
    assert engine.wait(engine.run("sh", "-c", "exit 3")) == 3


@pytest.mark.parametrize(("command", "code"), [(["nosuch-command"], 127), (["/etc/passwd"], 126)],
                         ids=["a missing executable exits 127", "a file that is not executable exits 126"])
def test_a_command_that_cannot_run_fails_start_with_docker_exit_code(engine, command, code) -> None:
    container_id = engine.create(*command)
    with pytest.raises(StartError) as raised:
        engine.containers.start(container_id)
    assert raised.value.exit_code == code
    state = engine.state(container_id)
    assert state["Status"] == "created"
    assert state["ExitCode"] == code
    assert state["Error"]
    assert engine.wait(container_id) == code
    # the failed start rolled back its mount and cgroup
    assert not [t for t in lmount.mounted_targets() if t.startswith(engine.root)]
    assert not os.path.exists(f"/sys/fs/cgroup/memory/lamina/{container_id}")


def test_output_lands_in_the_json_log_in_docker_format(engine) -> None:
    container_id = engine.run("sh", "-c", "echo out; echo err >&2; printf partial")
    assert engine.wait(container_id) == 0
    log_path = engine.container_views.inspect(container_id)["LogPath"]
    assert log_path.endswith(f"{container_id}-json.log")
    with open(log_path, "rb") as handle:
        lines = handle.read().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [list(entry) for entry in entries] == [["log", "stream", "time"]] * 3
    assert {(e["stream"], e["log"]) for e in entries} == {("stdout", "out\n"), ("stderr", "err\n"),
                                                         ("stdout", "partial")}
    assert sorted(engine.container_streams.logs(container_id, stderr=False)) == [(1, b"out\n"), (1, b"partial")]


def test_logs_tail_since_and_follow(engine) -> None:
    container_id = engine.run("sh", "-c", "echo one; echo two; sleep 1.2; echo three")
    engine.wait_for(lambda: "two" in engine.output(container_id), message="first lines")
    assert list(engine.container_streams.logs(container_id, tail="1")) == [(1, b"two\n")]
    middle = time.time()
    time.sleep(0.05)
    followed = [payload for _, payload in engine.container_streams.logs(container_id, follow=True)]
    assert followed == [b"one\n", b"two\n", b"three\n"]  # follow ends when the container stops
    assert [p for _, p in engine.container_streams.logs(container_id, since=middle)] == [b"three\n"]
    stamped = list(engine.container_streams.logs(container_id, timestamps=True, tail="1"))
    assert stamped[0][1].endswith(b"Z three\n")


def test_pid_1_is_the_command_and_host_processes_are_invisible(engine) -> None:
    container_id = engine.run("sh", "-c", "echo $$; ps -o pid,args | wc -l")
    assert engine.wait(container_id) == 0
    pid, count = engine.output(container_id).split()
    assert pid == "1"
    assert int(count) <= 4  # header, sh, ps, wc


def test_hostname_and_dns_files(engine) -> None:
    container_id = engine.run("sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf",
                              Hostname="box", HostConfig={"ExtraHosts": ["db:10.0.0.5"]})
    assert engine.wait(container_id) == 0
    output = engine.output(container_id)
    assert output.startswith("box\nbox\n127.0.0.1\tlocalhost\n")
    assert "127.0.0.1\tbox\n" in output
    assert "10.0.0.5\tdb\n" in output
    assert "nameserver 127." not in output
    assert "nameserver" in output


def test_writes_land_in_the_container_layer_only(engine) -> None:
    first = engine.run("sh", "-c", "echo mine > /data; cat /data")
    assert engine.wait(first) == 0
    second = engine.run("cat", "/data")
    assert engine.wait(second) == 1
    assert engine.output(first) == "mine\n"


# -- stop, kill, restart policies ---------------------------------------------------------------


def test_stop_kills_a_pid_1_that_ignores_sigterm_after_the_timeout(engine) -> None:
    container_id = engine.run("sleep", "30")
    started = time.monotonic()
    engine.containers.stop(container_id, timeout=1)
    elapsed = time.monotonic() - started
    state = engine.state(container_id)
    assert state["ExitCode"] == 137
    assert not state["Running"]
    assert 1.0 <= elapsed < 6
    engine.containers.stop(container_id)  # stopping a stopped container is fine


def test_stop_with_init_exits_promptly_on_sigterm(engine) -> None:
    container_id = engine.run("sleep", "30", HostConfig={"Init": True})
    started = time.monotonic()
    engine.containers.stop(container_id, timeout=10)
    assert time.monotonic() - started < 3
    assert engine.state(container_id)["ExitCode"] == 143


def test_kill_sends_the_signal(engine) -> None:
    container_id = engine.run("sh", "-c", "trap 'exit 7' USR1; echo trapped; while true; do sleep 0.05; done")
    # PID 1 ignores a signal it has no trap for: signal only once the trap is in place
    engine.wait_for(lambda: "trapped" in engine.output(container_id), message="the shell's trap")
    engine.containers.kill(container_id, signal="SIGUSR1")
    assert engine.wait(container_id) == 7
    with pytest.raises(errdefs.Conflict, match="is not running"):
        engine.containers.kill(container_id)


def test_restart_policy_on_failure_restarts_twice_then_stops(engine) -> None:
    container_id = engine.run("sh", "-c", "echo run; exit 3",
                              HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})

    def done() -> bool:
        state = engine.state(container_id)
        return not state["Running"] and not state["Restarting"] and \
            engine.container_views.inspect(container_id)["RestartCount"] == 2

    engine.wait_for(done, timeout=15, message="the restarts to end")
    assert engine.state(container_id)["ExitCode"] == 3
    assert engine.output(container_id) == "run\n" * 3
    engine.wait_for(lambda: engine.run_dir(container_id).monitor_pid() is None, message="the monitor to exit")


def test_always_container_is_restarted_by_boot_after_its_monitor_died(engine) -> None:
    container_id = engine.run("sleep", "30", HostConfig={"RestartPolicy": {"Name": "always"}})
    old_pid = engine.state(container_id)["Pid"]
    monitor = engine.run_dir(container_id).monitor_pid()
    assert monitor
    os.kill(monitor, signal.SIGKILL)
    engine.wait_for(lambda: engine.run_dir(container_id).monitor_pid() is None, message="the monitor to die")
    report = engine.containers.boot()
    assert container_id in report["Exited"]
    assert container_id in report["Restarted"]
    state = engine.state(container_id)
    assert state["Running"] and state["Pid"] != old_pid
    def old_process_gone() -> bool:
        try:
            with open(f"/proc/{old_pid}/cmdline", "rb") as handle:
                return handle.read() != b"sleep\x0030\x00"
        except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped between open and read
            return True

    engine.wait_for(old_process_gone, message="the old process to be gone")
    engine.containers.stop(container_id, timeout=0)
    assert not engine.state(container_id)["Running"]


def test_the_supervisors_round_reads_only_running_containers_and_those_whose_monitor_died(engine, monkeypatch) -> None:
    """``boot(dead_monitors_only=True)`` (``lamina serve`` asks every second) picks its
    containers from the listing: a stopped one is not read whole; one recorded running whose
    monitor died is restarted, and so is one that another command recorded as exited (255)."""
    stopped = engine.create("true", HostConfig={"RestartPolicy": {"Name": "always"}})
    noticed = engine.run("sleep", "30", HostConfig={"RestartPolicy": {"Name": "always"}})
    unnoticed = engine.run("sleep", "30", HostConfig={"RestartPolicy": {"Name": "always"}})
    for container_id in (noticed, unnoticed):
        os.kill(engine.run_dir(container_id).monitor_pid(), signal.SIGKILL)
        engine.wait_for(lambda: engine.run_dir(container_id).monitor_pid() is None, message="the monitor to die")
    assert engine.state(noticed)["ExitCode"] == 255  # recorded by the look (another command's)
    store = engine.containers.store
    read: list[str] = []
    real_get = store.get

    def counting_get(container_id: str):
        read.append(container_id)
        return real_get(container_id)

    monkeypatch.setattr(store, "get", counting_get)
    report = engine.containers.boot(dead_monitors_only=True)
    monkeypatch.undo()
    assert stopped not in read
    assert sorted(report["Restarted"]) == sorted([noticed, unnoticed])
    assert engine.state(noticed)["Running"] and engine.state(unnoticed)["Running"]
    assert engine.state(stopped)["Status"] == "created"
    for container_id in (noticed, unnoticed):
        engine.containers.stop(container_id, timeout=0)


def test_a_crashed_monitor_is_recorded_as_exit_255(engine) -> None:
    container_id = engine.run("sleep", "30")
    os.kill(engine.run_dir(container_id).monitor_pid(), signal.SIGKILL)
    engine.wait_for(lambda: engine.run_dir(container_id).monitor_pid() is None, message="the monitor to die")
    state = engine.state(container_id)
    assert (state["Running"], state["ExitCode"]) == (False, 255)
    assert not [t for t in lmount.mounted_targets() if t.startswith(engine.root)]
    assert not os.path.exists(f"/sys/fs/cgroup/memory/lamina/{container_id}")


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def test_monitors_are_forked_by_one_template_and_outlive_it(engine) -> None:
    first = engine.run("sleep", "30")
    second = engine.run("sleep", "30")
    monitor = engine.run_dir(first).monitor_pid()
    template = _parent_of(monitor)
    assert _parent_of(engine.run_dir(second).monitor_pid()) == template != os.getpid()
    # the run was started by a helper of the monitor's that exited: PID 1 was handed to the monitor
    assert _parent_of(engine.state(first)["Pid"]) == monitor
    os.kill(template, signal.SIGKILL)
    engine.wait_for(lambda: _parent_of(monitor) != template, message="the monitor to be reparented")
    assert engine.state(first)["Running"] and engine.run_dir(first).monitor_pid() == monitor
    third = engine.run("sh", "-c", "echo after")  # a new template starts
    assert engine.wait(third) == 0 and engine.output(third) == "after\n"
    engine.containers.stop(first, timeout=0)
    assert engine.state(first)["ExitCode"] == 137


def test_boot_removes_auto_remove_containers_whose_monitor_died(engine) -> None:
    running = engine.run("sleep", "30", HostConfig={"AutoRemove": True})
    waiting = engine.create("true", HostConfig={"AutoRemove": True})
    os.kill(engine.run_dir(running).monitor_pid(), signal.SIGKILL)
    engine.wait_for(lambda: engine.run_dir(running).monitor_pid() is None, message="the monitor to die")
    report = engine.containers.boot()
    assert report["Removed"] == [running]
    with pytest.raises(errdefs.NotFound):
        engine.container_views.inspect(running)
    assert engine.state(waiting)["Status"] == "created"


def test_auto_remove_removes_everything(engine) -> None:
    container_id = engine.create("true", HostConfig={"AutoRemove": True})
    layer_dir = os.path.join(engine.config.data_root, "image", "overlay2", "layerdb", "mounts", container_id)
    assert os.path.isdir(layer_dir)
    assert engine.start_and_wait(container_id) == 0
    with pytest.raises(errdefs.NotFound):
        engine.container_views.inspect(container_id)
    assert not os.path.exists(layer_dir)
    # the run directory, the root filesystem's mount and the network namespace go with the
    # teardown the monitor finishes after "removed"
    engine.wait_for(lambda: not os.path.exists(engine.run_dir(container_id).path),
                    message="the run directory to go")
    engine.wait_for(lambda: not [t for t in lmount.mounted_targets() if t.startswith(engine.root)],
                    message="the run's mounts to go")


def test_restart_and_start_of_a_running_container(engine) -> None:
    container_id = engine.run("sleep", "30", HostConfig={"Init": True})
    first_pid = engine.state(container_id)["Pid"]
    engine.containers.start(container_id)  # a no-op
    assert engine.state(container_id)["Pid"] == first_pid
    engine.containers.restart(container_id, timeout=5)
    state = engine.state(container_id)
    assert state["Running"] and state["Pid"] != first_pid
    engine.containers.stop(container_id)


# -- remove, names, ps, inspect -----------------------------------------------------------------


def test_removing_a_running_container_needs_force(engine) -> None:
    container_id = engine.run("sleep", "30")
    with pytest.raises(errdefs.Conflict) as raised:
        engine.containers.remove(container_id)
    assert str(raised.value) == (f"You cannot remove a running container {container_id}. Stop the container "
                                 f"before attempting removal or force remove")
    engine.containers.remove(container_id, force=True)
    with pytest.raises(errdefs.NotFound, match="No such container"):
        engine.container_views.inspect(container_id)
    assert not [t for t in lmount.mounted_targets() if t.startswith(engine.root)]
    assert not os.path.exists(f"/sys/fs/cgroup/memory/lamina/{container_id}")


def test_names_are_unique_and_can_change(engine) -> None:
    first = engine.create("true", name="web")
    with pytest.raises(errdefs.Conflict) as raised:
        engine.create("true", name="web")
    assert str(raised.value) == (f'Conflict. The container name "/web" is already in use by container "{first}". '
                                 f"You have to remove (or rename) that container to be able to reuse that name.")
    assert engine.container_views.inspect("web")["Id"] == first
    assert engine.container_views.inspect(first[:10])["Name"] == "/web"
    engine.containers.rename("web", "api")
    assert engine.container_views.inspect("/api")["Id"] == first
    second = engine.create("true", name="web")
    assert second != first
    with pytest.raises(errdefs.InvalidArgument, match="Invalid container name"):
        engine.create("true", name="-bad")
    generated = engine.container_views.inspect(engine.create("true"))["Name"]
    assert generated.startswith("/") and "_" in generated


def test_ps_filters_and_status(engine) -> None:
    running = engine.run("sleep", "30", name="running", Labels={"tier": "web"})
    exited = engine.run("true", name="exited")
    engine.wait(exited)
    created = engine.create("true", name="created")

    def names(**options) -> list[str]:
        return [item["Names"][0] for item in engine.container_views.list_containers(**options)]

    assert names() == ["/running"]
    assert names(all=True) == ["/created", "/exited", "/running"]
    assert names(filters={"status": ["exited"]}) == ["/exited"]
    assert names(filters={"status": ["created", "running"]}) == ["/created", "/running"]
    assert names(all=True, filters={"name": ["^/ex"]}) == ["/exited"]
    assert names(all=True, filters={"label": ["tier=web"]}) == ["/running"]
    assert names(all=True, filters={"ancestor": ["busybox"]}) == ["/created", "/exited", "/running"]
    assert names(all=True, filters={"id": [created[:8]]}) == ["/created"]
    assert names(filters={"exited": ["0"]}) == ["/exited"]
    assert names(limit=1) == ["/created"]
    with pytest.raises(errdefs.InvalidArgument):
        names(filters={"status": ["sleeping"]})
    summaries = {item["Names"][0]: item for item in engine.container_views.list_containers(all=True, size=True)}
    assert summaries["/running"]["Status"].startswith("Up ")
    assert summaries["/running"]["State"] == "running"
    assert summaries["/exited"]["Status"].startswith("Exited (0) ")
    assert summaries["/created"]["Status"] == "Created"
    assert summaries["/running"]["Command"] == "sleep 30"
    assert summaries["/running"]["Image"] == "busybox"
    assert summaries["/running"]["ImageID"].startswith("sha256:")
    assert summaries["/exited"]["SizeRootFs"] >= summaries["/exited"]["SizeRw"] >= 0
    assert running in summaries["/running"]["Id"]


def test_inspect_has_dockers_fields(engine) -> None:
    container_id = engine.run("sleep", "30", name="probe", HostConfig={"Memory": 64 << 20})
    info = engine.container_views.inspect(container_id)
    assert info["Id"] == container_id
    assert info["Name"] == "/probe"
    # what a request needs before acting: the same id, name and config, the stored state
    brief = engine.container_views.identify("probe")
    assert (brief["Id"], brief["Name"], brief["Config"]) == (container_id, "/probe", info["Config"])
    assert brief["State"]["Running"] and brief["State"]["Pid"] == info["State"]["Pid"]
    assert (info["Path"], info["Args"]) == ("sleep", ["30"])
    assert info["Platform"] == "linux"
    assert info["State"]["Status"] == "running" and info["State"]["Pid"] > 0
    assert info["Config"]["Image"] == "busybox"
    assert info["Config"]["Hostname"] == container_id[:12]
    assert any(item.startswith("PATH=") for item in info["Config"]["Env"])
    assert info["HostConfig"]["Memory"] == 64 << 20
    assert info["HostConfig"]["MemorySwap"] == 128 << 20
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert info["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert info["GraphDriver"]["Name"] == "overlay2"
    merged = info["GraphDriver"]["Data"]["MergedDir"]
    assert lmount.is_mountpoint(merged)
    assert info["GraphDriver"]["Data"]["LowerDir"].count(":") >= 1  # init layer + image
    assert info["LogPath"] and info["HostsPath"].endswith("/hosts")
    assert info["RestartCount"] == 0
    assert info["ExecIDs"] is None
    with open(f"/sys/fs/cgroup/memory/lamina/{container_id}/memory.limit_in_bytes") as handle:
        assert int(handle.read()) == 64 << 20


# -- attach and terminals ------------------------------------------------------------------------


def test_attach_before_start_echoes_stdin_back(engine) -> None:
    container_id = engine.create("cat", OpenStdin=True, StdinOnce=True, AttachStdin=True, AttachStdout=True)
    sock = engine.container_streams.attach(container_id, stdin=True, stdout=True, stderr=True)
    try:
        engine.containers.start(container_id)
        sock.sendall(b"hello\n")
        data = read_until(sock, b"hello\n")
        sock.shutdown(socket.SHUT_WR)  # StdinOnce: ends the container's stdin
        data += read_all(sock)
    finally:
        sock.close()
    assert list(demultiplex(data)) == [(1, b"hello\n")]
    assert engine.wait(container_id) == 0


def test_attach_to_a_running_container_reads_its_output(engine) -> None:
    container_id = engine.run("sh", "-c", "while true; do echo tick; sleep 0.05; done")
    sock = engine.container_streams.attach(container_id, stdin=False, stdout=True, stderr=True)
    try:
        data = read_until(sock, b"tick\n")
        assert data.startswith(bytes([1, 0, 0, 0]))
    finally:
        sock.close()
    engine.containers.stop(container_id, timeout=0)


def test_tty_container_gets_its_window_size(engine) -> None:
    container_id = engine.create("sh", "-c", "read line; stty size", Tty=True, OpenStdin=True)
    sock = engine.container_streams.attach(container_id, stdin=True, stdout=True, stderr=True)
    try:
        engine.containers.start(container_id)
        engine.container_streams.resize(container_id, height=30, width=100)
        sock.sendall(b"go\r")
        data = read_until(sock, b"30 100")
    finally:
        sock.close()
    assert b"\x01\x00\x00\x00" not in data  # raw, not multiplexed
    assert engine.wait(container_id) == 0
    assert "30 100\r\n" in engine.output(container_id)


def test_tty_container_s_pid_1_sees_dev_pts_0_of_its_own_devpts(engine) -> None:
    container_id = engine.run("sh", "-c", "tty; ls /dev/pts; readlink /proc/1/fd/0", Tty=True)
    assert engine.wait(container_id) == 0
    lines = engine.output(container_id).replace("\r", "").split()
    assert lines[0] == "/dev/pts/0" and lines[-1] == "/dev/pts/0"
    assert "ptmx" in lines and "1" not in lines  # a devpts of its own, with no other terminal
    # nothing is left mounted in the run directory once the container started
    from lamina.container.rundir import RunDirectory

    run_path = RunDirectory(engine.config.exec_root, container_id).path
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        assert run_path not in handle.read()


# -- filesystem: diff, commit, export, cp --------------------------------------------------------


def tar_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def members_of(chunks) -> dict[str, tarfile.TarInfo]:
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_diff_commit_and_export(engine) -> None:
    container_id = engine.run("sh", "-c", "echo new > /new; rm /etc/group; echo more >> /etc/passwd")
    assert engine.wait(container_id) == 0
    changes = {(item["Path"], item["Kind"]) for item in engine.container_files.changes(container_id)}
    assert changes == {("/new", 1), ("/etc", 0), ("/etc/group", 2), ("/etc/passwd", 0)}
    members = members_of(engine.container_files.export(container_id))
    assert "new" in members and "bin/busybox" in members and "etc/group" not in members
    answer = engine.container_files.commit(container_id, repository="committed", tag="v1", comment="a test",
                                           author="me", changes=['CMD ["cat", "/new"]'])
    image = engine.services.images.inspect_image("committed:v1")
    assert image["Id"] == answer["Id"]
    assert image["Config"]["Cmd"] == ["cat", "/new"]
    assert image["Author"] == "me"
    assert len(image["RootFS"]["Layers"]) == 2
    child = engine.run(Image="committed:v1")
    assert engine.wait(child) == 0
    assert engine.output(child) == "new\n"
    hidden = engine.run("ls", "/etc/group", Image="committed:v1")
    assert engine.wait(hidden) != 0  # the deleted file is a whiteout in the new layer


def test_commit_pauses_a_running_container(engine) -> None:
    container_id = engine.run("sh", "-c", "echo x > /x; sleep 30", HostConfig={"Init": True})
    engine.wait_for(lambda: any(c["Path"] == "/x" for c in engine.container_files.changes(container_id)),
                    message="the write")
    image_id = engine.container_files.commit(container_id)["Id"]
    assert engine.state(container_id)["Running"] and not engine.state(container_id)["Paused"]
    child = engine.run("cat", "/x", Image=image_id)
    assert engine.wait(child) == 0 and engine.output(child) == "x\n"
    engine.containers.stop(container_id)


def file_in(engine, container_id: str, path: str) -> bytes:
    stat, chunks = engine.container_files.archive_get(container_id, path)
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.extractfile(stat["name"]).read()


def test_copy_into_and_out_of_a_container(engine) -> None:
    container_id = engine.run("sh", "-c", "mkdir -p /work; ln -s /etc /work/link; ln -s ../../../../.. /work/up; "
                                          "echo container-etc > /etc/marker")
    assert engine.wait(container_id) == 0
    engine.container_files.archive_put(container_id, "/work", io.BytesIO(tar_of({"hello.txt": b"hi there\n"})))
    stat, chunks = engine.container_files.archive_get(container_id, "/work/hello.txt")
    assert stat["name"] == "hello.txt" and stat["size"] == 9
    members = members_of(chunks)
    assert list(members) == ["hello.txt"]
    # a symlink to /etc in the container is the container's /etc, never the host's
    assert file_in(engine, container_id, "/work/link/marker") == b"container-etc\n"
    link_stat = engine.container_files.archive_stat(container_id, "/work/link")
    assert link_stat["linkTarget"] == "/etc"
    assert link_stat["mode"] & (1 << 27)  # Go's ModeSymlink
    engine.container_files.archive_put(container_id, "/work/link", io.BytesIO(tar_of({"lamina-cp-test": b"x"})))
    assert not os.path.exists("/etc/lamina-cp-test")
    assert file_in(engine, container_id, "/etc/lamina-cp-test") == b"x"
    engine.container_files.archive_put(container_id, "/work/up/tmp", io.BytesIO(tar_of({"lamina-cp-up": b"y"})))
    assert not os.path.exists("/tmp/lamina-cp-up")
    assert file_in(engine, container_id, "/tmp/lamina-cp-up") == b"y"
    with pytest.raises(errdefs.NotFound, match="Could not find the file"):
        engine.container_files.archive_stat(container_id, "/nonexistent")
    directory = members_of(engine.container_files.archive_get(container_id, "/work")[1])
    assert {"work", "work/hello.txt", "work/link", "work/up"} <= set(directory)
    assert directory["work/link"].issym() and directory["work/link"].linkname == "/etc"
    contents = members_of(engine.container_files.archive_get(container_id, "/work/.")[1])
    assert {".", "./hello.txt", "./link"} <= set(contents)
    assert not [t for t in lmount.mounted_targets() if t.startswith(engine.root)]


def test_copy_into_a_running_container(engine) -> None:
    container_id = engine.run("sh", "-c", "while [ ! -f /tmp/go ]; do sleep 0.05; done; cat /tmp/go")
    engine.container_files.archive_put(container_id, "/tmp", io.BytesIO(tar_of({"go": b"copied\n"})))
    assert engine.wait(container_id) == 0
    assert engine.output(container_id) == "copied\n"


# -- resources ----------------------------------------------------------------------------------


def counter(engine, container_id: str) -> int:
    """The count the container's loop last wrote; 0 before its first write (on a loaded
    host the container can be started and not yet have run its first iteration)."""
    try:
        _, chunks = engine.container_files.archive_get(container_id, "/tmp/count")
    except errdefs.NotFound:
        return 0
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return int(archive.extractfile("count").read() or b"0")


def test_pause_freezes_the_container(engine) -> None:
    # each count is a new file renamed into place: archiving a file that a write truncates
    # meanwhile fails, as with Docker (the tar header already gave its size)
    container_id = engine.run("sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; "
                                          "mv /tmp/count.new /tmp/count; sleep 0.02; done")
    engine.wait_for(lambda: counter(engine, container_id) > 2, message="the counter")
    engine.containers.pause(container_id)
    assert engine.state(container_id)["Status"] == "paused"
    assert engine.container_views.list_containers()[0]["Status"].endswith("(Paused)")
    frozen = counter(engine, container_id)
    time.sleep(0.3)
    assert counter(engine, container_id) == frozen
    with pytest.raises(errdefs.Conflict):
        engine.containers.pause(container_id)
    engine.containers.unpause(container_id)
    engine.wait_for(lambda: counter(engine, container_id) > frozen, message="the counter to move again")
    engine.containers.stop(container_id, timeout=0)


def test_stats_top_and_update(engine) -> None:
    container_id = engine.run("sleep", "30", HostConfig={"Memory": 64 << 20})
    stats = next(iter(engine.container_views.stats(container_id, stream=False, one_shot=True)))
    assert stats["memory_stats"]["usage"] > 0
    assert stats["memory_stats"]["limit"] == 64 << 20
    assert stats["pids_stats"]["current"] >= 1
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] >= 0
    assert stats["id"] == container_id and stats["name"].startswith("/")
    top = engine.container_views.top(container_id)
    assert top["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [row[-1] for row in top["Processes"]] == ["sleep 30"]
    assert top["Processes"][0][1] == str(engine.state(container_id)["Pid"])
    engine.containers.update(container_id, {"Memory": 32 << 20})
    with open(f"/sys/fs/cgroup/memory/lamina/{container_id}/memory.limit_in_bytes") as handle:
        assert int(handle.read()) == 32 << 20
    assert engine.container_views.inspect(container_id)["HostConfig"]["Memory"] == 32 << 20
    engine.containers.stop(container_id, timeout=0)


def test_out_of_memory_kill_is_reported(engine) -> None:
    container_id = engine.run("sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
                              HostConfig={"Memory": 16 << 20, "MemorySwap": 16 << 20})
    assert engine.wait(container_id) == 137
    state = engine.state(container_id)
    assert state["OOMKilled"] is True


def test_prune_removes_stopped_containers(engine) -> None:
    running = engine.run("sleep", "30")
    stopped = [engine.run("true"), engine.run("true")]
    for container_id in stopped:
        engine.wait(container_id)
    report = engine.containers.prune()
    assert sorted(report["ContainersDeleted"]) == sorted(stopped)
    assert [c["Id"] for c in engine.container_views.list_containers(all=True)] == [running]
    engine.containers.stop(running, timeout=0)


def test_rmi_of_an_image_in_use_is_a_conflict(engine) -> None:
    container_id = engine.create("true")
    image_id = engine.container_views.inspect(container_id)["Image"]
    with pytest.raises(errdefs.Conflict) as raised:
        engine.services.images.remove_image("busybox")
    assert str(raised.value) == (f'conflict: unable to remove repository reference "busybox" (must force) - '
                                 f"container {container_id[:12]} is using its referenced image {image_id[7:19]}")
    with pytest.raises(errdefs.Conflict, match="image is being used by stopped container"):
        engine.services.images.remove_image(image_id)
    engine.containers.remove(container_id)
    engine.services.images.remove_image("busybox")


def test_the_monitor_survives_the_process_that_started_it(engine) -> None:
    script = (
        "import sys\n"
        "from lamina.config import EngineConfig\n"
        "from lamina.services.compose import build_services\n"
        "s = build_services(EngineConfig(data_root=sys.argv[1], exec_root=sys.argv[2]))\n"
        "i = s.containers.create({'Image': 'busybox', 'Cmd': ['sh', '-c', 'while true; do echo alive; sleep 0.1; done']})['Id']\n"
        "s.containers.start(i)\n"
        "print(i)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script, engine.config.data_root, engine.config.exec_root],
                               check=False, capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(
                                   os.path.dirname(os.path.abspath(__file__)))))
    assert completed.returncode == 0, completed.stderr
    container_id = completed.stdout.strip()
    time.sleep(0.3)
    assert engine.state(container_id)["Running"]
    engine.wait_for(lambda: engine.output(container_id).count("alive") >= 3, message="output after the CLI exited")
    engine.containers.stop(container_id, timeout=0)
    assert engine.state(container_id)["ExitCode"] == 137


def test_concurrent_starts_start_the_container_once(engine) -> None:
    import threading

    container_id = engine.create("sleep", "30", HostConfig={"Init": True})
    errors: list[BaseException] = []

    def start() -> None:
        try:
            engine.containers.start(container_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert engine.state(container_id)["Running"]
    # tini forks its child, which shows tini's command line until its exec of sleep
    engine.wait_for(lambda: any(row[-1] == "sleep 30" for row in
                                engine.container_views.top(container_id)["Processes"]),
                    message="the init's child to become sleep 30")
    commands = [row[-1] for row in engine.container_views.top(container_id)["Processes"]]
    assert len(commands) == 2 and commands.count("sleep 30") == 1, commands  # one init, one sleep
    engine.containers.stop(container_id)


def test_wait_returns_at_each_exit_of_a_restarting_container(engine) -> None:
    container_id = engine.run("sh", "-c", "sleep 0.2; exit 2", HostConfig={"RestartPolicy": {"Name": "always"}})
    assert engine.wait(container_id) == 2
    engine.wait_for(lambda: engine.container_views.inspect(container_id)["RestartCount"] >= 1, message="a restart")
    assert engine.wait(container_id) == 2  # the next exit, while the policy keeps restarting it
    engine.containers.stop(container_id, timeout=1)
    state = engine.state(container_id)
    assert not state["Running"] and not state["Restarting"]
    restarts = engine.container_views.inspect(container_id)["RestartCount"]
    time.sleep(0.5)
    assert engine.container_views.inspect(container_id)["RestartCount"] == restarts  # a manual stop ends them


def test_waits_on_a_container_restarting_at_once_are_not_starved(engine) -> None:
    """Several waiters, each waiting for several exits of a container whose command exits at
    once under ``--restart always``: each wait returns (the monitor starts the next run right
    after publishing an exit; waiters used to block on a lock it took back at once)."""
    import threading

    container_id = engine.run("true", HostConfig={"RestartPolicy": {"Name": "always"}})
    results: list[int] = []
    failures: list[BaseException] = []

    def wait_three_times() -> None:
        try:
            for _ in range(3):
                results.append(engine.wait(container_id))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    waiters = [threading.Thread(target=wait_three_times, daemon=True) for _ in range(4)]
    try:
        for thread in waiters:
            thread.start()
        for thread in waiters:
            thread.join(120)
        assert not any(thread.is_alive() for thread in waiters), "a wait is starved"
        assert failures == [] and results == [0] * 12
    finally:
        engine.containers.stop(container_id, timeout=1)
        for thread in waiters:
            thread.join(30)
    assert not engine.state(container_id)["Running"]


def test_log_options_rotate_and_the_none_driver(engine) -> None:
    rotating = engine.run("sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
                          HostConfig={"LogConfig": {"Type": "json-file",
                                                    "Config": {"max-size": "2k", "max-file": "3"}}})
    assert engine.wait(rotating) == 0
    log_path = engine.container_views.inspect(rotating)["LogPath"]
    assert os.path.exists(log_path + ".1") and os.path.exists(log_path + ".2")
    assert not os.path.exists(log_path + ".3")
    assert os.path.getsize(log_path) <= 2000 + 100
    tail = [payload for _, payload in engine.container_streams.logs(rotating, tail="2")]
    assert tail == [b"line-198\n", b"line-199\n"]
    silent = engine.run("echo", "unlogged", HostConfig={"LogConfig": {"Type": "none"}})
    assert engine.wait(silent) == 0
    assert engine.container_views.inspect(silent)["LogPath"] == ""
    with pytest.raises(errdefs.InvalidArgument, match="does not support reading"):
        list(engine.container_streams.logs(silent))


def test_attach_with_logs_replays_the_log(engine) -> None:
    container_id = engine.run("sh", "-c", "echo first; echo second >&2")
    assert engine.wait(container_id) == 0
    sock = engine.container_streams.attach(container_id, stdin=False, stdout=True, stderr=True, stream=False, logs=True)
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert sorted(demultiplex(data)) == [(1, b"first\n"), (2, b"second\n")]


def test_attach_with_logs_and_no_stream_to_a_running_container_returns_and_closes(engine) -> None:
    container_id = engine.run("sh", "-c", "echo ready; sleep 60")
    try:
        engine.wait_for(lambda: engine.output(container_id) == "ready\n", message="the first line in the log")
        sock = engine.container_streams.attach(container_id, stdin=False, stdout=True, stderr=True, stream=False,
                                               logs=True)
        sock.settimeout(10)  # a hang fails here with a timeout
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert list(demultiplex(data)) == [(1, b"ready\n")]
    finally:
        engine.containers.stop(container_id, timeout=0)


def test_read_only_root_with_a_tmpfs(engine) -> None:
    container_id = engine.run("sh", "-c", "touch /x 2>/dev/null && echo wrote-root; echo ok > /run/y && cat /run/y",
                              HostConfig={"ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"}})
    assert engine.wait(container_id) == 0
    assert engine.output(container_id) == "ok\n"
    assert engine.container_files.changes(container_id) == []


def test_sweep_finishes_interrupted_creations_and_removals(engine) -> None:
    from lamina.container.removal import sweep

    containers = engine.containers
    removed = engine.create("true")
    path = containers.store.begin_removal(removed)  # a removal that crashed after its commit point
    orphan = "ab" * 32
    containers.mounts.create(orphan, None)  # a create that crashed before its record
    fresh = "cd" * 32
    containers.mounts.create(fresh, None)   # ... or that is still running
    mounts_dir = os.path.join(containers.mounts.layers.root, "mounts")
    os.utime(os.path.join(mounts_dir, orphan), (1, 1))
    done = sweep(containers.store, containers.mounts, containers.execs, engine.config.exec_root)
    assert f"finished removal of container {removed}" in done
    assert f"removed orphan read-write layer {orphan}" in done
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.join(mounts_dir, removed))
    assert sorted(containers.mounts.container_ids()) == [fresh]


def _pause_in_thread(monkeypatch, function_owner, name: str, when) -> tuple[Any, Any, set[int]]:
    """Make ``function_owner.name`` pause (in the calling thread only) when ``when(*args)``:
    returns (paused, resume) events.  The pause has a 10 s deadline."""
    import threading

    paused, resume = threading.Event(), threading.Event()
    real = getattr(function_owner, name)
    thread_ids: set[int] = set()

    def pausing(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() in thread_ids and when(*args):
            paused.set()
            assert resume.wait(10), f"{name} was not resumed within 10 s"
        return real(*args, **kwargs)

    monkeypatch.setattr(function_owner, name, pausing)
    return paused, resume, thread_ids


def _in_thread(target, thread_ids: set[int]) -> tuple[Any, list[BaseException]]:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        thread_ids.add(threading.get_ident())
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_a_sweep_leaves_a_container_removal_in_progress_alone_even_with_its_tree_half_deleted(
        engine, monkeypatch) -> None:
    from lamina import fsutil
    from lamina.container import removal

    containers = engine.containers
    container_id = engine.create("true")

    def files_first(path: Any) -> bool:
        # what remove_tree does first: unlink the files of the top directory (a lock inside
        # the tree goes with them), then pause before the rest
        if str(path) != os.path.join(containers.store.root, container_id + "-removing"):
            return False
        for entry in os.scandir(path):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        return True

    paused, resume, thread_ids = _pause_in_thread(monkeypatch, fsutil, "remove_tree", files_first)
    thread, errors = _in_thread(lambda: removal.destroy(containers.store, containers.mounts, containers.execs,
                                                        engine.config.exec_root, container_id), thread_ids)
    try:
        assert paused.wait(10), "the removal did not reach its tree deletion within 10 s"
        done = removal.sweep(containers.store, containers.mounts, containers.execs, engine.config.exec_root)
        assert not any(container_id in message for message in done), done
    finally:
        resume.set()
        thread.join(20)
    assert not thread.is_alive(), "the removal did not end within 20 s"
    assert errors == []
    assert not containers.store.exists(container_id)
    assert [name for name in os.listdir(containers.store.root) if container_id in name] == []
    assert container_id not in containers.mounts.container_ids()


def test_a_start_up_sweep_leaves_a_read_write_layer_removal_in_progress_alone(engine, monkeypatch) -> None:
    from lamina.services.compose import _sweep_mounts

    mounts = engine.containers.mounts
    container_id = "ef" * 32
    mounts.create(container_id, None)
    layer = mounts.get(container_id)
    paused, resume, thread_ids = _pause_in_thread(monkeypatch, mounts.driver, "remove",
                                                  lambda cache_id: cache_id == layer.init_id)
    thread, errors = _in_thread(lambda: mounts.remove(container_id), thread_ids)
    try:
        assert paused.wait(10), "the removal did not reach its init layer within 10 s"
        assert mounts.interrupted() == [f".removing-{container_id}"]
        _sweep_mounts(mounts.layers, mounts)  # what every other CLI process does at start-up
        assert mounts.interrupted() == [f".removing-{container_id}"]  # not taken for a leftover
    finally:
        resume.set()
        thread.join(20)
    assert not thread.is_alive(), "the removal did not end within 20 s"
    assert errors == []
    assert mounts.interrupted() == [] and container_id not in mounts.container_ids()
    assert not mounts.driver.exists(layer.mount_id) and not mounts.driver.exists(layer.init_id)
    with pytest.raises(errdefs.NotFound):
        mounts.remove(container_id)  # removing what is gone: NotFound, nothing else
