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
    assert run_lock.read() == ExitInfo(sequence=1)  # rewritten in place, no trailing bytes
    os.pwrite(run_lock.fd, b"garbage", 0)
    assert run_lock.read() == ExitInfo()
    run_lock.close()


def test_wait_exit_blocks_while_the_run_lock_is_held(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "d" * 64)
    monitor_side = run_dir.run_lock()
    monitor_side.lock(shared=False)
    waiter = run_dir.run_lock()
    results: list[ExitInfo | None] = []
    thread = threading.Thread(target=lambda: results.append(waiter.wait_exit(0)))
    thread.start()
    time.sleep(0.1)
    assert results == []
    monitor_side.write(ExitInfo(sequence=1, exit_code=3))
    monitor_side.unlock()
    thread.join(5)
    assert results == [ExitInfo(sequence=1, exit_code=3)]
    # a timeout, and giving up when nothing holds the lock
    monitor_side.lock(shared=False)
    started = time.monotonic()
    assert waiter.wait_exit(1, timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 2
    monitor_side.unlock()
    assert waiter.wait_exit(1, give_up=lambda: True) is None
    waiter.close()
    monitor_side.close()


def test_monitor_liveness_is_its_lock(tmp_path) -> None:
    run_dir = RunDirectory(str(tmp_path), "e" * 64)
    assert not run_dir.monitor_alive()
    run_dir.create()
    fd = os.open(run_dir.monitor_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with open(run_dir.monitor_pid_file, "w") as handle:
        handle.write("1234\n")
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
