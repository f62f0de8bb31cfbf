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
pair and with it kept up; and one endpoint's sandbox set-up (``attach``: namespace, record,
plumbing) and teardown (``detach``) alone on a user network with DNS whose bridge exists, plumbed
by netavark and by the CNI bridge plugin (``lamina.network.cni``), interleaved, under a host
lock of its own (the ``lamina run`` cases share the host-wide network lock with every engine on
the machine: other test suites' set-ups stand in their figures).  ``--baseline
TREE`` runs every ``lamina run`` case also with another lamina source tree (``/work/main``:
before a change), in a data root of its own, interleaved with this tree's runs so that both see
the same load (``baseline_*`` figures).  Figures go to ``bench/results/network.json``.  Run as
root: ``.venv/bin/python bench/network.py``.
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


def interleaved(commands: dict[str, tuple[list[str], dict[str, str]]], runs: int) -> dict[str, list[float]]:
    """Each command (argv, environment) once per round (after one warm-up each), the order
    rotated every round, so a load change on the machine falls on every case alike."""
    for command, environment in commands.values():
        subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)  # warm-up
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            command, environment = commands[name]
            start = time.perf_counter()
            subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)
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
            bridges.keep(network, workdir, workdir)
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


def endpoint_alone(runs: int, workdir: str) -> dict[str, list[float]]:
    """``attach`` and ``detach`` of one sandbox with one endpoint on a user network with DNS
    that already has an endpoint (its bridge, anchor, rules and aardvark-dns exist), by
    netavark and by the CNI bridge plugin, interleaved, under a host lock of the bench's own."""
    sys.path.insert(0, ROOT)
    try:
        from lamina.network.cni import CniBridge
    except ImportError:  # a lamina from before the CNI plumbing
        return {}
    from lamina.network.create import create_network
    from lamina.network.netavark import Netavark
    from lamina.network.sandbox import EndpointRequest, Sandboxes
    from lamina.network.store import NetworkStore

    store = NetworkStore(os.path.join(workdir, "alone", "network"))
    config_dir = os.path.join(workdir, "alone", "run", "network")
    netns_dir = os.path.join(workdir, "alone", "run", "netns")
    # a host lock of its own: other engines' set-ups on the machine (test suites) do not stand in
    # these figures; the bench's network is its own, nobody else's set-up touches it
    lock = os.path.join(workdir, "alone", "host.lock")
    planes = {"netavark": Sandboxes(store, Netavark(config_dir=config_dir), netns_dir=netns_dir, host_lock=lock),
              "cni_bridge": Sandboxes(store, Netavark(config_dir=config_dir), netns_dir=netns_dir, host_lock=lock,
                                      endpoint_plane=CniBridge(config_dir=config_dir))}
    create_network(store, "benchalone", subnet="10.249.76.0/24",
                   options={"com.docker.network.bridge.name": "lbenchalone0"})
    times: dict[str, list[float]] = {f"{name}_{step}": [] for name in planes for step in ("attach", "detach")}
    first = "a" * 64
    try:
        planes["netavark"].attach(first, name="first", endpoints=[EndpointRequest("benchalone")])
        for round_number in range(runs + 1):
            for name, sandboxes in planes.items():
                start = time.perf_counter()
                record = sandboxes.attach("b" * 64, name="bench", endpoints=[EndpointRequest("benchalone")])
                attached = time.perf_counter()
                sandboxes.detach("b" * 64)
                if round_number:  # the first round warms up
                    times[f"{name}_attach"].append(attached - start)
                    times[f"{name}_detach"].append(time.perf_counter() - attached)
                expected = "cni-bridge" if name == "cni_bridge" else "netavark"
                assert record["Endpoints"]["benchalone"]["Plumbing"] == expected, record
    finally:
        for container_id in list(store.sandboxes()):
            planes["netavark"].detach(container_id)
        planes["netavark"].remove_network(store.get("benchalone"))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", metavar="TREE", help="another lamina source tree to run the same cases with")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="lamina-bench-network-")
    trees = {"": (ROOT, "data", "run", "10.249.78.0/24", "lbenchuser0")}
    if args.baseline:
        trees["baseline_"] = (os.path.abspath(args.baseline), "baseline-data", "baseline-run", "10.249.79.0/24",
                              "lbenchuser1")
    environments = {}
    for prefix, (tree, data, run, _, _) in trees.items():
        compileall.compile_dir(os.path.join(tree, "lamina"), quiet=1)
        environments[prefix] = dict(os.environ, PYTHONPATH=tree, LAMINA_DATA_ROOT=os.path.join(workdir, data),
                                    LAMINA_EXEC_ROOT=os.path.join(workdir, run))
    results: dict[str, object] = {"load_average_before": list(os.getloadavg())}
    try:
        cases = {
            "none": ["--network", "none"],
            "default_bridge": [],
            "user_network": ["--network", "benchuser"],
            "user_network_publish": ["--network", "benchuser", "-p", "127.0.0.1::80"],
        }
        commands = {}
        for prefix, (_, _, _, subnet, bridge) in trees.items():
            subprocess.run([LAMINA, "load", "-q", "-i", BUSYBOX], env=environments[prefix], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run([LAMINA, "network", "create", "--subnet", subnet, "-o",
                            f"com.docker.network.bridge.name={bridge}", "benchuser"], env=environments[prefix],
                           check=True, stdout=subprocess.DEVNULL)
            commands.update({prefix + name: ([LAMINA, "run", "--rm", *flags, "busybox", "true"], environments[prefix])
                             for name, flags in cases.items()})
        all_times = interleaved(commands, args.runs)
        for name, times in all_times.items():
            results[name] = summary(times)
            print(name, results[name], flush=True)
        for prefix in trees:
            none = results[prefix + "none"]["median_s"]  # type: ignore[index]
            for name in ("default_bridge", "user_network", "user_network_publish"):
                key = prefix + name
                results[f"{key}_added_ms"] = round((results[key]["median_s"] - none) * 1000, 1)  # type: ignore[index]
                # the same difference taken within each round, then its median: steadier on a loaded machine
                paired = [case - base for case, base in zip(all_times[key], all_times[prefix + "none"])]
                results[f"{key}_added_ms_paired"] = round(statistics.median(paired) * 1000, 1)
        for name, times in endpoint_alone(args.runs, workdir).items():
            results[f"endpoint_{name}"] = summary(times)
            print(f"endpoint {name}", results[f"endpoint_{name}"], flush=True)
        for key, keep_bridge in (("netavark_setup_teardown", False), ("netavark_setup_teardown_bridge_kept", True)):
            try:
                kept = netavark_alone(args.runs, workdir, keep_bridge=keep_bridge)
            except Exception as exc:  # netavark 1.4's complete teardown trips over other engines' shared rules
                results[key] = {"error": str(exc)}
            else:
                if kept:
                    results[key] = summary(kept)
            print(key, results.get(key), flush=True)
    finally:
        results["load_average_after"] = list(os.getloadavg())
        for each in environments.values():
            subprocess.run([LAMINA, "network", "rm", "benchuser"], env=each, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # the default bridge outlives the runs, as docker0 does: taken down with the data root
            subprocess.run([sys.executable, "-c", "import sys; from lamina.network.run import RunNetwork; "
                            "RunNetwork(sys.argv[1], sys.argv[2]).remove_bridges()",
                            each["LAMINA_DATA_ROOT"], each["LAMINA_EXEC_ROOT"]], env=each, check=False)
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
