#!/usr/bin/env python3
"""Benchmark: `lamina load` / `lamina save` of a ~200 MiB image against GNU tar, in-process
and through ``lamina serve``.

Floors (the same work done by standard tools):
  load  >= `tar -x` of the layer into an empty directory + `sync` (a load commits each layer
           with ``syncfs``; tar alone leaves its writes dirty) + sha256 of the layer tar with
           Python's ``hashlib`` (what the engine uses; ``sha256sum`` is several times slower
           here and flattered the ratio)
  save  >= `tar -c` of the extracted tree to a file

The same load and save also go through a ``lamina serve`` on its own data root, with lamina's
client (``lamina -H unix://...``) and, when installed, the docker CLI (``DOCKER_HOST``): the
``*_serve`` rows and their ratio to the in-process commands (target <= 1.15x).  ``docker save``
writes to its standard output (redirected to a file) in ``docker_save_serve``; with ``-o``
(``docker_save_o_serve``) the docker CLI (28.x) writes a temporary file, fsyncs it and renames
it, so its peer is ``lamina_save_fsync``: the in-process ``save -o`` plus an fsync of its output.

Truthfulness: every timed command starts after an untimed ``os.sync()``, so none pays for the
writeback of what an earlier one left dirty.  Each round runs every variant once, in an order
that rotates from round to round (in-process, lamina -H, docker; save: tar -c, in-process,
lamina -H, docker, --save-repeats times); the ratios are the median of the per-round ratios
(each serve variant over the in-process command of the same round or repeat) as well as the
ratio of the medians.  The load average before and after says how quiet the machine was; run
the benchmark alone (the project's habit: ``flock /tmp/bench.lock ...``).

The raw figures go to bench/results/load_save.json.  Run as root: `make bench` or
`.venv/bin/python bench/load_save.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
DOCKER = "/usr/local/bin/docker"


def make_tree(root: str, small_files: int, large_files: int, large_size: int) -> int:
    rng = random.Random(42)
    total = 0
    block = rng.randbytes(1 << 20)
    for i in range(small_files):
        directory = os.path.join(root, f"usr/share/d{i % 97:02d}/s{i % 7}")
        os.makedirs(directory, exist_ok=True)
        size = rng.randint(200, 48 * 1024)
        offset = rng.randint(0, len(block) - size)
        with open(os.path.join(directory, f"file{i}.dat"), "wb") as handle:
            handle.write(block[offset:offset + size])
        total += size
        if i % 50 == 0:
            os.symlink(f"file{i}.dat", os.path.join(directory, f"link{i}"))
    os.makedirs(os.path.join(root, "opt/big"), exist_ok=True)
    for i in range(large_files):
        with open(os.path.join(root, f"opt/big/blob{i}.bin"), "wb") as handle:
            written = 0
            while written < large_size:
                chunk = rng.randbytes(min(4 << 20, large_size - written))
                handle.write(chunk)
                written += len(chunk)
        total += large_size
    return total


def sha256_of(path: str) -> str:
    """The file's sha256 as the engine computes a diff_id: ``hashlib`` over 1 MiB reads."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hashed(path: str) -> float:
    """Seconds taken to hash ``path`` with :func:`sha256_of` (after an untimed sync, as :func:`timed`)."""
    os.sync()
    start = time.perf_counter()
    sha256_of(path)
    return time.perf_counter() - start


def make_archive(work: str, layer_tar: str) -> str:
    diff_id = "sha256:" + sha256_of(layer_tar)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "bench"}],
    }, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    staging = os.path.join(work, "archive")
    os.makedirs(os.path.join(staging, "layer"))
    os.link(layer_tar, os.path.join(staging, "layer", "layer.tar"))
    with open(os.path.join(staging, config_name), "wb") as handle:
        handle.write(config)
    with open(os.path.join(staging, "manifest.json"), "w") as handle:
        json.dump([{"Config": config_name, "RepoTags": ["bench:latest"], "Layers": ["layer/layer.tar"]}], handle)
    archive = os.path.join(work, "image.tar")
    subprocess.run(["tar", "-C", staging, "-cf", archive, "."], check=True)
    return archive


