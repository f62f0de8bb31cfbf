"""The system service: info, version, disk usage and the store check.

``check`` verifies, under the store's exclusive lock: every image config against its digest,
every image's layer chain, every layer record (chainID, parent, driver directory,
tar-split), every reference, the driver's own directories (with the ``--userns-remap`` layer
copies under ``<data-root>/<uid>.<gid>/``: a copy whose layer is gone, or work in progress)
and the container name index
against the container records, and the engine's network objects (sandboxes of containers that
are not running, interfaces and netavark rules no record describes:
:meth:`lamina.network.run.RunNetwork.check`); it reports orphans and damage and, with
``repair``, removes what is safe to remove (references to missing images, unreferenced
layers, driver directories no layer owns, layer copies whose layer is gone, leaked network
objects) and rebuilds the name
index.  It never removes an image.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from lamina import __version__, errdefs
from lamina.config import EngineConfig
from lamina.container.options import INIT_BINARY
from lamina.digest import chain_ids
from lamina.graphdriver.api import GraphDriver
from lamina.image.reference import parse_normalized_named
from lamina.runtime.registry import DEFAULT_RUNTIME, RUNTIMES
from lamina.services.image_listing import summary as image_summary
from lamina.services.images import ImageServiceImpl

if TYPE_CHECKING:
    from lamina.idmap import Remap
    from lamina.runtime.delegation import Delegation
    from lamina.services.api import BuildCacheUsage, ContainerUsage, VolumeUsage

__all__ = ["SystemServiceImpl", "API_VERSION", "MIN_API_VERSION"]

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _runtimes() -> dict[str, dict[str, str]]:
    """``Runtimes`` as Docker lists them (name -> ``{"path": ...}``): lamina's own runtime and
    the OCI runtimes whose binary is installed."""
    import shutil

    out = {}
    for name in RUNTIMES:
        path = "lamina" if name == DEFAULT_RUNTIME else shutil.which(name)
        if path:
            out[name] = {"path": path}
    return out


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


# rootless lamina without delegated cgroups (lamina.runtime.nocgroup): what info says instead
_ROOTLESS_INFO: dict[str, Any] = {
    "CgroupDriver": "none",
    "MemoryLimit": False, "SwapLimit": False, "CpuCfsPeriod": False, "CpuCfsQuota": False,
    "CPUShares": False, "CPUSet": False, "PidsLimit": False,
    "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None, "Log": ["json-file"]},
    "Warnings": [
        "WARNING: Running in rootless mode without cgroups (they are not delegated to this user): "
        "--memory, --memory-swap, --memory-reservation, --cpus, --cpu-period, --cpu-shares, "
        "--cpuset-cpus, --cpuset-mems, --pids-limit, pause and unpause are unavailable",
    ],
}
_ROOTLESS_NETWORK = ("WARNING: Running in rootless mode: networks are limited to bridge (the default: a private "
                     "network per container through pasta), none, host and container:<name>; no user-defined networks")


def _rootless_networks(info: dict[str, Any]) -> dict[str, Any]:
    """``Plugins`` and ``Warnings`` of rootless ``info`` with the networks available here (the
    bridge network needs pasta and a /dev/net/tun the user can open)."""
    from lamina.network.pasta import unavailable_reason

    reason = unavailable_reason()
    warnings = [*(info.get("Warnings") or []), _ROOTLESS_NETWORK]
    if reason:
        warnings.append(f"WARNING: Running in rootless mode: the bridge network is unavailable: {reason}")
    return {"Plugins": {**info["Plugins"], "Network": ["host", "null"] if reason else ["bridge", "host", "null"]},
            "Warnings": warnings}


def _delegated_info(delegation: Delegation) -> dict[str, Any]:
    """What info says for rootless lamina in a delegated cgroup v2 (lamina.runtime.delegation):
    the limits of the enabled controllers, a warning naming the others and their options."""
    from lamina.runtime.delegation import ENGINE_LEAF, LIMIT_CONTROLLERS, controller_of

    enabled = set(delegation.controllers)
    missing = [name for name in ("memory", "cpu", "cpuset", "pids") if name not in enabled]
    swap = os.path.exists(os.path.join(delegation.leaf(ENGINE_LEAF), "memory.swap.max"))
    warnings = []
    for name in missing:
        options = ", ".join(option for field, option in LIMIT_CONTROLLERS if controller_of(field) == name)
        warnings.append(f"WARNING: Running in rootless mode: {delegation.missing_reason(name)}: {options} "
                        "unavailable")
    return {
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2",
        "MemoryLimit": "memory" in enabled, "SwapLimit": "memory" in enabled and swap,
        "CpuCfsPeriod": "cpu" in enabled, "CpuCfsQuota": "cpu" in enabled, "CPUShares": "cpu" in enabled,
        "CPUSet": "cpuset" in enabled, "PidsLimit": "pids" in enabled,
        "Plugins": _ROOTLESS_INFO["Plugins"],
        "LaminaRootlessCgroup": delegation.directory,
        "Warnings": [f"WARNING: Running in rootless mode with the delegated cgroup {delegation.directory} "
                     f"(controllers: {' '.join(delegation.controllers) or 'none'}; pause, unpause and "
                     "kill use its freezer and cgroup.kill)", *warnings,
                     *(warning for warning in _ROOTLESS_INFO["Warnings"] if "cgroups" not in warning)],
    }


class SystemServiceImpl:
    def __init__(self, *, config: EngineConfig, driver: GraphDriver, images: ImageServiceImpl,
                 skipped_drivers: list[tuple[str, str]], volumes: VolumeUsage | None = None,
                 builds: BuildCacheUsage | None = None, containers: ContainerUsage | None = None,
                 remap: Remap | None = None) -> None:
        self.config = config
        self.remap = remap  # --userns-remap (None: off)
        self.driver = driver
        self.image_service = images
        self.skipped_drivers = skipped_drivers
        self.volumes = volumes  # for system df (None: no volumes section)
        self.builds = builds  # for system df's build cache (None: none)
        self.containers = containers  # for info's counts and system df (None: no containers)

    def _engine_id(self) -> str:
        path = os.path.join(self.config.data_root, "engine-id")
        try:
            with open(path, encoding="ascii") as handle:
                return handle.read().strip()
        except FileNotFoundError:
            import uuid

            from lamina import fsutil

            value = str(uuid.uuid4()).upper()
            fsutil.atomic_write(path, value)
            return value

    def _containers(self, *, size: bool) -> list[dict[str, Any]]:
        return self.containers.list_containers(all=True, size=size) if self.containers is not None else []

    def info(self) -> dict[str, Any]:
        images = self.image_service.images.ids()
        states = [summary.get("State") for summary in self._containers(size=False)]
        uname = os.uname()
        info: dict[str, Any] = {
            "ID": self._engine_id(),
            "Containers": len(states),
            "ContainersRunning": sum(1 for state in states if state in ("running", "restarting")),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": sum(1 for state in states if state not in ("running", "restarting", "paused")),
            "Images": len(images),
            "Driver": self.driver.name,
            "DriverStatus": [list(item) for item in self.driver.status()],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "macvlan", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True,
            "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "Debug": self.config.log_level == "debug",
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": 0,
            "SystemTime": _now(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": uname.release,
            "OperatingSystem": _os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": None,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "DockerRootDir": self.config.data_root,
            "Name": socket.gethostname(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": _runtimes(),
            "DefaultRuntime": DEFAULT_RUNTIME,
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": INIT_BINARY if os.path.exists(INIT_BINARY) else "",
            "SecurityOptions": ["name=seccomp,profile=builtin"] + ([self.remap.describe()] if self.remap else []),
            "Warnings": None,
            "LaminaSkippedDrivers": [list(item) for item in self.skipped_drivers],
        }
        if self.config.rootless_uid is not None:
            from lamina.runtime.delegation import current

            delegation = current()
            info.update(_ROOTLESS_INFO if delegation is None else _delegated_info(delegation))
            info.update(_rootless_networks(info))
            info["SecurityOptions"] = [*info["SecurityOptions"], "name=rootless"]
        return info

    def disk_usage(self) -> dict[str, Any]:
        service = self.image_service
        layers = {layer.chain_id: layer for layer in service.layers.layers()}
        users: dict[str, int] = {}
        # the image listing (kept while the image store is unchanged), by image id
        listed = sorted(service.listing.listed()[1], key=lambda entry: entry.image_id)
        for entry in listed:
            for chain in entry.chains:
                users[chain] = users.get(chain, 0) + 1
        containers = self._containers(size=True)
        users_of_image: dict[str, int] = {}
        for container in containers:
            image_id = str(container.get("ImageID") or "")
            users_of_image[image_id] = users_of_image.get(image_id, 0) + 1
        images = []
        layer_sizes = {str(chain): layer.size for chain, layer in layers.items()}
        for entry in listed:
            size = sum(layer_sizes.get(c, 0) for c in entry.chains)
            shared = sum(layer_sizes.get(c, 0) for c in entry.chains if users.get(c, 0) > 1)
            images.append({**image_summary(entry), "Size": size, "SharedSize": shared,
                           "VirtualSize": size, "Containers": users_of_image.get(str(entry.image_id), 0)})
        build_cache = self.builds.cache_usage() if self.builds is not None else []
        from lamina.graphdriver.remapcopy import copies_size

        # the chowned layer copies of --userns-remap (their recorded sizes: no walk)
        copies = copies_size(self.config.data_root, self.driver.name)
        return {
            "LayersSize": sum(layer.size for layer in layers.values()) + copies,
            "LaminaRemapCopiesSize": copies,
            "Images": images,
            "Containers": containers,
            "Volumes": self._volume_usage(),
            "BuildCache": build_cache,
        }

    def _volume_usage(self) -> list[dict[str, Any]]:
        """Docker's ``system df`` volumes: local volumes without driver options (the others'
        data is not on this disk), with ``UsageData`` (Size, RefCount)."""
        if self.volumes is None:
            return []
        return [volume for volume in self.volumes.list(usage=True)["Volumes"]
                if volume.get("Driver") == "local" and not volume.get("Options")]

    def _check_networks(self, repair: bool) -> tuple[list[dict[str, str]], list[str]]:
        """Leaked network objects (:meth:`lamina.network.run.RunNetwork.check`)."""
        from lamina.network.run import RunNetwork

        # rootless: the pasta networks (no bridges, rules nor the host's network lock)
        return RunNetwork(self.config.data_root, self.config.exec_root,
                          rootless=self.config.rootless_uid is not None).check(repair=repair)

    def check(self, *, repair: bool = False) -> dict[str, Any]:
        service = self.image_service
        problems: list[dict[str, str]] = []
        repaired: list[str] = []
        lock = service.layers.lock(shared=False)
        try:
            for message in service.images.check():
                problems.append({"Kind": "image", "Object": "imagedb", "Message": message})
            valid_images = set()
            for image_id in service.images.ids():
                try:
                    config = service.images.get_config(image_id)
                except errdefs.LaminaError as exc:
                    problems.append({"Kind": "image", "Object": str(image_id), "Message": str(exc)})
                    continue
                valid_images.add(str(image_id))
                for chain in chain_ids(config.diff_ids):
                    if not service.layers.exists(chain):
                        problems.append({"Kind": "image", "Object": str(image_id),
                                         "Message": f"layer {chain} of the image is missing"})
                        break
            for text, image_id in service.references.all().items():
                if str(image_id) not in valid_images:
                    problems.append({"Kind": "reference", "Object": text,
                                     "Message": f"points to missing image {image_id}"})
                    if repair:
                        service.references.delete(parse_normalized_named(text))
                        repaired.append(f"removed reference {text} to missing image {image_id}")
            for name in service.mounts.interrupted() if service.mounts is not None else ():
                problems.append({"Kind": "layer", "Object": name,
                                 "Message": "read-write layer record of an interrupted creation or removal"})
            if repair:
                # under the exclusive lock no image write nor read-write layer operation runs:
                # every work-in-progress entry is a crash's
                repaired.extend(f"removed {path}" for path in service.images.sweep(min_age_seconds=0))
                if service.mounts is not None:
                    repaired.extend(service.mounts.sweep())
            layer_problems, layer_repairs = service.layers.check(service.referenced_layers(), repair=repair)
            problems.extend(layer_problems)
            repaired.extend(layer_repairs)
            self._check_image_listing(problems, repaired, repair)
        finally:
            lock.release()
        if self.containers is not None:
            record_problems, record_repairs = self.containers.check_records(repair=repair)
            problems.extend({"Kind": "container", "Object": container_id, "Message": message}
                            for container_id, message in record_problems)
            repaired.extend(record_repairs)
            index_problems, index_repairs = self.containers.check_index(repair=repair)
            problems.extend({"Kind": "container", "Object": "containers/.names", "Message": message}
                            for message in index_problems)
            repaired.extend(index_repairs)
        network_problems, network_repairs = self._check_networks(repair)
        problems.extend(network_problems)
        repaired.extend(network_repairs)
        if repair:
            remaining = self.check(repair=False)["Problems"]
            return {"Problems": remaining, "Repaired": repaired}
        return {"Problems": problems, "Repaired": repaired}

    def _check_image_listing(self, problems: list[dict[str, str]], repaired: list[str], repair: bool) -> None:
        """The image listing index against the records (:meth:`ImageListing.check`)."""
        index_problems, index_repairs = self.image_service.listing.check(repair=repair)
        problems.extend({"Kind": "image", "Object": "imagedb/listing.json", "Message": message}
                        for message in index_problems)
        repaired.extend(index_repairs)


def _now() -> str:
    from lamina.image.config import format_time

    return format_time()
