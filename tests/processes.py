"""What /proc tells the tests of a process: its name, its children, whether it is gone."""

from __future__ import annotations

import os
from collections.abc import Callable


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
    """Whether process ``pid`` has exited (no longer there, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
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
