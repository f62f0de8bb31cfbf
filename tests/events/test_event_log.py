"""The event log: message shape, line format and its bound, windows, following (across
rotations, to a cancel), concurrent writers in several processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lamina.events.log import MAX_LINE, EventLog, encode_line
from lamina.events.message import build_message, container_attributes

SECOND = 1_000_000_000


def message_at(time_ns: int, action: str = "start", actor: str = "c1", **attributes: str) -> dict[str, Any]:
    return build_message("container", action, actor, {"image": "busybox", "name": "x", **attributes}, time_ns)


def stored_lines(log: EventLog) -> list[dict[str, Any]]:
    lines = []
    for path in (log.old_path, log.path):
        if os.path.exists(path):
            with open(path, "rb") as handle:
                lines.extend(json.loads(line) for line in handle.read().splitlines())
    return lines


def collect(iterator: Iterator[dict[str, Any]], count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` messages of a following stream, read in a thread (fails on timeout)."""
    found: list[dict[str, Any]] = []
    done = threading.Event()

    def read() -> None:
        for message in iterator:
            found.append(message)
            if len(found) == count:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"got {len(found)} of {count} events: {found}"
    return found


def test_container_messages_carry_dockers_deprecated_fields() -> None:
    attributes = container_attributes({"Image": "busybox", "Labels": {"team": "a", "name": "shadowed"}}, "/web",
                                      {"exitCode": "3"})
    message = build_message("container", "die", "abc", attributes, 1_700_000_000_123_456_789)
    assert message == {
        "status": "die", "id": "abc", "from": "busybox", "Type": "container", "Action": "die",
        "Actor": {"ID": "abc", "Attributes": {"team": "a", "name": "web", "image": "busybox", "exitCode": "3"}},
        "scope": "local", "time": 1_700_000_000, "timeNano": 1_700_000_000_123_456_789}
    assert list(message) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]


def test_volume_and_prune_messages_leave_the_deprecated_fields_out() -> None:
    volume = build_message("volume", "create", "data", {"driver": "local"}, 5 * SECOND)
    assert "status" not in volume and "id" not in volume and "from" not in volume
    prune = build_message("image", "prune", "", {"reclaimed": "0"}, 5 * SECOND)
    assert prune["status"] == "prune" and "id" not in prune and prune["Actor"] == {"ID": "", "Attributes": {"reclaimed": "0"}}


def test_emit_appends_one_json_line_per_event(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"))
    log.emit("container", "create", "c1", {"image": "busybox", "name": "x"})
    log.emit("volume", "create", "v1", {"driver": "local"})
    with open(log.path, "rb") as handle:
        raw = handle.read()
    assert raw.count(b"\n") == 2 and raw.endswith(b"\n")
    first, second = (json.loads(line) for line in raw.splitlines())
    assert (first["Type"], first["Action"], first["id"]) == ("container", "create", "c1")
    assert (second["Type"], second["Actor"]["ID"]) == ("volume", "v1")
    assert first["timeNano"] <= second["timeNano"] and first["time"] == first["timeNano"] // SECOND
    assert os.stat(log.directory).st_mode & 0o777 == 0o700
    assert os.stat(log.path).st_mode & 0o777 == 0o600


def test_a_long_event_loses_its_labels_then_long_values_to_fit_one_line() -> None:
    labels = {f"label{index}": "v" * 100 for index in range(100)}
    message = build_message("container", "start", "c1",
                            container_attributes({"Image": "busybox", "Labels": labels}, "x"), SECOND)
    line = encode_line(message)
    assert len(line) <= MAX_LINE
    assert json.loads(line)["Actor"]["Attributes"] == {"image": "busybox", "name": "x"}
    huge = build_message("container", "start", "c1", {"image": "i" * 5000, "name": "x"}, SECOND)
    line = encode_line(huge)
    assert len(line) <= MAX_LINE
    trimmed = json.loads(line)
    assert trimmed["Actor"]["Attributes"] == {"image": "i" * 256, "name": "x"} and trimmed["from"] == "i" * 256


def test_emit_never_raises_when_the_log_cannot_be_written(tmp_path, caplog) -> None:
    blocker = tmp_path / "events"
    blocker.write_text("a file where the directory should be")
    EventLog(str(blocker)).emit("container", "start", "c1")
    assert "was not recorded" in caplog.text


@pytest.mark.parametrize(("since", "until", "expected"), [
    (None, None, []),
    (20, None, [20, 30, 40]),
    (None, 20, [10, 20]),
    (20, 30, [20, 30]),
    (21, 29, []),
    (0, 100, [10, 20, 30, 40]),
], ids=["no window replays nothing, like Docker", "since is inclusive", "until alone replays from the start",
        "both bounds are inclusive", "an empty window", "a window around everything"])
def test_stored_events_in_a_window(tmp_path, since, until, expected) -> None:
    log = EventLog(str(tmp_path / "events"))
    for seconds in (10, 20, 30, 40):
        log.append(message_at(seconds * SECOND))
    found = list(log.stream(since_ns=since * SECOND if since is not None else None,
                            until_ns=until * SECOND if until is not None else None))
    assert [message["timeNano"] // SECOND for message in found] == expected


def test_the_window_reads_the_rotated_file_first(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), rotate_bytes=2000)
    for index in range(40):
        log.append(message_at((100 + index) * SECOND))
    assert os.path.exists(log.old_path)
    found = [message["timeNano"] // SECOND for message in log.stream(since_ns=0)]
    stored = [message["timeNano"] // SECOND for message in stored_lines(log)]
    assert found == stored == list(range(140 - len(stored), 140))
    assert len(stored) < 40  # the oldest went with an earlier rotation
    assert os.path.getsize(log.old_path) <= 2000 + MAX_LINE


def test_torn_and_foreign_lines_are_skipped(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"))
    os.makedirs(log.directory)
    with open(log.path, "wb") as handle:
        handle.write(b'{"status":"sta\n[1, 2]\n\n')
    log.append(message_at(50 * SECOND))
    assert [message["timeNano"] for message in log.stream(since_ns=0)] == [50 * SECOND]


def test_following_sees_only_new_events_without_a_window(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), poll_interval=0.01)
    log.append(message_at(1 * SECOND, actor="old"))
    stop = threading.Event()
    stream = log.stream(follow=True, stop=stop)
    try:
        found: list[dict[str, Any]] = []
        started = threading.Event()

        def read() -> None:
            started.set()
            for message in stream:
                found.append(message)  # noqa: PERF402 - read while the test looks

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        started.wait()
        time.sleep(0.05)
        log.emit("container", "create", "new1")
        log.emit("container", "start", "new1")
        deadline = time.monotonic() + 5
        while len(found) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(m["Action"], m["Actor"]["ID"]) for m in found] == [("create", "new1"), ("start", "new1")]
        stop.set()
        thread.join(1)
        assert not thread.is_alive()
    finally:
        stop.set()


def test_following_continues_across_rotations_without_loss_or_repeat(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), rotate_bytes=3000, poll_interval=0.01)
    stop = threading.Event()
    stream = log.stream(since_ns=0, follow=True, stop=stop)
    try:
        received: list[int] = []
        for batch in range(6):
            for index in range(8):
                log.append(message_at((batch * 8 + index + 1) * SECOND))
            received.extend(m["timeNano"] // SECOND for m in collect(stream, 8))
        assert received == list(range(1, 49))
        assert os.path.exists(log.old_path)
    finally:
        stop.set()
        stream.close()


def test_a_line_being_written_is_delivered_once_complete(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), poll_interval=0.01)
    os.makedirs(log.directory)
    stop = threading.Event()
    stream = log.stream(until_ns=None, since_ns=0, follow=True, stop=stop)
    line = encode_line(message_at(7 * SECOND))
    try:
        with open(log.path, "ab", buffering=0) as handle:
            handle.write(line[:40])
            found: list[dict[str, Any]] = []
            thread = threading.Thread(target=lambda: found.extend(stream), daemon=True)
            thread.start()
            time.sleep(0.1)
            assert found == []
            handle.write(line[40:])
            deadline = time.monotonic() + 5
            while not found and time.monotonic() < deadline:
                time.sleep(0.01)
        assert [message["timeNano"] for message in found] == [7 * SECOND]
    finally:
        stop.set()


def test_stop_ends_a_waiting_follower_at_once(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), poll_interval=5.0)
    stop = threading.Event()
    ended = threading.Event()

    def read() -> None:
        for _ in log.stream(follow=True, stop=stop):
            pass
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.1)
    stop.set()
    # well before the 5 s poll; a bound tighter than this measures the host's scheduler
    assert ended.wait(2), "the follower did not end within 2 s of the stop (waits for its poll?)"


