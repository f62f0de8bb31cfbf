"""One HTTP/1.1 connection of ``lamina serve``, parsed and framed by h11.

Per request, in the connection's thread:

1. The request line and headers are parsed (by h11, which is given the head's bytes only);
   the body, if any (``Content-Length`` or chunked), is handed to the handler as a buffered
   file-like object that reads from the socket as it is read, decoded by
   :mod:`lamina.server.body` (``Expect: 100-continue`` is answered when the handler first
   reads; at the body's end h11 is brought to the end of the request).  The handler,
   or a worker thread it started, may keep reading after it returned a streaming response
   (``docker load`` reports progress while the archive still uploads): h11's state machine
   is guarded by a lock, reads by another, writes by a third.
2. The response goes out with ``Content-Length`` when its body is ``bytes``, with chunked
   transfer encoding when it is an iterator (each chunk written, hence flushed, as it comes:
   progress and event streams arrive as they are produced).  A stream raising
   :class:`~lamina.api.http.StreamAborted` ends the connection without the final chunk so the
   client sees a truncated transfer.  A client that goes away mid-stream makes the next write
   fail: the body iterator is closed (its producer sees ``GeneratorExit`` and stops) and the
   connection ends; other connections are unaffected.  A producer blocked waiting for data
   (a wait on a running container, a quiet ``logs -f``) would only notice at its next chunk,
   so while a stream is sent a watcher thread polls the socket for the client's hang-up
   (POLLRDHUP: close or ``shutdown(SHUT_WR)``, as Go's server treats a read EOF): it calls
   the body's ``cancel()`` if the body has one (it must be thread-safe and make the producer
   end soon), shuts the socket down so the next chunk fails at once, and marks the
   connection ``abandoned`` so that a server shutdown does not wait for it.
3. Keep-alive: the next request is read on the same connection unless the client or the
   response said ``Connection: close``, the request body was left unread, or the server is
   shutting down.  A body the handler left unread is discarded, up to :data:`DRAIN_LIMIT`
   (256 KiB, like Go's server) within :data:`DRAIN_TIMEOUT` seconds, to keep the connection:
   for an answer with a fixed body this happens *before* the answer is sent (a body whose
   ``Content-Length`` says that more than that remains is not waited for), so a client that
   writes the head and the body of a small request separately (the docker CLI does) is never
   answered and closed between the two writes, which would make its second write fail with
   ``EPIPE``; for a stream it happens after the stream ended, since its producer may read the
   body (``docker load``).  A client announcing ``Expect: 100-continue`` is not asked for a
   body the handler did not read: it gets the answer and ``Connection: close``.
4. Lingering close: when the connection closes after an answer while the request is not
   finished (its body left unread, or malformed input), the client may still be writing.
   Closing at once would make its next write fail with ``EPIPE`` (a Unix socket) or be
   answered with a reset that can destroy the answer it has not read yet (TCP), so the
   client reports "broken pipe" instead of the server's message.  So the server shuts down
   its sending side (the client reads the answer to its end), then reads and drops whatever
   the client still sends until the client closes, for at most :data:`LINGERING_TIME`
   (2 s) and :data:`LINGERING_LIMIT` (64 MiB) bytes, and only then closes (Apache's
   lingering close, RFC 9112 §9.6; Go's server only waits 500 ms without reading, which
   leaves a client writing more than a socket buffer blocked and then reset).  The bounds
   keep a client that never stops from holding the connection's thread: 2 s is ample for a
   client to read an answer already sent and close, and 64 MiB read from a local socket costs
   tens of milliseconds, yet lets a client that sends its whole (moderate) upload before
   reading, as simple clients do, see the answer.  :meth:`HTTPConnection.cut` ends a
   lingering close at once.
5. Hijacking: a response whose ``hijacked`` holds a duplex is answered with
   ``101 UPGRADED`` (``Connection: Upgrade``, ``Upgrade: tcp``) when the request asked for an
   upgrade, else ``200 OK`` (the plain hijack of older clients), with
   ``Content-Type: application/vnd.docker.raw-stream`` unless the handler set another, no
   body framing; then :mod:`lamina.server.splice` pumps bytes both ways until both sides end.
   The output waits until the client has read that answer (for at most :data:`HIJACK_HOLD_TIME`,
   5 s): docker-py loses output that arrives in the same read as the answer's head (the
   splice module says why).

Malformed HTTP gets ``400`` (h11's status hint) with Docker's ``{"message": ...}`` and the
connection is closed.  Every request is logged at INFO on ``lamina.server`` with the peer's
pid and uid (``SO_PEERCRED``), the status, the bytes sent and the time taken.
"""

