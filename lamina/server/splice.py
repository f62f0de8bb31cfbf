"""The byte pump of a hijacked connection (attach, exec start).

After the ``101 UPGRADED`` (or the plain ``200 OK`` of older clients) the connection carries
raw bytes both ways: the container's output (multiplexed frames or a raw TTY stream, the
duplex decides) to the client, and the client's bytes to the container's stdin.

:func:`splice` runs two pumps, one per direction, each waiting with ``poll`` on its source
and on a wake-up pipe so that :meth:`Splice.cancel` can stop both at any time:

* client -> duplex (a thread): bytes the HTTP parser had already buffered past the request
  (``initial``) go first; the client's end of stream (``shutdown(SHUT_WR)`` or close) is
  forwarded as ``duplex.shutdown(SHUT_WR)``, which closes the container's stdin.
* duplex -> client (the calling thread): the duplex's end of stream is forwarded as
  ``client.shutdown(SHUT_WR)``; the client then normally closes its side too.  The
  client -> duplex pump gets ``linger`` seconds to see that, then is stopped.

A cancelled splice (server shutdown) forwards no half-close: a daemon going away must not
close a running container's stdin.  :func:`splice` returns when both pumps have ended; it
closes neither the client nor the duplex (the caller owns both).
"""

from __future__ import annotations

import os
import select
import socket
import threading
from lamina.records import dataclass

from lamina.services.api import Duplex

__all__ = ["Splice", "SpliceResult", "splice"]

_CHUNK = 64 * 1024
_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


@dataclass
class SpliceResult:
    to_client: int = 0     # bytes from the duplex to the client
    to_duplex: int = 0     # bytes from the client to the duplex
    input_ended: bool = False     # the client ended its side, or the duplex stopped taking input
    duplex_closed: bool = False   # the duplex reached end of stream
    cancelled: bool = False


class Splice:
    """One spliced connection; :meth:`cancel` (thread-safe) stops it without half-closes."""

    def __init__(self, client: socket.socket, duplex: Duplex, *, initial: bytes = b"",
                 linger: float = 5.0) -> None:
        self.client = client
        self.duplex = duplex
        self.initial = initial
        self.linger = linger
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


def splice(client: socket.socket, duplex: Duplex, *, initial: bytes = b"", linger: float = 5.0) -> SpliceResult:
    return Splice(client, duplex, initial=initial, linger=linger).run()
