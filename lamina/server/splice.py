"""The byte pump of a hijacked connection (attach, exec start).

After the ``101 UPGRADED`` (or the plain ``200 OK`` of older clients) the connection carries
raw bytes both ways: the container's output (multiplexed frames or a raw TTY stream, the
duplex decides) to the client, and the client's bytes to the container's stdin.

:func:`splice` runs two pumps, one per direction, each waiting with ``poll`` on its source
and on a wake-up pipe so that :meth:`Splice.cancel` can stop both at any time:

* client -> duplex (a thread): bytes the HTTP parser had already buffered past the request
  (``initial``) go first; the client's end of stream (``shutdown(SHUT_WR)`` or close) is
  forwarded as ``duplex.shutdown(SHUT_WR)``, which closes the container's stdin.
* duplex -> client (the calling thread): holds the output back until the client has read
  what was sent before the splice (the hijack answer), for at most ``hold`` seconds, then
  pumps; the duplex's end of stream is forwarded as ``client.shutdown(SHUT_WR)``; the client
  then normally closes its side too.  The client -> duplex pump gets ``linger`` seconds to see
  that, then is stopped.

Why the hold: docker-py reads the answer's head through http.client's buffered reader, then
reads the stream from the socket underneath it, so output that reached the client together
with the head (in the same ``recv``) stays in that buffer and is lost: ``exec_run`` returned
an empty output in about one run in five on a loaded machine, because an exec's (or a
running container's) output is ready at once and was sent right behind the head.  Sending
the head first is not enough: the client must also have *read* it.  dockerd only narrows that
race by starting the exec after the answer (tens of milliseconds).  For a Unix stream socket
the kernel tells (:func:`unread`: SIOCOUTQ is 0 once the peer has read everything sent), so
the output waits for that; clients that do take the bytes read with the head (Go's docker
CLI, lamina's own client) lose nothing either way.  The hold is bounded because a client
may legitimately never read (an attach for stdin only); other sockets are not held (TCP's
SIOCOUTQ counts unacknowledged bytes, not unread ones).

A cancelled splice (server shutdown) forwards no half-close: a daemon going away must not
close a running container's stdin.  :func:`splice` returns when both pumps have ended; it
closes neither the client nor the duplex (the caller owns both).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import termios
import threading
import time

from lamina.stdcopy import Duplex
from lamina.records import dataclass

__all__ = ["Splice", "SpliceResult", "splice", "unread"]

_CHUNK = 64 * 1024
_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_HOLD_FIRST_PAUSE = 0.0002   # seconds between looks at the client's unread bytes, doubling ...
_HOLD_LONGEST_PAUSE = 0.01   # ... up to this


def unread(sock: socket.socket) -> int | None:
    """How much of what was sent on ``sock`` its peer has not read yet, for a Unix stream
    socket (SIOCOUTQ: the kernel's accounting of the queued buffers, so not a byte count, but
    0 exactly when the peer has read everything or is gone); None for other sockets."""
    if sock.family != socket.AF_UNIX:
        return None
    amount = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, amount, True)  # SIOCOUTQ == TIOCOUTQ on Linux
    except OSError:
        return None
    return amount[0]


@dataclass
class SpliceResult:
    to_client: int = 0     # bytes from the duplex to the client
    to_duplex: int = 0     # bytes from the client to the duplex
    input_ended: bool = False     # the client ended its side, or the duplex stopped taking input
    duplex_closed: bool = False   # the duplex reached end of stream
    cancelled: bool = False
    held: float = 0.0             # seconds the output waited for the client to read the answer


class Splice:
    """One spliced connection; :meth:`cancel` (thread-safe) stops it without half-closes."""

    def __init__(self, client: socket.socket, duplex: Duplex, *, initial: bytes = b"",
                 linger: float = 5.0, hold: float = 0.0) -> None:
        self.client = client
        self.duplex = duplex
        self.initial = initial
        self.linger = linger
        self.hold = hold
        self.result = SpliceResult()
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._cancelled = threading.Event()
        self._pipe_lock = threading.Lock()
        self._pipe_open = True

    def cancel(self) -> None:
        """Stop both pumps now, forwarding no half-close (the server is shutting down)."""
        self.result.cancelled = True
        self._stop()

    def _stop(self) -> None:
        with self._pipe_lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            if self._pipe_open:
                try:
                    os.write(self._wake_write, b"x")
                except BlockingIOError:
                    pass  # the pipe is full: the pumps are woken already

    def _wait_readable(self, fd: int) -> bool:
        """Block until ``fd`` is readable (True) or the splice is cancelled (False)."""
        if self._cancelled.is_set():
            return False
        poller = select.poll()
        poller.register(fd, _EVENTS)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            ready = poller.poll()
            if self._cancelled.is_set():
                return False
            if any(ready_fd == fd for ready_fd, _ in ready):
                return True

    def _wait_client_read(self) -> None:
        """Hold the output until the client has read what was sent to it so far (the hijack
        answer), the client is gone, :attr:`hold` seconds passed or the splice is cancelled."""
        if self.hold <= 0:
            return
        started = time.monotonic()
        pause = _HOLD_FIRST_PAUSE
        while unread(self.client):
            waited = time.monotonic() - started
            if waited >= self.hold or self._cancelled.wait(min(pause, self.hold - waited)):
                break
            pause = min(pause * 2, _HOLD_LONGEST_PAUSE)
        self.result.held = time.monotonic() - started

    def _client_to_duplex(self) -> None:
        try:
            if self.initial:
                self.duplex.sendall(self.initial)
                self.result.to_duplex += len(self.initial)
            while self._wait_readable(self.client.fileno()):
                data = self.client.recv(_CHUNK)
                if not data:
                    self.result.input_ended = True
                    if not self._cancelled.is_set():
                        self.duplex.shutdown(socket.SHUT_WR)
                    return
                self.duplex.sendall(data)
                self.result.to_duplex += len(data)
        except OSError:
            # The client was cut or the duplex no longer takes input (the process exited):
            # nothing more can flow this way.
            self.result.input_ended = True

    def run(self) -> SpliceResult:
        pump = threading.Thread(target=self._client_to_duplex, name="lamina-splice-stdin", daemon=True)
        pump.start()
        self._wait_client_read()
        try:
            while self._wait_readable(self.duplex.fileno()):
                data = self.duplex.recv(_CHUNK)
                if not data:
                    self.result.duplex_closed = True
                    self.client.shutdown(socket.SHUT_WR)
                    break
                self.client.sendall(data)
                self.result.to_client += len(data)
        except OSError:
            pass  # the client went away or the duplex broke: the output direction is over
        pump.join(self.linger)
        if pump.is_alive():
            self._stop()
            pump.join(1.0)
        if not pump.is_alive():
            # (A pump still stuck in duplex.sendall keeps the pipe: it may poll it once more.)
            with self._pipe_lock:
                self._pipe_open = False
                os.close(self._wake_read)
                os.close(self._wake_write)
        return self.result


def splice(client: socket.socket, duplex: Duplex, *, initial: bytes = b"", linger: float = 5.0,
           hold: float = 0.0) -> SpliceResult:
    return Splice(client, duplex, initial=initial, linger=linger, hold=hold).run()
