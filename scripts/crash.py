#!/usr/bin/env python3
"""Crash injection against the real program (issue 14, item 3): run ``lamina`` commands
(load, run, create/commit/rm, build, rmi) and SIGKILL each at a random moment, then run the
next command and ``system check``, which must report no problem.  DESIGN.md §5: a crash at
any point leaves a store that loads and passes ``lamina system check``.

    scripts/crash.py --kills 400                 # the long campaign
    scripts/crash.py --kills 12 --json           # what the regression test runs

Exits 1 when a check after a kill found problems (the report lists them with the command
that was killed and when).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "busybox-docker-archive.tar")

# (command, its arguments) in a cycle that keeps every command meaningful
CYCLE = (
    ("load", ("load", "-i", FIXTURE)),
    ("run", ("run", "--rm", "busybox", "true")),
    ("create", ("create", "--name", "victim", "busybox", "true")),
    ("commit", ("commit", "victim", "committed")),
    ("rm", ("rm", "-f", "victim")),
    ("build", ("build", "-t", "built", "{context}")),
    ("rmi", ("rmi", "-f", "committed", "built")),
)


class Campaign:
    def __init__(self, root: str) -> None:
        self.root = root
        self.context = os.path.join(root, "context")
        os.makedirs(self.context, exist_ok=True)
        with open(os.path.join(self.context, "Dockerfile"), "w", encoding="ascii") as handle:
            handle.write("FROM busybox\nRUN echo built > /built\nLABEL crash=test\n")
        self.environment = dict(os.environ, LAMINA_DATA_ROOT=os.path.join(root, "data"),
                                LAMINA_EXEC_ROOT=os.path.join(root, "run"),
                                PYTHONPYCACHEPREFIX=os.path.join(root, "pycache"))
        for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_STORAGE_DRIVER"):
            self.environment.pop(name, None)

    def command(self, argv: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "lamina.cli.main", *(item.format(context=self.context) for item in argv)]

    def run(self, argv: tuple[str, ...], timeout: float = 120) -> tuple[int, str]:
        process = subprocess.run(self.command(argv), capture_output=True, env=self.environment, timeout=timeout,
                                 check=False)
        return process.returncode, (process.stdout + process.stderr).decode(errors="replace")

    def duration(self, argv: tuple[str, ...]) -> float:
        started = time.monotonic()
        self.run(argv)
        return time.monotonic() - started

    def kill_during(self, argv: tuple[str, ...], delay: float) -> None:
        process = subprocess.Popen(self.command(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=self.environment)
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(30)

    def check(self) -> str:
        code, output = self.run(("system", "check"))
        return "" if code == 0 else output.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--root", help="a directory to work in (default: a new temporary one)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    chooser = random.Random(options.seed)
    campaign = Campaign(options.root or tempfile.mkdtemp(prefix="lamina-crash-"))
    durations = {name: campaign.duration(argv) for name, argv in CYCLE}  # one full clean cycle first
    problems: list[dict[str, object]] = []
    kills = 0
    started = time.monotonic()
    while kills < options.kills and time.monotonic() - started < options.seconds:
        for name, argv in CYCLE:
            if kills >= options.kills:
                break
            delay = chooser.uniform(0.0, durations[name] * 1.2)
            campaign.kill_during(argv, delay)
            kills += 1
            code, output = campaign.run(("images",))  # the next command (it sweeps)
            found = campaign.check()
            if code != 0 or found:
                problems.append({"killed": name, "after_seconds": round(delay, 3),
                                 "next_command": output.strip()[-300:] if code else "", "check": found[-1000:]})
                campaign.run(("system", "check", "--repair"))
    campaign.run(("rm", "-f", "victim"))
    report = {"kills": kills, "seconds": round(time.monotonic() - started, 1), "problems": problems,
              "root": campaign.root, "durations": {name: round(value, 3) for name, value in durations.items()}}
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{kills} kills in {report['seconds']} s: {len(problems)} left a store that system check rejects")
        for problem in problems:
            print("  " + json.dumps(problem))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
