"""Rootless lamina end to end: an unprivileged user the test creates runs the real ``lamina``.

Set-up needs root (``useradd``, a range in /etc/subuid and /etc/subgid, ``setpriv``); the
commands then run as that user with their own ``HOME``, ``XDG_RUNTIME_DIR`` and ``PYTHONPATH``.
Teardown kills every process of the user by pid (its pause process, monitors, a server), which
ends the namespaces and the mounts made in them, then removes the user, its home (the data
root) and its subordinate ranges.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from lamina.records import dataclass

pytestmark = pytest.mark.privileged

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "busybox-docker-archive.tar")
LAMINA = os.path.join(os.path.dirname(sys.executable), "lamina")
SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_ROOTLESS = 10
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


class Range(NamedTuple):
    start: int
    count: int


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    runtime_dir: str
    subuid: Range | None

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {"HOME": self.home, "XDG_RUNTIME_DIR": self.runtime_dir, "USER": self.name,
                       "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": SOURCE, "LANG": "C.UTF-8"}
        environment.update(extra)
        return {key: value for key, value in environment.items() if value}

    def command(self, *args: str) -> list[str]:
        return [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", *args]

    def lamina(self, *args: str, input: bytes | None = None, cwd: str | None = None,
               environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(LAMINA, *args), input=input, capture_output=True, timeout=120,
                              cwd=cwd or self.runtime_dir, env=environment or self.environment())

    def ok(self, *args: str, **kwargs) -> str:
        result = self.lamina(*args, **kwargs)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.decode()


def _ranges(path: str, name: str) -> list[Range]:
    with open(path, encoding="utf-8") as handle:
        return [Range(int(fields[1]), int(fields[2])) for fields in
                (line.strip().split(":") for line in handle) if len(fields) == 3 and fields[0] == name]


def _processes_of(uid: int) -> list[int]:
    """The live (not zombie) processes of ``uid``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                    if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except (OSError, IndexError):
                continue
            pids.append(int(name))
    return pids


def _kill_processes_of(uid: int) -> None:
    """SIGKILL, by pid, every process the test user has (the test started them all)."""
    deadline = time.monotonic() + 10
    while True:
        pids = _processes_of(uid)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@pytest.fixture(scope="module")
def users() -> Iterator[list[User]]:
    """Made on demand by :func:`make_user`; all removed at the end of the module."""
    made: list[User] = []
    yield made
    for user in made:
        _kill_processes_of(user.uid)
        ranges = _ranges("/etc/subuid", user.name)
        for id_range in ranges:
            last = id_range.start + id_range.count - 1
            subprocess.run(["usermod", "--del-subuids", f"{id_range.start}-{last}", user.name], capture_output=True)
        for id_range in _ranges("/etc/subgid", user.name):
            last = id_range.start + id_range.count - 1
            subprocess.run(["usermod", "--del-subgids", f"{id_range.start}-{last}", user.name], capture_output=True)
        subprocess.run(["userdel", "--remove", user.name], capture_output=True)
        shutil.rmtree(user.home, ignore_errors=True)
        shutil.rmtree(os.path.dirname(user.runtime_dir), ignore_errors=True)


def make_user(users: list[User], *, subordinate: bool = True) -> User:
    name = "lr" + uuid.uuid4().hex[:10]
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    base = tempfile.mkdtemp(prefix="lamina-rootless-")
    os.chmod(base, 0o755)
    runtime_dir = os.path.join(base, "run")
    os.mkdir(runtime_dir, 0o700)
    os.chown(runtime_dir, entry.pw_uid, entry.pw_gid)
    user = User(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir, runtime_dir=runtime_dir,
                subuid=None)
    users.append(user)
    ranges = _ranges("/etc/subuid", name)
    if subordinate and not ranges:
        # useradd adds ranges when login.defs asks it to; else one above every range in use
        with open("/etc/subuid", encoding="utf-8") as handle:
            taken = [int(f[1]) + int(f[2]) for f in (line.split(":") for line in handle) if len(f) == 3]
        start = max([100000, *taken])
        subprocess.run(["usermod", "--add-subuids", f"{start}-{start + 65535}",
                        "--add-subgids", f"{start}-{start + 65535}", name], check=True, capture_output=True)
    elif not subordinate:
        for path, option in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
            for id_range in _ranges(path, name):
                subprocess.run(["usermod", option, f"{id_range.start}-{id_range.start + id_range.count - 1}",
                                name], check=True, capture_output=True)
    ranges = _ranges("/etc/subuid", name)
    return User(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir, runtime_dir=runtime_dir,
                subuid=ranges[0] if ranges else None)


