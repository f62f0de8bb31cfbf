#!/usr/bin/env python3
"""Benchmark: lamina with N images and N containers (issue 16: what grows with the store).

On a fresh data root holding busybox, the benchmark measures on the *empty* engine (busybox and
one container, ``bench-probe``, the one ``inspect`` looks up), then makes
``--n`` images (metadata-only children of busybox, each with its own label and tag, as a
``LABEL`` build step makes them) and ``--n`` created (not started) containers with names, and
measures again:

* ``images``, ``ps -a``, ``ps`` (running ones only: every record is still looked at),
  ``system df``, ``inspect NAME`` and ``create``: whole-command wall time in-process
  (``lamina CMD``) and through ``lamina serve`` (``lamina -H unix://... CMD``), plus the
  latency of the same API request over one keep-alive connection to the server;
* disk use of the data root (``du``), and what ``system df`` reports (it must count the N
  containers);
* monitor memory: ``--running`` (default 20) containers started with ``run -d busybox sleep``,
  the USS (Private_Clean + Private_Dirty of ``/proc/PID/smaps_rollup``) of each container's
  monitor (the parent of its PID 1), summed and per container, and of the process the monitors
  were forked from when it stays (lamina's monitor template), shared by them.

``--compare DIR`` runs every command also with the lamina package of another tree (e.g. main:
``--compare /work/main``), interleaved run by run with this tree's on the same data root and
with a server of its own, so before and after are measured in the same conditions.  Docker and
Podman rows are measured only when ``dockerd`` / ``podman`` are installed (the rows say so
otherwise).  Every command runs ``--runs`` times (default 9) after one warm-up; the table shows
median and minimum.  The figures are written to ``bench/results/scale.json``.  Run as root:
``.venv/bin/python bench/scale.py [--n 1000] [--compare /work/main]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
BUSYBOX = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")

sys.path.insert(0, HERE)
from serve import Connection  # noqa: E402  (the benchmarks' one keep-alive client)


class Tree:
    """One lamina source tree: its environment for subprocesses and its own server."""

    def __init__(self, label: str, path: str, work: str, environment: dict[str, str]) -> None:
        self.label = label
        self.environment = {**environment, "PYTHONPATH": path}
        self.socket_path = os.path.join(work, f"lamina-{label}.sock")
        self.host = f"unix://{self.socket_path}"
        self.log = open(os.path.join(work, f"serve-{label}.log"), "wb")  # noqa: SIM115 - until stop()
        self.server = subprocess.Popen([LAMINA, "--log-level", "warning", "serve", "-H", self.host],
                                       stdout=self.log, stderr=subprocess.STDOUT, env=self.environment)
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = Connection(self.socket_path)
                probe.request("GET", "/_ping")
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise SystemExit(f"lamina serve ({label}) did not start; see {self.log.name}") from None
                time.sleep(0.05)
        self.connection = Connection(self.socket_path)

    def stop(self) -> None:
        self.connection.close()
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.log.close()


def run(command: list[str], environment: dict[str, str]) -> float:
    """Wall time (ms) of one command, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, env=environment, capture_output=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace').strip()}")
    return elapsed


def request_time(tree: Tree, method: str, target: str, body: bytes = b"") -> float:
    started = time.perf_counter()
    status, answer = tree.connection.request(method, target, body)
    elapsed = (time.perf_counter() - started) * 1000
    if status >= 300:
        raise SystemExit(f"{method} {target} via {tree.label}: HTTP {status} {answer[:200]!r}")
    return elapsed


Measure = Callable[[Tree], float]


def measure(rows: dict[str, list[float]], phase: str, trees: list[Tree], cases: dict[str, Measure],
            runs: int) -> None:
    """Each case ``runs`` times per tree after one warm-up, the trees interleaved run by run."""
    for name, case in cases.items():
        for tree in trees:
            case(tree)  # warm-up
        for _ in range(runs):
            for tree in trees:
                rows.setdefault(f"{phase}: {name} [{tree.label}]", []).append(case(tree))


