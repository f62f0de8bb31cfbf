"""``lamina stats [-a] [--no-stream] [--no-trunc] [--format F] [CONTAINER...]``: resource usage
like ``docker stats``: ``CONTAINER ID NAME CPU % MEM USAGE / LIMIT MEM % NET I/O BLOCK I/O PIDS``.

Figures are computed from the Engine API's stats documents exactly as the docker CLI does it:
CPU % is ``(total_usage - precpu total_usage) / (system_cpu_usage - precpu system_cpu_usage)
* online_cpus * 100``; memory usage excludes the inactive page cache (``total_inactive_file``
on cgroup v1, ``inactive_file`` on v2); block I/O sums ``io_service_bytes_recursive`` by
read/write; network sums every interface's rx/tx bytes.  Without names: the running
containers (``-a``: all).  ``--no-stream`` prints one table; otherwise the table is redrawn
as new samples arrive (the screen is cleared first on a terminal) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence

from lamina.cli.context import Context, is_terminal
from lamina.cli.errors import exit_code_for_status
from lamina.cli.formatting import bytes_size, human_size, truncate_id
from lamina.cli.rows import Record, format_rows

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_TABLE", "HEADERS", "configure", "run", "stats_row"]

HEADERS = {
    "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
DEFAULT_TABLE = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
_CLEAR = "\033[2J\033[H"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    parser.add_argument("--no-stream", action="store_true", help="disable streaming stats and only pull the first result")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("--format", metavar="FORMAT", help="'table', 'table TEMPLATE', 'json' or a Go template")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def stats_row(container: str, document: dict[str, Any], *, no_trunc: bool = False) -> Record:
    cpu = document.get("cpu_stats") or {}
    precpu = document.get("precpu_stats") or {}
    cpu_delta = _number((cpu.get("cpu_usage") or {}).get("total_usage")) - _number(
        (precpu.get("cpu_usage") or {}).get("total_usage"))
    system_delta = _number(cpu.get("system_cpu_usage")) - _number(precpu.get("system_cpu_usage"))
    online = _number(cpu.get("online_cpus")) or float(len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []))
    cpu_percent = cpu_delta / system_delta * online * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0

    memory = document.get("memory_stats") or {}
    usage = _number(memory.get("usage"))
    details = memory.get("stats") or {}
    if "total_inactive_file" in details and _number(details["total_inactive_file"]) < usage:
        used = usage - _number(details["total_inactive_file"])
    elif _number(details.get("inactive_file")) < usage:
        used = usage - _number(details.get("inactive_file"))
    else:
        used = usage
    limit = _number(memory.get("limit"))
    memory_percent = used / limit * 100.0 if limit else 0.0

    read = written = 0.0
    for entry in (document.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        operation = str(entry.get("op") or "")[:1].lower()
        if operation == "r":
            read += _number(entry.get("value"))
        elif operation == "w":
            written += _number(entry.get("value"))
    received = sent = 0.0
    for interface in (document.get("networks") or {}).values():
        received += _number(interface.get("rx_bytes"))
        sent += _number(interface.get("tx_bytes"))

    identifier = str(document.get("id") or "")
    name = str(document.get("name") or "")
    return Record(
        ID=identifier if no_trunc else truncate_id(identifier),
        Container=container,
        Name=name[1:] if len(name) > 1 and name.startswith("/") else name or "--",
        CPUPerc=f"{cpu_percent:.2f}%",
        MemUsage=f"{bytes_size(used)} / {bytes_size(limit)}",
        MemPerc=f"{memory_percent:.2f}%",
        NetIO=f"{human_size(received, 3)} / {human_size(sent, 3)}",
        BlockIO=f"{human_size(read, 3)} / {human_size(written, 3)}",
        PIDs=str(int(_number((document.get("pids_stats") or {}).get("current")))),
    )


def _targets(args: argparse.Namespace, context: Context) -> list[str]:
    if args.containers:
        return list(args.containers)
    return [str(summary.get("Id")) for summary in context.client.containers(all=args.all)]


def _render(context: Context, args: argparse.Namespace, rows: Sequence[Record], clear: bool) -> None:
    text = format_rows(args.format, rows, headers=HEADERS, default_table=DEFAULT_TABLE)
    context.out.write((_CLEAR if clear else "") + text)
    context.out.flush()


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    targets = _targets(args, context)
    if args.no_stream:
        rows = []
        code = 0
        for name in targets:
            try:
                document = next(iter(context.client.stats(name, stream=False)), None)
            except ClientError as exc:
                context.error(f"Error response from daemon: {exc.message}")
                code = exit_code_for_status(exc.status)
                continue
            if document is not None:
                rows.append(stats_row(name, document, no_trunc=args.no_trunc))
        _render(context, args, rows, clear=False)
        return code

    latest: dict[str, Record] = {}
    failures: list[ClientError] = []
    changed = threading.Event()

    def follow(name: str) -> None:
        try:
            for document in context.client.stats(name, stream=True):
                latest[name] = stats_row(name, document, no_trunc=args.no_trunc)
                changed.set()
        except ClientError as exc:
            failures.append(exc)
        finally:
            changed.set()

    threads = [threading.Thread(target=follow, args=(name,), name="lamina-stats", daemon=True) for name in targets]
    for thread in threads:
        thread.start()
    terminal = is_terminal(context.out)
    while True:
        changed.wait(1.0)
        changed.clear()
        _render(context, args, [latest[name] for name in targets if name in latest], clear=terminal)
        if not any(thread.is_alive() for thread in threads):
            break
        time.sleep(0.5)
    for failure in failures:
        context.error(f"Error response from daemon: {failure.message}")
    return exit_code_for_status(failures[-1].status) if failures else 0
