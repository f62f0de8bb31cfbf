#!/usr/bin/env python3
"""Benchmark: what ``--userns-remap`` costs a container start, and on disk.

* ``lamina run --rm busybox true`` in-process, with and without ``--userns-remap``,
  interleaved (one of each per round, ``--runs`` rounds after ``--warmup``), median, min and
  max wall time of each and the difference of the medians (target: remap adds at most 10 ms);
* the same with ``--runtime crun`` (the OCI runtime under remap: user namespace in the spec,
  root filesystem bound into the bundle), interleaved likewise;
* the disk cost: bytes the layer storage (``overlay2/``, ``image/``) grew by over the runs
  (each ``--rm`` container's own layers go with it) and new entries of the data root: Docker
  copies every layer chowned into ``<data-root>/<uid>.<gid>/``; with idmapped mounts the
  target is 0 bytes;
* alone, in-process: the user namespace made for the idmapped mounts (one fork) and one
  idmapped layer (the wall-clock rows are noisy on a shared machine);
* the chowned-copy fallback (``--userns-remap-layers copy``, what ``auto`` uses where
  idmapped mounts are missing), on the same data root after the rows above: the first
  ``run --rm busybox true``, which copies the image's layer, then rounds of it interleaved
  with the idmapped runs (each run still copies its container's small init layer), the
  bytes the copies take under ``<data-root>/<uid>.<gid>/``, and in-process the copy of the
  busybox layer alone.  The targets above are for idmapped mounts; these figures are what
  the fallback costs.

The remap user is made for the run (``useradd --system``, a 65536-id range in /etc/subuid and
/etc/subgid after every range already there) and removed at the end, with its ranges.  The
data root and exec root live in a fresh temporary directory.  Figures are printed and written
to ``bench/results/userns.json``.  Run as root: ``.venv/bin/python bench/userns.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAMINA = os.path.join(ROOT, ".venv", "bin", "lamina")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "busybox-docker-archive.tar")
RANGE = 65536


def make_user() -> str:
    name = "lmtb" + secrets.token_hex(4)
    sys.path.insert(0, ROOT)
    from lamina.idmap import next_free_start

    start = max(next_free_start("/etc/subuid", RANGE), next_free_start("/etc/subgid", RANGE))
    end = start + RANGE - 1
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
                   check=True, capture_output=True)
    subprocess.run(["usermod", "--add-subuids", f"{start}-{end}", "--add-subgids", f"{start}-{end}", name],
                   check=True, capture_output=True)
    return name


def remove_user(name: str) -> None:
    for path, option in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                parts = line.strip().split(":")
                if parts[0] == name:
                    start, count = int(parts[1]), int(parts[2])
                    subprocess.run(["usermod", option, f"{start}-{start + count - 1}", name], capture_output=True,
                                   check=False)
    subprocess.run(["userdel", name], capture_output=True, check=False)


def disk_bytes(path: str) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:
                pass
        try:
            total += os.lstat(directory).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def layer_bytes(data_root: str) -> int:
    """Bytes under the layer storage (``overlay2/``, ``image/``): where Docker's remap copies go;
    the events log and the containers' logs grow with every run either way."""
    return sum(disk_bytes(os.path.join(data_root, name)) for name in ("overlay2", "image"))


