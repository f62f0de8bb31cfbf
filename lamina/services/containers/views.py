"""Reading containers: inspect, the list and its filters, top, stats."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

from lamina import errdefs
from lamina.container.state import ZERO_TIME, now, seconds_of, status, status_text
from lamina.container.store import Container
from lamina.log import get_logger
from lamina.services.containers.common import ContainerGroup, ContainerShared, network_settings

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any
    from lamina.runtime.api import RuntimeState

__all__ = ["ContainerViewsImpl"]

log = get_logger("lamina.services")

_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "before", "since", "health",
                 "network", "volume", "publish", "expose", "isolation", "is-task")


def _short(identifier: str) -> str:
    return identifier.split(":", 1)[-1][:12]


def _reference_key(name: str) -> str:
    """The repositories.json key (full reference string) ``name`` looks up; "" when ``name`` is
    not a plain tag reference (an id, a digest: :meth:`resolve` answers those)."""
    from lamina.image.reference import parse_normalized_named, with_default_tag

    try:
        reference = parse_normalized_named(name)
    except errdefs.InvalidArgument:
        return ""
    if reference.digest:
        return ""
    return (reference if reference.tag else with_default_tag(reference)).string()


class ContainerViewsImpl(ContainerGroup):
    def __init__(self, shared: ContainerShared) -> None:
        super().__init__(shared)
        # what listing derives from immutable text, kept across listings (a long-lived server)
        self._reference_keys: dict[str, str] = {}
        self._created_seconds: dict[str, float] = {}
        self._known_sizes: dict[str, tuple[str, int, int]] = {}  # id -> (run key, SizeRw, SizeRootFs)

    def _created(self, container: Container) -> float:
        text = str(container.data.get("Created") or "")
        seconds = self._created_seconds.get(text)
        if seconds is None:
            seconds = self._created_seconds[text] = seconds_of(text)
        return seconds

    def image_usage(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of every container created from ``image_id``."""
        return [(c.id, bool(c.state.get("Running"))) for c in self.store.listing() if c.data.get("Image") == image_id]

    def _image_name(self, container: Container, resolved: dict[str, str] | None = None,
                    references: dict[str, str] | None = None) -> str:
        """What ``ps`` shows in IMAGE: the name used at create while it still names the image
        (``resolved`` caches name lookups over one listing; ``references``: every tag
        reference's image id, read once for the listing)."""
        name = str(container.config.get("Image") or "")
        image_id = str(container.data.get("Image") or "")
        if name and references is not None:
            key = self._reference_keys.get(name)
            if key is None:
                key = self._reference_keys[name] = _reference_key(name)
            if key in references:
                return name if references[key] == image_id else _short(image_id)
        cache = resolved if resolved is not None else {}
        if name and name not in cache:
            try:
                cache[name] = str(self.images.resolve(name))
            except errdefs.LaminaError:
                cache[name] = ""
        if name and cache[name] == image_id:
            return name
        return _short(image_id)

    def _command(self, container: Container) -> str:
        parts = [str(container.data.get("Path") or ""), *(str(a) for a in container.data.get("Args") or [])]
        return " ".join(part for part in parts if part != "" or len(parts) == 1)

    def _sizes(self, container: Container) -> tuple[int, int]:
        """(SizeRw, SizeRootFs); cached for stopped containers (their layer does not change)."""
        cache_path = os.path.join(self.store.directory(container.id), "sizes.json")
        key = f"{container.state.get('FinishedAt')}|{container.state.get('StartedAt')}"
        running = bool(container.state.get("Running"))
        known = self._known_sizes.get(container.id)
        if not running and known is not None and known[0] == key:
            return known[1], known[2]
        if not running:
            try:
                from lamina.fsutil import read_json

                cached = read_json(cache_path)
                if cached.get("Key") == key:
                    self._known_sizes[container.id] = (key, int(cached["SizeRw"]), int(cached["SizeRootFs"]))
                    return int(cached["SizeRw"]), int(cached["SizeRootFs"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        try:
            size_rw = self.mounts.size(container.id)
        except errdefs.LaminaError:
            size_rw = 0
        image_size = 0
        try:
            layer = self.mounts.get(container.id)
            if layer.parent is not None:
                image_size = sum(item.size for item in self.images.layers.chain(layer.parent))
        except errdefs.LaminaError:
            pass
        if not running:
            try:
                from lamina.fsutil import atomic_write_json

                atomic_write_json(cache_path, {"Key": key, "SizeRw": size_rw, "SizeRootFs": size_rw + image_size},
                                  mode=0o600)
                self._known_sizes[container.id] = (key, size_rw, size_rw + image_size)
            except OSError:
                pass
        return size_rw, size_rw + image_size

    def _summary(self, container: Container, *, size: bool, resolved: dict[str, str] | None = None,
                 references: dict[str, str] | None = None) -> dict[str, Any]:
        state = container.state
        summary: dict[str, Any] = {
            "Id": container.id,
            "Names": [container.name],
            "Image": self._image_name(container, resolved, references),
            "ImageID": container.data.get("Image") or "",
            "Command": self._command(container),
            "Created": int(self._created(container)),
            "Ports": [],
            "Labels": container.config.get("Labels") or {},
            "State": status(state),
            "Status": status_text(state),
            "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": (container.data.get("NetworkSettings") or {}).get("Networks") or {}},
            "Mounts": self._mounts_view(container),
        }
        if size:
            summary["SizeRw"], summary["SizeRootFs"] = self._sizes(container)
        return summary

    def _mounts_view(self, container: Container) -> list[dict[str, Any]]:
        """Docker's ``Mounts``: one entry per mount point (``--tmpfs`` ones are not listed)."""
        stored = container.data.get("MountPoints")
        if not stored:
            return []  # the volume code is not loaded for a container without mounts
        from lamina.volume.resolve import inspect_mounts

        return inspect_mounts(stored)

    def _matches(self, container: Container, filters: dict[str, list[str]],
                 before: float | None, since: float | None, ancestors: set[str] | None) -> bool:
        state = container.state
        if filters.get("id") and not any(container.id.startswith(value) for value in filters["id"]):
            return False
        if filters.get("name"):
            names = (container.name, container.name.lstrip("/"))
            if not any(re.search(pattern, name) for pattern in filters["name"] for name in names):
                return False
        if filters.get("label"):
            from lamina.services.filters import all_labels_match

            if not all_labels_match(container.config.get("Labels") or {}, filters["label"]):
                return False
        if filters.get("status") and status(state) not in filters["status"]:
            return False
        if filters.get("exited"):
            if status(state) != "exited" or str(state.get("ExitCode")) not in filters["exited"]:
                return False
        if ancestors is not None and container.data.get("Image") not in ancestors:
            return False
        if before is not None or since is not None:
            created = self._created(container)
            if before is not None and created >= before:
                return False
            if since is not None and created <= since:
                return False
        if filters.get("health"):
            health = (state.get("Health") or {}).get("Status") or "none"
            if health not in filters["health"]:
                return False
        if filters.get("network"):
            networks = set((container.data.get("NetworkSettings") or {}).get("Networks") or {})
            if not networks & set(filters["network"]):
                return False
        if filters.get("volume") or filters.get("publish") or filters.get("expose"):
            return False  # no volumes or published ports yet
        return True

    def _ancestors(self, names: list[str]) -> set[str]:
        """Image ids whose containers match ``ancestor=``: the named images and their children."""
        wanted: set[str] = set()
        for name in names:
            try:
                wanted.add(str(self.images.resolve(name)))
            except errdefs.NotFound:
                continue
        result = set(wanted)
        for image_id in self.images.images.ids():
            current: str | None = str(image_id)
            seen = 0
            while current is not None and seen < 256:
                if current in wanted:
                    result.add(str(image_id))
                    break
                parent = self.images.images.get_parent(current)
                current = str(parent) if parent else None
                seen += 1
        return result

    def list_containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                        filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = {key: list(values) for key, values in (filters or {}).items()}
        for key in filters:
            if key not in _LIST_FILTERS:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        for value in filters.get("status", []):
            if value not in _STATUSES:
                raise errdefs.InvalidArgument(f"invalid filter 'status={value}'")
        for value in filters.get("health", []):
            from lamina.container.health import HEALTH_STATUSES

            if value not in HEALTH_STATUSES:
                raise errdefs.InvalidArgument(f"Unrecognised filter value for health: {value}")
        for value in filters.get("exited", []):
            if not value.lstrip("-").isdigit():
                raise errdefs.InvalidArgument(f"invalid filter 'exited={value}'")
        show_all = all or bool(filters.get("status")) or bool(filters.get("exited")) or limit > 0
        before = since = None
        if filters.get("before"):
            before = seconds_of(self._get(filters["before"][0]).data.get("Created"))
        if filters.get("since"):
            since = seconds_of(self._get(filters["since"][0]).data.get("Created"))
        ancestors = self._ancestors(filters["ancestor"]) if filters.get("ancestor") else None
        containers = []
        link_names: dict[str, list[str]] = {}   # a link's target -> its names /parent/alias
        for container in self.store.listing():  # the listed fields only: all that a summary shows
            for spec in container.host_config.get("Links") or []:
                target, _, name = str(spec).partition(":")
                link_names.setdefault(target, []).append(name)
            if container.state.get("Running") and not self.monitors.alive(container.id):
                try:
                    container = self._reconcile(container.id)
                except errdefs.NotFound:
                    continue
            if not show_all and not container.state.get("Running"):
                continue
            if self._matches(container, filters, before, since, ancestors):
                containers.append(container)
        containers.sort(key=lambda c: (c.data.get("Created") or "", c.id), reverse=True)
        if limit > 0:
            containers = containers[:limit]
        resolved: dict[str, str] = {}
        # read once for the listing, and not at all when it lists nothing
        references = ({text: str(image_id) for text, image_id in self.images.references.all().items()}
                      if containers else {})
        summaries = []
        for container in containers:
            summary = self._summary(container, size=size, resolved=resolved, references=references)
            summary["Names"].extend(sorted(link_names.get(container.name, [])))
            summaries.append(summary)
        return summaries

    def check_index(self, *, repair: bool = False) -> tuple[list[str], list[str]]:
        return self.store.check_index(repair=repair)

    def check_records(self, *, repair: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
        """(container id, problem) of records a host crash left with empty files (a ``--rm``
        create is not synced: lamina.container.store); ``repair`` removes them."""
        from lamina.container.removal import destroy

        problems, repaired = [], []
        for container_id in self.store.cut_short():
            problems.append((container_id, "the record has empty files: a --rm create cut short by a host crash"))
            if repair:
                try:
                    destroy(self.store, self.mounts, self.execs, self.exec_root, container_id, volumes=self.volumes)
                except errdefs.NotFound:
                    continue
                repaired.append(f"removed container {container_id}, whose create a host crash cut short")
        return problems, repaired

    def identify(self, id: str) -> dict[str, Any]:
        """The container's ``Id``, ``Name``, ``Config`` and stored ``State``: what a request needs
        of it before acting on it (its TTY, whether it runs, its full id), read from its record
        alone (:meth:`inspect` also reads its layer, execs and network)."""
        container = self._get(id)
        return {"Id": container.id, "Name": container.name, "Config": container.config, "State": container.state}

    def inspect(self, id: str, *, size: bool = False) -> dict[str, Any]:
        container = self._get(id)
        data = container.data
        state = container.state
        state_view = {"Status": status(state), "Running": bool(state.get("Running")),
                      "Paused": bool(state.get("Paused")), "Restarting": bool(state.get("Restarting")),
                      "OOMKilled": bool(state.get("OOMKilled")), "Dead": bool(state.get("Dead")),
                      "Pid": int(state.get("Pid") or 0), "ExitCode": int(state.get("ExitCode") or 0),
                      "Error": str(state.get("Error") or ""), "StartedAt": state.get("StartedAt") or ZERO_TIME,
                      "FinishedAt": state.get("FinishedAt") or ZERO_TIME}
        if state.get("Health"):
            state_view["Health"] = state["Health"]
        graph_data: dict[str, str] | None = None
        try:
            layer = self.mounts.get(container.id)
            graph_data = dict(self.mounts.driver.metadata(layer.mount_id))
        except errdefs.LaminaError:
            graph_data = None
        exec_ids = [record["ID"] for record in self.execs.for_container(container.id)]
        result: dict[str, Any] = {
            "Id": container.id,
            "Created": data.get("Created"),
            "Path": data.get("Path"),
            "Args": data.get("Args") or [],
            "State": state_view,
            "Image": data.get("Image"),
            "ResolvConfPath": data.get("ResolvConfPath") or "",
            "HostnamePath": data.get("HostnamePath") or "",
            "HostsPath": data.get("HostsPath") or "",
            "LogPath": data.get("LogPath") or "",
            "Name": container.name,
            "RestartCount": int(data.get("RestartCount") or 0),
            "Driver": data.get("Driver") or self.mounts.driver.name,
            "Platform": data.get("OS") or "linux",
            "MountLabel": data.get("MountLabel") or "",
            "ProcessLabel": data.get("ProcessLabel") or "",
            "AppArmorProfile": data.get("AppArmorProfile") or "",
            "ExecIDs": exec_ids or None,
            "HostConfig": container.host_config,
            "GraphDriver": {"Data": graph_data, "Name": self.mounts.driver.name},
        }
        if size:
            result["SizeRw"], result["SizeRootFs"] = self._sizes(container)
        result["Mounts"] = self._mounts_view(container)
        result["Config"] = container.config
        settings = dict(data.get("NetworkSettings") or network_settings("default"))
        shared = str(container.host_config.get("NetworkMode") or "").startswith("container:")
        if state.get("Running") and state.get("Pid") and not shared:  # a joiner has no sandbox, as in Docker
            settings["SandboxKey"] = f"/proc/{state['Pid']}/ns/net"
            record = self.network.sandbox(container.id)
            if record is not None:
                from lamina.network.store import network_settings as sandbox_settings

                created = settings.get("Networks") or {}
                settings.update(sandbox_settings(record))
                for name, endpoint in settings["Networks"].items():  # what create or connect was given
                    endpoint["Links"] = (created.get(name) or {}).get("Links") or None
        result["NetworkSettings"] = settings
        return result

    def top(self, id: str, *, ps_args: str = "-ef") -> dict[str, Any]:
        from lamina.container.processes import list_processes

        container = self._get(id)
        state = self._runtime_state(container)
        pids = self.runtime(state.runtime).processes(state)
        return list_processes(pids, ps_args or "-ef")

    def _stats_document(self, container: Container, state: RuntimeState | None,
                        previous: dict[str, Any] | None) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        if state is not None:
            try:
                raw = dict(self.runtime(state.runtime).stats(state))
            except errdefs.LaminaError as exc:
                log.debug("stats of %s: %s", container.id, exc)
        empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                     "system_cpu_usage": 0, "online_cpus": 0,
                     "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        document: dict[str, Any] = {
            "name": container.name,
            "id": container.id,
            "read": now() if state is not None else ZERO_TIME,
            "preread": previous["read"] if previous else ZERO_TIME,
            "pids_stats": raw.get("pids_stats") or {},
            "blkio_stats": raw.get("blkio_stats") or {"io_service_bytes_recursive": None,
                                                      "io_serviced_recursive": None},
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": raw.get("cpu_stats") or empty_cpu,
            "precpu_stats": previous["cpu_stats"] if previous else empty_cpu,
            "memory_stats": raw.get("memory_stats") or {},
        }
        # the host's interfaces are not the container's: none for --network host, as Docker
        own_network = container.host_config.get("NetworkMode") != "host"
        networks = _network_counters(state.pid) if state is not None and own_network else {}
        if networks:
            document["networks"] = networks
        return document

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]:
        container = self._get(id)
        container_id = container.id

        def generate() -> Iterator[dict[str, Any]]:
            previous: dict[str, Any] | None = None
            while True:
                try:
                    current = self._get(container_id)
                except errdefs.NotFound:
                    return
                state = None
                if current.state.get("Running") and not current.state.get("Restarting"):
                    state = self.monitors.runtime_state(container_id)
                document = self._stats_document(current, state, previous)
                if state is None:
                    yield document
                    return
                if not stream and not one_shot and previous is None:
                    previous = document
                    time.sleep(1.0)  # a second sample fills precpu_stats, as Docker does
                    continue
                yield document
                if not stream:
                    return
                previous = document
                time.sleep(1.0)

        return generate()


def _network_counters(pid: int) -> dict[str, dict[str, int]]:
    """Docker's ``networks`` stats from the container's /proc/<pid>/net/dev (loopback left out)."""
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as handle:
            lines = handle.read().splitlines()[2:]
    except OSError:
        return {}
    result = {}
    for line in lines:
        name, _, values = line.partition(":")
        name = name.strip()
        fields = values.split()
        if name == "lo" or len(fields) < 16:
            continue
        numbers = [int(value) for value in fields]
        result[name] = {"rx_bytes": numbers[0], "rx_packets": numbers[1], "rx_errors": numbers[2],
                        "rx_dropped": numbers[3], "tx_bytes": numbers[8], "tx_packets": numbers[9],
                        "tx_errors": numbers[10], "tx_dropped": numbers[11]}
    return result
