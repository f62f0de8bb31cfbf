"""Containers, in two mixins along the engine's own seams: :class:`ContainerMixin` (lifecycle,
views, stdio) and :class:`ContainerFilesMixin` (changes, export, archive, commit).

``logs`` yields (stream, payload) pairs decoded from the multiplexed frames (stream 1 stdout,
2 stderr; a TTY container's raw stream is all stdout); ``attach`` asks for ``Upgrade: tcp`` and
returns an :class:`~lamina.client.stdio.Attachment` over the hijacked connection;
``wait_later`` sends the wait request now and returns a :class:`PendingWait` whose
``result()`` blocks (``docker run`` waits before it starts, so a fast exit is never missed);
``start`` and ``stop`` return False when the daemon answered 304 (already started / already
stopped).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from lamina.api.http import Response
from lamina.client.calls import (
    UPGRADE,
    BaseClient,
    ClientError,
    attachment,
    chunks,
    encode_filters,
    flag,
    integer,
    json_body,
    json_messages,
    multiplexed,
    text,
    timestamp,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from lamina.client.stdio import Attachment

__all__ = ["ContainerFilesMixin", "ContainerMixin", "PendingWait"]


class PendingWait:
    """A wait request already sent; ``result()`` blocks until the daemon answers."""

    def __init__(self, response: Response) -> None:
        self._response = response

    def result(self) -> dict[str, Any]:
        """``{"StatusCode": n, "Error": None | {"Message": ...}}``."""
        body = b"".join(chunks(self._response))
        lines = [line for line in body.splitlines() if line.strip()]
        if not lines:
            raise ClientError(500, "the daemon ended the wait without a result")
        try:
            answer = json.loads(lines[-1])
        except ValueError as exc:
            raise ClientError(500, f"the daemon sent a malformed wait result: {exc}") from exc
        if not isinstance(answer, dict):
            raise ClientError(500, "the daemon sent a malformed wait result")
        return answer

    def close(self) -> None:
        self._response.close()


class ContainerMixin(BaseClient):
    # -- lifecycle ----------------------------------------------------------------------------

    def create_container(self, body: dict[str, Any], *, name: str | None = None,
                         platform: str | None = None) -> dict[str, Any]:
        """``{"Id": ..., "Warnings": [...]}`` from a ContainerCreateRequest body."""
        return self._json("POST", "/containers/create", query={"name": text(name), "platform": text(platform)},
                          **json_body(body))

    def start(self, id: str) -> bool:
        """False when the container was already running (304)."""
        return self._empty("POST", f"/containers/{id}/start", accept=(304,)) != 304

    def stop(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> bool:
        """False when the container was not running (304)."""
        return self._empty("POST", f"/containers/{id}/stop", accept=(304,),
                           query={"t": integer(timeout), "signal": text(signal)}) != 304

    def restart(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        self._empty("POST", f"/containers/{id}/restart",
                    query={"t": integer(timeout), "signal": text(signal)})

    def kill(self, id: str, *, signal: str | None = None) -> None:
        self._empty("POST", f"/containers/{id}/kill", query={"signal": text(signal)})

    def remove_container(self, id: str, *, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        self._empty("DELETE", f"/containers/{id}", query={"force": flag(force), "v": flag(volumes), "link": flag(link)})

    def pause(self, id: str) -> None:
        self._empty("POST", f"/containers/{id}/pause")

    def unpause(self, id: str) -> None:
        self._empty("POST", f"/containers/{id}/unpause")

    def rename(self, id: str, name: str) -> None:
        self._empty("POST", f"/containers/{id}/rename", query={"name": [name]})

    def update(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/containers/{id}/update", **json_body(body)) or {}

    def prune_containers(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/containers/prune", query={"filters": encode_filters(filters)}) or {}

    def wait_later(self, id: str, *, condition: str = "not-running") -> PendingWait:
        """Send the wait request now (the daemon starts waiting); read the result later."""
        condition_query = [] if condition == "not-running" else [condition]
        return PendingWait(self._send("POST", f"/containers/{id}/wait", query={"condition": condition_query}))

    def wait(self, id: str, *, condition: str = "not-running") -> dict[str, Any]:
        return self.wait_later(id, condition=condition).result()

    # -- views --------------------------------------------------------------------------------

    def containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/containers/json", query={
            "all": flag(all), "limit": integer(limit) if limit > 0 else [], "size": flag(size),
            "filters": encode_filters(filters)}) or []

    def inspect_container(self, id: str, *, size: bool = False) -> dict[str, Any]:
        return self._json("GET", f"/containers/{id}/json", query={"size": flag(size)})

    def top(self, id: str, *, ps_args: str = "") -> dict[str, Any]:
        return self._json("GET", f"/containers/{id}/top", query={"ps_args": text(ps_args)}) or {}

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]:
        """The statistics documents: one (``stream=False``) or one per interval."""
        response = self._send("GET", f"/containers/{id}/stats", query={
            "stream": [] if stream else ["0"], "one-shot": flag(one_shot)})
        return json_messages(response)

    # -- streams ------------------------------------------------------------------------------

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float | None = None, until: float | None = None, timestamps: bool = False,
             tail: str = "all", tty: bool = False) -> Iterator[tuple[int, bytes]]:
        """(stream, payload) pairs; ``tty`` says how to read a daemon's ambiguous raw stream."""
        response = self._send("GET", f"/containers/{id}/logs", query={
            "stdout": flag(stdout), "stderr": flag(stderr), "follow": flag(follow),
            "since": timestamp(since), "until": timestamp(until),
            "timestamps": flag(timestamps), "tail": [] if tail == "all" else [tail]})
        from lamina.client.stdio import decode_frames  # the stdio code: only for container streams

        return decode_frames(chunks(response), multiplexed=multiplexed(response, self.api_version, tty))

    def attach(self, id: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               stream: bool = True, logs: bool = False, tty: bool = False, detach_keys: str = "") -> Attachment:
        query = {"stdin": flag(stdin), "stdout": flag(stdout), "stderr": flag(stderr),
                 "stream": flag(stream), "logs": flag(logs)}
        if detach_keys:
            query["detachKeys"] = [detach_keys]
        response = self._send("POST", f"/containers/{id}/attach", headers=dict(UPGRADE), query=query)
        return attachment(response, self.api_version, tty=tty)

    def resize(self, id: str, *, height: int, width: int) -> None:
        self._empty("POST", f"/containers/{id}/resize", query={"h": [str(height)], "w": [str(width)]})