def run_once(environment: dict[str, str], runtime: str = "") -> float:
    started = time.perf_counter()
    result = subprocess.run([LAMINA, "run", "--rm", *(["--runtime", runtime] if runtime else []), "busybox", "true"],
                            env=environment, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"lamina run failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
    return elapsed


def components(user: str, rounds: int = 30) -> dict[str, float]:
    """In-process medians (ms) of what remap adds to a start, measured alone: the user
    namespace descriptor for the idmapped mounts (one fork), and one idmapped clone of a layer
    directory (open_tree + mount_setattr)."""
    sys.path.insert(0, ROOT)
    from lamina import idmap

    _, _, mapping = idmap.resolve_remap(user)
    fork_times, clone_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        namespace = idmap._new_userns_fd(mapping)  # not the process's cached one: the first start's cost
        fork_times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        os.close(idmap.idmapped_tree(HERE, namespace))
        clone_times.append((time.perf_counter() - started) * 1000)
        os.close(namespace)
    return {"user namespace for the mounts (median, ms)": round(statistics.median(fork_times), 2),
            "one idmapped layer (median, ms)": round(statistics.median(clone_times), 3)}


def in_process(work: str, user: str, rounds: int, realtime: bool) -> dict[str, object]:
    """The same start without the CLI's interpreter and request path: an overlay root mounted
    (idmapped lower layer or not), ``NativeRuntime.start`` of ``true``, its exit reaped, the
    cgroup and the mount released; interleaved, medians in ms."""
    sys.path.insert(0, ROOT)
    from lamina import idmap
    from lamina import mount as lmount
    from lamina.runtime.api import ContainerSpec, ProcessSpec, Stdio
    from lamina.runtime.native import NativeRuntime

    _, _, mapping = idmap.resolve_remap(user)
    lower = os.path.join(work, "lower")
    os.makedirs(lower)
    subprocess.run(f"tar -xOf {FIXTURE} --wildcards '*/layer.tar' | tar -x -C {lower}", shell=True, check=True)
    runtime = NativeRuntime(seccomp_cache=os.path.join(work, "seccomp"))
    triples = tuple((item.container_id, item.host_id, item.size) for item in mapping.uid_maps)
    gid_triples = tuple((item.container_id, item.host_id, item.size) for item in mapping.gid_maps)
    null = os.open("/dev/null", os.O_RDWR)
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for attempt in range(rounds + 2):
            for remapped in ((False, True) if attempt % 2 == 0 else (True, False)):
                layer = os.path.join(work, f"c{attempt}{int(remapped)}")
                for name in ("upper", "work", "merged"):
                    os.makedirs(os.path.join(layer, name))
                if remapped:
                    os.chown(os.path.join(layer, "upper"), *mapping.root_pair())
                started = time.perf_counter()
                lmount.Mount("overlay", "overlay", (f"lowerdir={lower}", f"upperdir={layer}/upper",
                                                    f"workdir={layer}/work"),
                             idmap=mapping if remapped else None).mount(f"{layer}/merged")
                spec = ContainerSpec(id=secrets.token_hex(32), rootfs=f"{layer}/merged",
                                     process=ProcessSpec(args=("/bin/true",)), network="none",
                                     namespaces=frozenset({"pid", "mount", "uts", "ipc", "network", "cgroup"}
                                                          | ({"user"} if remapped else set())),
                                     uid_mappings=triples if remapped else (),
                                     gid_mappings=gid_triples if remapped else ())
                state = runtime.start(spec, Stdio(null, null, null))
                os.waitpid(state.pid, 0)
                runtime.delete(state, force=True)
                lmount.unmount(f"{layer}/merged")
                if attempt >= 2:
                    times[remapped].append((time.perf_counter() - started) * 1000)
    finally:
        os.close(null)
    plain, remap = statistics.median(times[False]), statistics.median(times[True])
    suffix = ""
    return {f"in-process start of true{suffix} (median, ms)": round(plain, 2),
            f"in-process start of true, remapped{suffix} (median, ms)": round(remap, 2),
            f"remap adds in-process{suffix} (median, ms)": round(remap - plain, 2),
            # the least loaded runs: the closest to an idle machine
            "in-process start of true (min, ms)": round(min(times[False]), 2),
            "in-process start of true, remapped (min, ms)": round(min(times[True]), 2),
            "remap adds in-process (min, ms)": round(min(times[True]) - min(times[False]), 2)}


def copy_layer_alone(data_root: str, user: str, rounds: int = 10) -> dict[str, float]:
    """In-process median (ms) of making the chowned copy of the busybox image's layer alone
    (copy, sync, rename), in a scratch remap root removed after each round."""
    sys.path.insert(0, ROOT)
    from lamina import idmap
    from lamina.graphdriver.remapcopy import RemapCopies

    _, _, mapping = idmap.resolve_remap(user)
    layers = [name for name in os.listdir(os.path.join(data_root, "overlay2"))
              if len(name) == 64 and not os.path.exists(os.path.join(data_root, "overlay2", name, "lower"))]
    source = os.path.join(data_root, "overlay2", layers[0])
    with open(os.path.join(source, "link"), encoding="ascii") as handle:
        short_id = handle.read().strip()
    # what every container adds: its init layer's copy (the placeholders of layer/mounts.py)
    init = tempfile.mkdtemp(prefix="init-", dir=data_root)
    for directory in ("dev/pts", "dev/shm", "proc", "sys", "etc"):
        os.makedirs(os.path.join(init, directory))
    for name in ("etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"):
        open(os.path.join(init, name), "w").close()
    os.symlink("/proc/mounts", os.path.join(init, "etc", "mtab"))
    times: dict[str, list[float]] = {"layer": [], "init": []}
    try:
        for _ in range(rounds):
            for kind, id, tree in (("layer", layers[0], os.path.join(source, "diff")), ("init", "0" * 64, init)):
                scratch = tempfile.mkdtemp(prefix="copy-", dir=data_root)
                try:
                    started = time.perf_counter()
                    RemapCopies(os.path.join(scratch, "overlay2")).ensure(id, tree, short_id, mapping)
                    times[kind].append((time.perf_counter() - started) * 1000)
                finally:
                    shutil.rmtree(scratch)
    finally:
        shutil.rmtree(init)
    return {"copy mode: the busybox layer's copy alone, in-process (median, ms)":
            round(statistics.median(times["layer"]), 2),
            "copy mode: a container's init layer copy alone, in-process (median, ms)":
            round(statistics.median(times["init"]), 2)}


def copy_mode(data_root: str, remapped: dict[str, str], user: str, runs: int) -> dict[str, object]:
    """The chowned-copy fallback's figures (see the module docstring)."""
    copying = dict(remapped, LAMINA_USERNS_REMAP_LAYERS="copy")
    first = run_once(copying)
    idmapped: list[float] = []
    copied: list[float] = []
    for attempt in range(runs):
        order = ((idmapped, remapped), (copied, copying))
        for target, environment in (order if attempt % 2 == 0 else order[::-1]):
            target.append(run_once(environment))
    roots = [name for name in os.listdir(data_root) if name.replace(".", "").isdigit() and "." in name]
    return {
        "copy mode: first run --rm busybox true, copying the layer (ms)": round(first, 2),
        "copy mode: run --rm busybox true once copied": summary(copied),
        "copy mode: run --rm busybox true with idmapped mounts, interleaved": summary(idmapped),
        "copy mode adds over idmapped mounts (median, ms)": round(statistics.median(copied)
                                                                  - statistics.median(idmapped), 2),
        "copy mode: bytes of the layer copies on disk (<data-root>/<uid>.<gid>/)":
            sum(disk_bytes(os.path.join(data_root, name)) for name in roots),
        "copy mode: bytes of the image's layers on disk (overlay2/, for comparison)":
            sum(disk_bytes(os.path.join(data_root, "overlay2", name, "diff"))
                for name in os.listdir(os.path.join(data_root, "overlay2")) if len(name) == 64),
        **copy_layer_alone(data_root, user),
    }


def crun_case(base: dict[str, str], remapped: dict[str, str], warmup: int, runs: int) -> dict[str, object]:
    """``run --rm --runtime crun busybox true`` with and without ``--userns-remap``,
    interleaved as above: under remap crun gets the user namespace in its spec and the root
    filesystem bound into its bundle (lamina.runtime.oci_userns)."""
    if shutil.which("crun") is None:
        return {"run --rm --runtime crun busybox true": "crun is not installed"}
    plain: list[float] = []
    remap: list[float] = []
    for attempt in range(warmup + runs):
        order = ((base, plain), (remapped, remap)) if attempt % 2 == 0 else ((remapped, remap), (base, plain))
        for environment, target in order:
            elapsed = run_once(environment, "crun")
            if attempt >= warmup:
                target.append(elapsed)
    return {"run --rm --runtime crun busybox true": summary(plain),
            "run --rm --runtime crun busybox true (--userns-remap)": summary(remap),
            "crun: remap adds (median, ms)": round(statistics.median(remap) - statistics.median(plain), 2),
            "crun: remap adds (min, ms)": round(min(remap) - min(plain), 2)}


def summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--priority", dest="realtime", action="store_true",
                        help="run everything at nice -20 (a machine shared with other load; SCHED_FIFO "
                             "would be refused by the cpu cgroup of a v1 host)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/userns.py needs root", file=sys.stderr)
        return 1
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "lamina")], check=False)
    if args.realtime:
        os.setpriority(os.PRIO_PROCESS, 0, -20)  # inherited by every process the benchmark starts
    work = tempfile.mkdtemp(prefix="lub-", dir="/tmp")
    os.chmod(work, 0o711)  # an OCI runtime under remap goes through it as the remapped root
    user = make_user()
    base = dict(os.environ, LAMINA_DATA_ROOT=os.path.join(work, "data"), LAMINA_EXEC_ROOT=os.path.join(work, "run"),
                PYTHONPATH=ROOT)
    for name in ("LAMINA_HOST", "DOCKER_HOST", "LAMINA_USERNS_REMAP", "LAMINA_USERNS_REMAP_LAYERS"):
        base.pop(name, None)
    remapped = dict(base, LAMINA_USERNS_REMAP=user)
    try:
        subprocess.run([LAMINA, "load", "-i", FIXTURE], env=base, check=True, capture_output=True)
        data_root = base["LAMINA_DATA_ROOT"]
        plain: list[float] = []
        remap: list[float] = []
        before, entries = 0, set()
        for attempt in range(args.warmup + args.runs):
            if attempt == args.warmup:
                # after both kinds ran once: the stores, the network and the probe exist
                before, entries = layer_bytes(data_root), set(os.listdir(data_root))
            first, second = (plain, remap) if attempt % 2 == 0 else (remap, plain)
            times = {id(plain): 0.0, id(remap): 0.0}
            for target in (first, second):
                times[id(target)] = run_once(base if target is plain else remapped)
            if attempt >= args.warmup:
                plain.append(times[id(plain)])
                remap.append(times[id(remap)])
        after = layer_bytes(data_root)
        crun_results = crun_case(base, remapped, args.warmup, args.runs)
        results = {
            "run --rm busybox true": summary(plain),
            "run --rm busybox true (--userns-remap)": summary(remap),
            "remap adds (median, ms)": round(statistics.median(remap) - statistics.median(plain), 2),
            "remap adds (min, ms)": round(min(remap) - min(plain), 2),
            **crun_results,
            **components(user),
            **in_process(work, user, args.runs, args.realtime),
            "layer storage growth over the runs (bytes, overlay2/ and image/)": after - before,
            "new entries in the data root": sorted(set(os.listdir(data_root)) - entries),
            **copy_mode(data_root, remapped, user, args.runs),
            "runs": args.runs,
            "nice": -20 if args.realtime else 0,
        }
    finally:
        subprocess.run([LAMINA, "system", "prune", "-f"], env=base, capture_output=True, check=False)
        remove_user(user)
        # the default bridge outlives its containers, as docker0 does: taken down with the data root
        sys.path.insert(0, ROOT)
        from lamina.network.run import RunNetwork

        RunNetwork(base["LAMINA_DATA_ROOT"], base["LAMINA_EXEC_ROOT"]).remove_bridges()
        subprocess.run(["umount", "-R", "-l", work], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "userns.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
