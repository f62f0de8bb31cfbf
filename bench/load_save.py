#!/usr/bin/env python3
"""Benchmark: `lamina load` / `lamina save` of a ~200 MiB image against GNU tar.

Floors (the same work done by standard tools):
  load  >= `tar -x` of the layer into an empty directory + sha256 of the layer tar with
           Python's ``hashlib`` (what the engine uses; ``sha256sum`` is several times slower
           here and flattered the ratio)
  save  >= `tar -c` of the extracted tree to a file

The same load and save also go through a ``lamina serve`` on its own data root, with lamina's
client (``lamina -H unix://...``) and, when installed, the docker CLI (``DOCKER_HOST``): the
``*_serve`` rows and their ratio to the in-process commands (target <= 1.15x).

Each measurement runs --runs times (default 5) on a fresh data root with warm caches (save and
`tar -c` alternate --save-repeats times per run, after the load); the median and the ratio to
the floor are printed, and the raw figures written to
bench/results/load_save.json.  Run as root: `make bench` or `.venv/bin/python bench/load_save.py`.
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
    """Seconds taken to hash ``path`` with :func:`sha256_of` (after a sync, as :func:`timed`)."""
    subprocess.run(["sync"], check=True)
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


def timed(command: list[str] | str, **kwargs: object) -> float:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - start


def start_server(work: str, storage_driver: str) -> tuple[subprocess.Popen[bytes], str]:
    """A ``lamina serve`` on its own data root, answering ``/_ping``; and its host."""
    socket_path = os.path.join(work, "serve.sock")
    log = open(os.path.join(work, "serve.log"), "wb")  # noqa: SIM115 - the server writes it until the end
    server = subprocess.Popen([LAMINA, "--data-root", os.path.join(work, "serve-root"), "--storage-driver",
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


def stop_server(server: subprocess.Popen[bytes], work: str) -> None:
    server.send_signal(2)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    subprocess.run(["umount", "-R", os.path.join(work, "serve-root")], stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--save-repeats", type=int, default=3,
                        help="save and tar -c measurements per run (alternating)")
    parser.add_argument("--small-files", type=int, default=4000)
    parser.add_argument("--large-files", type=int, default=8)
    parser.add_argument("--large-size", type=int, default=16 << 20)
    parser.add_argument("--storage-driver", default="overlay2")
    parser.add_argument("--workdir", default=None, help="where to build (default: a temp dir under /var/tmp)")
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
              f"{content / 2**20:.1f} MiB of content; {args.runs} runs each")
        # the machine may be shared: the load average before and after says how much to trust
        load_before = os.getloadavg()
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*load_before))

        results: dict[str, list[float]] = {"tar_x": [], "sha256": [], "tar_c": [], "lamina_load": [],
                                           "lamina_save": [], "lamina_load_serve": [], "lamina_save_serve": []}
        docker = os.access(DOCKER, os.X_OK)
        if docker:
            results.update({"docker_load_serve": [], "docker_save_serve": []})
        server, host = start_server(work, args.storage_driver)
        docker_environment = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": os.path.join(work, "docker-config")}
        remote = [LAMINA, "-H", host]
        clients = [("lamina", remote, os.environ)]
        if docker:
            clients.append(("docker", [DOCKER], docker_environment))
        for run in range(args.runs):
            target = os.path.join(work, f"x{run}")
            os.makedirs(target)
            results["tar_x"].append(timed(["tar", "--numeric-owner", "-C", target, "-xf", layer_tar]))
            results["sha256"].append(hashed(layer_tar))

            data_root = os.path.join(work, f"root{run}")
            base = [LAMINA, "--data-root", data_root, "--storage-driver", args.storage_driver]
            results["lamina_load"].append(timed(base + ["load", "-q", "-i", archive], stdout=subprocess.DEVNULL))
            # save and its floor alternate, each writing a new file after a sync, so both see
            # the same page cache and writeback state
            for _ in range(args.save_repeats):
                for key, command in (("tar_c", ["tar", "--numeric-owner", "-C", target, "-cf",
                                                os.path.join(work, "c.tar"), "."]),
                                     ("lamina_save", base + ["save", "-o", os.path.join(work, "saved.tar"),
                                                             "bench:latest"])):
                    results[key].append(timed(command))
                    os.unlink(command[-2])  # the output file
            subprocess.run(base + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL)
            # through lamina serve: each client loads, saves (alternating with the in-process
            # save of the same image, loaded again) and removes the image
            subprocess.run(base + ["load", "-q", "-i", archive], check=True, stdout=subprocess.DEVNULL)
            for name, command, environment in clients if run % 2 == 0 else clients[::-1]:  # either first
                results[f"{name}_load_serve"].append(timed(command + ["load", "-q", "-i", archive],
                                                           stdout=subprocess.DEVNULL, env=environment))
                for _ in range(args.save_repeats):
                    for key, save, save_environment in (
                            (f"{name}_save_serve", command, environment), ("lamina_save", base, os.environ)):
                        output = os.path.join(work, "saved.tar")
                        results[key].append(timed(save + ["save", "-o", output, "bench:latest"],
                                                  env=save_environment))
                        os.unlink(output)
                subprocess.run(command + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL,
                               env=environment)
            subprocess.run(base + ["rmi", "bench:latest"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["umount", "-R", data_root], stderr=subprocess.DEVNULL)
            shutil.rmtree(data_root)
            shutil.rmtree(target)

        load_after = os.getloadavg()
        print("load average after:  {:.2f} {:.2f} {:.2f}".format(*load_after))
        median = {k: statistics.median(v) for k, v in results.items()}
        load_floor = median["tar_x"] + median["sha256"]
        save_floor = median["tar_c"]
        print(f"{'measurement':<28}{'median s':>10}")
        for key, value in median.items():
            print(f"{key:<28}{value:>10.3f}")
        print(f"load floor (tar -x + sha256){load_floor:>10.3f}   lamina load / floor = "
              f"{median['lamina_load'] / load_floor:.2f}x (target <= 1.2x)")
        print(f"save floor (tar -c)         {save_floor:>10.3f}   lamina save / floor = "
              f"{median['lamina_save'] / save_floor:.2f}x (target <= 1.2x)")
        serve_ratios = {f"{name}_{kind}_serve": median[f"{name}_{kind}_serve"] / median[f"lamina_{kind}"]
                        for name, _, _ in clients for kind in ("load", "save")}
        for key, ratio in serve_ratios.items():
            print(f"{key + ' / in-process':<40}{ratio:.2f}x (target <= 1.15x)")
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "load_save.json"), "w") as handle:
            json.dump({"runs": results, "median": median, "load_ratio": median["lamina_load"] / load_floor,
                       "save_ratio": median["lamina_save"] / save_floor, "serve_ratios": serve_ratios,
                       "load_average": {"before": load_before, "after": load_after}},
                      handle, indent=2)
    finally:
        if server is not None:
            stop_server(server, work)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
