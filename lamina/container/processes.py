"""``docker top``: the processes of a container, listed from ``/proc`` (host pids).

The default listing is ``ps -ef``'s (``UID PID PPID C STIME TTY TIME CMD``), computed from
``/proc/<pid>/{stat,status,cmdline}``.  Other ``ps`` arguments are handed to the host's ``ps``
and its output is filtered to the container's pids, as Docker does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from typing import Any

from lamina import errdefs

__all__ = ["TITLES", "list_processes"]

TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _tty_name(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return "?"


def _cpu_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def _start_time(started: float, current: float) -> str:
    local = time.localtime(started)
    if current - started < 24 * 3600:
        return time.strftime("%H:%M", local)
    if local.tm_year == time.localtime(current).tm_year:
        return time.strftime("%b%d", local)
    return time.strftime("%Y", local)


def _process_row(pid: int, boot: float, ticks: int, current: float) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
        uid = 0
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    uid = int(line.split()[2])  # effective uid, as ps -ef shows it
                    break
    except (FileNotFoundError, ProcessLookupError):
        return None
    command = text[text.find("(") + 1:text.rfind(")")]
    fields = text[text.rfind(")") + 2:].split()
    ppid = int(fields[1])
    tty_nr = int(fields[4])
    cpu_ticks = int(fields[11]) + int(fields[12])
    started = boot + int(fields[19]) / ticks
    elapsed = max(current - started, 1e-9)
    cpu_percent = int(cpu_ticks / ticks * 100 / elapsed)
    args = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
    cmd = " ".join(args) if args else f"[{command}]"
    return [_user_name(uid), str(pid), str(ppid), str(cpu_percent), _start_time(started, current),
            _tty_name(tty_nr), _cpu_time(cpu_ticks // ticks), cmd]


def _host_ps(ps_args: str, pids: list[int]) -> dict[str, Any]:
    binary = shutil.which("ps")
    if binary is None:
        raise errdefs.FailedPrecondition("ps is not installed on the host: only the default -ef listing works")
    try:
        completed = subprocess.run([binary, *ps_args.split()], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errdefs.System(f"running ps {ps_args}: {exc}") from exc
    if completed.returncode != 0:
        raise errdefs.InvalidArgument(f"ps: {completed.stderr.decode(errors='replace').strip()}")
    lines = completed.stdout.decode(errors="replace").splitlines()
    if not lines:
        raise errdefs.System("ps printed nothing")
    titles = lines[0].split()
    if "PID" not in titles:
        raise errdefs.InvalidArgument("Couldn't find PID field in ps output")
    column = titles.index("PID")
    wanted = {str(pid) for pid in pids}
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column] in wanted:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}


def list_processes(pids: list[int], ps_args: str = "-ef") -> dict[str, Any]:
    """Docker's ``{"Titles": [...], "Processes": [[...], ...]}`` for the host pids ``pids``."""
    if ps_args.strip() not in ("", "-ef", "-e -f", "-fe"):
        return _host_ps(ps_args, pids)
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    current = time.time()
    rows = []
    for pid in sorted(pids):
        row = _process_row(pid, boot, ticks, current)
        if row is not None:
            rows.append(row)
    return {"Titles": list(TITLES), "Processes": rows}
