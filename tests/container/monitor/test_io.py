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


def test_the_detach_keys_close_the_client_and_never_reach_the_sink() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    detached: list[Stream] = []
    closed: list[Stream] = []
    try:
        sink = Sink(loop, write_end, pty=False)
        Stream(loop, ours, stdout=True, stderr=False, sink=sink, raw=True, close_stdin_on_eof=False,
               on_close=closed.append, detach_keys=b"\x10\x11", on_detach=detached.append)
        theirs.sendall(b"typed \x10")
        theirs.sendall(b"x \x10")
        theirs.sendall(b"\x11 after")
        run_until(loop, lambda: bool(closed))
        assert len(detached) == 1
        assert read_all(theirs) == b""            # closed by the monitor
        run_until(loop, lambda: not sink.buffer)
        os.set_blocking(read_end, False)
        assert os.read(read_end, 65536) == b"typed \x10x "   # a broken sequence passed, the keys not
        assert not sink.closed                    # the process's stdin stays open
    finally:
        theirs.close()
        sink.release()
        os.close(read_end)
        loop.close()


def test_without_the_whole_sequence_held_keys_are_passed_at_the_end_of_input() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    closed: list[Stream] = []
    try:
        sink = Sink(loop, write_end, pty=False)
        Stream(loop, ours, stdout=True, stderr=False, sink=sink, raw=True, close_stdin_on_eof=False,
               on_close=closed.append, detach_keys=b"\x10\x11")
        theirs.sendall(b"end \x10")
        theirs.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 5
        received = b""
        os.set_blocking(read_end, False)
        while received != b"end \x10":
            assert time.monotonic() < deadline, received
            loop.poll(0.05)
            try:
                received += os.read(read_end, 65536)
            except BlockingIOError:
                pass
        assert not closed and not sink.closed     # a TTY's input is not closed by the client's end
    finally:
        theirs.close()
        sink.release()
        os.close(read_end)
        loop.close()


def test_the_loop_wakes_a_reader_at_a_hang_up_and_no_longer_once_it_is_forgotten() -> None:
    loop = Loop()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    woken: list[int] = []
    try:
        loop.on_read(read_fd, lambda: woken.append(read_fd))
        loop.poll(0)
        assert woken == []
        os.close(write_fd)
        write_fd = -1
        run_until(loop, lambda: bool(woken))
        loop.forget(read_fd)
        loop.poll(0)
        assert woken == [read_fd]
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        loop.close()


def test_the_loop_calls_the_writer_only_while_one_is_set_and_the_reader_when_data_comes() -> None:
    loop = Loop()
    ours, theirs = socket.socketpair()
    calls: list[str] = []
    try:
        loop.on_read(ours.fileno(), lambda: calls.append("read"))
        loop.on_write(ours.fileno(), lambda: calls.append("write"))
        loop.poll(0)
        assert calls == ["write"]
        loop.on_write(ours.fileno(), None)
        loop.poll(0)
        assert calls == ["write"]
        theirs.sendall(b"x")
        run_until(loop, lambda: "read" in calls)
        assert calls == ["write", "read"]
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_the_loop_forgets_a_descriptor_closed_before_it_quietly_and_can_watch_its_number_again() -> None:
    loop = Loop()
    first_read, first_write = os.pipe2(os.O_CLOEXEC)
    woken: list[str] = []
    loop.on_read(first_read, lambda: woken.append("first"))
    os.close(first_read)
    os.close(first_write)
    loop.forget(first_read)
    second_read, second_write = os.pipe2(os.O_CLOEXEC)
    try:
        loop.on_read(second_read, lambda: woken.append("second"))
        os.write(second_write, b"x")
        run_until(loop, lambda: bool(woken))
        assert woken == ["second"]
    finally:
        os.close(second_read)
        os.close(second_write)
        loop.close()
