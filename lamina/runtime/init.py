"""The small init that runs as PID 1 of a container started with ``init`` (``--init``).

It is a function, not a program: the runtime's forked child, already inside the container
(pivoted, namespaces and cgroups joined), calls :func:`run_init` instead of exec'ing the
user's command.  The init forks the command (the *worker*), forwards to it every signal that
a terminal or ``docker kill`` may send (all but the synchronous ones, SIGCHLD, SIGKILL and
SIGSTOP), reaps every zombie that is reparented to it, and exits with the worker's status
(128 + signal number when the worker was killed by a signal), like tini/docker-init.  Signals
that arrive before the worker exists are queued and forwarded once it does.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

__all__ = ["FORWARDED_SIGNALS", "exit_code_of", "run_init"]

_NOT_FORWARDED = {
    signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGTRAP,
    signal.SIGSYS, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP,
}
_VALID = signal.valid_signals()  # once: each call builds a set of ~64 enum members (~0.1 ms)
FORWARDED_SIGNALS = tuple(
    sorted(number for number in range(1, signal.SIGRTMAX + 1)
           if number not in _NOT_FORWARDED and number in _VALID
           # glibc reserves the first real-time signals for itself (NPTL)
           and not (32 <= number < signal.SIGRTMIN)))
del _VALID


def exit_code_of(status: int) -> int:
    """A wait status as a shell-style exit code (128 + n for a process killed by signal n)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_init(start_worker: Callable[[], None], after_fork: Callable[[], None] | None = None) -> int:
    """Fork the worker (which runs ``start_worker`` and never returns), then forward signals
    and reap children until the worker exits; returns the exit code the init should exit with.

    ``after_fork`` runs in the init once the worker exists (close descriptors, drop
    privileges).  The caller of this function exits with the result (``os._exit``).
    """
    worker: list[int] = []
    pending: list[int] = []

    def forward(number: int, _frame: object) -> None:
        if not worker:
            pending.append(number)
            return
        try:
            os.kill(worker[0], number)
        except ProcessLookupError:
            pass

    for number in FORWARDED_SIGNALS:
        signal.signal(number, forward)
    pid = os.fork()
    if pid == 0:
        try:
            for number in FORWARDED_SIGNALS:
                signal.signal(number, signal.SIG_DFL)
            start_worker()
        finally:
            os._exit(127)
    worker.append(pid)
    if after_fork is not None:
        after_fork()
    for number in pending:
        forward(number, None)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if child == pid:
            return exit_code_of(status)
