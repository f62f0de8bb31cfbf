#!/usr/bin/env python3
"""Benchmark: ``lamina pull`` / ``lamina push`` of a ~200 MiB, 4-layer gzip image against
``skopeo copy`` of the same image between the same local registry and an archive.

The image (4 layers: many small files, a few large half-compressible ones) is written as a
``docker save`` archive, then pushed by skopeo (gzip layers) to Debian's ``docker-registry``
on 127.0.0.1 (plain HTTP, its own storage directory).  Measured, each ``--runs`` times
(default 3), the median printed and written to ``bench/results/registry.json``:

* pull: ``lamina pull`` into a fresh data root (download, verify, decompress, extract, commit)
  vs ``skopeo copy docker://... docker-archive:...`` and ``... oci:...`` (download and write
  the blobs; skopeo extracts nothing, so it does less than a pull);
* push: ``lamina push`` of the loaded image to a fresh registry (tar reassembly, gzip, upload;
  no distribution metadata, so every layer is compressed) vs ``skopeo copy
  docker-archive:... docker://...`` to a fresh registry (gzip of the archive's layers, upload).

Target (issue 12): pull <= 1.2x skopeo, push <= 1.2x skopeo.  Run as root:
``.venv/bin/python bench/registry.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
sys.path.insert(0, os.path.join(ROOT, "tests"))

from registry.conftest import RegistryProcess  # noqa: E402 - the tests' registry fixture


def _layer(rng: random.Random, index: int, size: int) -> bytes:
    """A layer tar of about ``size`` bytes: small files and a few large ones, half compressible."""
    buffer = io.BytesIO()
    block = rng.randbytes(1 << 20)
    written = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        number = 0
        while written < size:
            large = number % 40 == 0
            length = rng.randint(4 << 20, 12 << 20) if large else rng.randint(200, 48 << 10)
            if large:
                data = b"".join(block[rng.randint(0, 1 << 19):][: 1 << 16] + bytes(1 << 16)
                                for _ in range(length >> 17))
            else:
                offset = rng.randint(0, len(block) - length)
                data = block[offset:offset + length]
            info = tarfile.TarInfo(f"layer{index}/d{number % 50}/f{number}.bin")
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
            written += len(data)
            number += 1
    return buffer.getvalue()


def make_archive(path: str, total: int, layers: int) -> None:
    rng = random.Random(12)
    blobs = [_layer(rng, index, total // layers) for index in range(layers)]
    diff_ids = ["sha256:" + hashlib.sha256(blob).hexdigest() for blob in blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"{index}/layer.tar" for index in range(layers)]
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["bench:latest"], "Layers": names}]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in [*zip(names, blobs), (config_name, config), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def timed(command: list[str], before=None) -> float:
    if before is not None:
        before()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def median(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lamina-bench-registry-")
    registries: list[RegistryProcess] = []

    def new_registry() -> RegistryProcess:
        registry = RegistryProcess(os.path.join(work, f"registry{len(registries)}"))
        registries.append(registry)
        registry.start()
        return registry

    environment = {**os.environ, "HOME": os.path.join(work, "home")}
    data_root = os.path.join(work, "root")
    try:
        archive = os.path.join(work, "bench.tar")
        make_archive(archive, args.size_mib << 20, args.layers)
        source = new_registry()
        image = f"{source.host}/bench:latest"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{image}"],
                       check=True, capture_output=True)
        lamina = [LAMINA, "--data-root", data_root]

        def fresh_root() -> None:
            subprocess.run(["umount", "-R", data_root], capture_output=True)
            shutil.rmtree(data_root, ignore_errors=True)

        def fresh_target() -> None:
            shutil.rmtree(os.path.join(work, "oci"), ignore_errors=True)
            if os.path.exists(os.path.join(work, "out.tar")):
                os.unlink(os.path.join(work, "out.tar"))

        results: dict[str, list[float]] = {key: [] for key in (
            "lamina pull", "skopeo copy registry->docker-archive", "skopeo copy registry->oci",
            "lamina push", "skopeo copy docker-archive->registry")}
        subprocess.run(["skopeo", "--version"], check=True, capture_output=True)
        for _ in range(args.runs):
            results["lamina pull"].append(timed([*lamina, "pull", "-q", image], fresh_root))
            results["skopeo copy registry->docker-archive"].append(timed(
                ["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}",
                 f"docker-archive:{work}/out.tar:bench:latest"], fresh_target))
            results["skopeo copy registry->oci"].append(timed(
                ["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}", f"oci:{work}/oci:bench"],
                fresh_target))
        for _ in range(args.runs):
            target = new_registry()
            pushed = f"{target.host}/pushed:latest"
            subprocess.run([*lamina, "tag", image, pushed], check=True, capture_output=True)
            shutil.rmtree(os.path.join(data_root, "image", os.listdir(os.path.join(data_root, "image"))[0],
                                       "distribution"), ignore_errors=True)
            results["lamina push"].append(timed([*lamina, "push", "-q", pushed]))
            target.stop()
            other = new_registry()
            results["skopeo copy docker-archive->registry"].append(timed(
                ["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                 f"docker://{other.host}/pushed:latest"]))
            other.stop()
        summary = {name: median(times) for name, times in results.items()}
        summary["ratios"] = {
            "pull / skopeo registry->docker-archive": round(
                summary["lamina pull"]["median_s"] / summary["skopeo copy registry->docker-archive"]["median_s"], 2),
            "pull / skopeo registry->oci": round(
                summary["lamina pull"]["median_s"] / summary["skopeo copy registry->oci"]["median_s"], 2),
            "push / skopeo docker-archive->registry": round(
                summary["lamina push"]["median_s"] / summary["skopeo copy docker-archive->registry"]["median_s"], 2),
        }
        summary["image"] = {"size_mib": args.size_mib, "layers": args.layers,
                            "archive_bytes": os.path.getsize(archive)}
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "registry.json"), "w") as handle:
            json.dump(summary, handle, indent=2)
        print(json.dumps(summary, indent=2))
    finally:
        for registry in registries:
            registry.stop()
        subprocess.run(["umount", "-R", data_root], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
