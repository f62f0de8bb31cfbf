"""Running a container (or an exec) in the foreground, as ``docker run`` / ``start -a`` do it.

The order matters and is docker's: attach first (output produced right after the start is not
lost), send the wait request (the daemon is already waiting when the container starts, so a
fast exit is seen: ``next-exit``, or ``removed`` with ``--rm``), then start, copy stdio until
the container's side ends, and take the exit code from the wait result.

Exit codes (docker's, for ``run``, ``start -a`` and ``exec``): :data:`EXIT_ENGINE` (125) when
the engine refuses (bad flag value, unknown image, daemon error), 126 when the command cannot
be invoked (``permission denied``, ``is a directory``), 127 when it is not found
(``executable file not found``, ``no such file or directory``), otherwise the process's own
exit code.  Engine errors print as ``lamina: Error response from daemon: ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from lamina.cli.context import Context
from lamina.cli.errors import CommandError
from lamina.cli.stdio import (
    RawTerminal,
    ResizeForwarder,
    SignalProxy,
    stream_attachment,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.cli.detach import DetachKeys
    from lamina.client.client import APIClient, ClientError
    from lamina.client.stdio import Attachment

__all__ = [
    "EXIT_CANNOT_INVOKE",
    "EXIT_ENGINE",
    "EXIT_NOT_FOUND_COMMAND",
    "EngineError",
    "NOT_A_TTY",
    "input_is_not_a_terminal",
    "pump",
    "report",
    "run_attached",
    "start_failure_code",
]

EXIT_ENGINE = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND_COMMAND = 127


def start_failure_code(message: str) -> int:
    """docker's exit code for a start that failed with ``message``."""
    text = message.removeprefix("Error response from daemon: ")
    if "executable file not found" in text or "no such file or directory" in text:
        return EXIT_NOT_FOUND_COMMAND
    if "permission denied" in text or "is a directory" in text:
        return EXIT_CANNOT_INVOKE
    return EXIT_ENGINE


class EngineError(CommandError):
    """The engine refused: printed ``lamina: Error response from daemon: ...`` with ``See
    'lamina COMMAND --help'.``, exit code 125 (or 126/127 for a failed start)."""

    def __init__(self, error: ClientError, command: str, exit_code: int = EXIT_ENGINE) -> None:
        super().__init__(f"Error response from daemon: {error.message}", exit_code)
        self.command = command


NOT_A_TTY = "the input device is not a TTY"


def input_is_not_a_terminal(context: Context, *, tty: bool, stdin: bool) -> bool:
    """docker's CheckTty: ``-t`` with stdin attached needs a terminal as stdin (a TTY's input
    is never closed by the client's end of input, so piped input would never end); the
    message is printed here (exit code 1)."""
    from lamina.cli.context import is_terminal

    if tty and stdin and not is_terminal(context.stdin):
        context.error(NOT_A_TTY)
        return True
    return False


def report(context: Context, error: EngineError) -> int:
    context.error(f"lamina: {error.message}\nSee 'lamina {error.command} --help'.")
    return error.exit_code


def pump(context: Context, client: APIClient, attachment: Attachment, *, tty: bool, stdin: bool,
         resize: Callable[[int, int], None] | None = None,
         kill: Callable[[str], None] | None = None, detach_keys: bytes | None = None) -> bool:
    """Copy stdio between the local terminal and ``attachment`` until the output ends; True
    when the user detached (with a TTY, ``detach_keys`` typed: the engine ended the stream)."""
    with ExitStack() as stack:
        if tty:
            stack.enter_context(RawTerminal(context.stdin, enabled=stdin))
            if resize is not None:
                stack.enter_context(ResizeForwarder(context.out, resize))
        elif kill is not None:
            stack.enter_context(SignalProxy(kill))
        return stream_attachment(attachment, context, stdin=stdin, detach_keys=detach_keys if tty else None)


def run_attached(context: Context, client: APIClient, id: str, *, command: str, tty: bool,
                 stdin: bool, stdout: bool, stderr: bool, start: bool, wait_condition: str,
                 sig_proxy: bool = True, remove_on_failure: bool = False, detach_keys: DetachKeys | None = None) -> int:
    """Attach, wait, start (if ``start``), copy stdio, and return the container's exit code
    (0 without waiting when the user detached: the container runs on)."""
    from lamina.client.client import ClientError

    attachment = None
    pending = None
    try:
        try:
            if stdin or stdout or stderr:
                attachment = client.attach(id, stdin=stdin, stdout=stdout, stderr=stderr, stream=True, tty=tty,
                                           detach_keys=detach_keys.specification if detach_keys else "")
            pending = client.wait_later(id, condition=wait_condition)
            if start:
                client.start(id)
        except ClientError as exc:
            if start and remove_on_failure:
                try:
                    client.remove_container(id, force=True)
                except ClientError:
                    pass  # already removed by the engine
            raise EngineError(exc, command, start_failure_code(exc.message) if start else EXIT_ENGINE) from exc
        if attachment is not None:
            detached = pump(context, client, attachment, tty=tty, stdin=stdin,
                            resize=lambda height, width: client.resize(id, height=height, width=width),
                            kill=(lambda name: client.kill(id, signal=name)) if sig_proxy else None,
                            detach_keys=detach_keys.keys if detach_keys else None)
            if detached:
                return 0
        try:
            result = pending.result()
        except ClientError as exc:
            context.error(f"Error waiting for container: {exc.message}")
            return EXIT_ENGINE
        error = result.get("Error")
        if error:
            message = error.get("Message") if isinstance(error, dict) else str(error)
            context.error(f"Error waiting for container: {message}")
            return EXIT_ENGINE
        code = result.get("StatusCode")
        return int(code) if isinstance(code, int) and code >= 0 else EXIT_ENGINE
    finally:
        if attachment is not None:
            attachment.close()
        if pending is not None:
            pending.close()
