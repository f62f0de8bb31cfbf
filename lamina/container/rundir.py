"""Run-time state of containers under the exec root (usually a tmpfs: none of it need survive a reboot).

Layout, under ``<exec-root>/containers/<id>/`` (mode 0700)::

    monitor.lock   ``flock``\\ ed (exclusive) by the container's monitor for its whole life:
                   a lock that can be taken means no monitor is alive; it holds the pid of the
                   monitor that holds it (for people and tests; liveness is the lock)
    running.lock   the last exit, :class:`ExitInfo` as JSON ``{"Sequence": n, "ExitCode": c,
                   "Error": "...", "OOMKilled": b, "Removed": b}``, rewritten in place by the
                   monitor at every exit (failed start, abandoned restart) with ``Sequence``
                   bumped, and never replaced, so that a waiter holding it open reads the exit
                   of a container that ``--rm`` removed meanwhile
    exit-even.lock, exit-odd.lock
                   the turn locks: ``flock``\\ ed (exclusive) by the monitor from the moment it
                   starts working towards the exit with the next ``Sequence`` (a run, a
                   restart's back-off) until it has published that exit; even and odd
                   sequences alternate between the two files
    runtime.json   the :class:`~lamina.runtime.api.RuntimeState` of the current run
    attach.sock    the monitor's attach socket; ctl.sock its control socket
    monitor.log    the monitor's own log (warnings and errors; made by the first)

``<exec-root>/oci/`` holds the bundles of the OCI runtimes.

Waiting for an exit: a waiter remembers the ``Sequence`` n it saw, then reads ``running.lock``
without any lock; while its Sequence is still n it takes the turn lock of exit n + 1 shared,
which blocks until the monitor published that exit.  The monitor takes the turn lock of exit
n + 2 (the other file) for the next run, so a waiter woken by the release of n + 1 has a whole
run and back-off to take its lock: a restart loop cannot starve it (with a single lock taken
back between runs, it could wait forever).  The record is rewritten with one ``pwrite``,
padded with blanks to its previous length (never truncated first: a reader never sees it
empty); a reader that still catches a torn write reads again.

Unix socket paths are limited to 108 bytes, so sockets are bound and connected
through ``/proc/self/fd/<directory fd>/<name>``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable

from lamina import errdefs, fsutil
from lamina.records import asdict, dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:  # imported where used: whether a monitor lives is a lock and needs neither
    import socket

    from lamina.runtime.api import Runtime, RuntimeState

__all__ = ["ExitInfo", "RunDirectory", "RunLock", "bind_unix", "connect_unix"]

_TURN_LOCKS = ("exit-even.lock", "exit-odd.lock")


@dataclass(frozen=True)
class ExitInfo:
    """The last exit of a container, as ``running.lock`` holds it."""

    sequence: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    removed: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"Sequence": self.sequence, "ExitCode": self.exit_code, "Error": self.error,
                           "OOMKilled": self.oom_killed, "Removed": self.removed}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ExitInfo:
        try:
            value = json.loads(data) if data.strip() else {}
        except ValueError:
            value = {}
        if not isinstance(value, dict):
            return cls()
        try:
            return cls(sequence=int(value.get("Sequence") or 0), exit_code=int(value.get("ExitCode") or 0),
                       error=str(value.get("Error") or ""), oom_killed=bool(value.get("OOMKilled")),
                       removed=bool(value.get("Removed")))
        except (TypeError, ValueError):
            return cls()


class RunLock:
    """``running.lock`` and the turn locks next to it, opened (created when missing)."""

    def __init__(self, path: str) -> None:
        directory = os.path.dirname(path)
        self.fd = -1
        self.turns: tuple[int, ...] = ()
        self.held: int | None = None
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.turns = tuple(os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                               for name in _TURN_LOCKS)
        except (FileNotFoundError, NotADirectoryError) as exc:
            self.close()
            raise errdefs.NotFound(f"{path}: the container's run directory is gone") from exc

    def read(self) -> ExitInfo:
        for _attempt in range(20):
            size = os.fstat(self.fd).st_size
            data = os.pread(self.fd, size, 0) if size else b""
            if not data.strip() or _complete(data):
                break
            time.sleep(0.0005)  # a write in progress
        return ExitInfo.from_json(data)

    def write(self, info: ExitInfo) -> None:
        data = info.to_json()
        os.pwrite(self.fd, data.ljust(os.fstat(self.fd).st_size), 0)

    def _turn(self, sequence: int) -> int:
        return self.turns[sequence % 2]

    # -- the monitor's side ----------------------------------------------------------------------

    def hold_next(self) -> None:
        """Take the turn lock of the next exit (blocks while waiters read the previous one)."""
        assert self.held is None, "the turn lock of an unpublished exit is held already"
        fd = self._turn(self.read().sequence + 1)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.held = fd

    def publish(self, *, exit_code: int, error: str = "", oom_killed: bool = False,
                removed: bool = False) -> ExitInfo:
        """Record the next exit (the caller holds its turn lock); waiters wake at :meth:`release`."""
        info = ExitInfo(sequence=self.read().sequence + 1, exit_code=exit_code, error=error,
                        oom_killed=oom_killed, removed=removed)
        self.write(info)
        return info

    def release(self) -> None:
        if self.held is not None:
            fcntl.flock(self.held, fcntl.LOCK_UN)
            self.held = None

    # -- the waiters' side -----------------------------------------------------------------------

    def close(self) -> None:
        for fd in (self.fd, *self.turns):
            if fd >= 0:
                os.close(fd)
        self.fd = -1
        self.turns = ()
        self.held = None

    def wait_exit(self, after: int, *, timeout: float | None = None,
                  give_up: Callable[[], bool] = lambda: False) -> ExitInfo | None:
        """The first exit with a Sequence above ``after`` (the latest one when several
        happened meanwhile); None when ``timeout`` passed or ``give_up()`` said so (it is
        asked whenever no monitor is working towards the next exit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while True:
            info = self.read()
            if info.sequence > after:
                return info
            turn = self._turn(after + 1)
            try:
                fcntl.flock(turn, fcntl.LOCK_SH | fcntl.LOCK_NB)
                acquired = True
            except BlockingIOError:
                acquired = False
            if not acquired and deadline is None:
                fcntl.flock(turn, fcntl.LOCK_SH)  # blocks until the monitor published exit after + 1
                acquired = True
            if acquired:
                try:
                    info = self.read()
                finally:
                    fcntl.flock(turn, fcntl.LOCK_UN)
                if info.sequence > after:
                    return info
                if give_up():
                    return None
                pause = delay
                delay = min(delay * 1.5, 0.05)
            else:
                pause = 0.005
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                pause = min(pause, remaining)
            time.sleep(pause)


def _complete(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


class RunDirectory:
    def __init__(self, exec_root: str, container_id: str) -> None:
        self.exec_root = exec_root
        self.container_id = container_id
        self.path = os.path.join(exec_root, "containers", container_id)
        self.monitor_lock = os.path.join(self.path, "monitor.lock")
        self.running_lock = os.path.join(self.path, "running.lock")
        self.runtime_file = os.path.join(self.path, "runtime.json")
        self.attach_socket = os.path.join(self.path, "attach.sock")
        self.control_socket = os.path.join(self.path, "ctl.sock")
        self.monitor_log = os.path.join(self.path, "monitor.log")

    def create(self) -> None:
        os.makedirs(self.path, mode=0o700, exist_ok=True)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def run_lock(self) -> RunLock:
        self.create()
        return RunLock(self.running_lock)

    def monitor_alive(self) -> bool:
        try:
            fd = os.open(self.monitor_lock, os.O_RDWR | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def monitor_pid(self) -> int | None:
        """The pid of the live monitor, if any (written into the lock it holds)."""
        if not self.monitor_alive():
            return None
        try:
            with open(self.monitor_lock, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def read_runtime_state(self) -> RuntimeState | None:
        from lamina.runtime.api import RuntimeState

        try:
            value = fsutil.read_json(self.runtime_file)
            return RuntimeState(id=str(value["id"]), pid=int(value["pid"]), runtime=str(value["runtime"]),
                                cgroup=str(value.get("cgroup") or ""), bundle=str(value.get("bundle") or ""))
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
            return None

    def write_runtime_state(self, state: RuntimeState) -> None:
        # atomic (readers see a whole file) but not synced: a reboot ends the run it describes
        fsutil.atomic_replace(self.runtime_file, json.dumps(asdict(state), separators=(",", ":")), 0o600)

    def clear_runtime_state(self) -> None:
        try:
            os.unlink(self.runtime_file)
        except FileNotFoundError:
            pass

    def release_run(self, runtime: Callable[[str], Runtime]) -> str:
        """Release what ``runtime.json`` describes, the run of a monitor that died before it
        released it (processes left in its cgroup, the cgroups, the runtime's state; the
        runtime is ``runtime(name)``), then forget the file, released or not (nothing tries
        again); what could not be done ("" when all was, or there was nothing)."""
        state = self.read_runtime_state()
        if state is None:
            return ""
        try:
            for _attempt in range(100):
                try:
                    runtime(state.runtime).delete(state, force=True)
                    return ""
                except errdefs.Conflict:  # processes still dying
                    time.sleep(0.02)
            return "processes of the container remain in its cgroup"
        except errdefs.LaminaError as exc:
            return f"cannot release the container's runtime state: {exc}"
        finally:
            self.clear_runtime_state()

    def remove(self) -> None:
        from lamina.mount import unmount_all_under

        # a pin of a volume subpath left by a crashed monitor: never walk into the volume
        unmount_all_under(self.path)
        fsutil.remove_tree(self.path)


def _via_directory(path: str) -> tuple[int, str]:
    directory, name = os.path.split(path)
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}/{name}"


def bind_unix(path: str, backlog: int = 16) -> socket.socket:
    """A listening unix socket at ``path`` (any length); a stale socket file is replaced."""
    import socket

    fd, address = _via_directory(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(fd)
    return sock


def connect_unix(path: str, timeout: float | None = 10.0) -> socket.socket:
    """A connection to the unix socket at ``path`` (any length)."""
    import socket

    try:
        fd, address = _via_directory(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise errdefs.NotFound(f"{path} does not exist") from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.settimeout(None)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise errdefs.Conflict(f"the container's monitor is not listening on {path}") from exc
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(fd)
    return sock
