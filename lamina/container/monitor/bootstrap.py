"""Becoming a monitor: the double fork and the clean slate of the monitor process.

:func:`fork_monitor` forks twice (with ``setsid`` in between: the monitor survives the CLI or
server that started it); no new interpreter is exec'd.  The monitor closes every inherited
descriptor it does not need, freezes the garbage collector's view of inherited objects, puts
/dev/null on 0-2, resets its signal dispositions, then runs
:class:`~lamina.container.monitor.server.Monitor`.  Whatever escapes it is logged and answered
on the answer pipe (:mod:`lamina.container.monitor.protocol`).
"""

from __future__ import annotations

import gc
import os
import signal

import lamina.container.monitor.protocol as protocol
from lamina.container.monitor.api import MonitorContext, PendingAttach
from lamina.container.monitor.server import Monitor
from lamina.log import get_logger

__all__ = ["fork_monitor"]

log = get_logger("lamina.monitor")


def fork_monitor(context: MonitorContext, container_id: str, read_fd: int, write_fd: int,
                 pending: list[PendingAttach]) -> int:
    """Fork the intermediate child (which forks the monitor and exits at once); its pid.
    The monitor answers on ``write_fd``; ``read_fd`` is the starter's end (closed in it)."""
    pid = os.fork()
    if pid == 0:  # the intermediate child
        code = 1
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() == 0:
                _monitor_main(context, container_id, write_fd, pending)
            code = 0
        finally:
            os._exit(code)
    return pid


def _monitor_main(context: MonitorContext, container_id: str, answer_fd: int, pending: list[PendingAttach]) -> None:
    """The monitor process; never returns."""
    code = 0
    try:
        gc.freeze()  # objects inherited from the starter are never collected (their fds are closed)
        keep = {answer_fd, *(item.sock.fileno() for item in pending)}
        _close_inherited(keep)
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        if null > 2:
            os.close(null)
        os.chdir("/")
        os.umask(0o022)
        from lamina.runtime.child import reset_signals

        reset_signals(ignore=(signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTOU,
                              signal.SIGTTIN, signal.SIGTSTP))
        Monitor(context, container_id, answer_fd, pending).main()
    except BaseException as exc:  # noqa: BLE001 - the last resort: tell the starter, then exit
        code = 1
        try:
            log.exception("monitor of %s failed", container_id)
            os.write(answer_fd, protocol.encode(protocol.error_answer(exc)))
        except OSError:
            pass
    finally:
        os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
