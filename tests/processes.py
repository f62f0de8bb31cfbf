"""What /proc tells the tests of a process: its name and its children."""

from __future__ import annotations


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
