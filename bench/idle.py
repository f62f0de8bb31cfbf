#!/usr/bin/env python3
"""Benchmark: ``lamina run --rm --network none busybox true`` after an idle gap.

The engine cache leaves after five idle minutes and the monitor template after its own 30
(unless the cache holds it); a user who runs a container now and then meets what is left after
the gap.  Each round runs, for every tree, one ``run`` (untimed: everything is warm after it),
then waits ``--gap`` seconds, then times one ``run``; trees are interleaved within a round
(each has its own data and exec roots, and its own compiled front: ``processes.compiled_front``).
Prints the median, min and max of each tree's timed runs, and which processes were left just
before them (engine cache, monitor template); writes them to ``bench/results/idle.json``.  Run as root: ``.venv/bin/python bench/idle.py
--gap 40 --rounds 4 --against /path/to/other/tree``.
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
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")
sys.path.insert(0, HERE)
from processes import compiled_front, kill_by_pid_files, lamina_program  # noqa: E402

RUN = ["run", "--rm", "--network", "none", "busybox", "true"]


def _alive(exec_root: str, kind: str) -> bool:
    directory = os.path.join(exec_root, kind)
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.endswith(".pid") and not name.endswith(".fork.pid"):
            try:
                with open(os.path.join(directory, name), encoding="ascii") as handle:
                    if os.path.exists(f"/proc/{int(handle.read())}"):
                        return True
            except (OSError, ValueError):
                pass
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gap", type=float, default=40.0, help="idle seconds before each timed run (default 40)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--against", metavar="TREE", help="another lamina tree, interleaved")
    options = parser.parse_args()
    trees = [("this", ROOT)] + ([("against", os.path.abspath(options.against))] if options.against else [])
    work = tempfile.mkdtemp(prefix="lamina-bench-idle-", dir="/tmp")
    variants = []
    try:
        for label, tree in trees:
            subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(tree, "lamina")], check=True)
            home = os.path.join(work, label)
            environment = {**{k: v for k, v in os.environ.items() if not k.startswith(("LAMINA_", "DOCKER_"))},
                           "PYTHONPATH": tree, "LAMINA_DATA_ROOT": os.path.join(home, "data"),
                           "LAMINA_EXEC_ROOT": os.path.join(home, "exec")}
            program = compiled_front(ROOT, tree, os.path.join(work, f"lamina-{label}")) or lamina_program(ROOT)
            subprocess.run([*lamina_program(ROOT), "load", "-q", "-i", FIXTURE], env=environment, check=True,
                           capture_output=True)
            variants.append((label, program, environment))
        times: dict[str, list[float]] = {label: [] for label, _ in trees}
        found: dict[str, list[str]] = {label: [] for label, _ in trees}
        for _ in range(options.rounds):
            for label, program, environment in variants:
                subprocess.run([*program, *RUN], env=environment, check=True, capture_output=True)
            time.sleep(options.gap)
            for label, program, environment in variants:
                exec_root = environment["LAMINA_EXEC_ROOT"]
                found[label].append("+".join(kind for kind in ("engine-cache", "monitor-template")
                                             if _alive(exec_root, kind)) or "nothing")
                started = time.perf_counter()
                subprocess.run([*program, *RUN], env=environment, check=True, capture_output=True)
                times[label].append((time.perf_counter() - started) * 1000)
        print(f"lamina run --rm --network none busybox true after {options.gap:.0f} idle seconds, "
              f"{options.rounds} rounds")
        results: dict[str, object] = {"gap_seconds": options.gap, "rounds": options.rounds}
        for label, tree in trees:
            values = times[label]
            left = ", ".join(sorted(set(found[label])))
            print(f"  {label:8} {tree:30} median {statistics.median(values):7.1f} ms  min {min(values):7.1f}  "
                  f"max {max(values):7.1f}  left before the run: {left}")
            results[label] = {"tree": tree, "median_ms": round(statistics.median(values), 1),
                              "min_ms": round(min(values), 1), "max_ms": round(max(values), 1), "left": left}
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "idle.json"), "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    finally:
        for _, _, environment in variants:
            kill_by_pid_files(environment["LAMINA_EXEC_ROOT"], "engine-cache")
            kill_by_pid_files(environment["LAMINA_EXEC_ROOT"])
        subprocess.run(["umount", "-R", "-l", work], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
