"""Becoming a monitor: the clean slate of a process the monitor template just forked.

:func:`monitor_main` runs in the child of :mod:`~lamina.container.monitor.template`'s fork (a
member of the template's session, not its leader, so it never gains a controlling terminal):
it closes every inherited descriptor it does not need, freezes the garbage collector's view of
inherited objects, puts /dev/null on 0-2, resets its signal dispositions, becomes a child
subreaper (:mod:`~lamina.container.monitor.launch`), then runs
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

__all__ = ["monitor_main"]

log = get_logger("lamina.monitor")


def monitor_main(context: MonitorContext, container_id: str, answer_fd: int, pending: list[PendingAttach]) -> None:
    """The monitor process; never returns."""
    code = 0
    try:
        gc.freeze()  # objects inherited from the template are never collected: their pages stay shared
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
        from lamina.runtime import capabilities

        # the container's PID 1 is started by a helper that exits (launch): it comes to us
        capabilities.prctl(capabilities.PR_SET_CHILD_SUBREAPER, 1)
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