def test_a_future_until_follows_new_events_then_ends(tmp_path) -> None:
    log = EventLog(str(tmp_path / "events"), poll_interval=0.01)
    log.append(message_at(time.time_ns() - SECOND, actor="before"))
    until = time.time_ns() + 2 * SECOND  # "during" is emitted well before it, even on a stalled machine
    found: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: found.extend(
        log.stream(since_ns=0, until_ns=until, follow=True)), daemon=True)
    thread.start()
    time.sleep(0.1)
    log.emit("container", "start", "during")
    assert time.time_ns() < until, "the machine stalled past until before the event was emitted"
    thread.join(6)
    assert not thread.is_alive(), "the stream did not end at until"
    log.emit("container", "start", "after")
    assert [message["Actor"]["ID"] for message in found] == ["before", "during"]


def _writer(directory: str, writer: int, count: int, rotate_bytes: int) -> None:
    log = EventLog(directory, rotate_bytes=rotate_bytes)
    for sequence in range(count):
        log.emit("container", "exec_start: sh", f"writer{writer}", {"sequence": str(sequence), "pad": "p" * writer * 37})


def _run_writers(directory: str, writers: int, count: int, rotate_bytes: int) -> None:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_writer, args=(directory, writer, count, rotate_bytes))
                 for writer in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0


def test_concurrent_writers_in_several_processes_never_interleave(tmp_path) -> None:
    directory = str(tmp_path / "events")
    _run_writers(directory, writers=4, count=400, rotate_bytes=64 << 20)
    lines = stored_lines(EventLog(directory))  # json.loads fails on an interleaved line
    assert len(lines) == 1600
    for writer in range(4):
        sequences = [int(m["Actor"]["Attributes"]["sequence"]) for m in lines if m["id"] == f"writer{writer}"]
        assert sequences == list(range(400))


def test_concurrent_writers_with_rotations_keep_whole_lines_and_a_suffix_of_each_writer(tmp_path) -> None:
    directory = str(tmp_path / "events")
    rotate_bytes = 32 << 10
    _run_writers(directory, writers=4, count=400, rotate_bytes=rotate_bytes)
    log = EventLog(directory)
    lines = stored_lines(log)
    assert 0 < len(lines) < 1600
    for writer in range(4):
        sequences = [int(m["Actor"]["Attributes"]["sequence"]) for m in lines if m["id"] == f"writer{writer}"]
        assert sequences == list(range(400 - len(sequences), 400)), "a writer's events are a contiguous suffix"
    assert os.path.getsize(log.old_path) <= rotate_bytes + (64 << 10)
