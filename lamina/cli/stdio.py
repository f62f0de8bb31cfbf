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


class ResizeForwarder:
    """Send the local terminal's size to the container now and on every SIGWINCH."""

    def __init__(self, stream: IO[str], resize: Callable[[int, int], None]) -> None:
        self.stream = stream
        self.resize = resize
        self._previous: Any = None
        self._installed = False

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
        if _in_main_thread():
            self._previous = signal.signal(signal.SIGWINCH, lambda number, frame: self._on_signal())
            self._installed = True
        return self

    def _on_signal(self) -> None:
        # Not from the handler itself: a resize is a request and the handler may interrupt one.
        threading.Thread(target=self.send, name="lamina-resize", daemon=True).start()

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGWINCH, self._previous)
            self._installed = False


class SignalProxy:
    """Forward SIGINT, SIGTERM and SIGHUP received by the CLI to the container."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, kill: Callable[[str], None], enabled: bool = True) -> None:
        self.kill = kill
        self.enabled = enabled and _in_main_thread()
        self._previous: dict[int, Any] = {}

    def _forward(self, name: str) -> None:
        def run() -> None:
            from lamina.client.client import ClientError

            try:
                self.kill(name)
            except ClientError:
                pass  # the container may already be gone; its exit code will tell

        threading.Thread(target=run, name="lamina-sig-proxy", daemon=True).start()

    def __enter__(self) -> Self:
        if self.enabled:
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(
                    number, lambda received, frame, name=name: self._forward(name))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
