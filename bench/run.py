#!/usr/bin/env python3
"""Benchmark: start-up of a container that runs ``true``, lamina against crun, runc and docker.

Every row runs one whole command ``--runs`` times (default 20) after ``--warmup`` runs
(default 3) and reports the median, min and max wall time:

* ``lamina run --rm busybox true`` in-process (no daemon), the headline number;
* ``lamina images`` in-process (the cost of a command that starts no container);
* ``crun run`` and ``runc run`` of an OCI bundle made from the same busybox layer (the
  ``busybox-docker-archive.tar`` fixture, extracted with tar; ``config.json`` from
  ``crun spec`` / ``runc spec`` with the process's args set to ``true`` and no terminal): what
  a container runtime alone costs;
* ``docker run --rm busybox true`` with the real docker CLI through ``lamina serve`` (the
  services built once by the server), and ``docker images`` likewise.

The data root, exec root, bundle and server socket live in a fresh temporary directory; the
figures are printed as a table and written to ``bench/results/run.json``.  Run as root:
``.venv/bin/python bench/run.py`` (it compiles lamina's bytecode first, as ``make venv`` does).  Missing tools
(crun, runc, docker) make their rows say so instead of failing the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")


def timed(command: list[str], environment: dict[str, str], runs: int, warmup: int,
          cwd: str | None = None, between: list[str] | None = None) -> list[float] | str:
    """Wall times in ms of ``runs`` runs after ``warmup`` runs, or why the command failed.
    ``between`` is run (untimed) after each run (a runtime's leftover state, if any)."""
    times = []
    for attempt in range(warmup + runs):
        started = time.perf_counter()
        result = subprocess.run(command, env=environment, cwd=cwd, stdin=subprocess.DEVNULL,
                                capture_output=True, check=False)
        elapsed = (time.perf_counter() - started) * 1000
        if result.returncode != 0:
            text = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
            return f"fails (exit {result.returncode}): {text[-1] if text else '?'}"
        if between:
            subprocess.run(between, env=environment, cwd=cwd, capture_output=True, check=False)
        if attempt >= warmup:
            times.append(elapsed)
    return times


def make_bundle(work: str, runtime: str) -> str:
    """An OCI bundle (``rootfs`` from the fixture's busybox layer, ``config.json`` from
    ``<runtime> spec``) running ``true`` without a terminal; returns its directory."""
    bundle = os.path.join(work, f"bundle-{runtime}")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    unpacked = os.path.join(work, "fixture")
    if not os.path.isdir(unpacked):
        os.makedirs(unpacked)
        subprocess.run(["tar", "-xf", FIXTURE, "-C", unpacked], check=True)
    with open(os.path.join(unpacked, "manifest.json")) as handle:
        manifest = json.load(handle)
    for layer in manifest[0]["Layers"]:
        subprocess.run(["tar", "-xf", os.path.join(unpacked, layer), "-C", rootfs], check=True)
    subprocess.run([runtime, "spec"], cwd=bundle, check=True, capture_output=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    with open(path, "w") as handle:
        json.dump(config, handle, indent=2)
    return bundle


def unmount_under(directory: str) -> None:
    """Detach whatever is still mounted below ``directory`` (deepest first)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        targets = [line.split()[4] for line in handle]
    for target in reversed(targets):
        if target.startswith(directory.rstrip("/") + "/"):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def wait_for_socket(path: str, server: subprocess.Popen[bytes], log: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(path)
                probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: lamina\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit(f"lamina serve did not start; see {log}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per row (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before them (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py needs root (mounts, namespaces, cgroups)", file=sys.stderr)
        return 2

    # what `make venv` does: without it, an environment with PYTHONDONTWRITEBYTECODE compiles
    # every module of every command again
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "lamina")], check=True,
                   capture_output=True)
    work = tempfile.mkdtemp(prefix="lamina-bench-run-", dir="/tmp")
    data_root = os.path.join(work, "data")
    socket_path = os.path.join(work, "lamina.sock")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DOCKER_HOST", "LAMINA_HOST", "LAMINA_LOG_LEVEL", "LAMINA_STORAGE_DRIVER")}
    environment.update(LAMINA_DATA_ROOT=data_root, LAMINA_EXEC_ROOT=os.path.join(work, "exec"),
                       DOCKER_CONFIG=os.path.join(work, "docker-config"))
    docker_environment = {**environment, "DOCKER_HOST": f"unix://{socket_path}"}
    rows: list[tuple[str, list[float] | str]] = []
    server = None
    log_path = os.path.join(work, "serve.log")
    try:
        subprocess.run([LAMINA, "load", "-q", "-i", FIXTURE], env=environment, check=True, capture_output=True)
        rows.append(("lamina run --rm busybox true (in-process)",
                     timed([LAMINA, "run", "--rm", "busybox", "true"], environment, options.runs, options.warmup)))
        rows.append(("lamina images (in-process)",
                     timed([LAMINA, "images"], environment, options.runs, options.warmup)))

        for runtime in ("crun", "runc"):
            name = f"{runtime} run (OCI bundle of the same busybox, true)"
            if shutil.which(runtime) is None:
                rows.append((name, f"skipped: {runtime} is not installed"))
                continue
            bundle = make_bundle(work, runtime)
            state = os.path.join(work, f"{runtime}-state")
            container = f"lamina-bench-{os.getpid()}"
            command = [runtime, "--root", state, "run", "--bundle", bundle, container]
            cleanup = [runtime, "--root", state, "delete", "--force", container]
            rows.append((name, timed(command, environment, options.runs, options.warmup, between=cleanup)))

        if not os.access(DOCKER, os.X_OK):
            rows.append(("docker run --rm busybox true (via lamina serve)", "skipped: no docker CLI"))
        else:
            log = open(log_path, "wb")  # noqa: SIM115 - the server writes it until the end
            server = subprocess.Popen([LAMINA, "--log-level", "warning", "serve", "-H", f"unix://{socket_path}"],
                                      stdout=log, stderr=subprocess.STDOUT, env=environment)
            wait_for_socket(socket_path, server, log_path)
            rows.append(("docker run --rm busybox true (via lamina serve)",
                         timed([DOCKER, "run", "--rm", "busybox", "true"], docker_environment, options.runs,
                               options.warmup)))
            rows.append(("docker images (via lamina serve)",
                         timed([DOCKER, "images"], docker_environment, options.runs, options.warmup)))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        unmount_under(work)
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"container start-up: {options.runs} runs per row after {options.warmup} warm-up runs "
          "(wall time of the whole command)")
    print(f"{'command':<58} {'median':>9} {'min':>9} {'max':>9}")
    results: dict[str, object] = {}
    for name, value in rows:
        if isinstance(value, str):
            print(f"{name:<58} {value}")
            results[name] = value
            continue
        print(f"{name:<58} {statistics.median(value):>7.1f}ms {min(value):>7.1f}ms {max(value):>7.1f}ms")
        results[name] = {"median_ms": round(statistics.median(value), 2), "min_ms": round(min(value), 2),
                         "max_ms": round(max(value), 2), "runs": len(value)}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "run.json"), "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
