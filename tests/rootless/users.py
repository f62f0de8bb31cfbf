"""The unprivileged users of the rootless tests, and the ``/dev/net/tun`` mode they need.

Set-up needs root (``useradd``, a range in /etc/subuid and /etc/subgid, ``setpriv``); the
commands then run as that user with their own ``HOME``, ``XDG_RUNTIME_DIR`` and ``PYTHONPATH``.
:func:`remove_users` kills every process of the user by pid (its pause process, monitors, pasta
processes, a server), which ends the namespaces and the mounts made in them, then removes the
user, its home (the data root) and its subordinate ranges.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
import contextlib
from contextlib import contextmanager
from typing import NamedTuple

from lamina.records import dataclass
from tests.processes import kill_until_gone

__all__ = ["FIXTURE", "LAMINA", "EXIT_ROOTLESS", "TUN_DEVICE", "Range", "User", "ranges", "processes_of",
           "kill_processes_of", "make_user", "remove_users", "data_root", "tun_mode", "device_mode", "FUSE_DEVICE"]

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "busybox-docker-archive.tar")
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


def ranges(path: str, name: str) -> list[Range]:
    with open(path, encoding="utf-8") as handle:
        return [Range(int(fields[1]), int(fields[2])) for fields in
                (line.strip().split(":") for line in handle) if len(fields) == 3 and fields[0] == name]


def processes_of(uid: int) -> list[int]:
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


def kill_processes_of(uid: int) -> None:
    """SIGKILL, by pid, every process the test user has (the test started them all)."""
    kill_until_gone(lambda: processes_of(uid), 10)


def remove_users(made: list[User]) -> None:
    """Kill every process of each user by pid, then remove the user, its home and its ranges."""
    for user in made:
        kill_processes_of(user.uid)
        for id_range in ranges("/etc/subuid", user.name):
            last = id_range.start + id_range.count - 1
            subprocess.run(["usermod", "--del-subuids", f"{id_range.start}-{last}", user.name], capture_output=True)
        for id_range in ranges("/etc/subgid", user.name):
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
    if subordinate and not ranges("/etc/subuid", name):
        # useradd adds ranges when login.defs asks it to; else one above every range in use
        with open("/etc/subuid", encoding="utf-8") as handle:
            taken = [int(f[1]) + int(f[2]) for f in (line.split(":") for line in handle) if len(f) == 3]
        start = max([100000, *taken])
        subprocess.run(["usermod", "--add-subuids", f"{start}-{start + 65535}",
                        "--add-subgids", f"{start}-{start + 65535}", name], check=True, capture_output=True)
    elif not subordinate:
        for path, option in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
            for id_range in ranges(path, name):
                subprocess.run(["usermod", option, f"{id_range.start}-{id_range.start + id_range.count - 1}",
                                name], check=True, capture_output=True)
    found = ranges("/etc/subuid", name)
    return User(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir, runtime_dir=runtime_dir,
                subuid=found[0] if found else None)


def data_root(user: User) -> str:
    return os.path.join(user.home, ".local", "share", "lamina")




TUN_DEVICE = "/dev/net/tun"
FUSE_DEVICE = "/dev/fuse"


@contextmanager
def device_mode(path: str, mode: int) -> Iterator[None]:
    """The device node ``path`` in ``mode`` for the duration of a test, its own mode restored after.

    Tests only: this host's /dev/net/tun and /dev/fuse are 0600 where Debian's udev makes them
    0666 (/usr/lib/udev/rules.d/50-udev-default.rules), and an unprivileged pasta or
    fuse-overlayfs needs to open them; lamina itself never changes them.  The exclusive flock on
    the device node serialises the tests of every pytest worker that change the mode, so that
    none sees it change under it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        original = stat.S_IMODE(os.fstat(fd).st_mode)
        try:
            os.fchmod(fd, mode)
            yield
        finally:
            os.fchmod(fd, original)
    finally:
        os.close(fd)


def tun_mode(mode: int) -> contextlib.AbstractContextManager[None]:
    """``/dev/net/tun`` in ``mode`` (:func:`device_mode`): rootless containers' pasta opens it."""
    return device_mode(TUN_DEVICE, mode)
