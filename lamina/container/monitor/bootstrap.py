"""Becoming a monitor: the clean slate of a process the monitor template just forked.

:func:`monitor_main` runs in the child of :mod:`~lamina.container.monitor.template`'s fork (a
member of the template's session, not its leader, so it never gains a controlling terminal).
What every monitor needs the same the template did before the fork, once: the signal
dispositions (:data:`IGNORED_SIGNALS` ignored, every other one default, none blocked), the
garbage collector's view frozen (``gc.freeze``: a collection in a monitor never writes to the
pages it shares with the template), the stores opened, the log handler made (each monitor
points it at its own ``monitor.log``), and a rehearsal of what every monitor does first
(:func:`rehearse`).  The child closes every inherited
descriptor it does not need, puts /dev/null on 0-2, becomes a child subreaper
(:mod:`~lamina.container.monitor.launch`), then runs
:class:`~lamina.container.monitor.server.Monitor`.  Whatever escapes it is logged and answered
on the answer pipe (:mod:`lamina.container.monitor.protocol`).  Each Python statement run
here writes to shared pages (reference counts): this path is kept short on purpose.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.container import health
from lamina.container import spec as specs
from lamina.container.logs import parse_log_options
import lamina.container.monitor.protocol as protocol
from lamina.container.monitor.api import MonitorContext, MonitorStores, PendingAttach
from lamina.container.monitor.launch import SpareHelper
from lamina.container.monitor.server import Monitor
from lamina.container.names import is_valid_name
from lamina.container.rundir import RunDirectory
from lamina.log import get_logger

__all__ = ["IGNORED_SIGNALS", "monitor_main", "prepare_logging", "rehearse", "spare_helper_work"]

log = get_logger("lamina.monitor")

IGNORED_SIGNALS = (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTOU, signal.SIGTTIN,
                   signal.SIGTSTP)


def prepare_logging() -> logging.FileHandler:
    """The monitors' log handler (``lamina`` records of INFO and above), made by the template
    once; each monitor only points it at its ``monitor.log`` (opened at the first record)."""
    root = logging.getLogger("lamina")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(os.devnull, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return handler


#: the container id of a rehearsal (:func:`rehearse`): a well-formed id no container has
REHEARSAL_ID = "0" * 64
REHEARSAL_NAME = "/lamina-rehearsal"


def rehearse(context: MonitorContext, stores: MonitorStores) -> None:
    """What every monitor does first, done once in the template with a placeholder container
    and no side effect (no file, socket, signal or lock made or changed): the :class:`Monitor`
    and its parts built, its record looked for, a descriptor watched by its loop, an answer
    read from a pipe, the log and healthcheck options of an empty record read.  What a first
    time writes is then written in the template's pages, shared by every monitor, rather than
    in each monitor's: the shared attribute keys of those classes, the entries of the type
    attribute cache and of the ABC caches (``isinstance(..., Mapping)``), the hashes of the
    strings involved."""
    monitor = Monitor(context, stores, REHEARSAL_ID, -1, [])
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            stores.store.get(REHEARSAL_ID)
        except errdefs.NotFound:
            pass
        monitor.loop.on_read(read_fd, lambda: None)
        os.write(write_fd, protocol.encode(protocol.OK))
        monitor.loop.poll(0)
        monitor.loop.forget(read_fd)
        protocol.read_pipe_answer(read_fd, 1.0)
    finally:
        os.close(read_fd)
        os.close(write_fd)
        monitor.loop.close()
    log_type, options = specs.log_options({})
    if log_type == "json-file":
        parse_log_options(options)
    health.probe_of({})
    is_valid_name(REHEARSAL_NAME)  # compiles the pattern a removal checks the name it releases with


def spare_helper_work(context: MonitorContext,
                      stores: MonitorStores) -> Callable[[dict[str, Any], Callable[[], tuple[dict[str, Any], list[int]]]], dict[str, Any]]:
    """What a spare monitor's spare helper (:func:`~lamina.container.monitor.launch.fork_spare_helper`)
    does with its monitor's first start: what a helper forked by that monitor would
    (:meth:`~lamina.container.monitor.run.Runner.launch_requested`)."""
    def work(request: dict[str, Any], receive: Callable[[], tuple[dict[str, Any], list[int]]]) -> dict[str, Any]:
        monitor = Monitor(context, stores, str(request["id"]), -1, [])  # no set-up: the monitor makes it
        return monitor.runner.launch_requested(receive)

    return work


def monitor_main(context: MonitorContext, stores: MonitorStores, container_id: str, answer_fd: int,
                 pending: list[PendingAttach], log_handler: logging.FileHandler,
                 spare_helper: SpareHelper | None = None) -> None:
    """The monitor process; never returns.  ``spare_helper``: a spare monitor's helper for its
    first start (:mod:`~lamina.container.monitor.launch`)."""
    code = 0
    log_handler.close()  # the template's log, if it wrote to it: this monitor's own, opened at its first record
    log_handler.baseFilename = RunDirectory(context.exec_root, container_id).monitor_log
    try:
        _close_inherited({answer_fd, *(item.sock.fileno() for item in pending),
                          *([spare_helper.fileno()] if spare_helper is not None else [])})
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        if null > 2:
            os.close(null)
        from lamina.runtime import capabilities

        # the container's PID 1 is started by a helper that exits (launch): it comes to us
        capabilities.prctl(capabilities.PR_SET_CHILD_SUBREAPER, 1)
        monitor = Monitor(context, stores, container_id, answer_fd, pending)
        monitor.spare_helper = spare_helper
        monitor.main()
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
