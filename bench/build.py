#!/usr/bin/env python3
"""Benchmark: ``lamina build`` of a 3-step Dockerfile, without cache and fully cached.

The Dockerfile (FROM busybox, a RUN writing a file, a COPY of a file, a CMD) is built on a
fresh data root holding busybox; every figure is the whole ``lamina build -q`` command's wall
time (interpreter start-up included), median of ``--runs`` runs (default 10) after one
warm-up, the ways below taking turns run by run:

* ``uncached``: ``--no-cache`` (a RUN container, two committed layers, three images);
* ``cached``: the same context again (every step a cache hit).

Each is measured for the three ways the CLI can reach the engine: in-process with the context
read in place (the default), in-process with the context sent as a tar
(``LAMINA_BUILD_SEND_CONTEXT=1``), and through ``lamina serve`` on a unix socket (``-H``);
and, when the ``docker`` CLI is installed, for Docker's own client talking to ``lamina serve``
(the set-up of the Docker reference: a Go client and a running daemon).  The peer is measured
in the same run: the same Dockerfile and context built by the docker CLI against a private
``dockerd`` (``bench/dockerd.py``; busybox loaded from the same fixture) with its classic
builder (``DOCKER_BUILDKIT=0``, 20.10's default without BuildKit), ``--no-cache`` and then
cached; the last column is each row's ratio to it (issue 16's target: <= 0.5x Docker).  When
dockerd is missing or does not start, its rows say why.  The brief's reference figures (not
measured here; same machine class) are kept beside them: Docker 20.10 1.19 s / 0.113 s,
Podman 4.3 1.03 s / 0.29 s (Podman is not installed on this machine).  lamina's modules are byte-compiled
first (an installed package has its ``.pyc``; ``PYTHONDONTWRITEBYTECODE`` would otherwise
make every run compile the changed ones).  Figures go to ``bench/results/build.json``.  Run as
root: ``.venv/bin/python bench/build.py``.
"""

from __future__ import annotations

import argparse
import compileall
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
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
BUSYBOX = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")
DOCKERFILE = 'FROM busybox\nRUN echo hello > /hello.txt\nCOPY data.txt /data.txt\nCMD ["cat", "/hello.txt"]\n'
REFERENCE = {"docker 20.10": {"uncached": 1.19, "cached": 0.113}, "podman 4.3": {"uncached": 1.03, "cached": 0.29}}
PEER = "docker CLI -> dockerd (classic builder)"

sys.path.insert(0, HERE)
from dockerd import PrivateDockerd  # noqa: E402  (the benchmarks' private Docker daemon)
from processes import terminate  # noqa: E402


