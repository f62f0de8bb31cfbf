#!/usr/bin/env python3
"""N ``lamina`` CLI processes hammering one data root at once (issue 14, item 2).

Each worker runs a mixed sequence of commands (``create``/``rm -f``, ``run --rm``, a volume
used by a container then removed, ``rm -f`` of a running container), every one a separate
CLI process that sweeps the data root at start-up.  The campaign fails when any command that
must succeed fails, or when anything is left afterwards (containers, volumes, read-write
layers, work-in-progress entries, ``system check`` problems).

    scripts/hammer.py --workers 8 --operations 50            # the long campaign
    scripts/hammer.py --workers 3 --operations 4 --json      # what the regression test runs

Prints a JSON report with ``--json``; exits 1 when the campaign failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "busybox-docker-archive.tar")


class Campaign:
    def __init__(self, root: str, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self.environment = dict(os.environ, LAMINA_DATA_ROOT=os.path.join(root, "data"),
                                LAMINA_EXEC_ROOT=os.path.join(root, "run"),
                                PYTHONPYCACHEPREFIX=os.path.join(root, "pycache"))
        for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER"):
            self.environment.pop(name, None)

    def lamina(self, *argv: str) -> tuple[int, str, str]:
        try:
            process = subprocess.run([sys.executable, "-m", "lamina.cli.main", *argv], capture_output=True,
                                     env=self.environment, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return -1, "", f"timed out after {self.timeout} s"
        return process.returncode, process.stdout.decode(errors="replace"), process.stderr.decode(errors="replace")

    def worker(self, number: int, operations: int, seed: int) -> list[str]:
        chooser = random.Random(seed + number)
        failures: list[str] = []

        def must(*argv: str) -> str:
            code, out, err = self.lamina(*argv)
            if code != 0:
                failures.append(f"worker {number}: lamina {' '.join(argv)} -> {code}: {err.strip()[-300:]}")
            return out

        for step in range(operations):
            name = f"w{number}-{step}"
            kind = chooser.choice(("create-rm", "run-rm", "volume", "running-rm"))
            if kind == "create-rm":
                must("create", "--name", name, "busybox", "true")
                must("rm", "-f", name)
            elif kind == "run-rm":
                must("run", "--rm", "busybox", "true")
            elif kind == "volume":
                must("volume", "create", name)
                must("run", "--rm", "-v", f"{name}:/data", "busybox", "touch", "/data/x")
                must("volume", "rm", name)
            else:
                must("run", "-d", "--name", name, "busybox", "sleep", "30")
                must("rm", "-f", name)
        return failures

    def leftovers(self) -> list[str]:
        found: list[str] = []
        for argv in (("ps", "-a", "-q"), ("volume", "ls", "-q")):
            code, out, err = self.lamina(*argv)
            if code != 0:
                found.append(f"lamina {' '.join(argv)} failed: {err.strip()}")
            found.extend(f"left by lamina {' '.join(argv)}: {line}" for line in out.split())
        code, out, err = self.lamina("system", "check")
        if code != 0:
            found.append(f"system check: {out.strip()} {err.strip()}")
        data = os.path.join(self.root, "data")
        for directory in ("containers", "volumes"):
            path = os.path.join(data, directory)
            for entry in sorted(os.listdir(path)) if os.path.isdir(path) else ():
                # the stores' own files start with a dot; work in progress does too
                if not entry.startswith(".") or entry.startswith((".tmp-", ".removing-", ".removal-")):
                    found.append(f"left in {directory}: {entry}")
        for driver in ("overlay2", "vfs"):
            mounts = os.path.join(data, "image", driver, "layerdb", "mounts")
            if os.path.isdir(mounts):
                # .ready: the emptied layers --rm containers left for the next (lamina.layer.mounts)
                found.extend(f"left in layerdb/mounts: {entry}" for entry in sorted(os.listdir(mounts))
                             if entry != ".ready")
                ready = os.path.join(mounts, ".ready")
                parents = [entry.rpartition("-")[0] for entry in os.listdir(ready)] if os.path.isdir(ready) else []
                found.extend(f"more than two ready layers on {parent}" for parent in set(parents)
                             if parents.count(parent) > 2)
        return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one command may take")
    parser.add_argument("--root", help="a directory to work in (default: a new temporary one)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    root = options.root or tempfile.mkdtemp(prefix="lamina-hammer-")
    campaign = Campaign(root, options.timeout)
    code, _, err = campaign.lamina("load", "-i", FIXTURE)
    if code != 0:
        print(f"cannot load busybox: {err}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with ThreadPoolExecutor(options.workers) as pool:
        results = list(pool.map(lambda number: campaign.worker(number, options.operations, options.seed),
                                range(options.workers)))
    elapsed = time.monotonic() - started
    failures = [failure for result in results for failure in result]
    leftovers = campaign.leftovers()
    report = {"workers": options.workers, "operations": options.operations, "seconds": round(elapsed, 1),
              "failures": failures, "leftovers": leftovers, "root": root}
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{options.workers} workers x {options.operations} operations in {elapsed:.1f} s: "
              f"{len(failures)} failures, {len(leftovers)} leftovers")
        for line in failures + leftovers:
            print("  " + line)
    return 1 if failures or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
