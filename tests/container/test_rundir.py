"""Run-time state under the exec root: the exit record waiters read, the locks that say whether
a monitor lives and whether a container runs, and unix sockets at paths of any length."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from lamina.container.execstore import ExecStore, inspect_view
from lamina.container.rundir import ExitInfo, RunDirectory, bind_unix, connect_unix
from lamina.runtime.api import RuntimeState


def test_exit_info_round_trip_and_garbage(tmp_path) -> None:
    run_lock = RunDirectory(str(tmp_path), "c" * 64).run_lock()
    assert run_lock.read() == ExitInfo()
    info = ExitInfo(sequence=3, exit_code=137, error="x", oom_killed=True, removed=True)
    run_lock.write(info)
    assert run_lock.read() == info
    run_lock.write(ExitInfo(sequence=1))
    assert run_lock.read() == ExitInfo(sequence=1)  # rewritten in place over a longer record
    os.pwrite(run_lock.fd, b"garbage", 0)
    assert run_lock.read() == ExitInfo()
    run_lock.close()


def test_wait_exit_blocks_while_the_run_lock_is_held(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "d" * 64)
    monitor_side = run_dir.run_lock()
    monitor_side.hold_next()
    waiter = run_dir.run_lock()
    results: list[ExitInfo | None] = []
    thread = threading.Thread(target=lambda: results.append(waiter.wait_exit(0)))
    thread.start()
    time.sleep(0.1)
    assert results == []
    assert monitor_side.publish(exit_code=3) == ExitInfo(sequence=1, exit_code=3)
    monitor_side.release()
    thread.join(5)
    assert results == [ExitInfo(sequence=1, exit_code=3)]
    # a timeout, and giving up when nothing holds the lock
    monitor_side.hold_next()
    started = time.monotonic()
    assert waiter.wait_exit(1, timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 2
    monitor_side.release()
    assert waiter.wait_exit(1, give_up=lambda: True) is None
    waiter.close()
    monitor_side.close()


def test_monitor_liveness_is_its_lock(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "e" * 64)
    assert not run_dir.monitor_alive()
    run_dir.create()
    fd = os.open(run_dir.monitor_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"1234\n")  # the monitor writes its pid into the lock it holds
    pid = os.fork()
    if pid == 0:  # another process sees the lock held
        os._exit(0 if RunDirectory(str(tmp_path), "e" * 64).monitor_pid() == 1234 else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    os.close(fd)
    assert not run_dir.monitor_alive() and run_dir.monitor_pid() is None


def test_runtime_state_file(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "f" * 64)
    assert run_dir.read_runtime_state() is None
    run_dir.create()
    state = RuntimeState(id="f" * 64, pid=42, runtime="native", cgroup="lamina/x")
    run_dir.write_runtime_state(state)
    assert run_dir.read_runtime_state() == state
    run_dir.clear_runtime_state()
    assert run_dir.read_runtime_state() is None


def test_unix_sockets_at_long_paths(tmp_path) -> None:
    directory = tmp_path / ("long-" * 30)
    directory.mkdir()
    path = str(directory / "attach.sock")
    assert len(path) > 108
    listener = bind_unix(path)
    client = connect_unix(path)
    server, _ = listener.accept()
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    for sock in (client, server, listener):
        sock.close()


def test_exec_records(tmp_path) -> None:
    store = ExecStore(str(tmp_path))
    record = store.new("a" * 64, {"Cmd": ["sh", "-c", "x"], "AttachStdout": True, "User": "1"})
    view = inspect_view(store.get(record["ID"]))
    assert "Config" not in view
    assert view["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "arguments": ["-c", "x"],
                                     "privileged": False, "user": "1"}
    assert (view["Running"], view["ExitCode"], view["OpenStdout"], view["OpenStdin"]) == (False, None, True, False)
    store.new("b" * 64, {"Cmd": ["true"]})
    assert [r["ID"] for r in store.for_container("a" * 64)] == [record["ID"]]
    store.remove_for_container("a" * 64)
    assert store.for_container("a" * 64) == []


def test_a_restart_loop_does_not_starve_its_waiters(tmp_path) -> None:
    """A monitor restarting a container that exits at once publishes an exit, releases the
    lock and starts the next run at once: each waiter still sees each exit it waits for
    (with one lock taken back between runs, waiters blocked on it for ever)."""
    run_dir = RunDirectory(str(tmp_path), "a" * 64)
    monitor_side = run_dir.run_lock()
    stop = threading.Event()

    def restart_loop() -> None:
        monitor_side.hold_next()
        while not stop.is_set():
            time.sleep(0.0005)  # the run, and no back-off
            monitor_side.publish(exit_code=2)
            monitor_side.release()
            monitor_side.hold_next()
        monitor_side.publish(exit_code=0)
        monitor_side.release()

    seen: dict[int, list[int]] = {}

    def waiter(number: int) -> None:
        run_lock = run_dir.run_lock()
        try:
            for _ in range(100):
                after = run_lock.read().sequence
                info = run_lock.wait_exit(after)
                assert info is not None and info.sequence > after
                seen.setdefault(number, []).append(info.sequence)
        finally:
            run_lock.close()

    monitor = threading.Thread(target=restart_loop)
    monitor.start()
    waiters = [threading.Thread(target=waiter, args=(number,)) for number in range(4)]
    try:
        for thread in waiters:
            thread.start()
        for thread in waiters:
            thread.join(60)
        assert not any(thread.is_alive() for thread in waiters), "a waiter is starved"
    finally:
        stop.set()
        monitor.join(10)
        for thread in waiters:
            thread.join(10)
        monitor_side.close()
    assert sorted(seen) == [0, 1, 2, 3] and all(len(sequences) == 100 for sequences in seen.values())
    assert all(sequences == sorted(set(sequences)) for sequences in seen.values())


def test_the_exit_record_is_never_seen_empty_while_rewritten(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "b" * 64)
    writer = run_dir.run_lock()
    reader = run_dir.run_lock()
    writer.write(ExitInfo(sequence=1, exit_code=1, error="a longer error message than the next ones"))
    stop = threading.Event()

    def rewrite() -> None:
        sequence = 1
        while not stop.is_set():
            sequence += 1
            writer.write(ExitInfo(sequence=sequence, error="x" * (sequence % 7)))
            time.sleep(0.0002)  # exits come one at a time, not in a busy loop

    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        previous = 1
        for _ in range(2000):
            sequence = reader.read().sequence
            assert sequence >= previous
            previous = sequence
    finally:
        stop.set()
        thread.join(10)
        writer.close()
        reader.close()


def test_a_waiter_blocked_on_an_exit_gets_it_while_the_next_run_holds_on(tmp_path) -> None:
    """The monitor publishes exit 2 and at once starts the next run (holding on): the waiter
    blocked for exit 2 returns all the same."""
    run_dir = RunDirectory(str(tmp_path), "9" * 64)
    monitor_side = run_dir.run_lock()
    monitor_side.hold_next()
    monitor_side.publish(exit_code=1)
    monitor_side.release()
    monitor_side.hold_next()
    waiter = run_dir.run_lock()
    results: list[ExitInfo | None] = []
    thread = threading.Thread(target=lambda: results.append(waiter.wait_exit(1)))
    thread.start()
    try:
        time.sleep(0.1)
        assert results == []  # blocked: exit 2 is not published yet
        monitor_side.publish(exit_code=7)
        monitor_side.release()
        monitor_side.hold_next()  # the next run starts at once and holds on
        thread.join(10)
        assert results == [ExitInfo(sequence=2, exit_code=7)]
    finally:
        monitor_side.release()
        thread.join(10)
        monitor_side.close()
        waiter.close()
