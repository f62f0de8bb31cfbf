"""The local terminal side of run/exec: raw mode on a real pty (and its restoration), window
size forwarding (initially and on SIGWINCH), signal forwarding without a TTY."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import signal
import struct
import termios
import threading
import time

import pytest

from lamina import errdefs
from lamina.cli.main import main
from lamina.cli.stdio import RawTerminal, ResizeForwarder, SignalProxy, terminal_size


@pytest.fixture
def terminal():
    """A pty: (master fd, text stream on the slave) with a 33x101 window."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    stream = io.TextIOWrapper(io.FileIO(slave, "r+", closefd=False), encoding="utf-8", write_through=True)
    try:
        yield master, stream
    finally:
        os.close(master)
        os.close(slave)


def _drain(master: int) -> bytes:
    data = b""
    os.set_blocking(master, False)
    while True:
        try:
            chunk = os.read(master, 65536)
        except (BlockingIOError, OSError):
            return data
        if not chunk:
            return data
        data += chunk


def test_raw_terminal_switches_off_canonical_mode_and_restores_it(terminal) -> None:
    _, stream = terminal
    before = termios.tcgetattr(stream.fileno())
    with RawTerminal(stream):
        during = termios.tcgetattr(stream.fileno())
        assert not during[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
    assert termios.tcgetattr(stream.fileno()) == before
    with pytest.raises(RuntimeError), RawTerminal(stream):
        raise RuntimeError("the copy failed")
    assert termios.tcgetattr(stream.fileno()) == before
    with RawTerminal(io.StringIO()) as not_a_terminal:   # nothing to do, nothing to fail
        assert not not_a_terminal.enabled


def test_window_size_is_sent_at_once_and_on_sigwinch(terminal) -> None:
    _, stream = terminal
    sizes: list[tuple[int, int]] = []
    got = threading.Event()

    def resize(height: int, width: int) -> None:
        sizes.append((height, width))
        got.set()

    assert terminal_size(stream) == (33, 101)
    previous = signal.getsignal(signal.SIGWINCH)
    with ResizeForwarder(stream, resize):
        assert sizes == [(33, 101)]
        got.clear()
        fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        os.kill(os.getpid(), signal.SIGWINCH)
        assert got.wait(5)
    assert sizes[-1] == (50, 160)
    assert signal.getsignal(signal.SIGWINCH) == previous


def test_signal_proxy_forwards_and_restores(terminal) -> None:
    forwarded: list[str] = []
    done = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    with SignalProxy(lambda name: (forwarded.append(name), done.set())):
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(5)
    assert forwarded == ["SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) == previous


# The main thread copies output that never comes (a recv with no end) while another thread
# waits (as run's wait request does); the kernel hands the signal to that other thread (made
# certain here by blocking it in the main thread; the kernel does so by itself when the main
# thread has a signal pending).  Python would run the handler only once the main thread runs
# again: the signal must reach the container anyway.
_SIGNAL_TO_ANOTHER_THREAD = """
import os, signal, socket, sys, threading
from lamina.cli.stdio import SignalProxy

output, answer = socket.socketpair()
threading.Thread(target=threading.Event().wait, daemon=True).start()
with SignalProxy(lambda name: answer.send(name.encode())):
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    os.kill(os.getpid(), signal.SIGINT)
    output.settimeout(float(sys.argv[1]))
    try:
        print(output.recv(64).decode())
    except TimeoutError:
        print("not forwarded while the main thread waited")
"""


def test_signal_proxy_forwards_a_signal_another_thread_took() -> None:
    import subprocess
    import sys

    from tests.server.conftest import REPOSITORY

    done = subprocess.run([sys.executable, "-c", _SIGNAL_TO_ANOTHER_THREAD, "10"], cwd=REPOSITORY,
                          capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"SIGINT\n", b"")


def _run_on_terminal(monkeypatch, stream, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", stream)
    monkeypatch.setattr("sys.stdout", stream)
    monkeypatch.setattr("sys.stderr", stream)
    return main(list(argv))


def test_run_tty_on_a_terminal_is_raw_sized_and_restored(services, terminal, monkeypatch) -> None:
    from lamina.cli import foreground

    master, stream = terminal
    before = termios.tcgetattr(stream.fileno())
    seen_while_copying: list[list] = []
    copy = foreground.stream_attachment

    def spy(attachment, context, *, stdin, **options):
        seen_while_copying.append(termios.tcgetattr(stream.fileno()))
        return copy(attachment, context, stdin=stdin, **options)

    monkeypatch.setattr(foreground, "stream_attachment", spy)
    code = _run_on_terminal(monkeypatch, stream, "run", "-it", "--name", "tty", "busybox", "sh", "-c", "echo x; exit 2")
    assert code == 2
    assert len(seen_while_copying) == 1 and not seen_while_copying[0][3] & (termios.ICANON | termios.ECHO)
    assert termios.tcgetattr(stream.fileno()) == before
    container = services.containers._find("tty")
    assert container.resized == [(33, 101)]
    assert container.body["Tty"] and container.body["OpenStdin"]
    assert b"x" in _drain(master)


def test_run_tty_without_stdin_leaves_the_terminal_alone(services, terminal, monkeypatch) -> None:
    from lamina.cli import foreground

    _, stream = terminal
    before = termios.tcgetattr(stream.fileno())
    seen: list[list] = []
    copy = foreground.stream_attachment
    monkeypatch.setattr(foreground, "stream_attachment",
                        lambda attachment, context, *, stdin, **options: (
                            seen.append(termios.tcgetattr(stream.fileno())),
                            copy(attachment, context, stdin=stdin, **options))[1])
    assert _run_on_terminal(monkeypatch, stream, "run", "-t", "busybox", "echo", "hi") == 0
    assert seen == [before]


def test_ctrl_c_without_a_tty_is_forwarded_to_the_container(lamina, services) -> None:
    def interrupt_soon() -> None:
        for _ in range(100):
            time.sleep(0.05)
            try:
                if services.containers._find("sleeper").status == "running":
                    break
            except errdefs.NotFound:
                continue  # not created yet
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_soon, daemon=True).start()
    result = lamina("run", "--name", "sleeper", "busybox", "sleep", "60")
    assert result.code == 130
    assert [call for call in services.containers.calls if call[0] == "kill"][-1][1]["signal"] == "SIGINT"
