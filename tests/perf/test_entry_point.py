"""``lamina.cli.main.run``, the program's entry point: main(), then an exit that skips the
interpreter's teardown but keeps what matters of it (threads joined, atexit handlers run,
stdio flushed, Python's exit status 120 when stdout cannot be flushed)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = """
import atexit, sys, threading, time
import lamina.cli.main as cli

def fake_main(argv=None):
    def late():
        time.sleep(0.2)
        with open(sys.argv[1], "w") as handle:
            handle.write("thread done")
    threading.Thread(target=late).start()
    atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
    sys.stdout.write("buffered output, no newline")
    return 3

cli.main = fake_main
if sys.argv[2] == "run":
    cli.run()
sys.exit(cli.main())  # what the interpreter does on its own, for comparison
"""


def _program(marker, entry: str, **options):
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", PROGRAM, str(marker), entry], cwd=ROOT, env=environment,
                          text=True, timeout=60, check=False, **options)


def test_run_keeps_the_exit_code_threads_atexit_and_buffered_output(tmp_path) -> None:
    marker = tmp_path / "marker"
    completed = _program(marker, "run", capture_output=True)
    assert completed.returncode == 3
    assert completed.stdout == "buffered output, no newline"
    assert completed.stderr == "atexit ran\n"
    assert marker.read_text() == "thread done"


def test_run_exits_120_like_python_when_stdout_cannot_be_flushed(tmp_path) -> None:
    codes = []
    for entry in ("run", "interpreter"):
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody reads: flushing the buffered stdout fails with EPIPE
        try:
            completed = _program(tmp_path / entry, entry, stdout=write_end, stderr=subprocess.PIPE)
        finally:
            os.close(write_end)
        codes.append(completed.returncode)
    assert codes == [120, 120]


def test_the_lamina_program_prints_its_version() -> None:
    completed = subprocess.run([sys.executable, "-m", "lamina.cli.main", "--version"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0
    assert completed.stdout.startswith("lamina version ")
