"""A program on a real pseudo-terminal, for tests that type keys (detach keys, ``-it``)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class Terminal:
    """``argv`` with a new pty as its stdin, stdout and stderr; the test holds the master."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.master, slave = pty.openpty()
        try:
            self.process = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env),
                                            start_new_session=True)
        except BaseException:
            os.close(self.master)
            raise
        finally:
            os.close(slave)
        self.output = b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return False   # EIO: every slave side is closed
        self.output += chunk
        return bool(chunk)

    def read_until(self, marker: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            assert time.monotonic() < deadline, f"{marker!r} not seen in {self.output!r}"
            if not self._read(0.1) and self.process.poll() is not None:
                raise AssertionError(f"{marker!r} not seen before the exit: {self.output!r}")
        return self.output

    def wait_raw(self, timeout: float = 20.0) -> None:
        """Wait until the program put the terminal in raw mode (the docker CLI does once its
        attach is hijacked, before it reads the keys): typed keys then reach it unchanged."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & (termios.ICANON | termios.ECHO):
            assert time.monotonic() < deadline, f"the terminal is still in cooked mode after {timeout} s"
            self._read(0.01)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.process.wait(timeout)
        while self._read(0.1) and select.select([self.master], [], [], 0)[0]:
            pass
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
