"""Rootless lamina end to end: an unprivileged user the test creates runs the real ``lamina``
(:mod:`rootless.users`: the user, its environment, its removal with every process it has)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid

import pytest

from rootless.users import (EXIT_ROOTLESS, FIXTURE, FUSE_DEVICE, LAMINA, User, data_root, device_mode, make_user,
                            processes_of, ranges)

# the default network is pasta's, which opens /dev/net/tun as the user: Debian's 0666 for each test
pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("debian_tun")]


def test_a_container_runs_as_the_user_mapped_to_root(user: User) -> None:
    out = user.ok("run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map")
    lines = out.split("\n")
    assert lines[0] == "0"
    maps = [line.split() for line in lines[1:] if line.strip()]
    assert maps[0] == ["0", str(user.uid), "1"]
    assert ["1", str(user.subuid.start), str(user.subuid.count)] in maps
    # the pause process holds the namespaces, as the user, under the exec root
    with open(os.path.join(user.runtime_dir, "lamina", "pause.pid"), encoding="ascii") as handle:
        pid = int(handle.read())
    assert os.stat(f"/proc/{pid}").st_uid == user.uid
    with open(f"/proc/{pid}/uid_map", encoding="ascii") as handle:
        assert handle.read().split()[:3] == ["0", str(user.uid), "1"]
    assert os.path.isdir(os.path.join(data_root(user), "overlay2"))


def test_build_commit_and_save_work_rootless(user: User) -> None:
    context = tempfile.mkdtemp(prefix="lamina-rootless-context-")
    try:
        os.chmod(context, 0o755)
        with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
            handle.write("FROM busybox\n"
                         "RUN mkdir /data && echo built > /data/file && chown 1000:1000 /data/file "
                         "&& rm /etc/group\n")
        os.chmod(os.path.join(context, "Dockerfile"), 0o644)
        user.ok("build", "-q", "-t", "rootless:built", ".", cwd=context)
    finally:
        shutil.rmtree(context)
    out = user.ok("run", "--rm", "rootless:built", "sh", "-c",
                  "stat -c '%u:%g' /data/file; cat /data/file; test -e /etc/group || echo whited-out")
    assert out.split() == ["1000:1000", "built", "whited-out"]
    # on the host the file belongs to the user's subordinate range, uid 1000 inside
    layer = json.loads(user.ok("image", "inspect", "rootless:built"))[0]["GraphDriver"]["Data"]["UpperDir"]
    info = os.stat(os.path.join(layer, "data", "file"))
    assert (info.st_uid, info.st_gid) == (user.subuid.start + 999, ranges("/etc/subgid", user.name)[0].start + 999)
    whiteout = os.lstat(os.path.join(layer, "etc", "group"))
    assert (os.major(whiteout.st_rdev), os.minor(whiteout.st_rdev)) == (0, 0)

    name = "c" + uuid.uuid4().hex[:8]
    user.ok("run", "-d", "--name", name, "rootless:built", "sh", "-c", "echo changed > /data/file; sleep 60")
    deadline = time.monotonic() + 20
    while user.ok("exec", name, "cat", "/data/file").strip() != "changed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    user.ok("commit", name, "rootless:committed")
    user.ok("rm", "-f", name)
    assert user.ok("run", "--rm", "rootless:committed", "cat", "/data/file").strip() == "changed"

    archive = os.path.join(user.runtime_dir, "saved.tar")
    user.ok("save", "-o", archive, "rootless:committed")
    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["rootless:committed"]
    assert len(manifest[0]["Layers"]) == 3


def test_info_names_rootless_and_the_unavailable_limits(user: User) -> None:
    info = json.loads(user.ok("info", "--format", "{{json .}}"))
    assert "name=rootless" in info["SecurityOptions"]
    assert info["CgroupDriver"] == "none" and info["MemoryLimit"] is False and info["PidsLimit"] is False
    assert any("--memory" in warning for warning in info["Warnings"])
    assert ["userxattr", "true"] in info["DriverStatus"]


@pytest.mark.parametrize("args, message", [
    (("--memory", "16m"), b"--memory"),
    (("--pids-limit", "10"), b"--pids-limit"),
    (("--network", "mynetwork"), b"user-defined networks need a bridge"),
    (("--runtime", "crun"), b"native runtime only"),
    (("-p", "127.0.0.1:80:80"), b"cannot expose privileged port 80"),
    (("--mac-address", "02:42:ac:11:00:02"), b"cannot set a container's MAC address"),
], ids=["a memory limit", "a pids limit", "a user-defined network", "an OCI runtime", "a privileged host port",
        "a MAC address"])
def test_what_needs_a_cgroup_or_privileges_is_refused(user: User, args, message) -> None:
    before = user.ok("ps", "-aq")
    result = user.lamina("run", "--rm", *args, "busybox", "true")
    assert result.returncode != 0
    assert message in result.stderr and b"rootless" in result.stderr
    assert user.ok("ps", "-aq") == before


def test_host_network_is_the_users_network(user: User) -> None:
    host = os.readlink("/proc/self/ns/net")
    assert user.ok("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").strip() == host
    none = user.ok("run", "--rm", "--network", "none", "busybox", "sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net")
    namespace, *interfaces = none.split()
    assert namespace != host and interfaces == ["lo"]


def test_stop_kills_the_container_without_a_cgroup(user: User) -> None:
    name = "s" + uuid.uuid4().hex[:8]
    user.ok("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 300 & sleep 300")
    top = user.ok("top", name)
    assert top.count("sleep 300") == 2
    user.ok("stop", "-t", "1", name)
    state = json.loads(user.ok("inspect", name))[0]["State"]
    assert state["Running"] is False
    user.ok("rm", name)


def test_a_container_joins_the_namespaces_of_another_without_a_cgroup(user: User) -> None:
    """Rootless without delegated cgroups the target has no cgroup: its PID 1 being the init of
    a pid namespace is what tells it from a process that took a dead container's pid."""
    name = "t" + uuid.uuid4().hex[:8]
    user.ok("run", "-d", "--name", name, "--network", "none", "--hostname", "target", "busybox", "sleep", "300")
    try:
        target = json.loads(user.ok("inspect", name))[0]["State"]["Pid"]
        network = os.readlink(f"/proc/{target}/ns/net")
        joined = user.ok("run", "--rm", "--network", f"container:{name}", "--pid", f"container:{name}", "busybox",
                         "sh", "-c", "readlink /proc/self/ns/net; hostname; ps -o comm | grep -c sleep").split()
        assert joined == [network, "target", "1"]
        user.ok("stop", "-t", "0", name)
        result = user.lamina("run", "--rm", "--network", f"container:{name}", "busybox", "true")
        assert result.returncode != 0 and b"non running container" in result.stderr
    finally:
        user.lamina("rm", "-f", name)


