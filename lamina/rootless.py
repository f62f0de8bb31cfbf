"""Rootless lamina: the user and mount namespaces an unprivileged user's lamina works in.

Like Podman's pause process: the first ``lamina`` an unprivileged user runs forks a *pause
process* that unshares a user namespace and a mount namespace and then only sleeps (it execs
``sleep infinity`` with ``argv[0]`` ``lamina-pause``: about 1 MiB, no interpreter).  Its user
namespace is mapped by the setuid helpers ``newuidmap`` / ``newgidmap`` (Debian ``uidmap``)::

    0            <the user's uid>    1         uid 0 inside = the user
    1            <subuid start>      <count>   1..count = the user's range in /etc/subuid
    1+count      <next range start>  ...       (every range of the user, in file order)

and the same for gids from ``/etc/subgid``.  Every later ``lamina`` (CLI in-process engine or
``lamina serve``) joins it before it touches the store: ``setns`` on the user namespace, then
on the mount namespace, then back to its working directory.  The monitors, forked by the
process that started the container, live inside too; overlay mounts made there are visible
only there, and go away with the namespace when the pause process and every monitor are gone.
The network namespace is not unshared: ``--network host`` is the user's host network.  Where
the host delegates a cgroup v2 subtree to the user, the pause process lives in the leaf
``<delegated>/lamina/pause`` and the lamina processes in ``<delegated>/lamina/engine``
(:mod:`lamina.runtime.delegation`).

On-disk format (``<exec-root>`` is ``$XDG_RUNTIME_DIR/lamina``, mode 0700)::

    <exec-root>/pause.pid    the pause process's pid, decimal, newline (atomic write)
    <exec-root>/pause.lock   flock held while a pause process is made (one at a time)

Commit point: the rename that publishes ``pause.pid``, after the pause process is mapped.  A
pid file naming anything but a live ``lamina-pause`` of this user (the process died, the pid
was reused) is replaced by a new pause process.

Without ``newuidmap``/``newgidmap``, or without a range for the user in ``/etc/subuid`` or
``/etc/subgid``, :class:`RootlessSetupError` names the cause and nothing is created: a
single-uid mapping is refused, since images with files of other owners would not extract.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from lamina import errdefs
from lamina.config import ROOTLESS_UID_ENVIRONMENT

__all__ = ["RootlessSetupError", "IdRange", "subordinate_ranges", "id_mapping", "join",
           "pause_pid", "pause_pid_of", "joined", "PAUSE_NAME", "PID_FILE"]

PAUSE_NAME = "lamina-pause"
PID_FILE = "pause.pid"
_LOCK_FILE = "pause.lock"
_SUBUID = "/etc/subuid"
_SUBGID = "/etc/subgid"
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000


class RootlessSetupError(errdefs.FailedPrecondition):
    """The rootless namespaces cannot be made; the message names the missing piece."""


class IdRange(NamedTuple):
    """A subordinate id range: ``count`` host ids from ``start``."""

    start: int
    count: int


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def subordinate_ranges(path: str, user: str, uid: int) -> list[IdRange]:
    """The ranges of ``user`` (by name or by number) in an ``/etc/subuid``-format file."""
    ranges: list[IdRange] = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return ranges
    except OSError as exc:
        raise RootlessSetupError(f"cannot read {path}: {exc.strerror}") from exc
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        if fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) > 0:
            ranges.append(IdRange(int(fields[1]), int(fields[2])))
    return ranges


def id_mapping(own: int, ranges: list[IdRange]) -> list[str]:
    """The arguments of newuidmap/newgidmap after the pid: own id at 0, the ranges from 1."""
    arguments = ["0", str(own), "1"]
    inside = 1
    for id_range in ranges:
        arguments += [str(inside), str(id_range.start), str(id_range.count)]
        inside += id_range.count
    return arguments


class _Mapping(NamedTuple):
    newuidmap: str
    newgidmap: str
    uid_mapping: list[str]
    gid_mapping: list[str]
    user: str


def _mapping(uid: int, gid: int) -> _Mapping:
    """Everything the mapping needs, checked before anything is made."""
    import shutil  # not on the join's fast path: it imports much (bz2, lzma, fnmatch)

    helpers = []
    for name in ("newuidmap", "newgidmap"):
        path = shutil.which(name)
        if path is None:
            raise RootlessSetupError(
                f"rootless lamina needs {name} (Debian package uidmap), which is not in PATH")
        helpers.append(path)
    user = _user_name(uid)
    uid_ranges = subordinate_ranges(_SUBUID, user, uid)
    if not uid_ranges:
        raise RootlessSetupError(
            f"no subordinate uid range for {user} in {_SUBUID} (add a line such as "
            f"'{user}:100000:65536'; lamina does not run rootless with a single uid)")
    gid_ranges = subordinate_ranges(_SUBGID, user, uid)
    if not gid_ranges:
        raise RootlessSetupError(
            f"no subordinate gid range for {user} in {_SUBGID} (add a line such as "
            f"'{user}:100000:65536'; lamina does not run rootless with a single gid)")
    return _Mapping(helpers[0], helpers[1], id_mapping(uid, uid_ranges), id_mapping(gid, gid_ranges), user)


def pause_pid(exec_root: str, uid: int) -> int | None:
    """The pid of this user's live pause process recorded in ``exec_root``, or None."""
    try:
        with open(os.path.join(exec_root, PID_FILE), "r", encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = pause_pid_of(int(text))
    try:
        if pid is None or os.stat(f"/proc/{pid}").st_uid != uid:
            return None
    except OSError:
        return None
    return pid


def pause_pid_of(pid: int) -> int | None:
    """``pid`` if it is a live pause process (its command line is lamina-pause's), else None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
    except OSError:
        return None
    return pid if command == PAUSE_NAME.encode() + b"\0infinity\0" else None


def joined(exec_root: str) -> bool:
    """Whether this process works in the user and mount namespaces of the live pause process
    recorded in ``exec_root``: false once that process died or was replaced (a long-lived
    process that joined them, such as the engine cache, then works in namespaces no later
    command joins)."""
    pid = pause_pid(exec_root, os.geteuid())  # the user is uid 0 inside its namespace
    try:
        return pid is not None and all(os.readlink(f"/proc/{pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}")
                                       for kind in ("user", "mnt"))
    except OSError:
        return False


def _setns(pid: int) -> None:
    from lamina import sys as lsys

    for kind, flag in (("user", _CLONE_NEWUSER), ("mnt", _CLONE_NEWNS)):
        fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            lsys.setns(fd, flag)
        finally:
            os.close(fd)


def _spawn_pause(uid: int, gid: int, cgroup: str | None = None) -> int:
    """Fork the pause process, map its user namespace; its pid.  ``cgroup``: the directory
    of the cgroup v2 leaf it moves into first (a delegated cgroup's ``lamina/pause``)."""
    mapping = _mapping(uid, gid)
    import subprocess

    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    # closed by the pause process's exec: EOF on exec_read says it is lamina-pause now
    exec_read, exec_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the pause process
        code = 1
        try:
            os.close(ready_read)
            os.close(go_write)
            os.close(exec_read)
            os.setsid()
            if cgroup is not None:
                _enter_cgroup(cgroup)
            from lamina import sys as lsys

            lsys.unshare(_CLONE_NEWUSER | _CLONE_NEWNS)
            os.write(ready_write, b"u")
            if os.read(go_read, 1) == b"g":
                null = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(null, target)
                os.closerange(3, exec_write)
                os.closerange(exec_write + 1, 65536)
                os.execv("/bin/sleep", [PAUSE_NAME, "infinity"])
        except BaseException:
            pass
        os._exit(code)
    os.close(ready_write)
    os.close(go_read)
    os.close(exec_write)
    try:
        if os.read(ready_read, 1) != b"u":
            raise RootlessSetupError("the pause process could not make a user namespace "
                                     "(are unprivileged user namespaces disabled?)")
        for helper, arguments in ((mapping.newuidmap, mapping.uid_mapping),
                                  (mapping.newgidmap, mapping.gid_mapping)):
            done = subprocess.run([helper, str(pid), *arguments], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RootlessSetupError(
                    f"{os.path.basename(helper)} {' '.join(arguments)} failed for {mapping.user}: "
                    f"{(done.stderr or done.stdout).strip()}")
        os.write(go_write, b"g")
        while os.read(exec_read, 1):
            pass
        if pause_pid_of(pid) is None:
            raise RootlessSetupError(f"the pause process did not start /bin/sleep ({PAUSE_NAME})")
    except BaseException:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(ready_read)
        os.close(go_write)
        os.close(exec_read)
    return pid


def _enter_cgroup(directory: str) -> None:
    """Move the calling process into the cgroup ``directory``; where that fails it stays in
    its parent's cgroup (a delegated leaf too: containers' limits do not depend on it)."""
    try:
        fd = os.open(os.path.join(directory, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError:
        pass


def join(exec_root: str, uid: int, gid: int, pause_cgroup: str | None = None) -> None:
    """Enter this user's rootless namespaces, making the pause process first if needed (in
    the cgroup directory ``pause_cgroup`` when given: :mod:`lamina.runtime.delegation`).

    The calling process must be single-threaded (``setns`` into a user namespace).  Afterwards
    it runs as uid 0 inside, in its previous working directory, with
    :data:`~lamina.config.ROOTLESS_UID_ENVIRONMENT` set for it and its children."""
    pid = pause_pid(exec_root, uid)
    if pid is None:
        _mapping(uid, gid)  # the clear errors come before anything is created
        from lamina import fsutil

        try:
            fsutil.make_dirs(exec_root, 0o700)
        except OSError as exc:
            raise RootlessSetupError(f"cannot create the exec root {exec_root}: {exc.strerror}") from exc
        with fsutil.file_lock(os.path.join(exec_root, _LOCK_FILE)):
            pid = pause_pid(exec_root, uid)
            if pid is None:
                pid = _spawn_pause(uid, gid, pause_cgroup)
                fsutil.atomic_replace(os.path.join(exec_root, PID_FILE), f"{pid}\n", 0o600)
    try:
        directory: str | None = os.getcwd()
    except OSError:
        directory = None
    try:
        _setns(pid)
    except OSError as exc:
        raise RootlessSetupError(f"cannot join the rootless namespaces of pause process {pid}: "
                                 f"{exc.strerror}") from exc
    os.environ[ROOTLESS_UID_ENVIRONMENT] = str(uid)
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError:
            os.chdir("/")
