"""The monitor's wire format, both ends, without a monitor: requests, answers, errors."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from lamina import errdefs
from lamina.container.monitor import protocol


@pytest.mark.parametrize("error", [
    errdefs.NotFound("No such exec instance: x"),
    errdefs.Conflict("Container c is not running"),
    errdefs.InvalidArgument("resize needs [height, width]"),
    errdefs.Unavailable("later"),
    errdefs.System("broken"),
], ids=lambda error: f"a {type(error).__name__} comes back as itself")
def test_an_error_crosses_the_wire_as_its_kind(error: errdefs.LaminaError) -> None:
    line = protocol.encode(protocol.error_answer(error))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    with pytest.raises(type(error), match=str(error).replace("[", r"\[").replace("]", r"\]")) as raised:
        protocol.raise_error(protocol.decode_request(line))
    assert type(raised.value) is type(error)


def test_a_command_that_cannot_run_keeps_its_exit_code() -> None:
    answer = protocol.error_answer(protocol.StartError("exec: \"nope\": executable file not found", 127))
    assert answer == {"error": {"kind": "invalid_argument", "message": "exec: \"nope\": executable file not found",
                                "exit_code": 127}}
    with pytest.raises(protocol.StartError) as raised:
        protocol.raise_error(answer)
    assert raised.value.exit_code == 127


def test_unknown_kinds_and_other_exceptions_are_system_errors() -> None:
    assert protocol.error_answer(ValueError("odd")) == {"error": {"kind": "system", "message": "odd"}}
    with pytest.raises(errdefs.System, match="strange"):
        protocol.raise_error({"error": {"kind": "no-such-kind", "message": "strange"}})
    with pytest.raises(errdefs.System, match="the container failed to start"):
        protocol.raise_error({"error": {"kind": "system"}}, "the container failed to start")
    protocol.raise_error(protocol.OK)  # nothing to raise


@pytest.mark.parametrize("line", [b"[1, 2]", b"not json", b"\"text\"", b""],
                         ids=["a list", "not JSON", "a string", "an empty line"])
def test_a_request_must_be_a_json_object(line: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="malformed request"):
        protocol.decode_request(line)


def test_the_requests_as_the_monitor_reads_them() -> None:
    assert protocol.decode_request(protocol.encode(protocol.resize_request(24, 80))) == {"resize": [24, 80]}
    assert protocol.resize_size(protocol.resize_request(24, 80, "e1")) == (24, 80)
    assert protocol.resize_request(24, 80, "e1")["exec"] == "e1"
    assert protocol.exec_start_request("e1", detach=True) == {"exec": "e1", "start": {"detach": True}}
    assert protocol.attach_hello(stdin=True, stdout=True, stderr=False) == {
        "stdin": True, "stdout": True, "stderr": False, "logs": False, "stream": True}
    for bad in ({"resize": [24]}, {"resize": "24x80"}, {"resize": [24, "80"]}):
        with pytest.raises(errdefs.InvalidArgument, match="height, width"):
            protocol.resize_size(bad)


def test_the_answer_line_is_read_without_the_stream_after_it() -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(protocol.encode({"ok": True, "pid": 42}) + b"\x01\x00\x00\x00\x00\x00\x00\x02hi")
        assert protocol.read_answer(ours, timeout=5) == {"ok": True, "pid": 42}
        assert ours.recv(100) == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
        theirs.close()
        with pytest.raises(errdefs.Unavailable, match="without answering"):
            protocol.read_answer(ours, timeout=5)
    finally:
        ours.close()
        theirs.close()


def test_a_garbled_answer_is_a_system_error() -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"[1]\n")
        with pytest.raises(errdefs.System, match="answered"):
            protocol.read_answer(ours, timeout=5)
    finally:
        ours.close()
        theirs.close()


def test_the_answer_pipe() -> None:
    read_fd, write_fd = os.pipe()
    try:
        writer = threading.Thread(target=lambda: os.write(write_fd, protocol.encode(protocol.OK)))
        writer.start()
        assert protocol.read_pipe_answer(read_fd, timeout=5) == {"ok": True}
        writer.join()
        os.close(write_fd)
        write_fd = -1
        assert protocol.read_pipe_answer(read_fd, timeout=5) is None  # closed without a line
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_a_silent_monitor_times_out() -> None:
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(errdefs.Unavailable, match="did not answer in time"):
            protocol.read_pipe_answer(read_fd, timeout=0.1)
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.parametrize(("message", "expected"), [
    ("exec: \"x\": executable file not found in $PATH", 127),
    ("open /bin/x: no such file or directory", 127),
    ("exec /etc: permission denied", 126),
    ("something else", 128),
], ids=["not found", "no such file", "permission denied", "any other failure"])
def test_exit_codes_of_start_errors(message: str, expected: int) -> None:
    assert protocol.exit_code_of_start_error(errdefs.System(message)) == expected
    assert protocol.exit_code_of_start_error(protocol.StartError(message, 3)) == 3