class ContainerFilesMixin(BaseClient):
    def changes(self, id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/containers/{id}/changes") or []

    def export(self, id: str) -> Iterator[bytes]:
        return chunks(self._send("GET", f"/containers/{id}/export"))

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        """Docker's PathStat of ``path`` in the container (name, size, mode, mtime, linkTarget)."""
        response = self._send("HEAD", f"/containers/{id}/archive", query={"path": [path]})
        b"".join(chunks(response))
        return _path_stat(response)

    def get_archive(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        response = self._send("GET", f"/containers/{id}/archive", query={"path": [path]})
        return _path_stat(response), chunks(response)

    def put_archive(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        self._empty("PUT", f"/containers/{id}/archive", body=stream,
                    headers={"Content-Type": "application/x-tar"}, query={
                        "path": [path], "noOverwriteDirNonDir": flag(no_overwrite_dir_non_dir),
                        "copyUIDGID": flag(copy_uid_gid)})

    def commit(self, container: str, *, repository: str = "", tag: str = "", comment: str = "",
               author: str = "", pause: bool = True, changes: Iterable[str] = (),
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        query = {"container": [container], "repo": text(repository), "tag": text(tag),
                 "comment": text(comment), "author": text(author), "pause": [] if pause else ["0"],
                 "changes": list(changes)}
        extra = json_body(config) if config is not None else {}
        return self._json("POST", "/commit", query=query, **extra)


def _path_stat(response: Response) -> dict[str, Any]:
    """The ``X-Docker-Container-Path-Stat`` header: base64 of the PathStat JSON."""
    import base64

    header = response.headers.get("X-Docker-Container-Path-Stat", "")
    if not header:
        return {}
    try:
        padded = header + "=" * (-len(header) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_")))
    except ValueError as exc:
        raise ClientError(response.status, f"the daemon sent a malformed path stat: {exc}") from exc
    return decoded if isinstance(decoded, dict) else {}
