#!/usr/bin/env python3
"""Benchmark: rootless lamina's commands against root's, with and without the engine cache.

For an unprivileged user made for the run (the helpers of ``tests/rootless/users.py``: a
subordinate range, its own ``HOME`` and ``XDG_RUNTIME_DIR``; removed at the end with every
process it has) and for root (a data root and exec root in a temporary directory), each of
``ps -a``, ``images`` and ``run --rm --network none busybox true`` is run:

* with the ``lamina`` program ``make`` installs (the compiled front, ``lamina/cli/front.c``:
  after the first command, the engine cache's fork server runs it, inside the user's rootless
  namespaces for the user);
* with the Python front (``python -m lamina.cli.front``: the engine cache answers the reads,
  its fork server runs ``run``);
* with ``LAMINA_FORWARD=0`` (in-process every time: the interpreter, the imports, and for the
  user the join of its namespaces; what rootless lamina did for every command before its
  engine cache).

Rows are interleaved (each round runs every row once), ``--runs`` rounds after ``--warmup``;
median, min and max wall time.  Figures are printed and written to
``bench/results/rootless.json``.  Run as root, after ``make venv``:
``.venv/bin/python bench/rootless.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from rootless.users import FIXTURE, LAMINA, make_user, remove_users  # noqa: E402

PYTHON_FRONT = [sys.executable, "-m", "lamina.cli.front"]
COMMANDS = {"ps -a": ["ps", "-a"], "images": ["images"],
            "run --rm": ["run", "--rm", "--network", "none", "busybox", "true"]}
PROGRAMS = {"compiled front": ([LAMINA], {}), "Python front": (PYTHON_FRONT, {}),
            "in-process (LAMINA_FORWARD=0)": ([LAMINA], {"LAMINA_FORWARD": "0"})}


def _timed(command: list[str], environment: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def _summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values), 1), "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark makes a user")
    made: list = []
    base = tempfile.mkdtemp(prefix="lamina-bench-")
    root_environment = {**os.environ, "LAMINA_DATA_ROOT": os.path.join(base, "data"),
                        "LAMINA_EXEC_ROOT": os.path.join(base, "exec")}
    for name in ("LAMINA_FORWARD", "LAMINA_HOST", "DOCKER_HOST"):
        root_environment.pop(name, None)
    try:
        user = make_user(made)
        user.ok("load", "-q", "-i", os.path.abspath(FIXTURE))
        subprocess.run([LAMINA, "load", "-q", "-i", FIXTURE], env=root_environment, check=True, capture_output=True)
        whom = {"rootless": (lambda argv: user.command(*argv), user.environment(), user.runtime_dir),
                "root": (lambda argv: argv, root_environment, base)}
        times: dict[str, list[float]] = {}
        load_before = os.getloadavg()[0]
        for round_number in range(options.warmup + options.runs):
            for who, (wrap, environment, cwd) in whom.items():
                for program_name, (program, extra) in PROGRAMS.items():
                    for command_name, words in COMMANDS.items():
                        elapsed = _timed(wrap([*program, *words]), {**environment, **extra}, cwd)
                        if round_number >= options.warmup:
                            times.setdefault(f"{who}: {command_name}, {program_name}", []).append(elapsed)
        results = {"runs": options.runs, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                   "rows": {label: _summary(values) for label, values in times.items()}}
    finally:
        remove_users(made)
        subprocess.run(["pkill", "-KILL", "-f", base], check=False)
        time.sleep(0.2)
        subprocess.run(["umount", "-R", "-l", base], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
    width = max(len(label) for label in results["rows"])
    for label, row in results["rows"].items():
        print(f"{label:<{width}}  median {row['median_ms']:7.1f}  min {row['min_ms']:7.1f}  max {row['max_ms']:7.1f} ms")
    print(f"load average before / after: {results['load_average']}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "rootless.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
