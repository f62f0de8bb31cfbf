"""What /proc tells the tests of a process: its name, its children, whether it is gone."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def comm(pid: int) -> str:
    """The name of process ``pid`` (``/proc/PID/comm``; a spare worker or monitor has its own),
    ``""`` once it is gone."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().rstrip("\n")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The children of process ``pid`` (its main thread's), ``[]`` once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (no longer there, or a zombie waiting to be reaped).
    A process reaped between the ``open`` and the ``read`` fails the read with ESRCH."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return text[text.rfind(")") + 2:].split()[0] in ("Z", "X")


def kill_until_gone(find: Callable[[], list[int]], seconds: float = 5.0) -> None:
    """SIGKILL, by pid, every process ``find()`` names, again until it names none (what was
    killed may have started more: a front's fallback, an engine cache) or ``seconds`` passed."""
    import signal
    import time

    deadline = time.monotonic() + seconds
    while (pids := find()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def in_forked_child(work: Callable[[], Any]) -> Any:
    """What ``work()`` returns (JSON), run in a forked child (which may unshare its mount
    namespace and mount there: all of it goes with the child); a failure there fails the test
    with the child's exception."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps({"result": work()}).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(write_fd, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        data = reader.read()
    _, status = os.waitpid(pid, 0)
    answer = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer["result"]
