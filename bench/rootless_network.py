#!/usr/bin/env python3
"""Benchmark: what rootless lamina's bridge network (a namespace per container, connected by
pasta: :mod:`lamina.network.pasta`) costs a container start.

``lamina run --rm busybox true`` as an unprivileged user, through the real CLI (its join of
the rootless namespaces included), with ``--network none`` and with the default bridge network,
interleaved (one of each per round, ``--runs`` rounds after ``--warmup``): median, min and max
wall time of each and the difference of the medians; and ``run --rm -p 127.0.0.1:PORT:80``.

The user is made for the run and removed at the end with every process it has (the helpers of
``tests/rootless/users.py``); ``/dev/net/tun`` is set to Debian's 0666 for the run and its own
mode restored after, as in the tests.  Figures are printed and written to
``bench/results/rootless_network.json``.  Run as root: ``.venv/bin/python bench/rootless_network.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from rootless.users import FIXTURE, make_user, remove_users, tun_mode  # noqa: E402


def _timed(user, *args: str) -> float:
    started = time.monotonic()
    user.ok(*args)
    return time.monotonic() - started


def _summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values) * 1000, 1), "min_ms": round(min(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    options = parser.parse_args()
    made: list = []
    try:
        with tun_mode(0o666):
            user = make_user(made)
            user.ok("load", "-q", "-i", os.path.abspath(FIXTURE))
            times: dict[str, list[float]] = {"none": [], "bridge": [], "bridge -p": []}
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            for round_number in range(options.warmup + options.runs):
                samples = {
                    "none": _timed(user, "run", "--rm", "--network", "none", "busybox", "true"),
                    "bridge": _timed(user, "run", "--rm", "busybox", "true"),
                    "bridge -p": _timed(user, "run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true"),
                }
                if round_number >= options.warmup:
                    for key, value in samples.items():
                        times[key].append(value)
    finally:
        remove_users(made)
    results: dict[str, object] = {key: _summary(values) for key, values in times.items()}
    results["bridge_minus_none_ms"] = round((statistics.median(times["bridge"]) -
                                             statistics.median(times["none"])) * 1000, 1)
    results["load_average"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "rootless_network.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
