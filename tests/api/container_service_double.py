"""A test double of the container and exec services (lamina.services.api ContainerLifecycle,
ContainerViews, ContainerFiles, ContainerStreams, ExecService) for the API, client and CLI
tests: one in-memory engine, :class:`DoubleContainers`, stands for the four container groups.

In-memory and deterministic; it makes no claim about the real engine beyond the Protocol and
the Docker JSON shapes.  Commands are simulated, not run:

* ``echo WORDS`` prints WORDS; ``sh -c "echo X >&2; exit N"`` style scripts: each ``;``-part is
  ``echo X`` (stdout), ``echo X >&2`` (stderr) or ``exit N``; ``true`` / ``false``;
* ``cat`` copies the attached stdin to stdout and exits 0 at end of input (at once without
  ``OpenStdin``); ``sleep N`` runs
  until stopped or killed; a name starting with ``nosuch`` fails to start (``executable file
  not found``, exit 127) and ``/etc`` is ``permission denied`` (126);
* output goes to the recorded log and to every attachment (multiplexed frames unless Tty);
* ``wait`` blocks on a condition variable: ``not-running``, ``next-exit``, ``removed``.

Each container has a real directory (``root/<id>``) as its filesystem for the archive
endpoints (``archive_get`` tars it with lamina's TarWriter, ``archive_put`` extracts with
lamina's ``apply_tar``).
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from lamina import errdefs
from lamina.archive import (
    EntryType,
    TarEntry,
    TarReader,
    TarWriter,
    WhiteoutMode,
    apply_tar,
)

from .api_service_double import DoubleServices

__all__ = ["STATS", "ContainerDoubleServices", "DoubleContainers", "DoubleExecs", "frame"]

NOW = 1_700_000_000


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + ".000000000Z" if timestamp else "0001-01-01T00:00:00Z"


STATS = {
    "read": "2023-11-14T22:13:21.000000000Z", "preread": "2023-11-14T22:13:20.000000000Z",
    "pids_stats": {"current": 3},
    "blkio_stats": {"io_service_bytes_recursive": [
        {"major": 8, "minor": 0, "op": "read", "value": 4_096_000},
        {"major": 8, "minor": 0, "op": "write", "value": 1_024_000}]},
    "cpu_stats": {"cpu_usage": {"total_usage": 300_000_000}, "system_cpu_usage": 20_000_000_000,
                  "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 200_000_000}, "system_cpu_usage": 18_000_000_000,
                     "online_cpus": 2},
    "memory_stats": {"usage": 10 * 1024 * 1024, "limit": 512 * 1024 * 1024,
                     "stats": {"inactive_file": 2 * 1024 * 1024}},
    "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 648}},
}


class _Attachment:
    def __init__(self, service_end: socket.socket, *, tty: bool, stdout: bool, stderr: bool) -> None:
        self.socket = service_end
        self.tty = tty
        self.stdout = stdout
        self.stderr = stderr
        self.lock = threading.Lock()
        self.closed = False

    def write(self, stream: int, data: bytes) -> None:
        if (stream == 1 and not self.stdout) or (stream == 2 and not self.stderr):
            return
        with self.lock:
            if self.closed:
                return
            try:
                self.socket.sendall(data if self.tty else frame(stream, data))
            except OSError:
                self.closed = True

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                try:
                    self.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.socket.close()


class _Container:
    def __init__(self, id: str, name: str, body: dict[str, Any], image_id: str, root: str) -> None:
        self.id = id
        self.name = name
        self.body = body
        self.image_id = image_id
        self.root = root
        self.status = "created"
        self.exit_code = 0
        self.exits = 0
        self.started_at = 0.0
        self.finished_at = 0.0
        self.created = time.time()
        self.output: list[tuple[int, bytes, float]] = []
        self.attachments: list[_Attachment] = []
        self.stdin_readers: list[threading.Thread] = []
        self.resized: list[tuple[int, int]] = []
        self.resources: dict[str, Any] = {}
        self.error = ""

    @property
    def config(self) -> dict[str, Any]:
        return {key: value for key, value in self.body.items() if key not in ("HostConfig", "NetworkingConfig")}

    @property
    def host_config(self) -> dict[str, Any]:
        return dict(self.body.get("HostConfig") or {}, **self.resources)

    @property
    def tty(self) -> bool:
        return bool(self.body.get("Tty"))

    def command(self) -> list[str]:
        entrypoint = self.body.get("Entrypoint") or []
        cmd = self.body.get("Cmd") or ["sh"]
        if isinstance(entrypoint, str):
            entrypoint = [entrypoint]
        if isinstance(cmd, str):
            cmd = [cmd]
        return [part for part in [*entrypoint, *cmd] if part != ""] or ["sh"]


class DoubleContainers:
    def __init__(self, images: Any, root: str) -> None:
        self.images = images
        self.root = root
        self.calls: list[tuple[str, Any]] = []
        self.containers: dict[str, _Container] = {}
        self.tombstones: dict[str, int] = {}
        self.condition = threading.Condition()
        self.counter = 0
        self.boot_result: dict[str, Any] = {"Exited": [], "Restarted": [], "Failed": []}

    # -- helpers ------------------------------------------------------------------------------

    def _find(self, id: str) -> _Container:
        key = id.lstrip("/")
        if key in self.containers:
            return self.containers[key]
        for container in self.containers.values():
            if container.name == key:
                return container
        matches = [c for c in self.containers.values() if c.id.startswith(key)] if key else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise errdefs.InvalidArgument(f"multiple IDs found with provided prefix: {key}")
        raise errdefs.NotFound(f"No such container: {id}")

    def _emit(self, container: _Container, stream: int, data: bytes) -> None:
        with self.condition:
            container.output.append((stream, data, time.time()))
            self.condition.notify_all()
        for attachment in list(container.attachments):
            attachment.write(1 if container.tty else stream, data)

    def _finish(self, container: _Container, code: int) -> None:
        with self.condition:
            if container.status != "running" and container.status != "paused":
                return
            container.status = "exited"
            container.exit_code = code
            container.exits += 1
            container.finished_at = time.time()
            attachments, container.attachments = container.attachments, []
            for attachment in attachments:
                attachment.close()
            if container.host_config.get("AutoRemove"):
                self.tombstones[container.id] = code
                self._forget(container)
            self.condition.notify_all()

    def _forget(self, container: _Container) -> None:
        self.containers.pop(container.id, None)

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self, body: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        self.calls.append(("create", {"body": body, "name": name}))
        image = body.get("Image") or ""
        if not image:
            raise errdefs.InvalidArgument("config cannot be empty in order to create a container")
        image_id = self.images._resolve(image)
        name = (name or "").lstrip("/")
        if name:
            for other in self.containers.values():
                if other.name == name:
                    raise errdefs.Conflict(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')
        self.counter += 1
        id = f"{self.counter:02d}" + "c0ffee" * 10 + "ab"
        id = id[:64]
        if not name:
            name = f"double_{self.counter}"
        directory = os.path.join(self.root, id)
        os.makedirs(os.path.join(directory, "etc"), exist_ok=True)
        with open(os.path.join(directory, "etc", "hostname"), "w") as file:
            file.write(id[:12] + "\n")
        self.containers[id] = _Container(id, name, body, image_id, directory)
        warnings = []
        memory = (body.get("HostConfig") or {}).get("Memory") or 0
        if 0 < memory < 6 * 1024 * 1024:
            raise errdefs.InvalidArgument("Minimum memory limit allowed is 6MB")
        if (body.get("HostConfig") or {}).get("MemorySwap") == -1:
            warnings.append("Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
                            "Memory limited without swap.")
        return {"Id": id, "Warnings": warnings}

    def start(self, id: str) -> None:
        container = self._find(id)
        self.calls.append(("start", container.id))
        command = container.command()
        program = command[0]
        if program.startswith("nosuch"):
            container.exit_code = 127
            raise errdefs.InvalidArgument(
                f'failed to create task for container: exec: "{program}": executable file not found in $PATH')
        if program == "/etc":
            container.exit_code = 126
            raise errdefs.InvalidArgument('exec: "/etc": permission denied')
        with self.condition:
            container.status = "running"
            container.started_at = time.time()
        if program == "sleep":
            return
        if program == "cat":
            # cat ends at the end of its input: at once when no stdin is open, else when an
            # attached stdin is closed.
            if not container.body.get("OpenStdin"):
                self._finish(container, 0)
            return
        code = self._simulate(container, command)
        self._finish(container, code)

    def _simulate(self, container: _Container, command: list[str]) -> int:
        if command[0] == "echo":
            self._emit(container, 1, (" ".join(command[1:]) + "\n").encode())
            return 0
        if command[0] == "true":
            return 0
        if command[0] == "false":
            return 1
        if command[:2] == ["sh", "-c"] and len(command) > 2:
            for part in command[2].split(";"):
                words = shlex.split(part)
                if not words:
                    continue
                if words[0] == "exit":
                    return int(words[1]) if len(words) > 1 else 0
                if words[0] == "echo":
                    to_stderr = words[-1] == ">&2"
                    text = " ".join(words[1:-1] if to_stderr else words[1:]) + "\n"
                    self._emit(container, 2 if to_stderr else 1, text.encode())
            return 0
        return 0

    def stop(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._find(id)
        self.calls.append(("stop", {"id": container.id, "timeout": timeout, "signal": signal}))
        self._finish(container, 137 if signal in (None, "SIGKILL", "KILL", "9") else 143)

    def restart(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._find(id)
        self.calls.append(("restart", {"id": container.id, "timeout": timeout, "signal": signal}))
        self._finish(container, 0)
        self.start(container.id)

    def kill(self, id: str, *, signal: str = "SIGKILL") -> None:
        container = self._find(id)
        self.calls.append(("kill", {"id": container.id, "signal": signal}))
        if container.status not in ("running", "paused"):
            raise errdefs.Conflict(f"Cannot kill container: {id}: Container {container.id} is not running")
        if signal not in ("SIGKILL", "KILL", "9", "SIGTERM", "TERM", "15", "SIGINT", "SIGHUP", "SIGUSR1"):
            raise errdefs.InvalidArgument(f"Invalid signal: {signal}")
        self._finish(container, 128 + {"SIGTERM": 15, "TERM": 15, "15": 15, "SIGINT": 2, "SIGHUP": 1,
                                        "SIGUSR1": 10}.get(signal, 9))

    def remove(self, id: str, *, force: bool = False, volumes: bool = False) -> None:
        container = self._find(id)
        self.calls.append(("remove", {"id": container.id, "force": force, "volumes": volumes}))
        if container.status in ("running", "paused") and not force:
            raise errdefs.Conflict(
                f"cannot remove container \"/{container.name}\": container is running: stop the container "
                "before removing or force remove")
        if container.status in ("running", "paused"):
            self._finish(container, 137)
        with self.condition:
            self.tombstones[container.id] = container.exit_code
            self._forget(container)
            self.condition.notify_all()

    def wait(self, id: str, *, condition: str = "not-running") -> dict[str, Any]:
        return self.begin_wait(id, condition=condition)()

    def begin_wait(self, id: str, *, condition: str = "not-running") -> Any:
        container = self._find(id)
        self.calls.append(("wait", {"id": container.id, "condition": condition}))
        with self.condition:
            exits = container.exits
        return lambda: self._finish_wait(container, condition, exits)

    def _finish_wait(self, container: Any, condition: str, exits: int) -> dict[str, Any]:
        with self.condition:
            if condition == "removed":
                self.condition.wait_for(lambda: container.id not in self.containers)
                return {"StatusCode": self.tombstones.get(container.id, container.exit_code), "Error": None}
            if condition == "next-exit":
                self.condition.wait_for(lambda: container.exits > exits or container.id not in self.containers)
            else:
                self.condition.wait_for(lambda: container.status not in ("running", "paused"))
            return {"StatusCode": container.exit_code, "Error": None}

    def pause(self, id: str) -> None:
        container = self._find(id)
        if container.status != "running":
            raise errdefs.Conflict(f"Container {container.id} is not running")
        container.status = "paused"

    def unpause(self, id: str) -> None:
        container = self._find(id)
        if container.status != "paused":
            raise errdefs.Conflict(f"Container {container.id} is not paused")
        container.status = "running"

    def rename(self, id: str, new_name: str) -> None:
        container = self._find(id)
        new_name = new_name.lstrip("/")
        if any(other.name == new_name for other in self.containers.values()):
            raise errdefs.Conflict(f'Error when allocating new name: Conflict. The container name "/{new_name}" is already in use')
        container.name = new_name

    def remove_link(self, name: str) -> None:
        raise errdefs.NotFound(f"No such container: {name}")  # the double's containers have no links

    def update(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        container = self._find(id)
        self.calls.append(("update", {"id": container.id, "body": body}))
        container.resources.update(body)
        return {"Warnings": []}

    def resize(self, id: str, *, height: int, width: int) -> None:
        container = self._find(id)
        container.resized.append((height, width))

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        self.calls.append(("prune", filters))
        deleted = []
        for container in list(self.containers.values()):
            if container.status in ("exited", "created"):
                deleted.append(container.id)
                self._forget(container)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": 1000 * len(deleted)}

    def boot(self) -> dict[str, Any]:
        self.calls.append(("boot", None))
        return self.boot_result

    # -- reading ------------------------------------------------------------------------------

    def _status_text(self, container: _Container) -> str:
        now = time.time()
        if container.status == "running":
            return f"Up {int(now - container.started_at)} seconds" if now - container.started_at >= 1 else "Up Less than a second"
        if container.status == "paused":
            return "Up Less than a second (Paused)"
        if container.status == "exited":
            return f"Exited ({container.exit_code}) Less than a second ago"
        return "Created"

    def list_containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                        filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list", {"all": all, "limit": limit, "size": size, "filters": filters}))
        filters = filters or {}
        result = []
        for container in sorted(self.containers.values(), key=lambda c: c.created, reverse=True):
            if not all and limit <= 0 and container.status not in ("running", "paused") and "status" not in filters:
                continue
            if "status" in filters and container.status not in filters["status"]:
                continue
            if "name" in filters and not any(value in container.name for value in filters["name"]):
                continue
            labels = container.body.get("Labels") or {}
            if "label" in filters and not all(
                    (labels.get(k) == v) if eq else k in labels
                    for k, eq, v in (value.partition("=") for value in filters["label"])):
                continue
            if "ancestor" in filters and not any(
                    self.images._resolve(value) == container.image_id for value in filters["ancestor"]):
                continue
            summary = {
                "Id": container.id, "Names": ["/" + container.name], "Image": container.body.get("Image"),
                "ImageID": container.image_id, "Command": " ".join(container.command()),
                "Created": int(container.created), "Ports": [], "Labels": labels,
                "State": container.status, "Status": self._status_text(container),
                "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode", "default")},
                "NetworkSettings": {"Networks": {}}, "Mounts": [],
            }
            if size:
                summary["SizeRw"] = 12
                summary["SizeRootFs"] = 4261562
            result.append(summary)
            if 0 < limit <= len(result):
                break
        # Oldest first on purpose: the API sorts newest first.
        return list(reversed(result))

    def identify(self, id: str) -> dict[str, Any]:
        found = self.inspect(id)
        return {key: found[key] for key in ("Id", "Name", "Config", "State")}

    def inspect(self, id: str, *, size: bool = False) -> dict[str, Any]:
        container = self._find(id)
        running = container.status in ("running", "paused")
        answer = {
            "Id": container.id, "Created": _rfc3339(container.created), "Path": container.command()[0],
            "Args": container.command()[1:],
            "State": {"Status": container.status, "Running": running, "Paused": container.status == "paused",
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 4242 if running else 0,
                      "ExitCode": container.exit_code, "Error": container.error,
                      "StartedAt": _rfc3339(container.started_at), "FinishedAt": _rfc3339(container.finished_at)},
            "Image": container.image_id, "Name": "/" + container.name, "RestartCount": 0,
            "Driver": "overlay2", "Platform": "linux", "HostConfig": container.host_config,
            "Config": container.config, "Mounts": [],
            "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": "/merged", "UpperDir": "/upper"}},
            "NetworkSettings": {"Networks": {}},
        }
        if size:
            answer["SizeRw"] = 12
            answer["SizeRootFs"] = 4261562
        return answer

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float = 0, until: float = 0, timestamps: bool = False,
             tail: str = "all") -> Iterator[tuple[int, bytes]]:
        container = self._find(id)
        self.calls.append(("logs", {"id": container.id, "follow": follow, "since": since, "until": until,
                                    "timestamps": timestamps, "tail": tail}))

        def selected(entries: list[tuple[int, bytes, float]]) -> list[tuple[int, bytes, float]]:
            return [entry for entry in entries
                    if ((entry[0] == 1 and stdout) or (entry[0] == 2 and stderr))
                    and entry[2] >= since and (not until or entry[2] <= until)]

        def items() -> Iterator[tuple[int, bytes]]:
            entries = selected(list(container.output))
            if tail != "all":
                entries = entries[-int(tail):] if int(tail) > 0 else []
            seen = len(container.output)
            for stream, data, moment in entries:
                yield stream, (_rfc3339(moment).encode() + b" " + data) if timestamps else data
            while follow:
                with self.condition:
                    self.condition.wait_for(lambda seen=seen: len(container.output) > seen
                                            or container.status not in ("running", "paused"), timeout=5)
                for stream, data, moment in selected(container.output[seen:]):
                    yield stream, data
                seen = len(container.output)
                if container.status not in ("running", "paused"):
                    return

        return items()

    def attach(self, id: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool = True,
               logs: bool = False, detach_keys: str | None = None) -> socket.socket:
        container = self._find(id)
        self.calls.append(("attach", {"id": container.id, "stdin": stdin, "stdout": stdout,
                                      "stderr": stderr, "stream": stream, "logs": logs}))
        service_end, client_end = socket.socketpair()
        attachment = _Attachment(service_end, tty=container.tty, stdout=stdout, stderr=stderr)
        if logs:
            for stream_type, data, _ in container.output:
                attachment.write(1 if container.tty else stream_type, data)
        if not stream or container.status == "exited":
            attachment.close()
            return client_end
        container.attachments.append(attachment)
        if stdin:
            reader = threading.Thread(target=self._read_stdin, args=(container, attachment), daemon=True)
            container.stdin_readers.append(reader)
            reader.start()
        return client_end

    def _read_stdin(self, container: _Container, attachment: _Attachment) -> None:
        while True:
            try:
                data = attachment.socket.recv(65536)
            except OSError:
                return
            if not data:
                break
            if container.command()[0] == "cat":
                self._emit(container, 1, data)
        if container.command()[0] == "cat" and container.status == "running":
            self._finish(container, 0)

    def top(self, id: str, *, ps_args: str = "-ef") -> dict[str, Any]:
        container = self._find(id)
        self.calls.append(("top", {"id": container.id, "ps_args": ps_args}))
        if container.status not in ("running", "paused"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                "Processes": [["root", "4242", "4241", "0", "22:13", "?", "00:00:00", " ".join(container.command())]]}

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]:
        container = self._find(id)
        self.calls.append(("stats", {"id": container.id, "stream": stream, "one_shot": one_shot}))

        def documents() -> Iterator[dict[str, Any]]:
            for _ in range(3 if stream else 1):
                yield dict(STATS, name="/" + container.name, id=container.id)

        return documents()

    def changes(self, id: str) -> list[dict[str, Any]]:
        self._find(id)
        return [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/motd", "Kind": 2}, {"Path": "/tmp/new", "Kind": 1}]

    def export(self, id: str) -> Iterator[bytes]:
        container = self._find(id)
        return iter(self._tar(container.root, ""))

    # -- files --------------------------------------------------------------------------------

    def _path(self, container: _Container, path: str) -> str:
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise errdefs.InvalidArgument("the double does not resolve ..")
        return os.path.join(container.root, *parts)

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        container = self._find(id)
        full = self._path(container, path)
        try:
            info = os.lstat(full)
        except FileNotFoundError as exc:
            raise errdefs.NotFound(f"Could not find the file {path} in container {id}") from exc
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            mode |= 1 << 31
        elif stat.S_ISLNK(info.st_mode):
            mode |= 1 << 27
        return {"name": os.path.basename(path.rstrip("/")) or "/", "size": info.st_size, "mode": mode,
                "mtime": _rfc3339(info.st_mtime), "linkTarget": os.readlink(full) if stat.S_ISLNK(info.st_mode) else ""}

    def _tar(self, full: str, name: str) -> list[bytes]:
        chunks: list[bytes] = []
        writer = TarWriter(lambda data: chunks.append(bytes(data)))

        def add(path: str, member: str) -> None:
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                if member:
                    writer.add(TarEntry(name=member, type=EntryType.DIRECTORY, mode=stat.S_IMODE(info.st_mode)))
                for child in sorted(os.listdir(path)):
                    add(os.path.join(path, child), f"{member}/{child}" if member else child)
            elif stat.S_ISLNK(info.st_mode):
                writer.add(TarEntry(name=member, type=EntryType.SYMLINK, linkname=os.readlink(path)))
            else:
                with open(path, "rb") as file:
                    writer.add(TarEntry(name=member, type=EntryType.REGULAR, mode=stat.S_IMODE(info.st_mode),
                                        size=info.st_size), file)

        add(full, name)
        writer.close()
        return chunks

    def archive_get(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        stat_answer = self.archive_stat(id, path)
        container = self._find(id)
        full = self._path(container, path)
        base = os.path.basename(path.rstrip("/"))
        return stat_answer, iter(self._tar(full, "" if base in (".", "") else base))

    def archive_put(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        container = self._find(id)
        self.calls.append(("archive_put", {"id": container.id, "path": path, "copy_uid_gid": copy_uid_gid,
                                           "no_overwrite_dir_non_dir": no_overwrite_dir_non_dir}))
        full = self._path(container, path)
        if not os.path.isdir(full):
            raise errdefs.NotFound(f"Could not find the file {path} in container {id}")
        fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY)
        try:
            apply_tar(fd, TarReader(stream), WhiteoutMode.APPLY, same_owner=copy_uid_gid)
        finally:
            os.close(fd)

    def commit(self, id: str, *, repository: str = "", tag: str = "", comment: str = "", author: str = "",
               pause: bool = True, changes: list[str] | None = None,
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        container = self._find(id)
        self.calls.append(("commit", {"id": container.id, "repository": repository, "tag": tag,
                                      "comment": comment, "author": author, "pause": pause,
                                      "changes": list(changes or []), "config": config}))
        image_id = "sha256:" + "e" * 64
        self.images.images[image_id] = {"Created": NOW, "Size": 4261562, "Comment": comment}
        if repository:
            self.images.tags[f"{repository}:{tag or 'latest'}"] = image_id
        return {"Id": image_id}


class _Exec:
    def __init__(self, id: str, container: _Container, body: dict[str, Any]) -> None:
        self.id = id
        self.container = container
        self.body = body
        self.running = False
        self.exit_code: int | None = None
        self.resized: list[tuple[int, int]] = []


class DoubleExecs:
    def __init__(self, containers: DoubleContainers) -> None:
        self.containers = containers
        self.execs: dict[str, _Exec] = {}
        self.calls: list[tuple[str, Any]] = []

    def create(self, container: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self.containers._find(container)
        self.calls.append(("create", {"container": record.id, "body": body}))
        if record.status != "running":
            raise errdefs.Conflict(f"Container {record.id} is not running")
        exec_id = f"{len(self.execs) + 1:02d}" + "e" * 62
        self.execs[exec_id] = _Exec(exec_id, record, body)
        return {"Id": exec_id}

    def _find(self, exec_id: str) -> _Exec:
        if exec_id not in self.execs:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return self.execs[exec_id]

    def start(self, exec_id: str, *, detach: bool = False, tty: bool = False,
              detach_keys: str | None = None) -> socket.socket | None:
        record = self._find(exec_id)
        self.calls.append(("start", {"id": exec_id, "detach": detach, "tty": tty}))
        if record.running or record.exit_code is not None:
            raise errdefs.Conflict(f"Error: Exec command {exec_id} has already run")
        command = list(record.body.get("Cmd") or [])
        record.running = True
        if detach:
            record.running = False
            record.exit_code = 0
            return None
        service_end, client_end = socket.socketpair()

        def send(stream: int, data: bytes) -> None:
            service_end.sendall(data if tty else frame(stream, data))

        def run() -> None:
            try:
                if command[0].startswith("nosuch"):
                    send(1, f'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                            f'"{command[0]}": executable file not found in $PATH: unknown\r\n'.encode())
                    record.exit_code = 127
                elif command[0] == "cat":
                    while True:
                        data = service_end.recv(65536)
                        if not data:
                            break
                        send(1, data)
                    record.exit_code = 0
                elif command[0] == "env":
                    send(1, ("\n".join(record.body.get("Env") or []) + "\n").encode())
                    record.exit_code = 0
                elif command[:2] == ["sh", "-c"]:
                    code = 0
                    for part in command[2].split(";"):
                        words = shlex.split(part)
                        if words and words[0] == "exit":
                            code = int(words[1])
                        elif words and words[0] == "echo":
                            to_stderr = words[-1] == ">&2"
                            send(2 if to_stderr else 1,
                                 (" ".join(words[1:-1] if to_stderr else words[1:]) + "\n").encode())
                    record.exit_code = code
                else:
                    send(1, (" ".join(command) + "\n").encode())
                    record.exit_code = 0
            finally:
                record.running = False
                try:
                    service_end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                service_end.close()

        threading.Thread(target=run, daemon=True).start()
        return client_end

    def inspect(self, exec_id: str) -> dict[str, Any]:
        record = self._find(exec_id)
        command = list(record.body.get("Cmd") or [])
        return {"ID": exec_id, "Running": record.running, "ExitCode": record.exit_code,
                "ProcessConfig": {"tty": bool(record.body.get("Tty")), "entrypoint": command[0] if command else "",
                                  "arguments": command[1:], "privileged": False, "user": record.body.get("User", "")},
                "OpenStdin": bool(record.body.get("AttachStdin")), "OpenStdout": True, "OpenStderr": True,
                "ContainerID": record.container.id, "Pid": 5000}

    def resize(self, exec_id: str, *, height: int, width: int) -> None:
        self._find(exec_id).resized.append((height, width))


class ContainerDoubleServices(DoubleServices):
    def __init__(self, root: str) -> None:
        super().__init__()
        self.containers = DoubleContainers(self.images, root)
        self.container_views = self.container_files = self.container_streams = self.containers
        self.execs = DoubleExecs(self.containers)