def interleaved(commands: dict[str, tuple[list[str], dict[str, str]]], runs: int) -> dict[str, list[float]]:
    """Wall times (s) of each command's ``runs`` runs after one warm-up, the commands taking
    turns run by run (load from elsewhere on the machine falls on all of them alike); stderr
    (the docker CLI's deprecation notice of the classic builder) is shown only on a failure."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for attempt in range(runs + 1):
        for name, (command, environment) in commands.items():
            start = time.perf_counter()
            result = subprocess.run(command, env=environment, check=False, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)}: exit {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace').strip()}")
            if attempt:
                times[name].append(elapsed)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-serve", action="store_true", help="skip the lamina serve rows")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/build.py needs root (overlay mounts, namespaces)", file=sys.stderr)
        return 2
    compileall.compile_dir(os.path.join(ROOT, "lamina"), quiet=1)
    work = tempfile.mkdtemp(prefix="lamina-bench-build-", dir="/tmp")
    data_root = os.path.join(work, "data")
    context = os.path.join(work, "context")
    os.makedirs(context)
    with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
        handle.write(DOCKERFILE)
    with open(os.path.join(context, "data.txt"), "w", encoding="utf-8") as handle:
        handle.write("data\n")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_BUILD_SEND_CONTEXT")}
    environment.update(LAMINA_DATA_ROOT=data_root, LAMINA_EXEC_ROOT=os.path.join(work, "run"))
    server = None
    results: dict[str, object] = {"dockerfile": DOCKERFILE, "reference (the brief's, not measured here)": REFERENCE,
                                  "rows": {}}
    rows: dict[str, dict[str, float]] = results["rows"]  # type: ignore[assignment]
    load_before = os.getloadavg()[0]
    daemon = PrivateDockerd(base_environment={key: value for key, value in environment.items()
                                              if not key.startswith("LAMINA_")})
    with daemon:
        try:
            subprocess.run([LAMINA, "load", "-i", BUSYBOX], env=environment, check=True, stdout=subprocess.DEVNULL)
            ways: list[tuple[str, dict[str, str], list[str]]] = [
                ("in-process, context read in place", environment, []),
                ("in-process, context sent as a tar", {**environment, "LAMINA_BUILD_SEND_CONTEXT": "1"}, []),
            ]
            if not options.no_serve:
                socket_path = os.path.join(work, "lamina.sock")
                log = open(os.path.join(work, "serve.log"), "wb")  # noqa: SIM115 - written until the end
                server = subprocess.Popen([LAMINA, "serve", "-H", "unix://" + socket_path], env=environment,
                                          stdout=log, stderr=subprocess.STDOUT)
                deadline = time.monotonic() + 20
                while not os.path.exists(socket_path):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("lamina serve did not start; see " + log.name)
                    time.sleep(0.05)
                ways.append(("through lamina serve (unix socket)", environment, ["-H", "unix://" + socket_path]))
                if shutil.which("docker"):
                    # Docker's own CLI against lamina's engine: the set-up Docker 20.10's figures
                    # were taken in (a Go client and an already running daemon)
                    ways.append(("docker CLI through lamina serve", {**environment, "DOCKER_BUILDKIT": "0"},
                                 ["-H", "unix://" + socket_path]))
            if daemon.ready:
                daemon.load(BUSYBOX)
                ways.append((PEER, {**daemon.environment, "DOCKER_BUILDKIT": "0"}, []))
            else:
                results["peer"] = daemon.reason
            for kind, extra in (("uncached", ["--no-cache"]), ("cached", [])):
                commands = {}
                for name, env, prefix in ways:
                    program = [shutil.which("docker") or "docker"] if name.startswith("docker") else [LAMINA]
                    commands[f"{kind}: {name}"] = ([*program, *prefix, "build", "-q", *extra, context], env)
                for name, times in interleaved(commands, options.runs).items():
                    rows[name] = summary(times)
        finally:
            if server is not None:
                terminate(server)
            # the build steps' default bridge outlives them, as docker0 does: taken down with the data root
            sys.path.insert(0, ROOT)
            from lamina.network.run import RunNetwork

            RunNetwork(data_root, environment["LAMINA_EXEC_ROOT"]).remove_bridges()
            subprocess.run(["umount", "-R", "-l", work], stderr=subprocess.DEVNULL, check=False)
            shutil.rmtree(work, ignore_errors=True)
    results["load_average"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores, shared)")
    if daemon.leftovers:
        print("the private dockerd left: " + "; ".join(daemon.leftovers), file=sys.stderr)
    if daemon.version:
        results["peer"] = f"dockerd {daemon.version} (private, bench/dockerd.py), DOCKER_BUILDKIT=0"
    print(f"{'':52} {'median':>8} {'min':>8} {'max':>8}  vs dockerd  vs the brief's Docker 20.10")
    for name, row in rows.items():
        kind = name.split(":", 1)[0]
        peer = rows.get(f"{kind}: {PEER}")
        versus = f"{row['median_s'] / peer['median_s']:.2f}x" if peer else "-"
        row["ratio_to_dockerd"] = round(row["median_s"] / peer["median_s"], 2) if peer else None
        print(f"{name:52} {row['median_s']:8.3f} {row['min_s']:8.3f} {row['max_s']:8.3f}  {versus:>10}  "
              f"{row['median_s'] / REFERENCE['docker 20.10'][kind]:.2f}x")
    if "peer" in results and not daemon.version:
        print(f"docker CLI -> dockerd: {results['peer']}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "build.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
