"""The monitor's event loop and stdio copying, on pipes and socket pairs (no container)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from lamina.container.logs import STDERR, STDOUT, demultiplex
from lamina.container.monitor import protocol
from lamina.container.monitor.io import CLIENT_BUFFER_LIMIT, Handshake, Loop, Sink, Stream


def run_until(loop: Loop, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the loop did not get there"
        loop.poll(0.05)


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_stream_frames_the_output_it_is_given_and_sends_it_all() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    closed: list[Stream] = []
    try:
        stream = Stream(loop, ours, stdout=True, stderr=True, sink=None, raw=False, close_stdin_on_eof=False,
                        on_close=closed.append)
        stream.deliver(STDOUT, b"out")
        stream.deliver(STDERR, b"err")
        stream.finish()
        run_until(loop, lambda: stream.closed)
        assert closed == [stream]
        assert list(demultiplex(read_all(theirs))) == [(STDOUT, b"out"), (STDERR, b"err")]
    finally:
        theirs.close()
        loop.close()


def test_a_raw_stream_sends_bytes_as_they_are_and_leaves_out_what_was_not_asked_for() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    try:
        stream = Stream(loop, ours, stdout=True, stderr=False, sink=None, raw=True, close_stdin_on_eof=False)
        stream.deliver(STDOUT, b"a\r\n")
        stream.deliver(STDERR, b"not wanted")
        stream.finish()
        run_until(loop, lambda: stream.closed)
        assert read_all(theirs) == b"a\r\n"
    finally:
        theirs.close()
        loop.close()


def test_input_goes_to_the_sink_and_a_half_close_closes_it() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    try:
        sink = Sink(loop, write_end, pty=False)
        stream = Stream(loop, ours, stdout=True, stderr=True, sink=sink, raw=False, close_stdin_on_eof=True)
        theirs.sendall(b"hello ")
        theirs.sendall(b"world")
        theirs.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: sink.closed)
        assert os.read(read_end, 100) == b"hello world"
        assert os.read(read_end, 100) == b""  # the write end was closed: end of input
        assert not stream.closed  # output may still be wanted after the half-close
        stream.close()
    finally:
        theirs.close()
        os.close(read_end)
        loop.close()


def test_a_client_that_does_not_read_is_dropped() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    closed: list[Stream] = []
    try:
        stream = Stream(loop, ours, stdout=True, stderr=True, sink=None, raw=True, close_stdin_on_eof=False,
                        on_close=closed.append)
        chunk = b"x" * (1 << 20)
        for _ in range(CLIENT_BUFFER_LIMIT // len(chunk) + 2):
            stream.deliver(STDOUT, chunk)
        assert closed == [stream]
        stream.deliver(STDOUT, b"more")  # ignored once closed
    finally:
        theirs.close()
        loop.close()


def test_a_handshake_hands_on_the_request_and_what_followed_it() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    received: list[tuple[dict[str, Any], bytes]] = []
    done: list[Handshake] = []

    def handler(sock: socket.socket, request: dict[str, Any], rest: bytes) -> None:
        received.append((request, rest))
        sock.close()

    try:
        handshake = Handshake(loop, ours, handler, on_done=done.append)
        hello = protocol.encode(protocol.attach_hello(stdin=True, stdout=True, stderr=True))
        theirs.sendall(hello[:5])
        loop.poll(0.05)
        assert received == []
        theirs.sendall(hello[5:] + b"typed ahead")
        run_until(loop, lambda: bool(received))
        assert received == [(protocol.attach_hello(stdin=True, stdout=True, stderr=True), b"typed ahead")]
        assert done == [handshake]
    finally:
        theirs.close()
        loop.close()


def test_a_malformed_request_is_answered_and_closed() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    try:
        Handshake(loop, ours, lambda sock, request, rest: None)
        theirs.sendall(b"[not an object]\n")
        loop.poll(1.0)
        answer = protocol.read_answer(theirs, timeout=5)
        assert answer == {"error": {"kind": "invalid_argument", "message": "malformed request"}}
        assert theirs.recv(10) == b""
    finally:
        theirs.close()
        loop.close()


def test_a_connection_closed_before_its_line_is_dropped() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    done: list[Handshake] = []
    handshake = Handshake(loop, ours, lambda sock, request, rest: None, on_done=done.append)
    theirs.close()
    run_until(loop, lambda: bool(done))
    assert done == [handshake] and ours.fileno() == -1
    loop.close()


def test_a_sink_buffers_what_the_pipe_cannot_take_yet() -> None:
    loop = Loop()
    read_end, write_end = os.pipe()
    try:
        sink = Sink(loop, write_end, pty=False)
        payload = os.urandom(1 << 20)  # more than a pipe holds
        sink.write(payload)
        sink.close_when_drained()
        received = bytearray()
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 10
        while not sink.closed or len(received) < len(payload):
            assert time.monotonic() < deadline
            loop.poll(0.01)
            try:
                received += os.read(read_end, 1 << 16)
            except BlockingIOError:
                pass
        assert bytes(received) == payload
    finally:
        os.close(read_end)
        loop.close()
