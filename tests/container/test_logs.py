"""json-file log driver: Docker's bytes, line cutting, rotation, tail/since/until/timestamps,
follow across rotations, and the re-exported stream frames."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from lamina import errdefs, stdcopy
from lamina.container import logs
from lamina.container.logs import (
    JsonFileWriter,
    demultiplex,
    encode_entry,
    format_time,
    frame,
    parse_log_options,
    parse_size,
    parse_time,
    read_logs,
)

# A line written by Docker's json-file driver (dockerd 20.10, `docker run busybox echo hello`)
DOCKER_LINE = b'{"log":"hello\\n","stream":"stdout","time":"2026-11-23T02:44:34.662391651Z"}\n'
BASE_NS = parse_time("2026-11-23T02:44:34.662391651Z")


class Clock:
    """Deterministic time: each call is ``step`` ns after the previous."""

    def __init__(self, start: int = BASE_NS, step: int = 1_000_000_000) -> None:
        self.now = start - step
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def entries(path) -> list[dict]:
    with open(path, "rb") as handle:
        return [json.loads(line) for line in handle]


# -- format ----------------------------------------------------------------------------------


def test_an_entry_is_byte_identical_to_a_docker_line():
    assert BASE_NS == 1795401874_662391651
    assert encode_entry(b"hello\n", "stdout", BASE_NS) == DOCKER_LINE


def test_the_writer_produces_docker_lines(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), clock=Clock()) as writer:
        writer.write("stdout", b"hello\n")
    assert path.read_bytes() == DOCKER_LINE
    assert oct(path.stat().st_mode & 0o777) == "0o640"


@pytest.mark.parametrize("nanos, text", [
    (662391651, "2026-11-23T02:44:34.662391651Z"),
    (662391650, "2026-11-23T02:44:34.66239165Z"),
    (500000000, "2026-11-23T02:44:34.5Z"),
    (0, "2026-11-23T02:44:34Z"),
], ids=["all nine digits", "one trailing zero trimmed", "half a second", "a whole second has no fraction"])
def test_time_is_go_rfc3339nano(nanos, text):
    value = (BASE_NS // 1_000_000_000) * 1_000_000_000 + nanos
    assert format_time(value) == text
    assert parse_time(text) == value


def test_parse_time_accepts_offsets():
    assert parse_time("2026-11-23T03:44:34.5+01:00") == parse_time("2026-11-23T02:44:34.5Z")
    with pytest.raises(errdefs.InvalidArgument):
        parse_time("yesterday")


@pytest.mark.parametrize("data, expected", [
    (b'<a href="x">&</a>', r'"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e"'),
    (b"tab\there\x01\x1f\x7f", r'"tab\u0009here\u0001\u001f' + "\x7f" + '"'),
    (b"cr\r\nback\\slash", r'"cr\r\nback\\slash"'),
    ("é ✓ \u2028 \u2029".encode(), '"é ✓ \\u2028 \\u2029"'),
    (b"bad \xff \xe2\x82A", r'"bad \ufffd \ufffd\ufffdA"'),
], ids=["html characters are escaped", "control bytes use \\u00XX except newline and cr",
        "newline carriage return and backslash", "unicode stays raw but line separators are escaped",
        "each invalid utf-8 byte becomes one replacement character"])
def test_log_strings_are_escaped_like_go(data, expected):
    line = encode_entry(data, "stderr", BASE_NS)
    assert line.startswith(b'{"log":' + expected.encode() + b',"stream":"stderr","time":')
    assert json.loads(line)["log"] == json.loads(expected)


# -- lines -----------------------------------------------------------------------------------


def test_lines_are_cut_at_newlines_across_writes(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), clock=Clock()) as writer:
        writer.write("stdout", b"hel")
        writer.write("stdout", b"lo\nwor")
        writer.write("stderr", b"oops\n")
        writer.write("stdout", b"ld\n\n")
    assert [(e["stream"], e["log"]) for e in entries(path)] == [
        ("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "world\n"), ("stdout", "\n")]


def test_a_long_line_becomes_16k_partial_entries_with_the_first_timestamp(tmp_path):
    path = tmp_path / "c-json.log"
    line = bytes(range(97, 123)) * 1600   # 41600 bytes
    with JsonFileWriter(str(path), clock=Clock()) as writer:
        writer.write("stdout", line[:1000])
        writer.write("stdout", line[1000:] + b"\nnext\n")
    found = entries(path)
    assert [len(e["log"]) for e in found] == [16384, 16384, 41600 - 2 * 16384 + 1, 5]
    assert not found[0]["log"].endswith("\n") and found[2]["log"].endswith("\n")
    assert "".join(e["log"] for e in found[:3]).encode() == line + b"\n"
    assert found[0]["time"] == found[1]["time"] == found[2]["time"] != found[3]["time"]


def test_unterminated_output_is_written_without_newline_on_close(tmp_path):
    path = tmp_path / "c-json.log"
    writer = JsonFileWriter(str(path), clock=Clock())
    writer.write("stdout", b"no newline")
    assert path.read_bytes() == b""
    writer.close()
    assert [e["log"] for e in entries(path)] == ["no newline"]
    with pytest.raises(errdefs.FailedPrecondition):
        writer.write("stdout", b"late\n")


def test_an_unknown_stream_is_refused(tmp_path):
    with JsonFileWriter(str(tmp_path / "c-json.log")) as writer, pytest.raises(errdefs.InvalidArgument):
        writer.write("stdin", b"x\n")


def test_a_reopened_writer_appends(tmp_path):
    path = tmp_path / "c-json.log"
    for word in (b"one\n", b"two\n"):
        with JsonFileWriter(str(path), clock=Clock()) as writer:
            writer.write("stdout", word)
    assert [e["log"] for e in entries(path)] == ["one\n", "two\n"]


# -- rotation --------------------------------------------------------------------------------


def _numbers(path, **options) -> list[int]:
    return [int(payload.split()[1]) for _, payload, _ in read_logs(str(path), **options)]


def test_rotation_keeps_max_file_files_and_drops_the_oldest(tmp_path):
    path = tmp_path / "c-json.log"
    entry_size = len(encode_entry(b"line 000\n", "stdout", BASE_NS))
    with JsonFileWriter(str(path), max_size=4 * entry_size, max_file=3, clock=Clock(step=1000)) as writer:
        for number in range(30):
            writer.write("stdout", b"line %03d\n" % number)
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    # rotation happens once a file reaches max-size: 4 entries per rotated file
    assert len(entries(str(path) + ".1")) == len(entries(str(path) + ".2")) == 4
    kept = _numbers(path)
    assert kept == list(range(30 - len(kept), 30)) and len(kept) == 4 + 4 + 30 % 4


def test_max_file_1_truncates_in_place(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), max_size="300", max_file=1, clock=Clock()) as writer:
        inode = path.stat().st_ino
        for number in range(22):
            writer.write("stdout", b"line %03d\n" % number)
    assert os.listdir(tmp_path) == ["c-json.log"]
    assert path.stat().st_ino == inode and path.stat().st_size < 300
    # 4 entries reach 300 bytes: the 20th emptied the file again
    assert _numbers(path) == [20, 21]


@pytest.mark.parametrize("text, binary, value", [
    ("10k", False, 10_000), ("10m", False, 10_000_000), ("1g", False, 10**9), ("1.5k", False, 1500),
    ("10kb", False, 10_000), ("10 MiB", False, 10_000_000), ("123", False, 123),
    ("10k", True, 10_240), ("1g", True, 2**30),
], ids=lambda value: str(value))
def test_sizes_use_dockers_units(text, binary, value):
    assert parse_size(text, binary=binary) == value


@pytest.mark.parametrize("options, message", [
    ({"max-size": "12zz"}, "invalid size: '12zz'"),
    ({"max-size": "0"}, "max-size must be a positive number"),
    ({"max-file": "0"}, "max-file cannot be less than 1"),
    ({"max-file": "two"}, "not a number"),
    ({"mode": "fast"}, "unknown log opt 'mode' for json-file log driver"),
], ids=["bad size", "zero size", "zero files", "non-numeric max-file", "unknown option"])
def test_bad_log_options_are_invalid_arguments(options, message):
    with pytest.raises(errdefs.InvalidArgument, match=message):
        parse_log_options(options)


def test_log_options_parse():
    assert parse_log_options({"max-size": "10m", "max-file": "3"}) == logs.LogOptions(10_000_000, 3)
    assert parse_log_options({}) == logs.LogOptions(None, 1)


# -- reading ---------------------------------------------------------------------------------


@pytest.fixture
def rotated_log(tmp_path):
    """200 entries, one per second, alternating stdout/stderr, over several rotated files."""
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), max_size=2000, max_file=100, clock=Clock()) as writer:
        for number in range(200):
            writer.write("stdout" if number % 2 == 0 else "stderr", b"line %d\n" % number)
    assert len(os.listdir(tmp_path)) > 5
    return path


def test_reading_goes_through_rotated_files_in_order(rotated_log):
    assert _numbers(rotated_log) == list(range(200))


def test_stream_selection(rotated_log):
    assert _numbers(rotated_log, stderr=False) == list(range(0, 200, 2))
    assert _numbers(rotated_log, stdout=False) == list(range(1, 200, 2))
    with pytest.raises(errdefs.InvalidArgument):
        list(read_logs(str(rotated_log), stdout=False, stderr=False))


@pytest.mark.parametrize("tail, expected", [
    (0, []), (3, [197, 198, 199]), (30, list(range(170, 200))), (1000, list(range(200))), (-1, list(range(200))),
], ids=["nothing", "three", "across rotated files", "more than there is", "negative means all"])
def test_tail(rotated_log, tail, expected):
    assert _numbers(rotated_log, tail=tail) == expected


def test_tail_counts_the_selected_stream(rotated_log):
    assert _numbers(rotated_log, tail=3, stdout=False) == [195, 197, 199]


def test_tail_reads_only_the_end_of_a_big_file(tmp_path, monkeypatch):
    path = tmp_path / "c-json.log"
    with open(path, "wb") as handle:
        handle.write(b"".join(encode_entry(b"line %d\n" % number, "stdout", BASE_NS + number)
                              for number in range(100_000)))
    assert path.stat().st_size > 5_000_000
    read = []
    original = os.pread

    def counting(fd, size, offset):
        data = original(fd, size, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(logs.os, "pread", counting)
    assert _numbers(path, tail=2) == [99_998, 99_999]
    assert sum(read) <= 3 * logs._TAIL_BLOCK


def _unix(time_ns: int) -> str:
    return f"{time_ns // 1_000_000_000}.{time_ns % 1_000_000_000:09d}"


def test_since_and_until_are_inclusive(rotated_log):
    since = _unix(BASE_NS + 10 * 1_000_000_000)
    until = _unix(BASE_NS + 20 * 1_000_000_000)
    assert _numbers(rotated_log, since=since, until=until) == list(range(10, 21))
    assert _numbers(rotated_log, since=_unix(BASE_NS + 10 * 1_000_000_000 + 1)) == list(range(11, 200))
    assert _numbers(rotated_log, tail=5, since=since) == list(range(195, 200))
    assert _numbers(rotated_log, tail=5, until=until) == []
    assert _numbers(rotated_log, since="2026-11-23T02:44:44.662391651Z", until=until) == list(range(10, 21))


def test_float_since_is_taken_to_the_microsecond(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), clock=Clock(start=1_700_000_000_000_000_000)) as writer:
        for number in range(5):
            writer.write("stdout", b"line %d\n" % number)
    assert _numbers(path, since=1_700_000_002.0, until=1_700_000_003.0) == [2, 3]


def test_timestamps_prefix_fixed_nanoseconds(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), clock=Clock(start=BASE_NS - 651)) as writer:
        writer.write("stdout", b"hello\n")
    [(stream, payload, stamp)] = list(read_logs(str(path), timestamps=True))
    assert (stream, payload, stamp) == ("stdout", b"2026-11-23T02:44:34.662391000Z hello\n",
                                        "2026-11-23T02:44:34.662391Z")
    [(_, plain, _)] = list(read_logs(str(path)))
    assert plain == b"hello\n"


def test_a_missing_log_reads_as_empty(tmp_path):
    assert list(read_logs(str(tmp_path / "none-json.log"))) == []


def test_a_malformed_line_is_skipped(tmp_path):
    path = tmp_path / "c-json.log"
    path.write_bytes(DOCKER_LINE + b'{"log":"half\n' + DOCKER_LINE)
    assert [payload for _, payload, _ in read_logs(str(path))] == [b"hello\n", b"hello\n"]
    assert [payload for _, payload, _ in read_logs(str(path), tail=5)] == [b"hello\n", b"hello\n"]


def test_a_half_written_last_line_is_not_read(tmp_path):
    path = tmp_path / "c-json.log"
    path.write_bytes(DOCKER_LINE + DOCKER_LINE[:20])
    assert len(list(read_logs(str(path)))) == 1
    assert len(list(read_logs(str(path), tail=5))) == 1


# -- follow ----------------------------------------------------------------------------------


def _follow_in_thread(path, **options):
    stop = threading.Event()
    received: list[tuple[str, bytes, str]] = []

    def run():
        received.extend(read_logs(str(path), follow=True, stop=stop.is_set, poll_interval=0.005, **options))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, received, thread


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_follow_picks_up_appended_lines_and_rotations(tmp_path):
    path = tmp_path / "c-json.log"
    writer = JsonFileWriter(str(path), max_size=500, max_file=50, clock=Clock(step=1000))
    for number in range(5):
        writer.write("stdout", b"line %d\n" % number)
    stop, received, thread = _follow_in_thread(path, tail=2)
    _wait_for(lambda: len(received) == 2)
    for number in range(5, 60):
        writer.write("stderr" if number % 3 == 0 else "stdout", b"line %d\n" % number)
        if number % 7 == 0:
            time.sleep(0.01)      # sometimes the reader catches up, sometimes several rotations pass
    writer.close()
    assert len(os.listdir(tmp_path)) > 5
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert [int(payload.split()[1]) for _, payload, _ in received] == list(range(3, 60))
    assert {stream for stream, _, _ in received} == {"stdout", "stderr"}


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "c-json.log"
    stop, received, thread = _follow_in_thread(path, stderr=False)
    time.sleep(0.03)
    with JsonFileWriter(str(path), clock=Clock()) as writer:
        writer.write("stdout", b"late\n")
        writer.write("stderr", b"filtered\n")
    _wait_for(lambda: len(received) == 1)
    stop.set()
    thread.join(5)
    assert [payload for _, payload, _ in received] == [b"late\n"]


def test_follow_survives_truncation_with_max_file_1(tmp_path):
    path = tmp_path / "c-json.log"
    writer = JsonFileWriter(str(path), max_size=400, max_file=1, clock=Clock())
    stop, received, thread = _follow_in_thread(path)
    for number in range(12):
        writer.write("stdout", b"line %d\n" % number)
        _wait_for(lambda expected=number + 1: len(received) == expected)
    writer.close()
    stop.set()
    thread.join(5)
    assert [int(payload.split()[1]) for _, payload, _ in received] == list(range(12))


def test_follow_notices_a_truncation_that_grew_back_past_its_offset(tmp_path):
    path = tmp_path / "c-json.log"
    writer = JsonFileWriter(str(path), max_size=300, max_file=1, clock=Clock())
    for number in range(4):
        writer.write("stdout", b"line %d\n" % number)
    stopped = []
    reader = read_logs(str(path), follow=True, stop=lambda: bool(stopped), poll_interval=0.001)
    assert [int(next(reader)[1].split()[1]) for _ in range(4)] == [0, 1, 2, 3]
    size = path.stat().st_size
    for number in range(4, 8):          # truncates, then as many bytes as before
        writer.write("stdout", b"line %d\n" % number)
    assert path.stat().st_size == size
    writer.close()
    stopped.append(True)
    assert [int(payload.split()[1]) for _, payload, _ in reader] == [4, 5, 6, 7]


def test_follow_stops_after_until(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonFileWriter(str(path), clock=Clock()) as writer:
        for number in range(5):
            writer.write("stdout", b"line %d\n" % number)
    until = _unix(BASE_NS + 2 * 1_000_000_000)
    result = list(read_logs(str(path), follow=True, until=until, stop=lambda: False))
    assert [payload for _, payload, _ in result] == [b"line 0\n", b"line 1\n", b"line 2\n"]


# -- frames ----------------------------------------------------------------------------------


def test_the_frames_of_the_logs_endpoint_are_docker_stdcopy():
    """The monitor writes logs frames with :func:`lamina.container.logs.frame`: the one encoder
    of :mod:`lamina.stdcopy` (tested there), re-exported."""
    assert frame is stdcopy.frame and demultiplex is stdcopy.demultiplex
    assert frame(logs.STDERR, b"x") == b"\x02\x00\x00\x00\x00\x00\x00\x01x"
