"""The exec service (``docker exec``): exec records in :class:`ExecStore`, processes started by
the container's monitor (their parent, which records their exit codes).

``start`` asks the monitor over its control socket
(:meth:`~lamina.container.monitor.client.MonitorClient.start_exec`); unless detached, the same connection then carries the exec's stdio in Docker's attach wire
format and is returned as the :class:`Duplex`.  An exec whose command cannot be run answers
like Docker's API does after the hijack: the error text on the stream, the exit code (126 or
127) in the exec record.

Events (type ``container``, attribute ``execID``): ``exec_create: <command>`` and
``exec_start: <command>`` here, as Docker words them; ``exec_die`` (``exitCode``) is the
monitor's.
"""

from __future__ import annotations

import socket
from typing import Any

from lamina import errdefs
from lamina.container.execstore import ExecStore, inspect_view
from lamina.events.api import CONTAINER
from lamina.events.message import container_attributes
from lamina.services.containers.common import ContainerGroup

__all__ = ["ExecServiceImpl"]

_CONFIG_KEYS = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout",
                "Detach", "DetachKeys", "Env", "WorkingDir", "Cmd")


class ExecServiceImpl:
    def __init__(self, *, containers: ContainerGroup, execs: ExecStore) -> None:
        self.containers = containers
        self.execs = execs

    def _running(self, container_id: str) -> Any:
        container = self.containers._get(container_id)
        state = container.state
        if state.get("Restarting"):
            raise errdefs.Conflict(f"Container {container.id} is restarting, wait until the container is running")
        if not state.get("Running"):
            raise errdefs.Conflict(f"Container {container.id} is not running")
        if state.get("Paused"):
            raise errdefs.Conflict(f"Container {container.id} is paused, unpause the container before exec")
        return container

    def create(self, container: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("the exec configuration must be a JSON object")
        config = {key: body[key] for key in _CONFIG_KEYS if key in body}
        command = config.get("Cmd")
        if isinstance(command, str):
            command = [command]
        if not command or not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise errdefs.InvalidArgument("No exec command specified")
        config["Cmd"] = command
        env = config.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(item, str) for item in env):
            raise errdefs.InvalidArgument("Env must be an array of strings")
        working_dir = config.get("WorkingDir") or ""
        if working_dir and not str(working_dir).startswith("/"):
            raise errdefs.InvalidArgument(
                f"the working directory '{working_dir}' is invalid, it needs to be an absolute path")
        record = self._running(container)
        created = self.execs.new(record.id, config)
        self._event(record, "exec_create", created)
        return {"Id": created["ID"]}

    def _event(self, container: Any, action: str, record: dict[str, Any]) -> None:
        command = " ".join(str(part) for part in (record.get("Config") or {}).get("Cmd") or [])
        self.containers.events.emit(CONTAINER, f"{action}: {command}", container.id, container_attributes(
            container.config, container.name, {"execID": str(record.get("ID") or "")}))

    def start(self, exec_id: str, *, detach: bool = False, tty: bool = False) -> socket.socket | None:
        record = self.execs.get(exec_id)
        if record.get("Running"):
            raise errdefs.Conflict(f"Error: Exec command {exec_id} is already running")
        if record.get("ExitCode") is not None:
            raise errdefs.Conflict(f"Error: Exec command {exec_id} has already run")
        container = self._running(str(record["ContainerID"]))
        self._event(container, "exec_start", record)
        sock, refused = self.containers.monitors.start_exec(container.id, exec_id, detach=bool(detach))
        if refused is not None:
            if detach:
                raise refused
            # Docker has already hijacked the connection by now: the error is the output
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs.sendall(f"OCI runtime exec failed: {refused}: unknown\r\n".encode())
            theirs.close()
            return ours
        return sock

    def inspect(self, exec_id: str) -> dict[str, Any]:
        return inspect_view(self.execs.get(exec_id))

    def resize(self, exec_id: str, *, height: int, width: int) -> None:
        record = self.execs.get(exec_id)
        container = self._running(str(record["ContainerID"]))
        self.containers.monitors.resize(container.id, int(height), int(width), exec_id)
