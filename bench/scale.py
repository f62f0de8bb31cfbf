#!/usr/bin/env python3
"""Benchmark: lamina with N images and N containers (issue 16: what grows with the store).

On a fresh data root holding busybox, the benchmark measures on the *empty* engine (busybox and
one container, ``bench-probe``, the one ``inspect`` looks up), then makes
``--n`` images (metadata-only children of busybox, each with its own label and tag, as a
``LABEL`` build step makes them) and ``--n`` created (not started) containers with names, and
measures again:

* ``images``, ``ps -a``, ``ps`` (running ones only: every record is still looked at),
  ``system df``, ``inspect NAME`` and ``create``: whole-command wall time in-process
  (``lamina CMD``: after the first, the engine cache that the first left answers a read, and
  its fork server runs ``create``; the rows "no engine cache" run it with ``LAMINA_FORWARD=0``)
  and through ``lamina serve``
  (``lamina -H unix://... CMD``), plus the latency of the same API request over one keep-alive
  connection to the server;
* disk use of the data root (``du``), and what ``system df`` reports (it must count the N
  containers);
* monitor memory: ``--running`` (default 20) containers started with ``run -d busybox sleep``,
  the USS (Private_Clean + Private_Dirty of ``/proc/PID/smaps_rollup``) of each container's
  monitor (the parent of its PID 1), summed and per container, and of the process the monitors
  were forked from when it stays (lamina's monitor template), shared by them.

``--compare DIR`` runs every command also with the lamina package of another tree (e.g. main:
``--compare /work/main``), interleaved run by run with this tree's, so before and after are
measured in the same conditions.  Each tree has a server and a data root of its own, made the
same way by its own code: two versions of lamina sharing one data root would convert each
other's on-disk formats back and forth where they differ (an older lamina's ``create`` rewrites
the name index a newer one replaced, and the newer rebuilds its own), which measures neither.

The docker CLI is also pointed at ``lamina serve`` (``docker CMD``, the Go client), and Docker
itself is the peer: a private ``dockerd`` (``bench/dockerd.py``: own data root, exec root and
socket, no bridge, no iptables) holding the same busybox (``docker load`` of the same fixture),
``bench-probe``, and the same N images made the way a ``LABEL`` build step makes them
(``POST /build`` of ``FROM busybox`` + ``LABEL bench.n=<n>``, tagged ``bench/image:<n>``, over
one keep-alive connection: the classic builder of 20.10) and N containers
(``POST /containers/create?name=bench-<n>``, ``--network none``).  The same commands run with
the docker CLI against it (and the same API requests over a keep-alive connection), interleaved
with lamina's, and its containerd-shim's USS is measured like lamina's monitors (the parent of
each container's PID 1), beside the USS of dockerd and containerd themselves.  When ``dockerd``
is missing or does not start, its rows say why; Podman is not installed here (the row says so).
Every command runs ``--runs`` times (default 9) after one warm-up; the table shows median and
minimum, then issue 16's targets with the figures they are judged on.  The figures are written to ``bench/results/scale.json``.  Run as root:
``.venv/bin/python bench/scale.py [--n 1000] [--compare /work/main]``.
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
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUSYBOX = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKER_API = "/v1.41"  # dockerd 20.10's

sys.path.insert(0, HERE)
from dockerd import PrivateDockerd  # noqa: E402  (the benchmarks' private Docker daemon)
from processes import kill_by_pid_files, lamina_program, terminate  # noqa: E402
from serve import Connection  # noqa: E402  (the benchmarks' one keep-alive client)

LAMINA = lamina_program(ROOT)


class Tree:
    """One lamina source tree: its environment for subprocesses and its own server."""

    api = "/v1.45"

    def __init__(self, label: str, path: str, work: str, environment: dict[str, str]) -> None:
        self.label = label
        self.path = path
        self.data_root = environment["LAMINA_DATA_ROOT"]
        self.exec_root = environment["LAMINA_EXEC_ROOT"]
        self.environment = {**environment, "PYTHONPATH": path}
        self.docker_environment = {**environment, "DOCKER_CONFIG": os.path.join(work, "docker-config")}
        self.socket_path = os.path.join(work, f"lamina-{label}.sock")
        self.host = f"unix://{self.socket_path}"
        self.log = open(os.path.join(work, f"serve-{label}.log"), "wb")  # noqa: SIM115 - until stop()
        self.server = subprocess.Popen([*LAMINA, "--log-level", "warning", "serve", "-H", self.host],
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

    def reconnect(self) -> None:
        """A new keep-alive connection (the server closes one left idle while the stores fill)."""
        self.connection.close()
        self.connection = Connection(self.socket_path)

    def stop(self) -> None:
        self.connection.close()
        terminate(self.server, 30)
        self.log.close()


class DockerPeer:
    """The private dockerd as a subject of the measured cases: its CLI environment and one
    keep-alive connection."""

    label = "dockerd"
    api = DOCKER_API

    def __init__(self, daemon: PrivateDockerd) -> None:
        self.daemon = daemon
        self.environment = daemon.environment
        self.socket_path = os.path.join(daemon.directory, "docker.sock")
        self.connection = Connection(self.socket_path)

    def reconnect(self) -> None:
        self.connection.close()
        self.connection = Connection(self.socket_path)

    def close(self) -> None:
        self.connection.close()


Subject = Tree | DockerPeer


def run(command: list[str], environment: dict[str, str]) -> float:
    """Wall time (ms) of one command, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, env=environment, capture_output=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace').strip()}")
    return elapsed


