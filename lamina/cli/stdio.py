"""Connecting the local terminal to a container's stdio (``run``, ``start -a``, ``exec``).

:func:`stream_attachment` copies the container's output to the local stdout / stderr (stream 1
and 2 of the multiplexed format; a TTY sends everything as stdout) until the container's side
ends, while a daemon thread copies the local stdin to the container and half-closes the
connection at end of file (the container's process then reads EOF).

With ``-t`` on a local terminal, :class:`RawTerminal` puts stdin in raw mode (keys go to the
container's pty unprocessed: Ctrl-C is the container's business) and always restores it, and
:class:`ResizeForwarder` sends the window size now and on every ``SIGWINCH``.
:class:`SignalProxy` forwards SIGINT / SIGTERM / SIGHUP to the container when there is no
TTY (docker's ``--sig-proxy``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from lamina.cli.context import Context, is_terminal

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import IO, Any, Self

    from lamina.client.stdio import Attachment
    from lamina.container.detachkeys import DetachMatcher

__all__ = ["RawTerminal", "ResizeForwarder", "SignalProxy", "binary", "stream_attachment", "terminal_size"]

_READ_SIZE = 32 * 1024


def binary(stream: IO[str]) -> Any:
    """The byte stream under a text stream (flushing the text first)."""
    stream.flush()
    return getattr(stream, "buffer", None)


def _stdin_reader(stream: IO[str]) -> Callable[[], bytes]:
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        fd = -1
    if fd >= 0:
        # Unbuffered: an interactive user's keys must go out as they are typed.
        return lambda: os.read(fd, _READ_SIZE)
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        read1 = getattr(buffer, "read1", None)
        return (lambda: read1(_READ_SIZE)) if read1 is not None else (lambda: buffer.read(_READ_SIZE))
    return lambda: stream.read(_READ_SIZE).encode()


def _copy_stdin(attachment: Attachment, read: Callable[[], bytes], matcher: DetachMatcher | None,
                detached: threading.Event) -> None:
    try:
        while True:
            data = read()
            if not data:
                break
            if matcher is not None:
                matcher.feed(data)   # watched, not filtered: the engine drops the keys
                if matcher.detached:
                    detached.set()
            attachment.send(data)
            if detached.is_set():
                return    # the engine closes the stream; the connection is not half-closed
    except (OSError, ValueError):
        pass  # the container's side went away, or our stdin was closed: nothing left to copy
    if not detached.is_set():
        attachment.close_stdin()


def stream_attachment(attachment: Attachment, context: Context, *, stdin: bool,
                      detach_keys: bytes | None = None) -> bool:
    """Copy output to the local stdout/stderr until it ends (and stdin to the container);
    True when it ended because ``detach_keys`` were typed (watched only when given)."""
    detached = threading.Event()
    if stdin:
        from lamina.container.detachkeys import DetachMatcher

        matcher = DetachMatcher(detach_keys) if detach_keys else None
        threading.Thread(target=_copy_stdin, args=(attachment, _stdin_reader(context.stdin), matcher, detached),
                         name="lamina-stdin", daemon=True).start()
    out = binary(context.out)
    err = binary(context.err)
    for stream, payload in attachment.output():
        if stream == 2:
            target = err
        elif stream == 3:
            context.error(f"Error: {payload.decode('utf-8', 'replace').strip()}")
            continue
        else:
            target = out
        if target is None:
            (context.err if stream == 2 else context.out).write(payload.decode("utf-8", "replace"))
            continue
        target.write(payload)
        target.flush()
    return detached.is_set()


class RawTerminal:
    """Raw mode on the local terminal for the duration of a ``with`` block (if it is one)."""

    def __init__(self, stream: IO[str], enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled and is_terminal(stream)
        self._saved: list[Any] | None = None

    def __enter__(self) -> Self:
        if self.enabled:
            import termios
            import tty

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setraw(fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


def terminal_size(stream: IO[str]) -> tuple[int, int] | None:
    """(height, width) of the terminal behind ``stream``, or None."""
    if not is_terminal(stream):
        return None
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return None
    return size.lines, size.columns


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _SignalRelay:
    """While in its ``with`` block, ``act(number)`` is called for each of ``numbers`` the process
    receives, by a thread of its own, one signal at a time and in the order they came (nothing
    is done without ``numbers``).

    Not from the signals' Python handlers: Python runs those in the main thread only, once it
    runs Python code again, and the kernel may hand a signal sent to the process to another of
    its threads (it passes over one that has a signal pending already).  A main thread blocked
    reading the output of a container that prints nothing more would then never run the
    handler: the Ctrl-C would be lost.  So the handlers do nothing, and the signals are read
    from the wakeup descriptor (``signal.set_wakeup_fd``), where the interpreter's own handler
    writes each signal's number in whichever thread took it.  The wakeup descriptor is the
    process's one: one relay at a time (the main thread's only)."""

    def __init__(self, numbers: tuple[int, ...], act: Callable[[int], None]) -> None:
        self.numbers = numbers
        self.act = act
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._write_fd = -1

    def _read(self, read_fd: int) -> None:
        try:
            while data := os.read(read_fd, 64):  # end of file: the relay was left
                for number in data:
                    if number in self.numbers:  # not another signal with a handler (it ran)
                        self.act(number)
        finally:
            os.close(read_fd)

    def __enter__(self) -> Self:
        if not self.numbers:
            return self
        read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._write_fd, False)  # as set_wakeup_fd requires: a full pipe drops
        threading.Thread(target=self._read, args=(read_fd,), name="lamina-signals", daemon=True).start()
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for number in self.numbers:
            self._previous[number] = signal.signal(number, _written_to_the_wakeup_fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        if self._write_fd >= 0:
            signal.set_wakeup_fd(self._previous_wakeup)
            os.close(self._write_fd)  # the relay acts on what came before, then ends
            self._write_fd = -1


def _written_to_the_wakeup_fd(number: int, frame: object) -> None:
    """A relayed signal's Python handler: nothing to do (:class:`_SignalRelay` reads it)."""


class ResizeForwarder(_SignalRelay):
    """Send the local terminal's size to the container now and on every SIGWINCH."""

    def __init__(self, stream: IO[str], resize: Callable[[int, int], None]) -> None:
        super().__init__((signal.SIGWINCH,) if _in_main_thread() else (), lambda number: self.send())
        self.stream = stream
        self.resize = resize

    def send(self) -> None:
        size = terminal_size(self.stream)
        if size is None or size == (0, 0):
            return
        from lamina.client.client import ClientError

        try:
            self.resize(*size)
        except ClientError:
            pass  # a resize racing with the exit is not worth failing the command

    def __enter__(self) -> Self:
        if terminal_size(self.stream) is None:
            return self
        self.send()
        return super().__enter__()


class SignalProxy(_SignalRelay):
    """Forward SIGINT, SIGTERM and SIGHUP received by the CLI to the container (whichever of
    the CLI's threads the kernel handed them to: :class:`_SignalRelay`)."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, kill: Callable[[str], None], enabled: bool = True) -> None:
        self.kill = kill
        self.enabled = enabled and _in_main_thread()
        super().__init__(tuple(int(getattr(signal, name)) for name in self.SIGNALS) if self.enabled else (),
                         self._forward)

    def _forward(self, number: int) -> None:
        from lamina.client.client import ClientError

        try:
            self.kill(signal.Signals(number).name)
        except ClientError:
            pass  # the container may already be gone; its exit code will tell
