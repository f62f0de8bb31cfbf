"""Listening on a unix socket the way a daemon should.

``open_unix_listener(path)``:

1. takes an exclusive, non-blocking ``flock`` on ``<path>.lock`` (created beside the socket,
   mode 0600, kept after exit: removing a lock file that another process may be opening is
   racy) and holds it while the listener is open, so two ``lamina serve`` processes starting
   at once cannot both decide the socket is stale;
2. if something exists at ``path``: refuses when it is not a socket, or when a ``connect``
   to it succeeds (another live daemon, lamina or not, serves it: ``errdefs.Conflict``);
   removes it when the connect is refused (a stale socket left by a process that died);
3. binds, sets the socket file's mode (0660) and group (``docker`` when that group exists,
   else root's), and only then listens: nobody can connect before the permissions are right.

``UnixListener.close()`` closes the socket and removes the socket file if it is still the one
this listener created (same device and inode), then releases the lock.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import socket
import stat

from lamina import errdefs
from lamina.records import dataclass

__all__ = ["DEFAULT_GROUP", "UnixListener", "group_id", "open_unix_listener", "socket_path_from_host"]

DEFAULT_GROUP = "docker"
_BACKLOG = 128
_LIVENESS_TIMEOUT = 2.0


def socket_path_from_host(host: str) -> str:
    """``unix:///run/lamina.sock`` -> ``/run/lamina.sock`` (an absolute path is accepted as is)."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
    elif host.startswith("/"):
        path = host
    else:
        scheme = host.split("://", 1)[0] if "://" in host else ""
        if scheme:
            raise errdefs.InvalidArgument(
                f"cannot listen on {host!r}: {scheme}:// is not supported; lamina serve listens on "
                "unix:// sockets only")
        raise errdefs.InvalidArgument(f"invalid listen address {host!r}: expected unix:///path/to/socket")
    if not path:
        raise errdefs.InvalidArgument(f"invalid listen address {host!r}: no socket path")
    return os.path.abspath(path)


def group_id(name: str | None) -> int:
    """The gid of group ``name`` when it exists, else 0 (root's group); a numeric name is a gid."""
    if not name:
        return 0
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return 0


@dataclass
class UnixListener:
    path: str
    socket: socket.socket
    lock_fd: int
    identity: tuple[int, int]  # (st_dev, st_ino) of the socket file this listener created

    def fileno(self) -> int:
        return self.socket.fileno()

    def accept(self) -> socket.socket:
        connection, _ = self.socket.accept()
        return connection

    def close(self) -> None:
        """Stop listening, remove the socket file (if it is still ours), release the lock."""
        try:
            self.socket.close()
        finally:
            try:
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) == self.identity:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            finally:
                if self.lock_fd >= 0:
                    os.close(self.lock_fd)  # closing the only descriptor releases the flock
                    self.lock_fd = -1


def _lock(path: str) -> int:
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errdefs.System(f"cannot create the lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise errdefs.Conflict(
            f"another lamina serve is already starting or serving unix://{path} (it holds {lock_path})") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale(path: str) -> None:
    """Remove a dead socket at ``path``; refuse a live one or something that is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise errdefs.Conflict(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_LIVENESS_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: stale
    except FileNotFoundError:
        return
    except OSError as exc:
        raise errdefs.Conflict(
            f"cannot tell whether another daemon serves unix://{path}: {exc.strerror or exc}") from exc
    else:
        raise errdefs.Conflict(
            f"another daemon is already serving unix://{path}; stop it first or choose another socket with -H")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise errdefs.System(f"cannot remove the stale socket {path}: {exc.strerror}") from exc


def open_unix_listener(path: str, *, mode: int = 0o660, group: str | None = DEFAULT_GROUP) -> UnixListener:
    """Bind and listen on ``path`` (see the module docstring for the checks and their order)."""
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise errdefs.System(f"cannot create the directory {parent} for the socket: {exc.strerror}") from exc
    lock_fd = _lock(path)
    sock: socket.socket | None = None
    try:
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise errdefs.Conflict(f"unix://{path} is in use by another process") from exc
            raise errdefs.System(f"cannot bind unix://{path}: {exc.strerror}") from exc
        info = os.lstat(path)
        try:
            os.chown(path, -1, group_id(group))
            os.chmod(path, mode)
        except OSError as exc:
            os.unlink(path)
            raise errdefs.System(f"cannot set the owner and mode of {path}: {exc.strerror}") from exc
        sock.listen(_BACKLOG)
        return UnixListener(path, sock, lock_fd, (info.st_dev, info.st_ino))
    except BaseException:
        if sock is not None:
            sock.close()
        os.close(lock_fd)
        raise
