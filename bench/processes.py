"""What the benchmarks share about the processes they start."""

from __future__ import annotations

import os
import signal
import subprocess
import time

__all__ = ["terminate", "lamina_program", "compiled_front", "kill_by_pid_files"]

# the ``lamina`` program as its console script runs it (the front first, lamina.cli.front);
# a tree from before the front existed starts at lamina.cli.main
_PROGRAM = ("import sys\ntry:\n    from lamina.cli.front import run\n"
            "except ImportError:\n    from lamina.cli.main import run\nsys.argv[0] = 'lamina'\nrun()")


def lamina_program(root: str) -> list[str]:
    """The command line that runs the ``lamina`` program of the tree on ``PYTHONPATH`` with
    the interpreter of ``root``'s venv (for ``--against`` / ``--compare`` trees of any age)."""
    # -P: no current directory first on sys.path (a bench run from a tree would import it)
    return [os.path.join(root, ".venv", "bin", "python"), "-P", "-c", _PROGRAM]


def compiled_front(root: str, tree: str, output: str) -> list[str] | None:
    """The ``lamina`` program ``make`` installs for ``tree`` (its compiled front,
    ``lamina/cli/front.c``), built into ``output`` for ``root``'s venv interpreter with ``tree``
    on ``PYTHONPATH``, as a user of that tree runs it; None for a tree without one."""
    if not os.path.exists(os.path.join(tree, "lamina", "cli", "front.c")):
        return None
    environment = {**os.environ, "PYTHONPATH": tree}
    subprocess.run([os.path.join(root, ".venv", "bin", "python"), "-P", "-m", "lamina.cli.frontbuild", output],
                   env=environment, check=True, capture_output=True)
    return [output]


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


def kill_by_pid_files(exec_root: str, kind: str = "monitor-template") -> None:
    """SIGKILL the processes whose pids ``<exec_root>/<kind>/*.pid`` name (the monitor
    templates, or with ``kind="engine-cache"`` the engine caches) and wait until they are gone."""
    directory = os.path.join(exec_root, kind)
    pids = []
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.endswith(".pid"):
            try:
                with open(os.path.join(directory, name), encoding="ascii") as handle:
                    pid = int(handle.read().strip())
                os.kill(pid, signal.SIGKILL)
                pids.append(pid)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        time.sleep(0.005)
