#!/usr/bin/env python3
"""Benchmark: start-up of a container that runs ``true``, lamina against crun, runc and docker.

Every row runs one whole command ``--runs`` times (default 20) after ``--warmup`` runs
(default 3) and reports the median, min and max wall time:

* ``lamina run --rm --network none busybox true`` in-process (no daemon), the headline number,
  and the same with the default network (a bridge): after the first, a worker of the engine
  cache's fork server (``lamina.cli.forkserver``) runs it; the row with ``LAMINA_FORWARD=0``
  runs it in the command's own interpreter every time;
* with ``--tmpfs``: the same in-process ``run`` on a second engine of each tree whose data and
  exec roots are on a tmpfs the bench mounts (what this VM's disk costs: 0.2-1 ms per new inode,
  and a ``run --rm`` makes ~40 of them in Docker's layer and container formats);
* with ``--cold``: the same command as the first ``run`` after the monitor template left (it
  is killed between runs: what the first ``run`` after the template's ``IDLE_SECONDS`` pays),
  and as the first after the engine cache left (the run is in-process, then starts a cache);
* ``lamina -H unix://... run --rm --network none busybox true`` (the lamina CLI through
  ``lamina serve``); for ``images``, ``ps -a`` and ``inspect`` the ``lamina -H`` rows are the
  command forwarded whole to the server (``lamina.cli.front``), and a row with
  ``LAMINA_FORWARD=0`` measures the same command as API requests from the full CLI;
* ``lamina images``, ``ps -a`` and ``inspect`` in-process: after the first, the engine cache
  (``lamina.cli.enginecache``) that the first left answers them; the row with
  ``LAMINA_FORWARD=0`` runs them in the command's own interpreter every time, and with
  ``--cold`` a row measures ``images`` as the first read after the cache left (it is killed
  before each run: the read runs in-process, then starts a cache);
* ``crun run`` and ``runc run`` of an OCI bundle made from the same busybox layer (the
  ``busybox-docker-archive.tar`` fixture, extracted with tar; ``config.json`` from
  ``crun spec`` / ``runc spec`` with the process's args set to ``true`` and no terminal): what
  a container runtime alone costs;
* ``docker run --rm --network none busybox true`` with the real docker CLI through ``lamina
  serve`` (the services built once by the server), and ``docker images`` likewise;
* ``ps -a`` and ``inspect bench-inspect`` (a container created once beforehand in each engine)
  in-process, with the lamina CLI and with the docker CLI through ``lamina serve``;
* the same four commands (``run --rm --network none busybox true``, ``images``, ``ps -a``,
  ``inspect bench-inspect``) with the docker CLI against a private ``dockerd``
  (``bench/dockerd.py``: own data root, exec root and socket, no bridge, no iptables; busybox
  loaded from the same fixture), the peer of issue 16; then the ratio of each in-process lamina
  command, and of each command through ``lamina serve``, to the docker CLI against dockerd
  (issue 16's target: in-process within 1.5x), and of each container start-up row to ``crun
  run``'s (the issue's absolute targets are ~5x ``crun run`` in-process and 3x through serve
  with the docker CLI; the runtimes' rows run after the interleaved ones).  Podman is not
  driven (the row says whether it is installed);
* ``docker run --rm --network none busybox true`` against a zero-cost engine
  (``bench/zeroengine.py``, a server in this process that answers the CLI's requests at once):
  the docker CLI's own floor, what is left of the 35 ms target for any engine.

``lamina`` is the program ``make`` installs for the tree: its compiled front
(``lamina/cli/front.c``, built into the temporary directory by ``processes.compiled_front``),
or for a tree without one the Python front as its console script starts it
(``processes.lamina_program``: ``lamina.cli.front``, or ``lamina.cli.main`` in a tree from
before the front), with the tree on ``PYTHONPATH``.  The rows "(in-process, the Python front)"
run the Python front in every tree (what a ``lamina`` installed by pip alone runs).

``--against TREE`` measures another code tree beside this one (e.g. ``--against /work/main``),
interleaved: each round runs every row once with this tree, then once with the other
(``PYTHONPATH``).  Each tree has two engines: one for the in-process rows, one for its
``lamina serve`` (a data root and an exec root each: the server's monitor template is not the
in-process runs').  The load
average is printed before and after.

The data root, exec root, bundle and server socket live in a fresh temporary directory; the
figures are printed as a table and written to ``bench/results/run.json``.  Run as root:
``.venv/bin/python bench/run.py`` (it compiles lamina's bytecode first, as ``make venv`` does).  Missing tools
(crun, runc, docker, dockerd) make their rows say so instead of failing the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")
INSPECTED = "bench-inspect"
DOCKERD_LABEL = "dockerd"
ZERO_LABEL = "zero"

sys.path.insert(0, HERE)
from dockerd import PrivateDockerd  # noqa: E402  (the benchmarks' private Docker daemon)
from processes import compiled_front, kill_by_pid_files, lamina_program, terminate  # noqa: E402
from zeroengine import ZeroCostEngine  # noqa: E402  (the docker CLI's own floor)

LAMINA = lamina_program(ROOT)
#: in a row's command: the variant's ``lamina`` program (its compiled front when its tree has
#: one, else :data:`LAMINA`); :data:`LAMINA` itself in a row is the Python front
PROGRAM = "<the variant's lamina program>"


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


def wait_for_cache(exec_root: str, seconds: float = 10.0) -> None:
    """Wait until an engine cache of ``exec_root`` listens (or ``seconds`` passed)."""
    directory = os.path.join(exec_root, "engine-cache")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.isdir(directory) and any(name.endswith(".sock") for name in os.listdir(directory)):
            return
        time.sleep(0.01)


class Variant:
    """One code tree under test: its environment, data root, exec root and server."""

    def __init__(self, label: str, tree: str, work: str, base: dict[str, str]) -> None:
        self.label = label
        self.tree = tree
        home = os.path.join(work, label)
        os.makedirs(home)
        self.exec_root = os.path.join(home, "exec")
        self.socket_path = os.path.join(home, "lamina.sock")
        self.log_path = os.path.join(home, "serve.log")
        self.environment = {**base, "PYTHONPATH": tree, "LAMINA_DATA_ROOT": os.path.join(home, "data"),
                            "LAMINA_EXEC_ROOT": self.exec_root}
        self.server_environment = {**base, "PYTHONPATH": tree, "LAMINA_DATA_ROOT": os.path.join(home, "served"),
                                   "LAMINA_EXEC_ROOT": os.path.join(home, "served-exec")}
        host = f"unix://{self.socket_path}"
        self.client_environment = {**base, "PYTHONPATH": tree, "DOCKER_HOST": host, "LAMINA_HOST": host,
                                   "DOCKER_CONFIG": os.path.join(home, "docker-config")}
        self.server: subprocess.Popen[bytes] | None = None
        self.tmpfs_environment: dict[str, str] | None = None  # with --tmpfs: roots on a tmpfs
        #: what a user of the tree runs as ``lamina``: the compiled front when the tree has one
        self.program = compiled_front(ROOT, tree, os.path.join(home, "lamina")) or LAMINA

    def use_tmpfs(self, tmpfs: str) -> None:
        """Give the variant a second engine whose data and exec roots are on the tmpfs ``tmpfs``."""
        home = os.path.join(tmpfs, self.label)
        self.tmpfs_environment = {**self.environment, "LAMINA_DATA_ROOT": os.path.join(home, "data"),
                                  "LAMINA_EXEC_ROOT": os.path.join(home, "exec")}

    def start_server(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the server writes it until the end
        self.server = subprocess.Popen([*LAMINA, "--log-level", "warning", "serve", "-H", f"unix://{self.socket_path}"],
                                       stdout=log, stderr=subprocess.STDOUT, env=self.server_environment)
        wait_for_socket(self.socket_path, self.server, self.log_path)

    def stop_server(self) -> None:
        if self.server is None:
            return
        terminate(self.server)


def row_labels(where: str, variants: list[Variant]) -> list[str]:
    """The labels a row of ``where`` is measured under: once per variant, or once for a peer."""
    if where in ("dockerd", "zero"):
        return [DOCKERD_LABEL if where == "dockerd" else ZERO_LABEL]
    return [variant.label for variant in variants]


def interleaved(rows: list[tuple[str, list[str], str]], variants: list[Variant], runs: int, warmup: int,
                cold: dict[str, str], peer: dict[str, str],
                zero: dict[str, str] | None = None) -> dict[tuple[str, str], list[float] | str]:
    """Every row's command, once per variant per round (``warmup`` rounds untimed); a row
    named in ``cold`` kills the variant's monitor templates (or engine caches, as ``cold``
    says) before each run.  Rows are (name, argv, "local" | "local-direct" | "local-tmpfs" |
    "client" | "dockerd": in-process (a read warm in the engine cache), in-process with
    ``LAMINA_FORWARD=0``, in-process on the variant's engine whose roots are on a tmpfs
    (``--tmpfs``), through the variant's server, or
    the docker CLI against the private dockerd whose environment is ``peer``: once per round,
    labelled ``DOCKERD_LABEL``, or "zero": the docker CLI against the zero-cost engine whose
    environment is ``zero``, labelled ``ZERO_LABEL``)."""
    def labels(where: str) -> list[str]:
        return row_labels(where, variants)

    by_label = {variant.label: variant for variant in variants}
    times: dict[tuple[str, str], list[float] | str] = {(name, label): [] for name, _, where in rows
                                                       for label in labels(where)}
    for attempt in range(warmup + runs):
        for name, command, where in rows:
            for label in labels(where):
                done = times[(name, label)]
                if isinstance(done, str):
                    continue
                if where in ("dockerd", "zero"):
                    environment = peer if where == "dockerd" else zero  # type: ignore[assignment]
                else:
                    variant = by_label[label]
                    if name in cold:
                        kill_by_pid_files(variant.exec_root, cold[name])
                    environment = {"local": variant.environment, "client": variant.client_environment,
                                   "local-direct": {**variant.environment, "LAMINA_FORWARD": "0"},
                                   "client-api": {**variant.client_environment, "LAMINA_FORWARD": "0"},
                                   "local-tmpfs": variant.tmpfs_environment}[where]
                    assert environment is not None, where
                argv = command
                if where not in ("dockerd", "zero") and command[0] == PROGRAM:
                    # per variant: a name of its own (the row's command serves every variant)
                    argv = [*by_label[label].program, *command[1:]]
                started = time.perf_counter()
                result = subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                                        check=False)
                elapsed = (time.perf_counter() - started) * 1000
                if cold.get(name) == "engine-cache":
                    wait_for_cache(by_label[label].exec_root)  # its start is not the next row's load
                if result.returncode != 0:
                    text = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
                    times[(name, label)] = f"fails (exit {result.returncode}): {text[-1] if text else '?'}"
                elif attempt >= warmup:
                    done.append(elapsed)
    return times


COMMANDS = [("run --rm --network none busybox true", ["run", "--rm", "--network", "none", "busybox", "true"]),
            ("images", ["images"]), ("ps -a", ["ps", "-a"]), (f"inspect {INSPECTED}", ["inspect", INSPECTED])]
WAYS = [("lamina {} (in-process)", [PROGRAM], "local"),
        ("lamina {} (in-process, the Python front)", LAMINA, "local"),
        ("lamina -H {} (serve)", LAMINA, "client"),
        ("docker {} (docker CLI -> serve)", [DOCKER], "client"), ("docker {} (docker CLI -> dockerd)", [DOCKER], "dockerd"),
        ("docker {} (docker CLI -> a zero-cost engine: the CLI alone)", [DOCKER], "zero"),
        ("lamina -H {} (serve, API requests: LAMINA_FORWARD=0)", LAMINA, "client-api"),
        ("lamina {} (in-process, no engine cache: LAMINA_FORWARD=0)", [PROGRAM], "local-direct")]


def command_rows(with_cold: bool, docker: bool, dockerd: bool,
                 tmpfs: bool = False) -> tuple[list[tuple[str, list[str], str]], dict[str, str]]:
    """The rows, command by command (each of the ways of :data:`WAYS` that can run), and the
    rows to measure cold: what is killed before each of their runs."""
    rows: list[tuple[str, list[str], str]] = []
    cold: dict[str, str] = {}
    for command, arguments in COMMANDS:
        for pattern, program, where in WAYS:
            if program == [DOCKER] and not docker or where == "dockerd" and not dockerd:
                continue
            if where == "client-api" and command.startswith("run"):
                continue  # run is never forwarded to a daemon: the row would repeat "lamina -H run"
            if where == "zero" and not command.startswith("run"):
                continue  # bench/zeroengine.py answers run's requests only
            rows.append((pattern.format(command), [*program, *arguments], where))
            if program != [PROGRAM]:
                continue  # the rows below run the variant's program
            if where == "local" and command == "images" and with_cold:
                name = "  the same, first read after the engine cache left"
                rows.append((name, [*program, *arguments], where))
                cold[name] = "engine-cache"
            if where == "local" and command.startswith("run"):
                if with_cold:
                    name = "  the same, first run after the monitor template left"
                    rows.append((name, [*program, *arguments], where))
                    cold[name] = "monitor-template"
                    name = "  the same, first run after the engine cache left"
                    rows.append((name, [*program, *arguments], where))
                    cold[name] = "engine-cache"
                rows.append(("lamina run --rm busybox true (in-process, bridge)",
                             [PROGRAM, "run", "--rm", "busybox", "true"], "local"))
                if tmpfs:
                    rows.append((pattern.format(command) + " [data and exec roots on a tmpfs]",
                                 [*program, *arguments], "local-tmpfs"))
    return rows, cold


def ratios(times: dict[tuple[str, str], list[float] | str], variants: list[Variant]) -> dict[str, float]:
    """Each command's median in-process, through serve with the lamina CLI and with the docker
    CLI, over the docker CLI's against dockerd."""
    found = {}
    for command, _ in COMMANDS:
        [dockerd] = [pattern for pattern, _, where in WAYS if where == "dockerd"]
        peer = times.get((dockerd.format(command), DOCKERD_LABEL))
        if not peer or isinstance(peer, str):
            continue
        for pattern, _, _ in [way for way in WAYS if way[2] not in ("dockerd", "zero")]:
            for variant in variants:
                mine = times.get((pattern.format(command), variant.label))
                if mine and not isinstance(mine, str):
                    label = f" [{variant.label}]" if len(variants) > 1 else ""
                    found[f"{pattern.format(command)}{label} / dockerd"] = round(
                        statistics.median(mine) / statistics.median(peer), 2)
    return found