def test_serve_listens_in_the_runtime_directory_for_the_docker_cli(user: User) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI")
    socket_path = os.path.join(user.runtime_dir, "lamina.sock")
    server = subprocess.Popen(user.command(LAMINA, "serve"), env=user.environment(), cwd=user.runtime_dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(socket_path):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert os.stat(socket_path).st_uid == user.uid
        done = subprocess.run(user.command("docker", "run", "--rm", "busybox", "sh", "-c", "id -u; echo hello"),
                              env=user.environment(DOCKER_HOST=f"unix://{socket_path}"),
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [b"0", b"hello"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_without_newuidmap_nothing_is_created(users: list[User]) -> None:
    fresh = make_user(users)
    empty = tempfile.mkdtemp(prefix="lamina-rootless-path-")
    try:
        os.chmod(empty, 0o755)
        result = fresh.lamina("images", environment=fresh.environment(PATH=empty))
    finally:
        os.rmdir(empty)
    assert result.returncode == EXIT_ROOTLESS, result.stderr
    assert b"newuidmap" in result.stderr and b"uidmap" in result.stderr
    assert os.listdir(fresh.runtime_dir) == []
    assert not os.path.exists(data_root(fresh))


def test_without_a_subordinate_range_nothing_is_created(users: list[User]) -> None:
    fresh = make_user(users, subordinate=False)
    result = fresh.lamina("run", "--rm", "busybox", "true")
    assert result.returncode == EXIT_ROOTLESS, result.stderr
    assert f"no subordinate uid range for {fresh.name} in /etc/subuid".encode() in result.stderr
    assert os.listdir(fresh.runtime_dir) == []
    assert not os.path.exists(data_root(fresh))


def test_without_xdg_runtime_dir_lamina_says_so(user: User) -> None:
    result = user.lamina("images", environment=user.environment(XDG_RUNTIME_DIR=""))
    assert result.returncode == EXIT_ROOTLESS
    assert b"XDG_RUNTIME_DIR" in result.stderr


def test_a_client_of_a_daemon_needs_no_runtime_directory(user: User) -> None:
    missing = os.path.join(user.runtime_dir, "no-such.sock")
    result = user.lamina("-H", f"unix://{missing}", "images", environment=user.environment(XDG_RUNTIME_DIR=""))
    assert result.returncode == 9  # cannot connect: no rootless set-up was attempted
    assert b"Cannot connect" in result.stderr


def test_a_file_owned_outside_the_range_is_named(user: User) -> None:
    import io

    archive = os.path.join(user.runtime_dir, "far-owner.tar")
    with tarfile.open(archive, "w") as out:
        member = tarfile.TarInfo("far/owned")
        member.size, member.uid, member.gid = 2, user.subuid.count + 10, 0
        out.addfile(member, io.BytesIO(b"hi"))
    os.chmod(archive, 0o644)
    before = user.ok("images", "-q")
    result = user.lamina("import", archive, "far:owner")
    assert result.returncode == 3, result.stderr
    assert b"'far/owned'" in result.stderr
    assert f"uid {user.subuid.count + 10} is outside the ids this user namespace maps".encode() in result.stderr
    assert user.ok("images", "-q") == before


def test_a_dead_pause_process_is_replaced(user: User) -> None:
    pid_file = os.path.join(user.runtime_dir, "lamina", "pause.pid")
    user.ok("images")
    with open(pid_file, encoding="ascii") as handle:
        old = int(handle.read())
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while old in processes_of(user.uid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "busybox" in user.ok("images")
    with open(pid_file, encoding="ascii") as handle:
        new = int(handle.read())
    assert new != old and new in processes_of(user.uid)
    assert user.ok("run", "--rm", "busybox", "echo", "again").strip() == "again"
    # an engine cache of the old namespaces refused its next command and left (the command ran
    # in-process, in the new ones); the next cache serves in the new namespaces
    deadline = time.monotonic() + 30
    while any(_namespace(pid, "user") != _namespace(new, "user") for pid in _cache_processes(user)):
        assert time.monotonic() < deadline, "a cache of the dead pause process's namespaces serves on"
        time.sleep(0.05)
    _serving_cache(user)


def _namespace(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _cache_processes(user: User) -> list[int]:
    """The user's engine caches, their fork servers and workers."""
    found = []
    for pid in processes_of(user.uid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"lamina.cli.enginecache" in handle.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def _serving_cache(user: User) -> str:
    """Once the user's engine cache and its fork server serve: the fork server's socket."""
    directory = os.path.join(user.runtime_dir, "lamina", "engine-cache")
    deadline = time.monotonic() + 30
    while True:
        user.ok("images")  # in-process when no cache serves: it starts one at its exit
        sockets = [name for name in os.listdir(directory) if name.endswith(".fork.sock")] \
            if os.path.isdir(directory) else []
        if sockets and all(os.path.exists(os.path.join(directory, name[:-len(".fork.sock")] + ".pid")) for name in sockets):
            return os.path.join(directory, sockets[0])
        assert time.monotonic() < deadline, "no engine cache started for the user"
        time.sleep(0.1)


def test_the_users_commands_run_in_its_engine_cache_inside_its_namespaces(user: User) -> None:
    """An unprivileged user's commands reach its own engine cache (lamina.cli.enginecache), which
    an in-process command started inside the user's rootless namespaces: the cache answers the
    reads, its fork server's workers run the others, as the user, in the pause process's
    namespaces, with the user's own socket under its runtime directory."""
    fork_socket = _serving_cache(user)
    status = os.stat(fork_socket)
    assert (status.st_uid, status.st_mode & 0o777) == (user.uid, 0o600)
    with open(os.path.join(user.runtime_dir, "lamina", "pause.pid"), encoding="ascii") as handle:
        pause = int(handle.read())
    with open(fork_socket[:-len(".sock")] + ".pid", encoding="ascii") as handle:
        fork_server = int(handle.read())
    name = "c" + uuid.uuid4().hex[:8]
    run = subprocess.Popen(user.command(LAMINA, "run", "--rm", "--name", name, "--network", "none", "busybox", "sh", "-c",
                                        "cat /proc/self/uid_map; sleep 2"),
                           env=user.environment(), cwd=user.runtime_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while not workers:
            workers = [pid for pid in _cache_processes(user) if _parent(pid) == fork_server]
            assert time.monotonic() < deadline and run.poll() is None, "no worker of the fork server ran the command"
            time.sleep(0.02)
        for kind in ("user", "mnt"):
            assert _namespace(workers[0], kind) == _namespace(pause, kind)
        assert os.stat(f"/proc/{workers[0]}").st_uid == user.uid
        out, error = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, error
    assert out.split()[:3] == [b"0", str(user.uid).encode(), b"1"]
    assert name not in user.ok("ps", "-a", "--format", "{{.Names}}")


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_first_invocations_at_once_make_one_pause_process(users: list[User]) -> None:
    fresh = make_user(users)
    processes = [subprocess.Popen(fresh.command(LAMINA, "images", "-q"), env=fresh.environment(), cwd=fresh.runtime_dir,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for process in processes:
        _, error = process.communicate(timeout=120)
        assert process.returncode == 0, error
    pauses = []
    for pid in processes_of(fresh.uid):
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if handle.read().startswith(b"lamina-pause\0"):
                pauses.append(pid)
    with open(os.path.join(fresh.runtime_dir, "lamina", "pause.pid"), encoding="ascii") as handle:
        assert pauses == [int(handle.read())]
    # no invocation swept another's overlay2 probe away (and so fell back to another driver)
    assert fresh.ok("info", "--format", "{{.Driver}}").strip() == "overlay2"


def test_fuse_overlayfs_is_the_rootless_fallback_driver(user: User) -> None:
    """The driver after overlay2 in the rootless priority, run by the user through /dev/fuse
    (Debian's 0666 for this test, as /dev/net/tun): load, run, a copy-up, commit and diff."""
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs is not installed (Makefile APT_PACKAGES)")
    root = os.path.join(user.home, "fuse-root")
    engine = ("--data-root", root, "--storage-driver", "fuse-overlayfs")
    name = "f" + uuid.uuid4().hex[:8]
    with device_mode(FUSE_DEVICE, 0o666):
        try:
            user.ok(*engine, "load", "-q", "-i", os.path.abspath(FIXTURE))
            assert user.ok(*engine, "info", "--format", "{{.Driver}}").strip() == "fuse-overlayfs"
            user.ok(*engine, "run", "--name", name, "--network", "none", "busybox",
                    "sh", "-c", "echo changed > /etc/motd; rm /bin/true")
            assert sorted(user.ok(*engine, "diff", name).split("\n")) == ["", "A /etc/motd", "C /bin", "C /etc",
                                                                          "D /bin/true"]
            user.ok(*engine, "commit", name, "fused:1")
            assert user.ok(*engine, "run", "--rm", "--network", "none", "fused:1", "sh", "-c",
                           "cat /etc/motd; ls /bin/true 2>&1 || echo gone").split()[0] == "changed"
            mounts = [line for line in open("/proc/self/mountinfo", encoding="utf-8") if "fuse-root" in line]
            assert mounts == []
        finally:
            user.lamina(*engine, "rm", "-f", name)
            user.lamina(*engine, "system", "prune", "-af")
