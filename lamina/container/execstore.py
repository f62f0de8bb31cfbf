"""Exec records (``docker exec``), kept under the exec root: they do not outlive the container's
run, as in Docker (its execs are forgotten when it stops).

Format: ``<exec-root>/execs/<exec-id>.json``, Docker's ExecInspectResponse::

    {"ID": ..., "Running": false, "ExitCode": null, "ProcessConfig": {"tty": false,
     "entrypoint": "sh", "arguments": ["-c", "..."], "privileged": false, "user": ""},
     "OpenStdin": false, "OpenStderr": true, "OpenStdout": true, "CanRemove": false,
     "ContainerID": ..., "DetachKeys": "", "Pid": 0}

plus ``"Config"``, the ExecConfig it was created from (Cmd, Env, WorkingDir, User, Tty,
AttachStdin/Stdout/Stderr, Privileged), which inspect does not show.  The service writes a
record at create; afterwards only the container's monitor writes it (start, exit).
"""

from __future__ import annotations

import os

from lamina import errdefs, fsutil

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ExecStore", "inspect_view"]


def _valid(exec_id: str) -> bool:
    return len(exec_id) == 64 and all(c in "0123456789abcdef" for c in exec_id)


def inspect_view(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "Config"}


class ExecStore:
    def __init__(self, exec_root: str) -> None:
        self.root = os.path.join(exec_root, "execs")

    def _path(self, exec_id: str) -> str:
        if not _valid(exec_id):
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return os.path.join(self.root, exec_id + ".json")

    def new(self, container_id: str, config: dict[str, Any]) -> dict[str, Any]:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        exec_id = os.urandom(32).hex()  # secrets.token_hex(32), without importing secrets
        command = list(config.get("Cmd") or [])
        record = {
            "ID": exec_id,
            "Running": False,
            "ExitCode": None,
            "ProcessConfig": {"tty": bool(config.get("Tty")), "entrypoint": command[0] if command else "",
                              "arguments": command[1:], "privileged": bool(config.get("Privileged")),
                              "user": str(config.get("User") or "")},
            "OpenStdin": bool(config.get("AttachStdin")),
            "OpenStderr": bool(config.get("AttachStderr")),
            "OpenStdout": bool(config.get("AttachStdout")),
            "CanRemove": False,
            "ContainerID": container_id,
            "DetachKeys": str(config.get("DetachKeys") or ""),
            "Pid": 0,
            "Config": dict(config),
        }
        self.save(record)
        return record

    def get(self, exec_id: str) -> dict[str, Any]:
        try:
            value = fsutil.read_json(self._path(exec_id))
        except (FileNotFoundError, ValueError) as exc:
            raise errdefs.NotFound(f"No such exec instance: {exec_id}") from exc
        if not isinstance(value, dict):
            raise errdefs.NotFound(f"No such exec instance: {exec_id}")
        return value

    def save(self, record: dict[str, Any]) -> None:
        fsutil.atomic_write_json(self._path(str(record["ID"])), record, mode=0o600)

    def remove(self, exec_id: str) -> None:
        try:
            os.unlink(self._path(exec_id))
        except FileNotFoundError:
            pass

    def for_container(self, container_id: str) -> list[dict[str, Any]]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if not name.endswith(".json") or not _valid(name[:-5]):
                continue
            try:
                record = self.get(name[:-5])
            except errdefs.NotFound:
                continue
            if record.get("ContainerID") == container_id:
                out.append(record)
        return out

    def remove_for_container(self, container_id: str) -> None:
        for record in self.for_container(container_id):
            self.remove(str(record["ID"]))