def crun_ratios(printed: list[tuple[str, str, list[float] | str]], labelled: bool) -> dict[str, float]:
    """Each container start-up row's median over ``crun run``'s (measured after the interleaved
    rows, not between them)."""
    crun = next((value for name, _, value in printed if name.startswith("crun run") and not isinstance(value, str)),
                None)
    if not crun:
        return {}
    return {f"{name}{f' [{label}]' if label and labelled else ''} / crun run":
            round(statistics.median(value) / statistics.median(crun), 2)
            for name, label, value in printed
            if name.startswith(("lamina run", "lamina -H run", "docker run")) and not isinstance(value, str)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per row (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before them (default 3)")
    parser.add_argument("--cold", action="store_true",
                        help="add the first run after the monitor template left (killed between runs)")
    parser.add_argument("--against", metavar="TREE", help="another lamina tree measured alongside, interleaved")
    parser.add_argument("--no-runtimes", action="store_true", help="skip the crun and runc rows")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--tmpfs", action="store_true",
                        help="add the in-process run with the data and exec roots on a tmpfs (this VM's disk "
                             "costs 0.2-1 ms per new inode; a tmpfs ~0.04)")
    parser.add_argument("--no-dockerd", action="store_true",
                        help="no private dockerd (its rows say so): nothing of Docker's runs beside lamina's rows")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py needs root (mounts, namespaces, cgroups)", file=sys.stderr)
        return 2

    trees = [("this", ROOT)] + ([("against", os.path.abspath(options.against))] if options.against else [])
    # what `make venv` does: without it, an environment with PYTHONDONTWRITEBYTECODE compiles
    # every module of every command again
    for _, tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(tree, "lamina")], check=True,
                       capture_output=True)
    work = tempfile.mkdtemp(prefix="lamina-bench-run-", dir="/tmp")
    base = {key: value for key, value in os.environ.items()
            if key not in ("DOCKER_HOST", "LAMINA_HOST", "LAMINA_LOG_LEVEL", "LAMINA_STORAGE_DRIVER", "PYTHONPATH")}
    variants = [Variant(label, tree, work, base) for label, tree in trees]
    if options.tmpfs:
        tmpfs = os.path.join(work, "tmpfs")
        os.makedirs(tmpfs)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0700", "lamina-bench", tmpfs], check=True)
        for variant in variants:
            variant.use_tmpfs(tmpfs)
    load_before = os.getloadavg()
    results: dict[str, object] = {}
    printed: list[tuple[str, str, list[float] | str]] = []
    times: dict[tuple[str, str], list[float] | str] = {}
    peer = PrivateDockerd(base_environment=base, skipped="--no-dockerd was given" if options.no_dockerd else "")
    zero = ZeroCostEngine()
    with peer:
        try:
            for variant in variants:
                for environment in (variant.environment, variant.server_environment, variant.tmpfs_environment):
                    if environment is not None:
                        subprocess.run([*LAMINA, "load", "-q", "-i", FIXTURE], env=environment, check=True,
                                       capture_output=True)
            docker = os.access(DOCKER, os.X_OK)
            for variant in variants:
                variant.start_server()
            create = ["create", "--name", INSPECTED, "--network", "none", "busybox", "true"]
            for variant in variants:
                for environment in (variant.environment, variant.client_environment):
                    subprocess.run([*LAMINA, *create], env=environment, check=True, capture_output=True)
            if peer.ready:
                peer.load(FIXTURE)
                peer.docker(*create)
            rows, cold = command_rows(options.cold, docker, peer.ready, options.tmpfs)
            times = interleaved(rows, variants, options.runs, options.warmup, cold, peer.environment,
                                {**base, "DOCKER_HOST": zero.host})
            for name, _, where in rows:
                for label in row_labels(where, variants):
                    printed.append((name, label, times[(name, label)]))
            if not docker:
                printed.append(("docker CLI rows", "", "skipped: no docker CLI"))
            if not peer.ready:
                printed.append(("docker CLI -> dockerd rows", "", peer.reason))
            printed.append(("podman", "", "not measured: podman is not installed on this machine"
                            if shutil.which("podman") is None else "not measured: podman is not driven by this bench"))

            if not options.no_runtimes:
                for runtime in ("crun", "runc"):
                    name = f"{runtime} run (OCI bundle of the same busybox, true)"
                    if shutil.which(runtime) is None:
                        printed.append((name, "", f"skipped: {runtime} is not installed"))
                        continue
                    bundle = make_bundle(work, runtime)
                    state = os.path.join(work, f"{runtime}-state")
                    container = f"lamina-bench-{os.getpid()}"
                    command = [runtime, "--root", state, "run", "--bundle", bundle, container]
                    cleanup = [runtime, "--root", state, "delete", "--force", container]
                    printed.append((name, "", timed(command, base, options.runs, options.warmup, between=cleanup)))
        finally:
            for variant in variants:
                variant.stop_server()
                kill_by_pid_files(variant.exec_root)
                kill_by_pid_files(variant.exec_root, "engine-cache")
                kill_by_pid_files(variant.server_environment["LAMINA_EXEC_ROOT"])
                kill_by_pid_files(variant.server_environment["LAMINA_EXEC_ROOT"], "engine-cache")
                if variant.tmpfs_environment is not None:
                    kill_by_pid_files(variant.tmpfs_environment["LAMINA_EXEC_ROOT"])
                    kill_by_pid_files(variant.tmpfs_environment["LAMINA_EXEC_ROOT"], "engine-cache")
            # the default bridge outlives its containers, as docker0 does: taken down with the data roots
            sys.path.insert(0, ROOT)
            from lamina.network.run import RunNetwork

            for variant in variants:
                for environment in (variant.environment, variant.server_environment, variant.tmpfs_environment):
                    if environment is not None:
                        RunNetwork(environment["LAMINA_DATA_ROOT"], environment["LAMINA_EXEC_ROOT"]).remove_bridges()
            unmount_under(work)
            zero.close()
            if not options.keep:
                shutil.rmtree(work, ignore_errors=True)
    if peer.leftovers:
        print("the private dockerd left: " + "; ".join(peer.leftovers), file=sys.stderr)

    load_after = os.getloadavg()
    print(f"container start-up: {options.runs} runs per row after {options.warmup} warm-up runs "
          f"(wall time of the whole command); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if len(variants) > 1:
        print("variants, interleaved: " + ", ".join(f"{v.label} = {v.tree}" for v in variants))
    print(f"{'command':<70} {'tree':<8} {'median':>9} {'min':>9} {'max':>9}")
    for name, label, value in printed:
        key = f"{name} [{label}]" if label and len(variants) > 1 else name
        if isinstance(value, str):
            print(f"{name:<70} {label:<8} {value}")
            results[key] = value
            continue
        print(f"{name:<70} {label:<8} {statistics.median(value):>7.1f}ms {min(value):>7.1f}ms {max(value):>7.1f}ms")
        results[key] = {"median_ms": round(statistics.median(value), 2), "min_ms": round(min(value), 2),
                        "max_ms": round(max(value), 2), "runs": len(value)}
    results["ratios_to_dockerd"] = ratios(times, variants)
    if results["ratios_to_dockerd"]:
        print("median / median of the docker CLI against dockerd (issue 16: in-process within 1.5x)")
        for key, ratio in results["ratios_to_dockerd"].items():  # type: ignore[union-attr]
            print(f"  {key:<78} {ratio:>5.2f}x")
    results["ratios_to_crun"] = crun_ratios(printed, len(variants) > 1)
    if results["ratios_to_crun"]:
        print("median / median of crun run (issue 16: in-process ~5x, the docker CLI through serve <= 3x)")
        for key, ratio in results["ratios_to_crun"].items():  # type: ignore[union-attr]
            print(f"  {key:<78} {ratio:>5.2f}x")
    results["dockerd_version"] = peer.version or peer.reason
    results["load_average"] = {"before": round(load_before[0], 2), "after": round(load_after[0], 2)}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "run.json"), "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