@pytest.fixture(scope="module")
def user(users: list[User]) -> User:
    """A user with the busybox image loaded."""
    made = make_user(users)
    assert made.subuid is not None
    made.ok("load", "-q", "-i", os.path.abspath(FIXTURE))
    return made


def _data_root(user: User) -> str:
    return os.path.join(user.home, ".local", "share", "lamina")


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
    assert os.path.isdir(os.path.join(_data_root(user), "overlay2"))


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
    assert (info.st_uid, info.st_gid) == (user.subuid.start + 999, _ranges("/etc/subgid", user.name)[0].start + 999)
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
    (("--network", "bridge"), b"only --network none"),
    (("--runtime", "crun"), b"native runtime only"),
    (("-p", "127.0.0.1:18080:80"), b"cannot publish ports"),
], ids=["a memory limit", "a pids limit", "the bridge network", "an OCI runtime", "a published port"])
def test_what_needs_a_cgroup_or_a_bridge_is_refused(user: User, args, message) -> None:
    before = user.ok("ps", "-aq")
    result = user.lamina("run", "--rm", *args, "busybox", "true")
    assert result.returncode != 0
    assert message in result.stderr and b"rootless" in result.stderr
    assert user.ok("ps", "-aq") == before


def test_host_network_is_the_users_network(user: User) -> None:
    host = os.readlink("/proc/self/ns/net")
    assert user.ok("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").strip() == host
    default = user.ok("run", "--rm", "busybox", "sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net")
    namespace, *interfaces = default.split()
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
    assert not os.path.exists(_data_root(fresh))


def test_without_a_subordinate_range_nothing_is_created(users: list[User]) -> None:
    fresh = make_user(users, subordinate=False)
    result = fresh.lamina("run", "--rm", "busybox", "true")
    assert result.returncode == EXIT_ROOTLESS, result.stderr
    assert f"no subordinate uid range for {fresh.name} in /etc/subuid".encode() in result.stderr
    assert os.listdir(fresh.runtime_dir) == []
    assert not os.path.exists(_data_root(fresh))


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
    while old in _processes_of(user.uid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "busybox" in user.ok("images")
    with open(pid_file, encoding="ascii") as handle:
        new = int(handle.read())
    assert new != old and new in _processes_of(user.uid)
    assert user.ok("run", "--rm", "busybox", "echo", "again").strip() == "again"


def test_first_invocations_at_once_make_one_pause_process(users: list[User]) -> None:
    fresh = make_user(users)
    processes = [subprocess.Popen(fresh.command(LAMINA, "images", "-q"), env=fresh.environment(), cwd=fresh.runtime_dir,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for process in processes:
        _, error = process.communicate(timeout=120)
        assert process.returncode == 0, error
    pauses = []
    for pid in _processes_of(fresh.uid):
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if handle.read().startswith(b"lamina-pause\0"):
                pauses.append(pid)
    with open(os.path.join(fresh.runtime_dir, "lamina", "pause.pid"), encoding="ascii") as handle:
        assert pauses == [int(handle.read())]
    # no invocation swept another's overlay2 probe away (and so fell back to another driver)
    assert fresh.ok("info", "--format", "{{.Driver}}").strip() == "overlay2"
