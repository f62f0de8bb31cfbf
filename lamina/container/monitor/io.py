"""The monitor's event loop and stdio copying, independent of any container.

:class:`Loop` is an epoll set with one read and one write callback per descriptor.
:class:`Sink` feeds a process's stdin (a pipe, or a pty master) without blocking;
:class:`Stream` is a client connection carrying a hijacked stdio stream (Docker's 8-byte
frames, or raw bytes for a TTY), with its input going to a :class:`Sink`; :class:`Handshake`
reads the first line of a new connection and hands the decoded request on
(:func:`~lamina.container.monitor.protocol.decode_request`).  None of them knows the monitor:
they are given the loop and callbacks (``on_close``, ``on_done``).  :func:`devpts_instance`
makes a run's pty in a devpts instance of its own.
"""

from __future__ import annotations

import fcntl
import math
import os
import select
import socket
import struct
import termios
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container.detachkeys import DetachMatcher
from lamina.container.logs import STDERR, STDOUT, frame
import lamina.container.monitor.protocol as protocol
from lamina.log import get_logger

__all__ = ["CLIENT_BUFFER_LIMIT", "Handshake", "Loop", "Sink", "Stream", "devpts_instance", "release_devpts", "reply",
           "set_window"]

log = get_logger("lamina.monitor")

CLIENT_BUFFER_LIMIT = 16 << 20   # output queued for a client that does not read it
_HANDSHAKE_LIMIT = 1 << 16


