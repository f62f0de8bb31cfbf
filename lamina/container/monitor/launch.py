"""The start of a run (and of each exec and health probe) in a short-lived helper process, so
that the monitor stays small.

A monitor is a fork of the monitor template (:mod:`~lamina.container.monitor.template`): it
shares the template's pages until it writes to them, and a Python process writes to every
page whose objects it merely uses (reference counts).  Starting a run uses most of lamina's
container code (the record, the layer and volume mounts, the spec, the network sandbox, the
runtime); done in the monitor, it would leave a few MiB of the template's pages copied into
every monitor for the container's whole life.  So the monitor forks a helper that does the
start and exits: the monitor is a child subreaper (``PR_SET_CHILD_SUBREAPER``, set by
:class:`~lamina.container.monitor.server.Monitor`), so the container's PID 1, the helper's
child, is reparented to the monitor, which reaps it as before (an early exit reaches it as a
zombie handed over, with its SIGCHLD).  The helper inherits what the run needs from the
monitor (the child ends of stdio, the log writer) and answers one line on a pipe:
``{"ok": true, ...}`` or ``{"error": ERROR}`` (the encoding of
:mod:`~lamina.container.monitor.protocol`, errors come back as their :mod:`lamina.errdefs`
kind); a helper that dies without answering is a failed start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lamina import errdefs
import lamina.container.monitor.protocol as protocol
from lamina.log import get_logger

__all__ = ["in_helper"]

log = get_logger("lamina.monitor")

_HELPER_TIMEOUT = 24 * 3600.0   # a start that hangs (a stuck mount) is the runtime's to time out


def in_helper(work: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """``work()`` in a forked helper; its answer.  What it raises is raised here with the same
    :mod:`lamina.errdefs` kind (another exception: :class:`~lamina.errdefs.System`)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise errdefs.System(f"cannot fork the helper of {what}: {exc.strerror}") from exc
    if pid == 0:  # the helper
        try:
            os.close(read_fd)
            try:
                answer = {"ok": True, **work()}
            except errdefs.LaminaError as exc:
                answer = protocol.error_answer(exc)
            except Exception as exc:  # noqa: BLE001 - a bug or an OS error: the start failed with it
                log.exception("%s failed", what)
                answer = protocol.error_answer(errdefs.System(f"cannot {what}: {exc}"))
            os.write(write_fd, protocol.encode(answer))
        finally:
            os._exit(0)
    os.close(write_fd)
    answer: dict[str, Any] | None = None
    try:
        answer = protocol.read_pipe_answer(read_fd, _HELPER_TIMEOUT)
    finally:
        os.close(read_fd)
        # a helper that answered is exiting (tearing down its copy of the monitor's memory, ~1
        # ms): the monitor's SIGCHLD handling reaps it, as it reaps every child; only a helper
        # that died without an answer is waited for here
        try:
            os.waitpid(pid, os.WNOHANG if answer is not None else 0)
        except ChildProcessError:
            pass  # reaped by the monitor's SIGCHLD handling meanwhile
    if answer is None:
        raise errdefs.System(f"cannot {what}: its helper process died")
    protocol.raise_error(answer, f"cannot {what}")
    return answer
