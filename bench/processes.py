"""What the benchmarks share about the processes they start."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["terminate"]


def terminate(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM ``process`` (a ``lamina serve``: it stops serving and leaves), SIGKILL it when
    it has not exited within ``timeout`` seconds, and reap it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
