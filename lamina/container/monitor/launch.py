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
:data:`SPARE_HELPER_NAME` in ``/proc/PID/comm`` while it waits on a socket pair
(``SOCK_SEQPACKET``: one JSON line a message).  As soon as the monitor holds its lock and
found the container not running, it sends the helper the container's id
(:meth:`SpareHelper.begin`); the helper builds what a forked helper inherits (its
:class:`~lamina.container.monitor.server.Monitor` for that id, with no set-up) and prepares
the start (the root filesystem and volumes mounted, the network joined, ``/etc`` files, the
spec) while the monitor sets itself up (signals, exit record, log, sockets, stdio).  The
monitor's first start then sends whether it writes the log, with the child ends of stdio (and
a pty's master) as descriptors (:meth:`SpareHelper.launch`); the helper runs the rest of the
start (``runtime.start``, the record) and answers as :func:`in_helper`'s helper does, on the
same socket.  A monitor that does not go on with the start dismisses it
(:meth:`SpareHelper.dismiss`): the helper undoes what it prepared (the start's own failure
path) and exits, and the monitor waits for that before it reports the failure.  A helper that
could not be sent the request (it died first) leaves the start to a forked one; one that died
after it began is a failed start, as a forked helper's death is.  The helper exits with its
spare too (the end of its socket).
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

__all__ = ["SPARE_HELPER_NAME", "Dismissed", "SpareHelper", "fork_spare_helper", "in_helper"]

#: a spare helper's name while it waits (``/proc/PID/comm``)
SPARE_HELPER_NAME = "spare-helper"
_REQUEST_LIMIT = 1 << 16
_MAX_DESCRIPTORS = 4            # stdin, stdout, stderr; the pty's master
_ANSWER_PIECE = 4096            # protocol.read_pipe_answer reads this much at a time

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


class Dismissed(BaseException):
    """In a spare helper: its monitor dismissed it before the start went on (a BaseException,
    so that the start's own failure path undoes what it prepared, and nothing logs it)."""


class SpareHelper:
    """The monitor's side of a spare helper: its pid and its socket."""

    __slots__ = ("pid", "channel", "begun")

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel
        self.begun = False  # it was sent its start's request, and may have mounted things

    def fileno(self) -> int:
        return self.channel.fileno()

    def begin(self, request: dict[str, Any]) -> bool:
        """Send the start's request (the container's id, ``"what"`` for its errors): the helper
        prepares the start (mounts, files, spec) while the monitor sets itself up.  False when
        the helper is gone (it is then closed: the start forks one)."""
        try:
            self.channel.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            self.channel.close()
            return False
        self.begun = True
        return True

    def launch(self, request: dict[str, Any], fds: list[int], what: str) -> dict[str, Any]:
        """Let the begun start go on, with ``request`` (``"logged"``) and the descriptors
        ``fds`` (stdin, stdout, stderr, and with a terminal the master); its answer as
        :func:`in_helper` gives it.  The socket is closed either way."""
        try:
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode() + b"\n"], fds)
            except OSError:
                pass  # it ended first: its answer (the preparation's error) is read below
            try:
                answer = protocol.read_pipe_answer(self.channel.fileno(), _HELPER_TIMEOUT)
            except OSError:  # reset: it died with the request unread (a unix socket's peer is
                answer = None  # reset when it closes with data unread): as one that died first
        finally:
            self.channel.close()
        return _raise_or_return(answer, what)

    def dismiss(self) -> None:
        """End it unused: it undoes what it prepared and exits; waited for, so that nothing it
        mounted is left when the monitor reports why it did not start."""
        self.channel.close()
        if self.begun:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass  # reaped by the monitor's SIGCHLD handling


def fork_spare_helper(work: Callable[[dict[str, Any], Callable[[], tuple[dict[str, Any], list[int]]]], dict[str, Any]],
                      closed: Sequence[int] = ()) -> SpareHelper | None:
    """Fork a helper that waits for a start's request and answers ``work(request, receive)``
    (``receive()``: the monitor's next message and its descriptors; it raises
    :class:`Dismissed` when the monitor dismissed the helper instead), closing ``closed`` first (its monitor's own socket to the template: held open by the
    helper too, a spare that died would still look alive to the template); None when it cannot
    be forked (the start forks its helper then)."""
    try:
        channel, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
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


def _receive(channel: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The monitor's next message (one datagram: a JSON line) and its descriptors."""
    data, fds, _flags, _address = socket.recv_fds(channel, _REQUEST_LIMIT, _MAX_DESCRIPTORS)
    for fd in fds:
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    if not data:
        for fd in fds:
            os.close(fd)
        raise Dismissed()
    return json.loads(data), fds


def _serve_as_spare_helper(channel: socket.socket,
                           work: Callable[[dict[str, Any], Callable[[], tuple[dict[str, Any], list[int]]]], dict[str, Any]]) -> None:
    """The spare helper: wait for the start's request, run it, answer, exit; never returns."""
    try:
        from lamina.sys import set_process_name

        name = set_process_name(SPARE_HELPER_NAME)
        try:
            request, _fds = _receive(channel)
        except (Dismissed, OSError, ValueError):
            os._exit(0)  # dismissed before it began, or its monitor died
        set_process_name(name)
        received: list[bool] = []

        def receive() -> tuple[dict[str, Any], list[int]]:
            received.append(True)
            return _receive(channel)

        try:
            answer = protocol.encode(_answer_of(lambda: work(request, receive),
                                                str(request.get("what") or "start a container")))
        except Dismissed:
            os._exit(0)  # what it prepared is undone (the start's own failure path)
        for offset in range(0, len(answer), _ANSWER_PIECE):  # datagrams the reader joins
            channel.send(answer[offset:offset + _ANSWER_PIECE])
        if not received:
            # the preparation failed: the monitor's next message (the go, or the end) is read
            # before this exits, or the monitor's read of the answer fails with ECONNRESET
            # (a unix socket closed with unread data resets its peer)
            try:
                _message, fds = _receive(channel)
                for fd in fds:
                    os.close(fd)
            except (Dismissed, OSError, ValueError):
                pass
    finally:
        os._exit(0)