def request_time(tree: Subject, method: str, target: str, body: bytes = b"") -> float:
    started = time.perf_counter()
    status, answer = tree.connection.request(method, target, body)
    elapsed = (time.perf_counter() - started) * 1000
    if status >= 300:
        raise SystemExit(f"{method} {target} via {tree.label}: HTTP {status} {answer[:200]!r}")
    return elapsed


Measure = Callable[[Subject], "float | None"]


def measure(rows: dict[str, list[float]], phase: str, subjects: list[Subject], cases: dict[str, Measure],
            runs: int) -> None:
    """Each case ``runs`` times per subject it applies to (it returns None for the others)
    after one warm-up, the subjects interleaved run by run."""
    for name, case in cases.items():
        for subject in subjects:
            case(subject)  # warm-up
        for _ in range(runs):
            for subject in subjects:
                value = case(subject)
                if value is not None:
                    rows.setdefault(f"{phase}: {name} [{subject.label}]", []).append(value)


def cases(names: list[str]) -> dict[str, Measure]:
    """The measured commands, each the ways it is run (lamina in-process, the lamina CLI and the
    docker CLI through ``lamina serve``, one keep-alive connection to ``lamina serve``; the
    docker CLI against dockerd and one keep-alive connection to it); ``create`` makes containers
    that :func:`remove_created` drops."""
    target = names[len(names) // 2] if names else "bench-probe"

    def lamina(*arguments: str, via_server: bool, engine_cache: bool = True) -> Measure:
        def case(subject: Subject) -> float | None:
            if not isinstance(subject, Tree):
                return None
            host = ["-H", subject.host] if via_server else []
            environment = subject.environment if engine_cache else {**subject.environment, "LAMINA_FORWARD": "0"}
            return run([*LAMINA, *host, *arguments], environment)
        return case

    def docker(*arguments: str, peer: bool) -> Measure:
        def case(subject: Subject) -> float | None:
            if isinstance(subject, DockerPeer) != peer:
                return None
            if isinstance(subject, DockerPeer):
                return run([DOCKER, *arguments], subject.environment)
            return run([DOCKER, "-H", subject.host, *arguments], subject.docker_environment)
        return case

    def api(method: str, path: str, body: bytes = b"", peer: bool = False) -> Measure:
        def case(subject: Subject) -> float | None:
            if isinstance(subject, DockerPeer) != peer:
                return None
            return request_time(subject, method, subject.api + path, body)
        return case

    def ways(command: str, arguments: tuple[str, ...], method: str, path: str, body: bytes = b"",
             docker_arguments: tuple[str, ...] = ()) -> dict[str, Measure]:
        docker_arguments = docker_arguments or arguments
        return {f"{command} (in-process)": lamina(*arguments, via_server=False),
                f"{command} (in-process, no engine cache)": lamina(*arguments, via_server=False, engine_cache=False),
                f"{command} (lamina -H serve)": lamina(*arguments, via_server=True),
                f"{command} (docker CLI -> serve)": docker(*docker_arguments, peer=False),
                f"{method} {path} (keep-alive)": api(method, path, body),
                f"{command} (docker CLI -> dockerd)": docker(*docker_arguments, peer=True),
                f"{method} {path} (keep-alive -> dockerd)": api(method, path, body, peer=True)}

    create_body = json.dumps({"Image": "busybox", "Cmd": ["true"], "Labels": {"bench.created": "1"},
                              "HostConfig": {"NetworkMode": "none"}}).encode()
    create = ("create", "--label", "bench.created=1", "busybox", "true")
    return {
        **ways("images", ("images",), "GET", "/images/json"),
        **ways("ps -a", ("ps", "-a"), "GET", "/containers/json?all=1"),
        "ps (in-process)": lamina("ps", via_server=False),
        "GET /containers/json (keep-alive)": api("GET", "/containers/json"),
        "ps (docker CLI -> dockerd)": docker("ps", peer=True),
        **ways("system df", ("system", "df"), "GET", "/system/df"),
        **ways(f"inspect {target}", ("inspect", target), "GET", f"/containers/{target}/json"),
        **ways("create busybox true", create, "POST", "/containers/create", create_body,
               docker_arguments=("create", "--label", "bench.created=1", "--network", "none", "busybox", "true")),
    }


def remove_created(subject: Subject) -> None:
    """Remove the containers the ``create`` cases made (label bench.created=1)."""
    status, answer = subject.connection.request("GET", f"{subject.api}/containers/json?all=1&filters="
                                                + _quote(json.dumps({"label": ["bench.created=1"]})))
    for summary in json.loads(answer):
        subject.connection.request("DELETE", f"{subject.api}/containers/{summary['Id']}?force=1")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def populate_tree(tree: Tree, n: int) -> list[str]:
    """:func:`populate` of the tree's data root by its own code (a process of its own)."""
    script = f"import sys; sys.path.insert(0, {HERE!r}); import scale; scale.populate(*sys.argv[1:3], int(sys.argv[3]))"
    subprocess.run([sys.executable, "-c", script, tree.data_root, tree.exec_root, str(n)], env=tree.environment,
                   check=True)
    return [f"bench-{number}" for number in range(n)]


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


def populate_docker(peer: DockerPeer, n: int) -> None:
    """The same ``n`` images (``FROM busybox`` + ``LABEL bench.n=<n>``, built by dockerd's
    classic builder, tagged ``bench/image:<n>``) and ``n`` created containers in dockerd."""
    import io
    import tarfile

    started = time.perf_counter()
    for number in range(n):
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            dockerfile = f"FROM busybox\nLABEL bench.n={number}\nCMD [\"sh\"]\n".encode()
            entry = tarfile.TarInfo("Dockerfile")
            entry.size = len(dockerfile)
            archive.addfile(entry, io.BytesIO(dockerfile))
        status, answer = peer.connection.request("POST", f"{DOCKER_API}/build?t=bench/image:{number}&q=1&rm=1",
                                                 context.getvalue())
        if status != 200 or b'"error' in answer:
            raise SystemExit(f"dockerd build of bench/image:{number}: HTTP {status} {answer[-300:]!r}")
    images_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for number in range(n):
        body = json.dumps({"Image": f"bench/image:{number}", "Cmd": ["true"],
                           "HostConfig": {"NetworkMode": "none"}}).encode()
        status, answer = peer.connection.request("POST", f"{DOCKER_API}/containers/create?name=bench-{number}", body)
        if status != 201:
            raise SystemExit(f"dockerd create bench-{number}: HTTP {status} {answer[:300]!r}")
    print(f"made {n} images in {images_seconds:.1f} s and {n} containers in "
          f"{time.perf_counter() - started:.1f} s (dockerd, over one keep-alive connection)")


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
        # a monitor forked by the server or the CLI is reparented to init), and the spare monitor
        # it keeps forked ahead with that spare's helper: their USS is shared by the containers
        templates = {parent_of(pid) for pid in monitors} - {1, tree.server.pid}
        template = sum(uss(pid) for pid in templates) + sum(uss(pid) for pid in spare_monitors(templates))
        return {"containers": count, "total_mib": round((sum(sizes) + template) / 2**20, 1),
                "per_container_mib": round(statistics.median(sizes) / 2**20, 2),
                "template_mib": round(template / 2**20, 2),
                "per_container_with_template_mib": round((statistics.median(sizes) + template / count) / 2**20, 2)}
    finally:
        for container_id in ids:
            tree.connection.request("DELETE", f"/v1.45/containers/{container_id}?force=1")


def spare_monitors(templates: set[int]) -> list[int]:
    """The spare monitors of those monitor templates (``lamina.container.monitor.template``)
    and the helpers they fork ahead (``lamina.container.monitor.launch``)."""
    from lamina.container.monitor.launch import SPARE_HELPER_NAME
    from lamina.container.monitor.template import SPARE_NAME

    spares = _children_named(templates, SPARE_NAME)
    return spares + _children_named(set(spares), SPARE_HELPER_NAME)


def _children_named(parents: set[int], name: str) -> list[int]:
    found = []
    for parent in parents:
        try:
            with open(f"/proc/{parent}/task/{parent}/children", encoding="ascii") as handle:
                children = [int(child) for child in handle.read().split()]
        except OSError:
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/comm", encoding="utf-8") as handle:
                    if handle.read().rstrip("\n") == name:
                        found.append(child)
            except OSError:
                pass
    return found


def shim_memory(peer: DockerPeer, count: int) -> dict[str, object]:
    """USS of the containerd-shims of ``count`` running dockerd containers (``--network none``),
    and of dockerd and containerd themselves."""
    ids = []
    try:
        for _ in range(count):
            body = json.dumps({"Image": "busybox", "Cmd": ["sleep", "600"],
                               "HostConfig": {"NetworkMode": "none"}}).encode()
            status, answer = peer.connection.request("POST", f"{DOCKER_API}/containers/create", body)
            if status != 201:
                return {"skipped": f"create: HTTP {status} {answer[:200]!r}"}
            ids.append(json.loads(answer)["Id"])
            status, answer = peer.connection.request("POST", f"{DOCKER_API}/containers/{ids[-1]}/start")
            if status != 204:
                return {"skipped": f"start: HTTP {status} {answer[:200]!r}"}
        time.sleep(0.5)
        sizes = []
        for container_id in ids:
            status, answer = peer.connection.request("GET", f"{DOCKER_API}/containers/{container_id}/json")
            sizes.append(uss(parent_of(int(json.loads(answer)["State"]["Pid"]))))
        daemon = [peer.daemon.process.pid] if peer.daemon.process is not None else []
        daemons = sum(uss(pid) for pid in daemon + peer.daemon.containerd())
        return {"containers": count, "total_mib": round(sum(sizes) / 2**20, 1),
                "per_container_mib": round(statistics.median(sizes) / 2**20, 2),
                "dockerd_and_containerd_mib": round(daemons / 2**20, 1)}
    finally:
        for container_id in ids:
            peer.connection.request("DELETE", f"{DOCKER_API}/containers/{container_id}?force=1")


def targets(rows: dict[str, list[float]], n: int, memory: dict[str, object]) -> dict[str, str]:
    """Issue 16's targets at ``n``, each with the medians it is judged on."""
    def median(name: str) -> float | None:
        values = rows.get(name)
        return statistics.median(values) if values else None

    found: dict[str, str] = {}
    phase = f"n={n}"
    for command in ("images", "ps -a"):
        value = median(f"{phase}: {command} (lamina -H serve) [this]")
        peer = median(f"{phase}: {command} (docker CLI -> dockerd) [dockerd]")
        if value is not None:
            found[f"{command} through serve < 100 ms"] = (
                f"{value:.1f} ms ({'met' if value < 100 else 'not met'}); docker CLI -> serve "
                f"{_ms(median(f'{phase}: {command} (docker CLI -> serve) [this]'))}, docker CLI -> dockerd {_ms(peer)}")
    for way in ("in-process", "in-process, no engine cache", "lamina -H serve", "docker CLI -> serve"):
        empty = median(f"empty: create busybox true ({way}) [this]")
        full = median(f"{phase}: create busybox true ({way}) [this]")
        if empty and full:
            found[f"create ({way}) within 10 % of empty"] = (
                f"{full:.1f} ms at n={n} vs {empty:.1f} ms empty: {full / empty - 1:+.0%} "
                f"({'met' if full <= 1.1 * empty else 'not met'})")
    peer_inspect = next((median(name) for name in rows
                         if name.startswith(f"{phase}: inspect ") and name.endswith("(docker CLI -> dockerd) [dockerd]")),
                        None)
    for way in ("in-process", "in-process, no engine cache", "lamina -H serve", "docker CLI -> serve"):
        mine = next((median(name) for name in rows
                     if name.startswith(f"{phase}: inspect ") and name.endswith(f"({way}) [this]")), None)
        if mine is not None and peer_inspect:
            found[f"inspect NAME ({way}) <= docker CLI -> dockerd"] = (
                f"{mine:.1f} ms vs {peer_inspect:.1f} ms: {mine / peer_inspect:.2f}x "
                f"({'met' if mine <= peer_inspect else 'not met'})")
    for way in ("in-process", "in-process, no engine cache", "lamina -H serve", "docker CLI -> serve"):
        value = median(f"{phase}: system df ({way}) [this]")
        if value is not None:
            found[f"system df ({way}) < 200 ms"] = f"{value:.1f} ms ({'met' if value < 200 else 'not met'})"
    mine_memory = memory.get("this")
    if isinstance(mine_memory, dict) and "per_container_with_template_mib" in mine_memory:
        shim = memory.get("dockerd")
        value = mine_memory["per_container_with_template_mib"]
        found["monitor memory <= 3 MiB per container"] = (
            f"{value} MiB ({'met' if value <= 3 else 'not met'}); containerd-shim "
            f"{shim.get('per_container_mib') if isinstance(shim, dict) else shim} MiB")
    return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images and containers to make (default 1000)")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per command (default 9)")
    parser.add_argument("--running", type=int, default=20, help="running containers for monitor memory (default 20)")
    parser.add_argument("--compare", default="", help="another lamina tree to measure interleaved (e.g. /work/main)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    parser.add_argument("--no-dockerd", action="store_true",
                        help="measure lamina only (Docker's N images take minutes to make)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/scale.py needs root (a real data root with overlay2)", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="lamina-bench-scale-", dir="/var/tmp")
    data_root = os.path.join(work, "data")  # this tree's (the compared tree's: data-compare)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DOCKER_HOST", "LAMINA_HOST", "LAMINA_LOG_LEVEL", "PYTHONPATH",
                                  "PYTHONDONTWRITEBYTECODE")}  # compiled once, as an installed package is

    def roots(suffix: str) -> dict[str, str]:
        return {"LAMINA_DATA_ROOT": os.path.join(work, "data" + suffix),
                "LAMINA_EXEC_ROOT": os.path.join(work, "exec" + suffix)}

    trees: list[Tree] = []
    peer: DockerPeer | None = None
    rows: dict[str, list[float]] = {}
    results: dict[str, object] = {"n": options.n, "runs": options.runs}
    load_before = os.getloadavg()[0]
    daemon = PrivateDockerd(base_environment={key: value for key, value in environment.items()
                                              if not key.startswith("LAMINA_")},
                            skipped="--no-dockerd was given" if options.no_dockerd else "")
    with daemon:
        results["peers"] = {"docker": f"dockerd {daemon.version} (private, bench/dockerd.py)" if daemon.ready
                            else daemon.reason,
                            "podman": "not measured: podman is not installed on this machine"
                            if shutil.which("podman") is None else "not measured: podman is not driven by this bench"}
        try:
            compared = [("this", ROOT, "")] + ([("compare", os.path.abspath(options.compare), "-compare")]
                                               if options.compare else [])
            for label, path, suffix in compared:
                subprocess.run([*LAMINA, "load", "-q", "-i", BUSYBOX],
                               env={**environment, **roots(suffix), "PYTHONPATH": path}, check=True, capture_output=True)
                trees.append(Tree(label, path, work, {**environment, **roots(suffix)}))
                status, answer = trees[-1].connection.request(
                    "POST", "/v1.45/containers/create?name=bench-probe",
                    json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode())
                if status != 201:
                    raise SystemExit(f"create bench-probe ({label}): HTTP {status} {answer[:200]!r}")
            if daemon.ready:
                daemon.load(BUSYBOX)
                daemon.docker("create", "--name", "bench-probe", "--network", "none", "busybox", "true")
                peer = DockerPeer(daemon)
            subjects: list[Subject] = [*trees, *([peer] if peer else [])]
            measure(rows, "empty", subjects, cases([]), options.runs)
            for subject in subjects:
                remove_created(subject)
            names = [populate_tree(tree, options.n) for tree in trees][0]
            results["disk_use_bytes"] = disk_use(data_root)
            if peer:
                populate_docker(peer, options.n)
                results["disk_use_bytes_dockerd"] = disk_use(os.path.join(daemon.directory, "root"))
            for subject in subjects:
                subject.reconnect()
            measure(rows, f"n={options.n}", subjects, cases(names), options.runs)
            for subject in subjects:
                remove_created(subject)
            results["system_df_counts"] = {}
            for subject in subjects:
                status, answer = subject.connection.request("GET", f"{subject.api}/system/df")
                df = json.loads(answer)
                results["system_df_counts"][subject.label] = {  # type: ignore[index]
                    "Images": len(df.get("Images") or []), "Containers": len(df.get("Containers") or [])}
            memory: dict[str, object] = {tree.label: monitor_memory(tree, options.running) for tree in trees}
            if peer:
                memory["dockerd"] = shim_memory(peer, options.running)
            results["monitor_memory"] = memory
        finally:
            if peer:
                peer.close()
            for tree in trees:
                tree.stop()
                kill_by_pid_files(tree.exec_root, "engine-cache")
            # the default bridge outlives its containers, as docker0 does: taken down with the data root
            from lamina.network.run import RunNetwork

            for tree in trees:
                RunNetwork(tree.data_root, tree.exec_root).remove_bridges()
                subprocess.run(["umount", "-R", "-l", tree.data_root], capture_output=True, check=False)
            if not options.keep:
                shutil.rmtree(work, ignore_errors=True)
    results["load_average"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores, shared)")
    if daemon.leftovers:
        print("the private dockerd left: " + "; ".join(daemon.leftovers), file=sys.stderr)

    print(f"at scale: n={options.n}, {options.runs} runs per command (median, min in ms)")
    for name, values in rows.items():
        print(f"{name:<88} {statistics.median(values):>9.1f} {min(values):>9.1f}")
        results[name] = {"median_ms": round(statistics.median(values), 2), "min_ms": round(min(values), 2)}
    for key in ("disk_use_bytes", "disk_use_bytes_dockerd", "system_df_counts", "monitor_memory", "peers"):
        print(f"{key}: {results.get(key)}")
    results["targets"] = targets(rows, options.n, results.get("monitor_memory") or {})  # type: ignore[arg-type]
    print("issue 16's targets:")
    for name, verdict in results["targets"].items():  # type: ignore[union-attr]
        print(f"  {name:<56} {verdict}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "scale.json"), "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
