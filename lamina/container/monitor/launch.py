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

The **spare helper**: a fork of a monitor costs ~2-3 ms (its page tables), on the start's path.
A spare monitor (:mod:`~lamina.container.monitor.template`), forked ahead of its container,
forks its first start's helper ahead too, before it waits: :func:`fork_spare_helper`, named
:data:`SPARE_HELPER_NAME` in ``/proc/PID/comm`` while it waits on a socket pair.  The monitor's
first start sends it (:meth:`SpareHelper.launch`) a request line (the container's id and what
the start needs of the monitor, as JSON) with the child ends of stdio as descriptors, and reads
the answer on the same socket; the helper builds what a forked helper inherits (its
:class:`~lamina.container.monitor.server.Monitor` for that id, with no set-up), runs the same
start and answers as :func:`in_helper`'s helper does.  A monitor that does not start (or whose
helper died first: its start forks one) closes the socket, and the helper exits, as it does
when its monitor dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from lamina import errdefs
import lamina.container.monitor.protocol as protocol
from lamina.log import get_logger

__all__ = ["SPARE_HELPER_NAME", "SpareHelper", "fork_spare_helper", "in_helper"]

#: a spare helper's name while it waits (``/proc/PID/comm``)
SPARE_HELPER_NAME = "spare-helper"
_REQUEST_LIMIT = 1 << 16
_MAX_DESCRIPTORS = 4            # stdin, stdout, stderr; the pty's master

log = get_logger("lamina.monitor")

_HELPER_TIMEOUT = 24 * 3600.0   # a start that hangs (a stuck mount) is the runtime's to time out


def _answer_of(work: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """``work()``'s answer line: ``{"ok": true, ...}``, or its error with its errdefs kind."""
    try:
        return {"ok": True, **work()}
    except errdefs.LaminaError as exc:
        return protocol.error_answer(exc)
    except Exception as exc:  # noqa: BLE001 - a bug or an OS error: the start failed with it
        log.exception("%s failed", what)
        return protocol.error_answer(errdefs.System(f"cannot {what}: {exc}"))


def _raise_or_return(answer: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if answer is None:
        raise errdefs.System(f"cannot {what}: its helper process died")
    protocol.raise_error(answer, f"cannot {what}")
    return answer


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
            os.write(write_fd, protocol.encode(_answer_of(work, what)))
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
    return _raise_or_return(answer, what)


class SpareHelper:
    """The monitor's side of a spare helper: its pid and its socket."""

    __slots__ = ("pid", "channel")

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel

    def fileno(self) -> int:
        return self.channel.fileno()

    def launch(self, request: dict[str, Any], fds: list[int], what: str) -> dict[str, Any] | None:
        """The answer of the start ``request`` (with the descriptors ``fds``) as
        :func:`in_helper` gives it; None when the helper is gone before it read the request
        (nothing started: fork one).  The socket is closed either way."""
        try:
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode() + b"\n"], fds)
            except OSError:
                return None
            answer = protocol.read_pipe_answer(self.channel.fileno(), _HELPER_TIMEOUT)
        finally:
            self.close()
        return _raise_or_return(answer, what)

    def close(self) -> None:
        """Dismiss it (unused), or end the exchange: it exits at the end of its socket."""
        self.channel.close()


def fork_spare_helper(work: Callable[[dict[str, Any], list[int]], dict[str, Any]],
                      closed: Sequence[int] = ()) -> SpareHelper | None:
    """Fork a helper that waits for one start request and answers ``work(request, fds)``
    (the request names what it does as ``"what"``, for its errors), closing ``closed`` first
    (its monitor's own socket to the template: held open by the helper too, a spare that
    died would still look alive to the template); None when it cannot be forked (the start
    forks its helper then)."""
    try:
        channel, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        channel.close()
        helper_end.close()
        return None
    if pid == 0:
        channel.close()
        for fd in closed:
            os.close(fd)
        _serve_as_spare_helper(helper_end, work)  # never returns
    helper_end.close()
    channel.set_inheritable(False)
    return SpareHelper(pid, channel)


def _serve_as_spare_helper(channel: socket.socket, work: Callable[[dict[str, Any], list[int]], dict[str, Any]]) -> None:
    """The spare helper: wait for the request, answer it, exit; never returns."""
    try:
        from lamina.sys import set_process_name

        name = set_process_name(SPARE_HELPER_NAME)
        data = bytearray()
        fds: list[int] = []
        while not data.endswith(b"\n") and len(data) < _REQUEST_LIMIT:
            chunk, received, _flags, _address = socket.recv_fds(channel, _REQUEST_LIMIT, _MAX_DESCRIPTORS)
            for fd in received:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            fds += received
            if not chunk:
                os._exit(0)  # dismissed, or its monitor died
            data += chunk
        set_process_name(name)
        request = json.loads(data)
        answer = _answer_of(lambda: work(request, fds), str(request.get("what") or "start a container"))
        channel.sendall(protocol.encode(answer))
    finally:
        os._exit(0)