class Loop:
    """An epoll set with separate read and write callbacks per descriptor.

    ``select.epoll`` itself, not :mod:`selectors`: every Python function a monitor runs copies
    the template's pages it touches into the monitor (see
    :mod:`~lamina.container.monitor.template`), and a selector's bookkeeping (keys, mappings)
    is a dozen more of them."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.registered: dict[int, int] = {}   # fd -> the epoll events it is registered for
        self.readers: dict[int, Callable[[], None]] = {}
        self.writers: dict[int, Callable[[], None]] = {}

    def _update(self, fd: int) -> None:
        events = (select.EPOLLIN if fd in self.readers else 0) | (select.EPOLLOUT if fd in self.writers else 0)
        registered = self.registered.get(fd, 0)
        if events == registered:
            return
        if not registered:
            self.epoll.register(fd, events)
            self.registered[fd] = events
        elif not events:
            del self.registered[fd]
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass  # closed already: the kernel dropped it from the set
        else:
            try:
                self.epoll.modify(fd, events)
            except OSError:
                del self.registered[fd]
                raise
            self.registered[fd] = events

    def on_read(self, fd: int, callback: Callable[[], None] | None) -> None:
        if callback is None:
            self.readers.pop(fd, None)
        else:
            self.readers[fd] = callback
        self._update(fd)

    def on_write(self, fd: int, callback: Callable[[], None] | None) -> None:
        if callback is None:
            self.writers.pop(fd, None)
        else:
            self.writers[fd] = callback
        self._update(fd)

    def forget(self, fd: int) -> None:
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        if self.registered.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

    def poll(self, timeout: float | None) -> None:
        # whole milliseconds, rounded up (as selectors does): a timeout never ends early
        ready = self.epoll.poll(-1 if timeout is None else math.ceil(max(timeout, 0.0) * 1e3) * 1e-3)
        for fd, mask in ready:
            # an error or a hang-up wakes whichever of the two is set (as selectors reports it)
            if mask & ~select.EPOLLOUT and fd in self.readers:
                self.readers[fd]()
            if mask & ~select.EPOLLIN and fd in self.writers:
                self.writers[fd]()

    def close(self) -> None:
        self.epoll.close()


class Sink:
    """A process's stdin (a pipe, or the pty master shared with the output side)."""

    def __init__(self, loop: Loop, fd: int, *, pty: bool) -> None:
        self.loop = loop
        self.fd = fd
        self.pty = pty
        self.buffer = bytearray()
        self.closing = False
        self.closed = False
        if not pty:
            os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.closed or self.closing:
            return
        self.buffer += data
        self.loop.on_write(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            while self.buffer:
                written = os.write(self.fd, self.buffer)
                del self.buffer[:written]
        except BlockingIOError:
            return
        except OSError:
            self.buffer.clear()  # the reader is gone
        if not self.buffer:
            self.loop.on_write(self.fd, None)
            if self.closing:
                self._close_now()

    def close_when_drained(self) -> None:
        if self.closed:
            return
        self.closing = True
        if not self.buffer:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pty:
            try:
                os.write(self.fd, b"\x04")  # end of input on a terminal: ^D
            except OSError:
                pass
            self.loop.on_write(self.fd, None)
        else:
            self.loop.forget(self.fd)
            os.close(self.fd)

    def release(self) -> None:
        """Close for good (the process is gone)."""
        if not self.closed:
            self.closed = True
            self.loop.on_write(self.fd, None)
            if not self.pty:
                self.loop.forget(self.fd)
                os.close(self.fd)


class Stream:
    """A client connection carrying a hijacked stdio stream (attach, or an exec's).

    ``on_close`` is called once, when the connection is closed.  With ``detach_keys`` the
    input is watched for them (:class:`~lamina.container.detachkeys.DetachMatcher`): the
    whole sequence closes the connection, ``on_detach`` first, and never reaches the sink."""

    def __init__(self, loop: Loop, sock: socket.socket, *, stdout: bool, stderr: bool, sink: Sink | None,
                 raw: bool, close_stdin_on_eof: bool,
                 on_close: Callable[[Stream], None] = lambda stream: None,
                 detach_keys: bytes | None = None,
                 on_detach: Callable[[Stream], None] = lambda stream: None) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.stdout = stdout
        self.stderr = stderr
        self.sink = sink
        self.raw = raw
        self.close_stdin_on_eof = close_stdin_on_eof
        self.on_close = on_close
        self.matcher = DetachMatcher(detach_keys) if detach_keys and sink is not None else None
        self.on_detach = on_detach
        self.out = bytearray()
        self.closing = False
        self.closed = False
        sock.setblocking(False)
        loop.on_read(self.fd, self._readable)

    def deliver(self, stream_type: int, data: bytes) -> None:
        if self.closed or self.closing:
            return
        if (stream_type == STDOUT and not self.stdout) or (stream_type == STDERR and not self.stderr):
            return
        self.out += data if self.raw else frame(stream_type, data)
        if len(self.out) > CLIENT_BUFFER_LIMIT:
            log.warning("dropping an attached client that does not read its output")
            self.close()
            return
        self.loop.on_write(self.fd, self._writable)

    def input(self, data: bytes) -> None:
        matcher = self.matcher
        if matcher is not None:
            data = matcher.feed(data)
        if data and self.sink is not None:
            self.sink.write(data)
        if matcher is not None and matcher.detached:
            self.matcher = None
            self.sink = None
            self.on_detach(self)
            self.close()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if data:
            self.input(data)
            return
        self.loop.on_read(self.fd, None)  # half-closed: output may still be wanted
        if self.matcher is not None and self.sink is not None:
            held = self.matcher.flush()  # the start of a sequence that never ended
            if held:
                self.sink.write(held)
        if self.close_stdin_on_eof and self.sink is not None:
            self.sink.close_when_drained()
            self.sink = None

    def _writable(self) -> None:
        try:
            while self.out:
                sent = self.sock.send(self.out)
                del self.out[:sent]
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.loop.on_write(self.fd, None)
        if self.closing:
            self.close()

    def finish(self) -> None:
        """Close once everything queued was sent."""
        self.closing = True
        if not self.out:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.forget(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        self.on_close(self)


class Handshake:
    """A new connection on the attach or control socket, until its first line.

    ``handler(sock, request, rest)`` gets the decoded request and the bytes that followed the
    line; a malformed line is answered with an error and closed.  ``on_done`` is called once,
    when the connection was handed on or dropped."""

    def __init__(self, loop: Loop, sock: socket.socket,
                 handler: Callable[[socket.socket, dict[str, Any], bytes], None],
                 on_done: Callable[[Handshake], None] = lambda handshake: None) -> None:
        self.loop = loop
        self.sock = sock
        self.handler = handler
        self.on_done = on_done
        self.data = bytearray()
        sock.setblocking(False)
        loop.on_read(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.drop()
            return
        self.data += chunk
        if b"\n" not in self.data:
            if len(self.data) > _HANDSHAKE_LIMIT:
                self.drop()
            return
        line, _, rest = bytes(self.data).partition(b"\n")
        self.loop.forget(self.sock.fileno())
        self.on_done(self)
        try:
            request = protocol.decode_request(line)
        except errdefs.InvalidArgument as exc:
            reply(self.sock, protocol.error_answer(exc))
            self.sock.close()
            return
        self.handler(self.sock, request, rest)

    def drop(self) -> None:
        self.loop.forget(self.sock.fileno())
        self.on_done(self)
        self.sock.close()


def reply(sock: socket.socket, answer: dict[str, Any]) -> None:
    """Send one answer line (blocking, bounded: a client that does not read is left behind)."""
    sock.setblocking(True)
    sock.settimeout(5.0)
    try:
        sock.sendall(protocol.encode(answer))
    except OSError:
        pass
    finally:
        try:
            sock.settimeout(None)
        except OSError:
            pass


def set_window(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


_DEVPTS_OPTIONS = ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")


def devpts_instance(path: str) -> tuple[int, int]:
    """A pty of a new devpts instance mounted at ``path`` (in the run directory, until the
    container's start has bound it onto its /dev/pts: :func:`release_devpts`)."""
    from lamina import mount as mountlib
    from lamina.runtime.paths import open_pty

    release_devpts(path)  # a crashed start's
    os.makedirs(path, mode=0o700, exist_ok=True)
    mountlib.Mount("devpts", "devpts", _DEVPTS_OPTIONS).mount(path)
    try:
        return open_pty(os.open(os.path.join(path, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC))
    except BaseException:
        release_devpts(path)
        raise


def release_devpts(path: str) -> None:
    from lamina import mount as mountlib

    try:
        mountlib.unmount(path, detach=True)
    except (OSError, errdefs.LaminaError):
        pass
    try:
        os.rmdir(path)
    except OSError:
        pass