from __future__ import annotations

import http
import io
import logging
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import h11

from lamina import errdefs
from lamina.api.errors import error_body, message_for
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.server.api import Handler
from lamina.server.body import RECEIVE_SIZE, RequestBody, SocketInput, h11_skips_length_bodies
from lamina.server.splice import Splice

__all__ = ["DRAIN_LIMIT", "DRAIN_TIMEOUT", "HIJACK_HOLD_TIME", "LINGERING_LIMIT", "LINGERING_TIME",
           "MAX_HEADER_BYTES", "RAW_STREAM", "HTTPConnection", "RequestBody"]

logger = logging.getLogger("lamina.server")

MAX_HEADER_BYTES = 1 << 20          # Go's http.DefaultMaxHeaderBytes
DRAIN_LIMIT = 256 * 1024            # unread request body discarded to keep a connection alive
DRAIN_TIMEOUT = 2.0                 # seconds the discarding may take in all
LINGERING_TIME = 2.0                # seconds a closing connection reads what the client still sends
LINGERING_LIMIT = 64 * 1024 * 1024  # bytes it reads at most meanwhile
HIJACK_HOLD_TIME = 5.0              # seconds a hijacked stream's output waits for the client to read the answer
RAW_STREAM = "application/vnd.docker.raw-stream"
_RECEIVE_SIZE = RECEIVE_SIZE
_LENGTH_BODY_FEED = 1 << 20  # bytes fed to h11 at a time when it must count a body itself
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
                         "te", "trailer", "proxy-connection"})
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BODYLESS = frozenset({204, 304})