def timed(command: list[str], *, then_sync: bool = False, fsync_output: str | None = None,
          **kwargs: object) -> float:
    """Seconds ``command`` takes, started with nothing dirty in the page cache (an untimed
    ``os.sync()`` first); ``then_sync``: a ``sync`` after it is part of the time;
    ``fsync_output``: so is an fsync of that file (what ``docker save -o`` does)."""
    os.sync()
    start = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    if then_sync:
        os.sync()
    if fsync_output is not None:
        fd = os.open(fsync_output, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - start


def rotated(items: list, round_number: int) -> list:
    """``items`` rotated by the round's number: each variant takes every place in turn."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]


def paired(results: dict[str, list[float]], key: str, reference: str) -> float:
    """The median of the ratios ``key / reference`` measured side by side (same index)."""
    return statistics.median(a / b for a, b in zip(results[key], results[reference]))


def start_server(work: str, data_root: str, storage_driver: str) -> tuple[subprocess.Popen[bytes], str]:
    """A ``lamina serve`` on ``data_root``, answering ``/_ping``; and its host."""
    socket_path = data_root + ".sock"
    log = open(os.path.join(work, "serve.log"), "ab")  # noqa: SIM115 - the server writes it until the end
    server = subprocess.Popen([LAMINA, "--data-root", data_root, "--storage-driver",
                               storage_driver, "serve", "-H", f"unix://{socket_path}"],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(socket_path)
                probe.sendall(b"GET /_ping HTTP/1.1\r\nHost: lamina\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return server, f"unix://{socket_path}"
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            server.wait()
            raise SystemExit(f"lamina serve did not start; see {log.name}")
        time.sleep(0.05)


def stop_server(server: subprocess.Popen[bytes], data_root: str) -> None:
    server.send_signal(2)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    subprocess.run(["umount", "-R", data_root], stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--save-repeats", type=int, default=3,
                        help="save and tar -c measurements per run (each variant, rotating)")
    parser.add_argument("--small-files", type=int, default=4000)
    parser.add_argument("--large-files", type=int, default=8)
    parser.add_argument("--large-size", type=int, default=16 << 20)
    parser.add_argument("--storage-driver", default="overlay2")
    parser.add_argument("--workdir", default=None, help="where to build (default: a temp dir under /var/tmp)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "load_save.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (the benchmark uses real overlay mounts)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="lamina-bench-", dir=args.workdir or "/var/tmp")
    server: subprocess.Popen[bytes] | None = None
    try:
        tree = os.path.join(work, "tree")
        os.makedirs(tree)
        content = make_tree(tree, args.small_files, args.large_files, args.large_size)
        layer_tar = os.path.join(work, "layer.tar")
        subprocess.run(["tar", "--numeric-owner", "-C", tree, "-cf", layer_tar, "."], check=True)
        archive = make_archive(work, layer_tar)
        files = sum(len(f) + len(d) for _, d, f in os.walk(tree))
        print(f"image: {os.path.getsize(layer_tar) / 2**20:.1f} MiB layer, {files} entries, "
              f"{content / 2**20:.1f} MiB of content; {args.runs} rounds, {args.save_repeats} saves each")

        docker = os.access(DOCKER, os.X_OK)
        clients: list[tuple[str, list[str], dict[str, str]]] = [("lamina", [], {})]
        if docker:
            clients.append(("docker", [], {}))
        results: dict[str, list[float]] = {"tar_x_sync": [], "sha256": [], "tar_c": [], "lamina_load": [],
                                           "lamina_save": [], "lamina_save_fsync": []}
        for name, _, _ in clients:
            results.update({f"{name}_load_serve": [], f"{name}_save_serve": []})
        if docker:
            results["docker_save_o_serve"] = []
        saved = os.path.join(work, "saved.tar")
        sha256_of(archive)  # the archive is read from a warm page cache by every variant
        # the machine may be shared: the load average before and after says how much to trust
        load_before = os.getloadavg()
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*load_before))
        for run in range(args.runs):
            target = os.path.join(work, f"x{run}")
            os.makedirs(target)
            data_root = os.path.join(work, f"root{run}")
            base = [LAMINA, "--data-root", data_root, "--storage-driver", args.storage_driver]
            # the server gets a fresh data root each round too: a long-lived one churned by
            # every round's loads and removals is not what the in-process command writes into
            serve_root = os.path.join(work, f"serve-root{run}")
            server, host = start_server(work, serve_root, args.storage_driver)
            docker_environment = {**os.environ, "DOCKER_HOST": host,
                                  "DOCKER_CONFIG": os.path.join(work, "docker-config")}
            clients = [("lamina", [LAMINA, "-H", host], dict(os.environ))]
            if docker:
                clients.append(("docker", [DOCKER], docker_environment))
            loads: list[tuple[str, list[str], dict[str, str]]] = [("lamina_load", base, dict(os.environ))]
            loads += [(f"{name}_load_serve", command, environment) for name, command, environment in clients]
            loads = rotated(loads, run)
            for key, command, environment in loads:
                results[key].append(timed(command + ["load", "-q", "-i", archive], stdout=subprocess.DEVNULL,
                                          env=environment))
                if command is not base and key != loads[-1][0]:
                    # the last serve client keeps the image for the saves
                    subprocess.run(command + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL,
                                   env=environment)
            if loads[-1][1] is base:  # the in-process load came last: load into the server again
                subprocess.run(clients[0][1] + ["load", "-q", "-i", archive], check=True,
                               stdout=subprocess.DEVNULL)
            results["tar_x_sync"].append(timed(["tar", "--numeric-owner", "-C", target, "-xf", layer_tar],
                                               then_sync=True))
            results["sha256"].append(hashed(layer_tar))
            # each save writes ``saved``; "docker save -o" (CLI 28) writes a temporary file, fsyncs
            # it and renames it: its peer is the in-process save -o with an fsync of the output
            # (lamina_save_fsync), while "docker save > file" compares with the plain in-process save
            saves: list[tuple[str, list[str], dict[str, str], bool]] = [
                ("tar_c", ["tar", "--numeric-owner", "-C", target, "-cf", saved, "."], dict(os.environ), False),
                ("lamina_save", base + ["save", "-o", saved, "bench:latest"], dict(os.environ), False),
                ("lamina_save_fsync", base + ["save", "-o", saved, "bench:latest"], dict(os.environ), True)]
            saves += [(f"{name}_save_serve", command + ["save"] + (["-o", saved] if name == "lamina" else [])
                       + ["bench:latest"], environment, False) for name, command, environment in clients]
            if docker:
                saves.append(("docker_save_o_serve", [DOCKER, "save", "-o", saved, "bench:latest"],
                               docker_environment, False))
            for repeat in range(args.save_repeats):
                for key, command, environment, fsync in rotated(saves, run * args.save_repeats + repeat):
                    if "-o" in command or command[0] == "tar":
                        results[key].append(timed(command, env=environment, fsync_output=saved if fsync else None))
                    else:
                        with open(saved, "wb") as output:
                            results[key].append(timed(command, env=environment, stdout=output))
                    os.unlink(saved)
            subprocess.run(clients[0][1] + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(base + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["umount", "-R", data_root], stderr=subprocess.DEVNULL)
            stop_server(server, serve_root)
            server = None
            shutil.rmtree(data_root)
            shutil.rmtree(serve_root)
            shutil.rmtree(target)
            print(f"round {run + 1}: " + ", ".join(f"{key} {values[-1]:.3f}" for key, values in results.items()),
                  flush=True)

        load_after = os.getloadavg()
        print("load average after:  {:.2f} {:.2f} {:.2f}".format(*load_after))
        median = {k: statistics.median(v) for k, v in results.items()}
        floors = [a + b for a, b in zip(results["tar_x_sync"], results["sha256"])]
        load_floor = statistics.median(floors)
        save_floor = median["tar_c"]
        print(f"{'measurement':<28}{'median s':>10}{'min s':>10}{'max s':>10}")
        for key, values in results.items():
            print(f"{key:<28}{median[key]:>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
        load_ratio = statistics.median(a / b for a, b in zip(results["lamina_load"], floors))
        save_ratio = paired(results, "lamina_save", "tar_c")
        print(f"load floor (tar -x + sync + sha256) {load_floor:.3f} s; lamina load / floor = "
              f"{load_ratio:.2f}x paired, {median['lamina_load'] / load_floor:.2f}x of medians")
        print(f"save floor (tar -c) {save_floor:.3f} s; lamina save / floor = "
              f"{save_ratio:.2f}x paired, {median['lamina_save'] / save_floor:.2f}x of medians")
        serve_ratios: dict[str, dict[str, float | str]] = {}
        pairs = [(f"{name}_{kind}_serve", f"lamina_{kind}") for name, _, _ in clients for kind in ("load", "save")]
        if docker:
            pairs.append(("docker_save_o_serve", "lamina_save_fsync"))
        for key, reference in pairs:
            serve_ratios[key] = {"paired": paired(results, key, reference),
                                 "of_medians": median[key] / median[reference], "reference": reference}
            print(f"{key + ' / ' + reference:<44}{paired(results, key, reference):.2f}x paired, "
                  f"{median[key] / median[reference]:.2f}x of medians (target <= 1.15x)")
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump({"image": {"layer_bytes": os.path.getsize(layer_tar), "entries": files},
                       "rounds": args.runs, "save_repeats": args.save_repeats, "runs": results, "median": median,
                       "load_floor": load_floor, "load_ratio": load_ratio, "save_ratio": save_ratio,
                       "serve_ratios": serve_ratios,
                       "load_average": {"before": load_before, "after": load_after}},
                      handle, indent=2)
    finally:
        if server is not None:
            stop_server(server, serve_root)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