def cases(n_containers: int, names: list[str]) -> dict[str, Measure]:
    """The measured commands; ``create`` makes containers that :func:`remove_created` drops."""
    target = names[len(names) // 2] if names else "bench-probe"

    def cli(*arguments: str, via_server: bool) -> Measure:
        def case(tree: Tree) -> float:
            host = ["-H", tree.host] if via_server else []
            return run([LAMINA, *host, *arguments], tree.environment)
        return case

    def api(method: str, target_path: str, body: bytes = b"") -> Measure:
        return lambda tree: request_time(tree, method, target_path, body)

    create_body = json.dumps({"Image": "busybox", "Cmd": ["true"], "Labels": {"bench.created": "1"}}).encode()
    return {
        "images (in-process)": cli("images", via_server=False),
        "images (lamina -H serve)": cli("images", via_server=True),
        "GET /images/json (keep-alive)": api("GET", "/v1.45/images/json"),
        "ps -a (in-process)": cli("ps", "-a", via_server=False),
        "ps -a (lamina -H serve)": cli("ps", "-a", via_server=True),
        "GET /containers/json?all=1 (keep-alive)": api("GET", "/v1.45/containers/json?all=1"),
        "ps (in-process)": cli("ps", via_server=False),
        "GET /containers/json (keep-alive)": api("GET", "/v1.45/containers/json"),
        "system df (in-process)": cli("system", "df", via_server=False),
        "system df (lamina -H serve)": cli("system", "df", via_server=True),
        "GET /system/df (keep-alive)": api("GET", "/v1.45/system/df"),
        f"inspect {target} (in-process)": cli("inspect", target, via_server=False),
        f"inspect {target} (lamina -H serve)": cli("inspect", target, via_server=True),
        f"GET /containers/{target}/json (keep-alive)": api("GET", f"/v1.45/containers/{target}/json"),
        "create busybox true (in-process)": cli("create", "--label", "bench.created=1", "busybox", "true",
                                                via_server=False),
        "create busybox true (lamina -H serve)": cli("create", "--label", "bench.created=1", "busybox", "true",
                                                     via_server=True),
        "POST /containers/create (keep-alive)": api("POST", "/v1.45/containers/create", create_body),
    }


def remove_created(tree: Tree) -> None:
    """Remove the containers the ``create`` cases made (label bench.created=1)."""
    status, answer = tree.connection.request("GET", "/v1.45/containers/json?all=1&filters="
                                             + _quote(json.dumps({"label": ["bench.created=1"]})))
    for summary in json.loads(answer):
        tree.connection.request("DELETE", f"/v1.45/containers/{summary['Id']}?force=1")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def populate(data_root: str, exec_root: str, n: int) -> list[str]:
    """``n`` images and ``n`` created containers, made in this process; returns the names."""
    from lamina.config import EngineConfig
    from lamina.image.config import ContainerConfig
    from lamina.image.reference import parse_normalized_named
    from lamina.services.compose import build_services

    services = build_services(EngineConfig(data_root=data_root, exec_root=exec_root))
    base = str(services.images.resolve("busybox"))
    started = time.perf_counter()
    for number in range(n):
        services.images.commit(None, parent=base, config=ContainerConfig(cmd=("sh",), labels={"bench.n": str(number)}),
                               container_config=ContainerConfig(),
                               reference=parse_normalized_named(f"bench/image:{number}"))
    images_seconds = time.perf_counter() - started
    names = []
    started = time.perf_counter()
    for number in range(n):
        name = f"bench-{number}"
        services.containers.create({"Image": f"bench/image:{number}", "Cmd": ["true"]}, name=name)
        names.append(name)
    print(f"made {n} images in {images_seconds:.1f} s and {n} containers in "
          f"{time.perf_counter() - started:.1f} s (in-process, this tree)")
    return names


def disk_use(path: str) -> int:
    result = subprocess.run(["du", "-sxb", path], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def uss(pid: int) -> int:
    """Private_Clean + Private_Dirty of ``pid`` in bytes."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def monitor_memory(tree: Tree, count: int) -> dict[str, object]:
    """USS of the monitors of ``count`` running containers started through the server."""
    ids = []
    try:
        for _ in range(count):
            body = json.dumps({"Image": "busybox", "Cmd": ["sleep", "600"]}).encode()
            status, answer = tree.connection.request("POST", "/v1.45/containers/create", body)
            if status != 201:
                return {"skipped": f"create: HTTP {status} {answer[:200]!r}"}
            container_id = json.loads(answer)["Id"]
            ids.append(container_id)
            status, answer = tree.connection.request("POST", f"/v1.45/containers/{container_id}/start")
            if status != 204:
                return {"skipped": f"start: HTTP {status} {answer[:200]!r}"}
        time.sleep(0.5)
        sizes = []
        monitors = []
        for container_id in ids:
            status, answer = tree.connection.request("GET", f"/v1.45/containers/{container_id}/json")
            pid = int(json.loads(answer)["State"]["Pid"])
            monitors.append(parent_of(pid))
            sizes.append(uss(monitors[-1]))
        # the process the monitors were forked from, when it stays (lamina's monitor template;
        # a monitor forked by the server or the CLI is reparented to init): its USS is shared
        # by the containers
        templates = {parent_of(pid) for pid in monitors} - {1, tree.server.pid}
        template = sum(uss(pid) for pid in templates)
        return {"containers": count, "total_mib": round((sum(sizes) + template) / 2**20, 1),
                "per_container_mib": round(statistics.median(sizes) / 2**20, 2),
                "template_mib": round(template / 2**20, 2),
                "per_container_with_template_mib": round((statistics.median(sizes) + template / count) / 2**20, 2)}
    finally:
        for container_id in ids:
            tree.connection.request("DELETE", f"/v1.45/containers/{container_id}?force=1")


def peers() -> dict[str, str]:
    found = {}
    for name, binary in (("docker", "dockerd"), ("podman", "podman")):
        found[name] = (f"{binary} is installed but this benchmark does not drive it yet" if shutil.which(binary)
                       else f"not measured: {binary} is not installed on this machine")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images and containers to make (default 1000)")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command (default 9)")
    parser.add_argument("--running", type=int, default=20, help="running containers for monitor memory (default 20)")
    parser.add_argument("--compare", default="", help="another lamina tree to measure interleaved (e.g. /work/main)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/scale.py needs root (a real data root with overlay2)", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="lamina-bench-scale-", dir="/var/tmp")
    data_root, exec_root = os.path.join(work, "data"), os.path.join(work, "exec")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DOCKER_HOST", "LAMINA_HOST", "LAMINA_LOG_LEVEL", "PYTHONPATH",
                                  "PYTHONDONTWRITEBYTECODE")}  # compiled once, as an installed package is
    environment.update(LAMINA_DATA_ROOT=data_root, LAMINA_EXEC_ROOT=exec_root)
    subprocess.run([LAMINA, "load", "-q", "-i", BUSYBOX], env={**environment, "PYTHONPATH": ROOT}, check=True,
                   capture_output=True)
    trees: list[Tree] = []
    rows: dict[str, list[float]] = {}
    results: dict[str, object] = {"n": options.n, "runs": options.runs, "peers": peers()}
    try:
        trees.append(Tree("this", ROOT, work, environment))
        if options.compare:
            trees.append(Tree("compare", os.path.abspath(options.compare), work, environment))
        status, answer = trees[0].connection.request("POST", "/v1.45/containers/create?name=bench-probe",
                                                     json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode())
        if status != 201:
            raise SystemExit(f"create bench-probe: HTTP {status} {answer[:200]!r}")
        measure(rows, "empty", trees, cases(0, []), options.runs)
        for tree in trees:
            remove_created(tree)
        names = populate(data_root, exec_root, options.n)
        results["disk_use_bytes"] = disk_use(data_root)
        measure(rows, f"n={options.n}", trees, cases(options.n, names), options.runs)
        for tree in trees:
            remove_created(tree)
        status, answer = trees[0].connection.request("GET", "/v1.45/system/df")
        df = json.loads(answer)
        results["system_df_counts"] = {"Images": len(df.get("Images") or []),
                                       "Containers": len(df.get("Containers") or [])}
        results["monitor_memory"] = {tree.label: monitor_memory(tree, options.running) for tree in trees}
    finally:
        for tree in trees:
            tree.stop()
        # the default bridge outlives its containers, as docker0 does: taken down with the data root
        from lamina.network.run import RunNetwork

        RunNetwork(data_root, exec_root).remove_bridges()
        subprocess.run(["umount", "-R", "-l", data_root], capture_output=True, check=False)
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"lamina at scale: n={options.n}, {options.runs} runs per command (median, min in ms)")
    for name, values in rows.items():
        print(f"{name:<72} {statistics.median(values):>9.1f} {min(values):>9.1f}")
        results[name] = {"median_ms": round(statistics.median(values), 2), "min_ms": round(min(values), 2)}
    for key in ("disk_use_bytes", "system_df_counts", "monitor_memory", "peers"):
        print(f"{key}: {results.get(key)}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "scale.json"), "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
