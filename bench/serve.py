#!/usr/bin/env python3
"""Benchmark: the Docker Engine API through ``lamina serve`` against lamina in-process.

Measured on a fresh data root (and exec root) holding busybox plus ``--images`` small
imported images:

* ``docker run --rm busybox true`` (docker CLI -> lamina serve) against
  ``lamina run --rm busybox true`` (in-process) — only when lamina can run containers through
  the API (one trial run decides; otherwise the rows say why they were skipped);
* ``docker images`` (docker CLI -> lamina serve), ``lamina -H unix://... images`` (lamina CLI ->
  lamina serve) and ``lamina images`` (in-process): whole-command wall time;
* request throughput over one keep-alive connection: ``GET /_ping`` (the server's own
  overhead), ``GET /images/json`` and, when containers can be created, ``GET /containers/json``
  with ``--containers`` created containers.

Every command runs ``--runs`` times (default 15) after one warm-up; the table shows the
median, min and max.  The figures are also written to ``bench/results/serve.json``.  Run as
root: ``.venv/bin/python bench/serve.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
DOCKER = "/usr/local/bin/docker"
BUSYBOX = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")

sys.path.insert(0, HERE)
from processes import terminate  # noqa: E402


class Connection:
    """A keep-alive HTTP/1.1 connection reading Content-Length or chunked answers."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def get(self, target: str) -> tuple[int, bytes]:
        return self.request("GET", target)

    def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: lamina\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)
        status = int(self.file.readline().split()[1])
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            data = b""
            while (size := int(self.file.readline().split(b";")[0], 16)):
                data += self.file.read(size)
                self.file.readline()
            self.file.readline()
            return status, data
        return status, self.file.read(int(headers.get("content-length", "0")))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def tiny_rootfs(number: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = f"image {number}\n".encode()
        entry = tarfile.TarInfo(f"etc/bench-{number}")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def timed(command: list[str], environment: dict[str, str], runs: int) -> list[float] | str:
    """Wall times (ms) of ``runs`` runs after one warm-up, or why the command failed."""
    times = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        result = subprocess.run(command, env=environment, capture_output=True, check=False)
        elapsed = (time.perf_counter() - started) * 1000
        if result.returncode != 0:
            return f"fails: {(result.stderr or result.stdout).decode(errors='replace').strip().splitlines()[-1:]}"
        if attempt:
            times.append(elapsed)
    return times


def throughput(path: str, target: str, requests: int) -> tuple[float, float] | str:
    """(requests per second, median latency ms) of ``requests`` GETs on one connection."""
    connection = Connection(path)
    try:
        status, _ = connection.get(target)
        if status != 200:
            return f"fails: HTTP {status}"
        latencies = []
        started = time.perf_counter()
        for _ in range(requests):
            begin = time.perf_counter()
            status, _ = connection.get(target)
            latencies.append((time.perf_counter() - begin) * 1000)
            if status != 200:
                return f"fails: HTTP {status}"
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return requests / elapsed, statistics.median(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    parser.add_argument("--images", type=int, default=100, help="small images to import (default 100)")
    parser.add_argument("--containers", type=int, default=100,
                        help="containers to create for the /containers/json row (default 100)")
    parser.add_argument("--requests", type=int, default=500, help="requests per throughput row (default 500)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/serve.py needs root (a real data root with overlay2)", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="lamina-bench-serve-", dir="/tmp")
    data_root = os.path.join(work, "data")
    socket_path = os.path.join(work, "lamina.sock")
    host = f"unix://{socket_path}"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DOCKER_HOST", "LAMINA_HOST", "LAMINA_LOG_LEVEL")}
    environment["LAMINA_DATA_ROOT"] = data_root
    environment["LAMINA_EXEC_ROOT"] = os.path.join(work, "exec")
    environment["DOCKER_CONFIG"] = os.path.join(work, "docker-config")
    docker_environment = {**environment, "DOCKER_HOST": host}
    log = open(os.path.join(work, "serve.log"), "wb")  # noqa: SIM115 - the server writes it until the end
    server = subprocess.Popen([LAMINA, "--log-level", "warning", "--data-root", data_root, "serve", "-H", host],
                              stdout=log, stderr=subprocess.STDOUT, env=environment)
    rows: list[tuple[str, object]] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                probe = Connection(socket_path)
                probe.get("/_ping")
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("lamina serve did not start; see " + log.name)
                time.sleep(0.05)
        subprocess.run([DOCKER, "load", "-q", "-i", BUSYBOX], env=docker_environment, check=True,
                       capture_output=True)
        for number in range(options.images):
            subprocess.run([DOCKER, "import", "-", f"bench/image:{number}"], input=tiny_rootfs(number),
                           env=docker_environment, check=True, capture_output=True)

        run_trial = subprocess.run([DOCKER, "run", "--rm", "busybox", "true"], env=docker_environment, check=False,
                                   capture_output=True)
        if run_trial.returncode == 0:
            rows.append(("docker run --rm busybox true (via serve)",
                         timed([DOCKER, "run", "--rm", "busybox", "true"], docker_environment, options.runs)))
            rows.append(("lamina run --rm busybox true (in-process)",
                         timed([LAMINA, "run", "--rm", "busybox", "true"], environment, options.runs)))
            containers = True
        else:
            reason = [line for line in run_trial.stderr.decode(errors="replace").splitlines() if line.strip()] or ["?"]
            rows.append(("docker run --rm busybox true (via serve)", f"skipped: {reason[0]}"))
            rows.append(("lamina run --rm busybox true (in-process)", "skipped: containers not available"))
            containers = False
        rows.append(("docker images (via serve)", timed([DOCKER, "images"], docker_environment, options.runs)))
        rows.append(("lamina -H images (via serve)",
                     timed([LAMINA, "-H", host, "images"], environment, options.runs)))
        rows.append(("lamina images (in-process)", timed([LAMINA, "images"], environment, options.runs)))
        rows.append(("GET /_ping, keep-alive", throughput(socket_path, "/_ping", options.requests)))
        rows.append((f"GET /images/json ({options.images + 1} images), keep-alive",
                     throughput(socket_path, "/v1.45/images/json", options.requests)))
        if containers:
            for _ in range(options.containers):
                subprocess.run([DOCKER, "create", "busybox", "true"], env=docker_environment, check=True,
                               capture_output=True)
            rows.append((f"GET /containers/json?all=1 ({options.containers} containers), keep-alive",
                         throughput(socket_path, "/v1.45/containers/json?all=1", options.requests)))
    finally:
        if server.poll() is None:
            subprocess.run([DOCKER, "container", "prune", "-f"], env=docker_environment, capture_output=True,
                           check=False)
        terminate(server)
        log.close()
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"lamina serve benchmark: {options.runs} runs per command (median, min, max), "
          f"{options.requests} requests per throughput row")
    print(f"{'measurement':<62} {'median':>10} {'min':>10} {'max':>10}")
    results: dict[str, object] = {}
    for name, value in rows:
        if isinstance(value, str):
            print(f"{name:<62} {value}")
            results[name] = value
        elif isinstance(value, tuple):
            rate, latency = value
            print(f"{name:<62} {rate:>8.0f}/s {latency:>8.2f}ms {'(median latency)':>10}")
            results[name] = {"requests_per_second": round(rate, 1), "median_latency_ms": round(latency, 3)}
        else:
            print(f"{name:<62} {statistics.median(value):>8.1f}ms {min(value):>8.1f}ms {max(value):>8.1f}ms")
            results[name] = {"median_ms": round(statistics.median(value), 2), "min_ms": round(min(value), 2),
                             "max_ms": round(max(value), 2), "runs": len(value)}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "serve.json"), "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