def _peer(sock: socket.socket) -> str:
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except OSError:
        return "peer ?"
    return f"pid {pid} uid {uid}"


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _wire_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The handler's headers minus hop-by-hop ones (the server frames the message itself),
    encoded; a header h11 would reject is dropped and logged rather than failing the answer."""
    wire = []
    for name, value in headers.items():
        if name.lower() in _HOP_BY_HOP:
            continue
        raw_name, raw_value = name.encode("latin-1", "replace"), value.encode("utf-8")
        if not _TOKEN.match(raw_name) or _BAD_VALUE.search(raw_value):
            logger.error("dropping the invalid response header %r: %r", name, value)
            continue
        wire.append((raw_name, raw_value))
    return wire


def _send_pieces(sock: socket.socket, pieces: list[bytes]) -> int:
    """``sendall`` of the pieces one after another, gathered by ``sendmsg``; the bytes sent."""
    total = sum(len(piece) for piece in pieces)
    if total <= _RECEIVE_SIZE:
        sock.sendall(b"".join(pieces))
        return total
    views = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]
    return total


class _HangupWatch:
    """Watches a connection during a streamed answer and calls ``on_hangup`` once if the
    client closes (or shuts down) its side: ``poll`` for POLLRDHUP, which reading never
    consumes, so request bytes still in flight are left to the body reader."""

    def __init__(self, sock: socket.socket, on_hangup: Callable[[], None]) -> None:
        self._fd = sock.fileno()
        self._on_hangup = on_hangup
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._watch, name="lamina-hangup-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLRDHUP)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_read:
                    return
                if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    self._on_hangup()
                    return

    def stop(self) -> None:
        os.write(self._wake_write, b"x")
        self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)


class HTTPConnection:
    """Serves one accepted socket until it closes; :meth:`serve` runs in its own thread.

    ``abandoned`` becomes true when the client hung up during a streamed answer whose
    producer has not noticed yet (it is blocked waiting for data): the server's shutdown does
    not wait for such a connection.

    ``linger`` bounds the wait for the client's half-close after a hijacked stream ended and
    ``hold`` the wait for the client to read the hijack answer before the stream's output is
    sent (see :mod:`lamina.server.splice`); ``lingering_time`` and ``lingering_limit`` bound
    the lingering close after an answer to an unfinished request (see the module docstring)."""

    def __init__(self, sock: socket.socket, handler: Handler, *, linger: float = 5.0,
                 hold: float = HIJACK_HOLD_TIME, lingering_time: float = LINGERING_TIME,
                 lingering_limit: int = LINGERING_LIMIT, header_timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        """``idle_timeout``: seconds a connection may wait for the first byte of its next
        request; ``header_timeout``: seconds from that byte to the end of the request's head.
        A connection past either is closed (a slow or half-open client holds no thread)."""
        self.sock = sock
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.handler = handler
        self.linger = linger
        self.hold = hold
        self.lingering_time = lingering_time
        self.lingering_limit = lingering_limit
        self.peer = _peer(sock)
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._input = SocketInput(sock, self._mark_busy)
        self._h11_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._busy = False
        self._draining = False
        self._cut = False
        self._splice: Splice | None = None
        self.abandoned = False
        self._evicted = False
        # monotonic time since which the connection waits for a request head (keep-alive idle
        # or a head still arriving); None while a request is served
        self.waiting_since: float | None = time.monotonic()

    # -- shutdown, called from the server's thread ---------------------------------------------

    def drain(self) -> None:
        """Finish the request in progress, if any, then close; close now when idle."""
        with self._state_lock:
            self._draining = True
            idle = not self._busy
        if idle:
            self._shutdown_socket()

    @property
    def evicted(self) -> bool:
        return self._evicted

    def evict(self) -> bool:
        """Close the connection if it is still waiting for a request head (the server is full
        and a new client needs its place); False when a request is being served."""
        with self._state_lock:
            if self.waiting_since is None or self._draining:
                return False
            self._draining = self._evicted = True
        logger.info("%s: closing the connection: the server is full and it sent no request", self.peer)
        self._shutdown_socket()
        return True

    def cut(self) -> None:
        """End the connection now: streams are cut, a splice stops (forwarding no half-close)."""
        with self._state_lock:
            self._draining = True
            self._cut = True
            splice = self._splice
        if splice is not None:
            splice.cancel()
        self._shutdown_socket()

    def _client_hung_up(self, response: Response) -> None:
        """The client left during a stream (watcher thread): cancel the producer if it can be
        cancelled (a thread-safe ``cancel()`` on the body), and shut the socket so that its
        next chunk fails at once and closes it."""
        with self._state_lock:
            self.abandoned = True
        cancel = getattr(response.body, "cancel", None)
        if callable(cancel):
            try:
                cancel()
            except Exception as exc:  # the stream's own bug; the connection ends anyway
                logger.error("%s: cancelling an abandoned stream failed: %s", self.peer, exc, exc_info=exc)
        self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already

    # -- reading -------------------------------------------------------------------------------

    def _mark_busy(self) -> None:
        with self._state_lock:
            self._busy = True

    def _next_event(self) -> object:
        """The next h11 event of a request's head (h11 is given the head's bytes only; the
        body is read by :class:`~lamina.server.body.RequestBody`)."""
        with self._read_lock:
            while True:
                with self._h11_lock:
                    event = self._h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = self._input.head_bytes()
                with self._h11_lock:
                    self._h11.receive_data(data)

    def _end_body(self, length: int | None) -> None:
        """The body (chunked when ``length`` is None) was read to its end by RequestBody:
        bring h11 to the end of the request, as if it had read the body itself."""
        with self._h11_lock:
            if length is None:
                self._h11.receive_data(b"0\r\n\r\n")  # the last chunk, what h11 would have read last
            elif h11_skips_length_bodies(self._h11):
                self._h11._reader._remaining = 0  # type: ignore[attr-defined]
            else:  # an h11 without that attribute counts the length itself, on placeholder bytes
                left = length
                event: object = h11.NEED_DATA
                while not isinstance(event, h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        piece = min(left, _LENGTH_BODY_FEED)
                        self._h11.receive_data(bytes(piece))
                        left -= piece
                    event = self._h11.next_event()
                return
            event = self._h11.next_event()
        if not isinstance(event, h11.EndOfMessage):
            raise AssertionError(f"h11 did not end the request body: {event!r}")

    def _request_complete(self) -> bool:
        with self._h11_lock:
            return self._h11.their_state in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)

    def _discard_body(self, body: io.BufferedReader | None, limit: int) -> bool:
        """Read and drop what is left of the request body, up to ``limit`` bytes and
        :data:`DRAIN_TIMEOUT` seconds in all; True when the body ended."""
        if body is None or self._request_complete():
            return True
        deadline = time.monotonic() + DRAIN_TIMEOUT
        try:
            left = limit
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                # one byte more than the limit allows tells a body that ends there from a longer one
                data = body.read1(min(left + 1, _RECEIVE_SIZE))
                if not data:
                    return True
                left -= len(data)
                if left < 0:
                    return False
        except (errdefs.LaminaError, OSError, ValueError):
            return False
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass

    # -- writing -------------------------------------------------------------------------------

    def _send(self, event: object) -> int:
        with self._write_lock:
            with self._h11_lock:
                # the pieces as h11 frames them (a chunk's size line, the data itself, CRLF):
                # a chunk of a streamed archive goes out without being copied into one buffer
                pieces = self._h11.send_with_data_passthrough(event)  # type: ignore[arg-type]
            if not pieces:
                return 0
            if len(pieces) == 1:
                self.sock.sendall(pieces[0])
                return len(pieces[0])
            return _send_pieces(self.sock, pieces)

    def _send_continue(self) -> None:
        with self._write_lock:
            with self._h11_lock:
                if not (self._h11.they_are_waiting_for_100_continue and self._h11.our_state is h11.SEND_RESPONSE):
                    return
                data = self._h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            try:
                self.sock.sendall(data or b"")
            except OSError as exc:
                raise errdefs.InvalidArgument("the client went away before sending the request body") from exc

    def _send_protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint or 400
        body = error_body(f"malformed HTTP request: {exc}")
        logger.info("%s: malformed request: %s", self.peer, exc)
        try:
            self._send(h11.Response(status_code=status, reason=_reason(status), headers=[
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]))
            self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except (h11.LocalProtocolError, OSError):
            return  # nothing sensible can be sent any more
        self._linger()  # the client may still be sending the rest of what it meant as a request

    def _linger(self) -> None:
        """The lingering close (see the module docstring): end our side, then drop what the
        client still sends until it closes, :attr:`lingering_time` seconds pass or
        :attr:`lingering_limit` bytes came.  The caller closes the socket afterwards."""
        with self._state_lock:
            if self._cut:
                return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the client is gone already
        started = time.monotonic()
        deadline = started + self.lingering_time
        left = self.lingering_limit
        discarded = 0
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLRDHUP)
        ended = "the time limit passed"
        while True:
            if left <= 0:
                ended = "the byte limit was reached"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                break
            try:
                # no socket timeout is changed: a handler's worker may still read the socket
                data = self.sock.recv(min(left, _RECEIVE_SIZE), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                ended = "the client is gone"
                break
            if not data:
                ended = "the client closed"
                break
            discarded += len(data)
            left -= len(data)
        logger.debug("%s: lingering close: %d bytes discarded in %.1f ms, then %s", self.peer, discarded,
                     (time.monotonic() - started) * 1000, ended)

    # -- the request loop ----------------------------------------------------------------------

    def serve(self) -> None:
        try:
            while True:
                event = self._next_request()
                if event is None:
                    return
                if not self._respond(event):
                    return
                with self._h11_lock:
                    self._h11.start_next_cycle()
        except Exception as exc:  # a bug here must not take the server down
            logger.error("%s: connection failed: %s: %s", self.peer, type(exc).__name__, exc, exc_info=exc)
        finally:
            with self._state_lock:
                self._busy = False
            try:
                self.sock.close()
            except OSError:
                pass

    def _next_request(self) -> h11.Request | None:
        with self._state_lock:
            if self._draining:
                return None
            self._busy = False
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
        try:
            event = self._next_head()
        except h11.RemoteProtocolError as exc:
            if not self._evicted:
                self._send_protocol_error(exc)
            return None
        with self._state_lock:
            if self._evicted:
                return None  # its head completed as it was evicted: the socket is shut
            self.waiting_since = None
        return event if isinstance(event, h11.Request) else None

    def _next_head(self) -> object:
        """The next request's head, read within the idle and header timeouts (None when the
        connection ended or a timeout passed)."""
        if self.idle_timeout is None and self.header_timeout is None:
            return self._next_event()
        deadline = None if self.idle_timeout is None else time.monotonic() + self.idle_timeout
        started = False
        with self._read_lock:
            while True:
                with self._h11_lock:
                    event = self._h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    logger.info("%s: closing the connection: no complete request head within %.0f s",
                                self.peer, self.header_timeout if started else self.idle_timeout)
                    return None
                try:
                    self.sock.settimeout(remaining)
                    data = self._input.head_bytes(raise_timeout=True)
                except TimeoutError:
                    continue  # the deadline check above ends it
                finally:
                    self.sock.settimeout(None)
                if data:
                    if not started:
                        started = True
                        deadline = None if self.header_timeout is None else time.monotonic() + self.header_timeout
                with self._h11_lock:
                    self._h11.receive_data(data)

    def _respond(self, event: h11.Request) -> bool:
        started = time.monotonic()
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("latin-1")
        headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers)
        body: io.BufferedReader | None = None
        if "transfer-encoding" in headers:
            body = io.BufferedReader(RequestBody(self._input, None, before_read=self._send_continue,
                                                 on_end=lambda: self._end_body(None)),
                                     buffer_size=_RECEIVE_SIZE)
        elif (length := int(headers.get("content-length", "0") or 0)) > 0:
            body = io.BufferedReader(RequestBody(self._input, length, before_read=self._send_continue,
                                                 on_end=lambda: self._end_body(length)),
                                     buffer_size=_RECEIVE_SIZE)
        else:
            self._next_event()  # the EndOfMessage of a body-less request (h11 has it already)
        try:
            request = Request.from_target(method, target, headers, body)
        except ValueError as exc:
            request = None
            response = Response(400, Headers({"Content-Type": "application/json"}),
                                error_body(f"malformed request target {target!r}: {exc}"))
        if request is not None:
            try:
                response = self.handler.handle(request)
            except Exception as exc:  # the router answers errors itself; this is a bug
                logger.error("%s %s: handler failed: %s", method, target, exc, exc_info=exc)
                response = Response(500, Headers({"Content-Type": "application/json"}),
                                    error_body(message_for(exc)))
        if response.hijacked is not None and request is not None:
            return self._hijack(request, response, body, started, target)
        return self._answer(method, target, event.http_version, response, body, started)

    def _answer(self, method: str, target: str, version: bytes, response: Response,
                body: io.BufferedReader | None, started: float) -> bool:
        status = response.status
        wire = _wire_headers(response.headers)
        with self._h11_lock:
            waited_for_continue = self._h11.they_are_waiting_for_100_continue
            complete = self._h11.their_state in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)
        if not complete and not waited_for_continue and not response.is_stream and body is not None:
            # Read a small unread body before answering: answering (and closing) first makes
            # the client's write of the rest fail, and the client reports that, not our answer.
            unreceived = body.raw.unreceived if isinstance(body.raw, RequestBody) else None
            if unreceived is None or unreceived <= DRAIN_LIMIT:
                complete = self._discard_body(body, DRAIN_LIMIT)
        with self._state_lock:
            draining = self._draining
        close = draining or (not complete and (waited_for_continue or not response.is_stream))
        if close:
            wire.append((b"connection", b"close"))
        fixed = None if response.is_stream else bytes(response.body)  # type: ignore[arg-type]
        if fixed is not None and status not in _BODYLESS:
            wire.append((b"content-length", str(len(fixed)).encode()))
        sent = 0
        outcome = ""
        keep = not close
        body_sent = False
        delivered = False
        watch: _HangupWatch | None = None
        try:
            self._send(h11.Response(status_code=status, reason=_reason(status), headers=wire))
            if fixed is not None:
                if fixed and status not in _BODYLESS and method != "HEAD":
                    sent += len(fixed)
                    self._send(h11.Data(data=fixed))
            else:
                watch = _HangupWatch(self.sock, lambda: self._client_hung_up(response))
                chunks: Iterator[bytes] = iter(response.body)  # type: ignore[arg-type]
                for chunk in chunks:
                    if chunk:
                        sent += len(chunk)
                        self._send(h11.Data(data=chunk))
            body_sent = True
            self._send(h11.EndOfMessage())
            delivered = True
        except StreamAborted as exc:
            outcome = f" (stream aborted: {exc.message})"
            keep = False
            delivered = True  # truncated on purpose: the client should see that, not a broken pipe
        except OSError as exc:
            if body_sent:
                outcome = " (the client left before the end of the chunked body)"
            elif self.abandoned:
                outcome = " (the client hung up)"
            else:
                outcome = f" (client gone: {exc.strerror or type(exc).__name__})"
            keep = False
        except Exception as exc:
            logger.error("%s %s: the response body failed: %s", method, target, exc, exc_info=exc)
            outcome = f" (response failed: {type(exc).__name__})"
            keep = False
        finally:
            if watch is not None:
                watch.stop()
            response.close()
        if keep:
            with self._h11_lock:
                keep = self._h11.our_state is h11.DONE
            keep = keep and self._discard_body(body, DRAIN_LIMIT)
            with self._h11_lock:
                keep = keep and self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
        logger.info('%s "%s %s HTTP/%s" %d %d bytes %.1f ms%s', self.peer, method, target,
                    version.decode("ascii", "replace"), status, sent, (time.monotonic() - started) * 1000, outcome)
        if not keep and delivered and not self._request_complete():
            self._linger()
        return keep

    def _hijack(self, request: Request, response: Response, body: io.BufferedReader | None,
                started: float, target: str) -> bool:
        duplex = response.hijacked
        response.hijacked = None
        assert duplex is not None
        status = 0
        try:
            response.close()  # a body beside a duplex is meaningless; release it
            if not self._discard_body(body, DRAIN_LIMIT):
                logger.info("%s %s: the request body never ended; not hijacking", request.method, target)
                return False
            upgrade = request.wants_upgrade()
            status, reason = (101, b"UPGRADED") if upgrade else (200, b"OK")
            headers = Headers(response.headers)
            headers.setdefault("Content-Type", RAW_STREAM)
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
            lines += [name + b": " + value + b"\r\n" for name, value in _wire_headers(headers)]
            if upgrade:
                lines += [b"Connection: Upgrade\r\n", b"Upgrade: tcp\r\n"]
            lines.append(b"\r\n")
            with self._write_lock:
                self.sock.sendall(b"".join(lines))
            with self._h11_lock:
                initial, _closed = self._h11.trailing_data
            splice = Splice(self.sock, duplex, initial=bytes(initial) + self._input.take_buffered(), linger=self.linger, hold=self.hold)
            with self._state_lock:
                self._splice = splice
                if self._cut:
                    splice.cancel()
            result = splice.run()
            logger.info('%s "%s %s" %d hijacked: %d bytes out, %d bytes in, %.1f ms%s', self.peer,
                        request.method, target, status, result.to_client, result.to_duplex,
                        (time.monotonic() - started) * 1000, " (cut)" if result.cancelled else "")
        except OSError as exc:
            logger.info('%s "%s %s" %d hijack ended: %s', self.peer, request.method, target, status,
                        exc.strerror or exc)
        finally:
            with self._state_lock:
                self._splice = None
            duplex.close()
        return False
