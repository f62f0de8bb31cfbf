"""Persistent network namespaces: a namespace kept alive by a bind mount of its nsfs file.

``create(path)`` makes a new network namespace with ``lo`` up and binds it on ``path`` (an
empty file, like ``ip netns add``); ``remove(path)`` unmounts and unlinks it.  lamina keeps a
container's sandbox at ``<exec-root>/netns/<container-id>`` (the ``SandboxKey``): it exists
before the container's PID 1 and after it died, so the data plane sets endpoints up before the
process runs and tears them down after, also after a crash of whoever set them up.

The namespace is made in a short-lived thread: ``unshare(CLONE_NEWNET)`` moves only the calling
thread, so the engine's own threads keep the host's network.
"""

from __future__ import annotations

import os
import threading

from lamina import errdefs
from lamina import sys as lsys
from lamina.mount import Mount, is_mountpoint, unmount

__all__ = ["create", "remove", "exists"]


def _bring_loopback_up() -> None:
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), siocgifflags, request))[1]
        fcntl.ioctl(sock.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def create(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if os.path.lexists(path):
        remove(path)  # a namespace file left by a run that ended without its clean-up
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    failure: list[BaseException] = []

    def make() -> None:
        try:
            lsys.unshare(lsys.CLONE_NEWNET)
            _bring_loopback_up()
            Mount(type="bind", source=f"/proc/self/task/{threading.get_native_id()}/ns/net",
                  options=("bind",)).mount(path)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=make, name="netns")
    thread.start()
    thread.join()
    if failure:
        try:
            os.unlink(path)
        except OSError:
            pass
        exc = failure[0]
        if isinstance(exc, errdefs.LaminaError):
            raise exc
        raise errdefs.System(f"cannot create network namespace {path}: {exc}") from exc


def exists(path: str) -> bool:
    return os.path.exists(path) and is_mountpoint(path)


def remove(path: str) -> None:
    unmount(path, detach=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
