#!/usr/bin/env python3
"""Benchmark: what a network endpoint adds to ``lamina run --rm busybox true``.

On a fresh data root holding busybox, the whole ``lamina run --rm busybox true`` command's wall
time (interpreter start-up included), median of ``--runs`` runs (default 10) after one warm-up,
the cases interleaved (one run of each per round), for: ``--network none``; the default bridge
(``lamina<hash>`` device, kept up between runs as docker0 is, netavark set-up and tear-down of
one veth endpoint); a user-defined network (same, plus aardvark-dns entries); a user-defined
network with ``-p 127.0.0.1::80`` (DNAT rules).  The ``*_added_ms`` figures are
the medians minus the ``none`` median, ``*_added_ms_paired`` the median of the differences
within each round (steadier when other processes load the machine); the target is that a
bridge endpoint adds at most 30 ms.  Also measured: netavark ``setup`` + ``teardown`` alone on a namespace of our own (the
floor a netavark-based data plane cannot go under), with the bridge created and deleted by each
pair and with it kept up.  Figures go to
``bench/results/network.json``.  Run as root: ``.venv/bin/python bench/network.py``.
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


def interleaved(commands: dict[str, list[str]], environment: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each command once per round (after one warm-up each), the order rotated every round, so a
    load change on the machine falls on every case alike."""
    for command in commands.values():
        subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)  # warm-up
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            subprocess.run(commands[name], env=environment, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs": len(times)}


def netavark_alone(runs: int, workdir: str, *, keep_bridge: bool) -> list[float]:
    """``setup`` + ``teardown`` of one endpoint; ``keep_bridge``: with the bridge kept up by
    lamina's anchor (lamina.network.bridges), else created and deleted by every pair."""
    sys.path.insert(0, ROOT)
    if keep_bridge:
        try:
            from lamina.network import bridges
        except ImportError:  # a lamina from before the bridge was kept
            return []
    from lamina.network.api import Network
    from lamina.network.netavark import Netavark
    from lamina.network.namespace import create, remove

    path = os.path.join(workdir, "bench-netns")
    create(path)
    request = {
        "container_id": "b" * 64, "container_name": "bench", "port_mappings": [],
        "networks": {"benchnet": {"static_ips": ["10.249.77.2"], "aliases": [], "interface_name": "eth0"}},
        "network_info": {"benchnet": {
            "name": "benchnet", "id": "c" * 64, "driver": "bridge", "network_interface": "lbench0",
            "subnets": [{"subnet": "10.249.77.0/24", "gateway": "10.249.77.1"}], "ipv6_enabled": False,
            "internal": False, "dns_enabled": False, "ipam_options": {"driver": "host-local"},
            "options": {"isolate": "true"}}}}
    dataplane = Netavark(config_dir=os.path.join(workdir, "netavark"))
    times = []
    network = Network(Id="c" * 64, Name="benchnet", Created="", Subnet="10.249.77.0/24", Gateway="10.249.77.1",
                      BridgeName="lbench0")
    try:
        if keep_bridge:
            dataplane.setup(path, request)
            bridges.keep("lbench0", workdir, workdir)
            dataplane.teardown(path, request)
        for _ in range(runs):
            start = time.perf_counter()
            dataplane.setup(path, request)
            dataplane.teardown(path, request)
            times.append(time.perf_counter() - start)
    finally:
        remove(path)
        if keep_bridge:
            bridges.remove(network, dataplane, os.path.join(workdir, "bench-netns-removal"))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    compileall.compile_dir(os.path.join(ROOT, "lamina"), quiet=1)
    workdir = tempfile.mkdtemp(prefix="lamina-bench-network-")
    environment = dict(os.environ, PYTHONPATH=ROOT, LAMINA_DATA_ROOT=os.path.join(workdir, "data"),
                       LAMINA_EXEC_ROOT=os.path.join(workdir, "run"))
    results: dict[str, object] = {}
    try:
        subprocess.run([LAMINA, "load", "-q", "-i", BUSYBOX], env=environment, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([LAMINA, "network", "create", "--subnet", "10.249.78.0/24", "-o",
                        "com.docker.network.bridge.name=lbenchuser0", "benchuser"], env=environment, check=True,
                       stdout=subprocess.DEVNULL)
        cases = {
            "none": ["--network", "none"],
            "default_bridge": [],
            "user_network": ["--network", "benchuser"],
            "user_network_publish": ["--network", "benchuser", "-p", "127.0.0.1::80"],
        }
        commands = {name: [LAMINA, "run", "--rm", *flags, "busybox", "true"] for name, flags in cases.items()}
        all_times = interleaved(commands, environment, args.runs)
        for name, times in all_times.items():
            results[name] = summary(times)
            print(name, results[name], flush=True)
        none = results["none"]["median_s"]  # type: ignore[index]
        for name in ("default_bridge", "user_network", "user_network_publish"):
            results[f"{name}_added_ms"] = round((results[name]["median_s"] - none) * 1000, 1)  # type: ignore[index]
            # the same difference taken within each round, then its median: steadier on a loaded machine
            paired = [case - base for case, base in zip(all_times[name], all_times["none"])]
            results[f"{name}_added_ms_paired"] = round(statistics.median(paired) * 1000, 1)
        results["netavark_setup_teardown"] = summary(netavark_alone(args.runs, workdir, keep_bridge=False))
        print("netavark alone", results["netavark_setup_teardown"])
        kept = netavark_alone(args.runs, workdir, keep_bridge=True)
        if kept:
            results["netavark_setup_teardown_bridge_kept"] = summary(kept)
            print("netavark alone, bridge kept", results["netavark_setup_teardown_bridge_kept"])
    finally:
        subprocess.run([LAMINA, "network", "rm", "benchuser"], env=environment, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the default bridge outlives the runs, as docker0 does: taken down with the data root
        subprocess.run([sys.executable, "-c", "import sys; from lamina.network.run import RunNetwork; "
                        "RunNetwork(sys.argv[1], sys.argv[2]).remove_bridges()",
                        environment["LAMINA_DATA_ROOT"], environment["LAMINA_EXEC_ROOT"]], env=environment, check=False)
        subprocess.run(["umount", "-R", workdir], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "network.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
