"""APIClient: typed Docker Engine API calls over any :class:`~lamina.client.transport.Transport`.

Every method builds one request; a non-2xx answer raises :class:`ClientError` carrying the
HTTP status and the daemon's ``message``.  Streams stay streams: ``load`` and
``import_image`` yield the decoded JSON messages as they arrive (an in-band
``{"error": ...}`` message is yielded like any other: the caller renders it), ``save`` yields
the archive's bytes.

Containers: ``logs`` yields (stream, payload) pairs decoded from the multiplexed frames
(stream 1 stdout, 2 stderr; a TTY container's raw stream is all stdout); ``attach`` and
``exec_start`` ask for ``Upgrade: tcp`` and return an :class:`~lamina.client.stdio.Attachment`
over the hijacked connection; ``wait_later`` sends the wait request now and returns a
:class:`PendingWait` whose ``result()`` blocks (``docker run`` waits before it starts, so a
fast exit is never missed); ``start`` and ``stop`` return False when the daemon answered 304
(already started / already stopped).

The API version is negotiated like the docker CLI does it: the first call pings the daemon
and then uses ``min(daemon's API-Version, 1.45)`` as the path prefix.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.versions import API_VERSION, parse_version
from lamina.client.stdio import Attachment, decode_frames, is_multiplexed
from lamina.client.transport import Transport

__all__ = ["APIClient", "ClientError", "PendingWait"]

_UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


class ClientError(Exception):
    """The daemon answered with an error status (``status``) and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ClientError({self.status}, {self.message!r})"


def _encode_filters(filters: dict[str, list[str]] | None) -> list[str]:
    if not filters:
        return []
    return [json.dumps({key: list(values) for key, values in filters.items()}, separators=(",", ":"))]


def _flag(value: bool) -> list[str]:
    return ["1"] if value else []


def _error_from(response: Response) -> ClientError:
    body = response.read_body()
    message = ""
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            message = decoded["message"]
    except ValueError:
        pass
    if not message:
        message = body.decode("utf-8", "replace").strip() or f"HTTP status {response.status}"
    return ClientError(response.status, message)


def _chunks(response: Response) -> Iterator[bytes]:
    """The body's chunks, with a broken stream turned into a ClientError."""
    try:
        yield from response.iter_body()
    except StreamAborted as exc:
        raise ClientError(exc.status, exc.message) from exc
    finally:
        response.close()


def _json_messages(response: Response) -> Iterator[dict[str, Any]]:
    """Decode a JSON-message stream (one object per line) as it arrives."""
    if "json" not in response.headers.get("Content-Type", "application/json"):
        text = b"".join(_chunks(response)).decode("utf-8", "replace")
        if text:
            yield {"stream": text}
        return
    pending = b""
    for chunk in _chunks(response):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield from _decode_line(line)
    yield from _decode_line(pending)


def _decode_line(line: bytes) -> Iterator[dict[str, Any]]:
    line = line.strip()
    if not line:
        return
    try:
        message = json.loads(line)
    except ValueError:
        yield {"stream": line.decode("utf-8", "replace") + "\n"}
        return
    yield message if isinstance(message, dict) else {"aux": message}


def _json_body(value: Any) -> dict[str, Any]:
    """Keyword arguments of ``_send`` for a JSON request body."""
    return {"body": io.BytesIO(json.dumps(value, separators=(",", ":")).encode()),
            "headers": {"Content-Type": "application/json"}}


def _integer(value: int | None) -> list[str]:
    return [] if value is None else [str(int(value))]


def _text(value: str | None) -> list[str]:
    return [value] if value else []


def _timestamp(value: float | None) -> list[str]:
    if not value:
        return []
    whole = int(value)
    nanoseconds = int(round((value - whole) * 1e9))
    return [f"{whole}.{nanoseconds:09d}"]


def _multiplexed(response: Response, api_version: str, tty: bool) -> bool:
    """Whether a stdio stream is multiplexed: the content type says it from API 1.42 on; an
    older daemon sends ``raw-stream`` for both, and then only the TTY setting tells."""
    content_type = response.headers.get("Content-Type", "")
    try:
        modern = parse_version(api_version) >= (1, 42)
    except ValueError:
        modern = True
    return is_multiplexed(content_type, default=not tty and not (modern and content_type))


def _attachment(response: Response, api_version: str, *, tty: bool) -> Attachment:
    duplex = response.hijacked
    if duplex is None:
        body = b"".join(_chunks(response))
        raise ClientError(response.status, "the daemon did not hijack the connection"
                          + (f": {body.decode('utf-8', 'replace').strip()}" if body.strip() else ""))
    response.hijacked = None
    return Attachment(duplex, multiplexed=_multiplexed(response, api_version, tty))


class PendingWait:
    """A wait request already sent; ``result()`` blocks until the daemon answers."""

    def __init__(self, response: Response) -> None:
        self._response = response

    def result(self) -> dict[str, Any]:
        """``{"StatusCode": n, "Error": None | {"Message": ...}}``."""
        body = b"".join(_chunks(self._response))
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



class APIClient:
    def __init__(self, transport: Transport, *, api_version: str | None = None) -> None:
        self.transport = transport
        self._api_version = api_version

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def api_version(self) -> str:
        if self._api_version is None:
            self._api_version = self._negotiate()
        return self._api_version

    def _negotiate(self) -> str:
        response = self._send("GET", "/_ping", versioned=False)
        b"".join(_chunks(response))
        advertised = response.headers.get("API-Version", "")
        try:
            if advertised and parse_version(advertised) < parse_version(API_VERSION):
                return advertised
        except ValueError:
            pass
        return API_VERSION

    def _send(self, method: str, path: str, *, query: dict[str, list[str]] | None = None,
              body: BinaryIO | None = None, headers: dict[str, str] | None = None,
              versioned: bool = True, accept: tuple[int, ...] = ()) -> Response:
        if versioned:
            path = f"/v{self.api_version}{path}"
        clean_query = {name: values for name, values in (query or {}).items() if values}
        request = Request(method, path, clean_query, Headers(headers or {}), body)
        response = self.transport.handle(request)
        if response.hijacked is not None and response.status in (101, 200):
            return response
        if not 200 <= response.status < 300 and response.status not in accept:
            try:
                raise _error_from(response)
            finally:
                response.close()
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        body = b"".join(_chunks(response))
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ClientError(response.status, f"the daemon sent a malformed JSON answer: {exc}") from exc

    # -- system -------------------------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        """The daemon's advertised ``API-Version``, ``OSType``, ``Builder-Version``,
        ``Docker-Experimental`` headers (and the body, normally ``OK``)."""
        response = self._send("GET", "/_ping", versioned=False)
        body = b"".join(_chunks(response)).decode("utf-8", "replace")
        answer = {name: response.headers[name]
                  for name in ("API-Version", "OSType", "Builder-Version", "Docker-Experimental")
                  if name in response.headers}
        answer["Body"] = body
        return answer

    def version(self) -> dict[str, Any]:
        return self._json("GET", "/version")

    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def system_df(self, *, types: Iterable[str] = ()) -> dict[str, Any]:
        return self._json("GET", "/system/df", query={"type": list(types)})

    def system_check(self, *, repair: bool = False) -> dict[str, Any]:
        return self._json("POST", "/lamina/system/check", query={"repair": _flag(repair)})

    # -- images -------------------------------------------------------------------------------

    def images(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
               digests: bool = False) -> list[dict[str, Any]]:
        return self._json("GET", "/images/json", query={
            "all": _flag(all), "filters": _encode_filters(filters), "digests": _flag(digests)}) or []

    def inspect_image(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{name}/json")

    def history(self, name: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/images/{name}/history") or []

    def tag(self, source: str, repository: str, tag: str = "") -> None:
        response = self._send("POST", f"/images/{source}/tag",
                              query={"repo": [repository], "tag": [tag] if tag else []})
        b"".join(_chunks(response))

    def remove_image(self, name: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        return self._json("DELETE", f"/images/{name}", query={
            "force": _flag(force), "noprune": _flag(not prune)}) or []

    def prune_images(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/images/prune", query={"filters": _encode_filters(filters)}) or {}

    def load(self, stream: BinaryIO, *, quiet: bool = False) -> Iterator[dict[str, Any]]:
        response = self._send("POST", "/images/load", query={"quiet": _flag(quiet)}, body=stream,
                              headers={"Content-Type": "application/x-tar"})
        return _json_messages(response)

    def save(self, names: list[str], *, format: str = "docker") -> Iterator[bytes]:
        query = {"names": list(names), "format": [] if format == "docker" else [format]}
        return _chunks(self._send("GET", "/images/get", query=query))

    def import_image(self, stream: BinaryIO | None, *, source: str = "-", repository: str = "",
                     tag: str = "", changes: Iterable[str] = (), message: str = "",
                     platform: str = "") -> Iterator[dict[str, Any]]:
        """Import a filesystem tar (``source="-"``: the tar is ``stream``)."""
        query = {"fromSrc": [source], "repo": [repository] if repository else [],
                 "tag": [tag] if tag else [], "changes": list(changes),
                 "message": [message] if message else [], "platform": [platform] if platform else []}
        response = self._send("POST", "/images/create", query=query, body=stream,
                              headers={"Content-Type": "application/x-tar"} if stream is not None else None)
        return _json_messages(response)

    def pull(self, image: str, *, tag: str = "", platform: str = "") -> Iterator[dict[str, Any]]:
        """Pull ``image`` (``fromImage``); the JSON-message stream of the pull."""
        query = {"fromImage": [image], "tag": _text(tag), "platform": _text(platform)}
        return _json_messages(self._send("POST", "/images/create", query=query))

    # == containers ============================================================================

    # -- lifecycle ----------------------------------------------------------------------------

    def create_container(self, body: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        """``{"Id": ..., "Warnings": [...]}`` from a ContainerCreateRequest body."""
        return self._json("POST", "/containers/create", query={"name": _text(name)}, **_json_body(body))

    def _empty(self, method: str, path: str, **kwargs: Any) -> int:
        response = self._send(method, path, **kwargs)
        b"".join(_chunks(response))
        return response.status

    def start(self, id: str) -> bool:
        """False when the container was already running (304)."""
        return self._empty("POST", f"/containers/{id}/start", accept=(304,)) != 304

    def stop(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> bool:
        """False when the container was not running (304)."""
        return self._empty("POST", f"/containers/{id}/stop", accept=(304,),
                           query={"t": _integer(timeout), "signal": _text(signal)}) != 304

    def restart(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None:
        self._empty("POST", f"/containers/{id}/restart",
                    query={"t": _integer(timeout), "signal": _text(signal)})

    def kill(self, id: str, *, signal: str | None = None) -> None:
        self._empty("POST", f"/containers/{id}/kill", query={"signal": _text(signal)})

    def remove_container(self, id: str, *, force: bool = False, volumes: bool = False) -> None:
        self._empty("DELETE", f"/containers/{id}", query={"force": _flag(force), "v": _flag(volumes)})

    def pause(self, id: str) -> None:
        self._empty("POST", f"/containers/{id}/pause")

    def unpause(self, id: str) -> None:
        self._empty("POST", f"/containers/{id}/unpause")

    def rename(self, id: str, name: str) -> None:
        self._empty("POST", f"/containers/{id}/rename", query={"name": [name]})

    def update(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/containers/{id}/update", **_json_body(body)) or {}

    def resize(self, id: str, *, height: int, width: int) -> None:
        self._empty("POST", f"/containers/{id}/resize", query={"h": [str(height)], "w": [str(width)]})

    def prune_containers(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/containers/prune", query={"filters": _encode_filters(filters)}) or {}

    def system_boot(self) -> dict[str, Any]:
        return self._json("POST", "/lamina/system/boot") or {}

    def wait_later(self, id: str, *, condition: str = "not-running") -> PendingWait:
        """Send the wait request now (the daemon starts waiting); read the result later."""
        condition_query = [] if condition == "not-running" else [condition]
        return PendingWait(self._send("POST", f"/containers/{id}/wait", query={"condition": condition_query}))

    def wait(self, id: str, *, condition: str = "not-running") -> dict[str, Any]:
        return self.wait_later(id, condition=condition).result()

    # -- reading ------------------------------------------------------------------------------

    def containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/containers/json", query={
            "all": _flag(all), "limit": _integer(limit) if limit > 0 else [], "size": _flag(size),
            "filters": _encode_filters(filters)}) or []

    def inspect_container(self, id: str, *, size: bool = False) -> dict[str, Any]:
        return self._json("GET", f"/containers/{id}/json", query={"size": _flag(size)})

    def top(self, id: str, *, ps_args: str = "") -> dict[str, Any]:
        return self._json("GET", f"/containers/{id}/top", query={"ps_args": _text(ps_args)}) or {}

    def changes(self, id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/containers/{id}/changes") or []

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]:
        """The statistics documents: one (``stream=False``) or one per interval."""
        response = self._send("GET", f"/containers/{id}/stats", query={
            "stream": [] if stream else ["0"], "one-shot": _flag(one_shot)})
        return _json_messages(response)

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float | None = None, until: float | None = None, timestamps: bool = False,
             tail: str = "all", tty: bool = False) -> Iterator[tuple[int, bytes]]:
        """(stream, payload) pairs; ``tty`` says how to read a daemon's ambiguous raw stream."""
        response = self._send("GET", f"/containers/{id}/logs", query={
            "stdout": _flag(stdout), "stderr": _flag(stderr), "follow": _flag(follow),
            "since": _timestamp(since), "until": _timestamp(until),
            "timestamps": _flag(timestamps), "tail": [] if tail == "all" else [tail]})
        return decode_frames(_chunks(response), multiplexed=_multiplexed(response, self.api_version, tty))

    def export(self, id: str) -> Iterator[bytes]:
        return _chunks(self._send("GET", f"/containers/{id}/export"))

    @staticmethod
    def _path_stat(response: Response) -> dict[str, Any]:
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

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        """Docker's PathStat of ``path`` in the container (name, size, mode, mtime, linkTarget)."""
        response = self._send("HEAD", f"/containers/{id}/archive", query={"path": [path]})
        b"".join(_chunks(response))
        return self._path_stat(response)

    def get_archive(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        response = self._send("GET", f"/containers/{id}/archive", query={"path": [path]})
        return self._path_stat(response), _chunks(response)

    def put_archive(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None:
        self._empty("PUT", f"/containers/{id}/archive", body=stream,
                    headers={"Content-Type": "application/x-tar"}, query={
                        "path": [path], "noOverwriteDirNonDir": _flag(no_overwrite_dir_non_dir),
                        "copyUIDGID": _flag(copy_uid_gid)})

    def commit(self, container: str, *, repository: str = "", tag: str = "", comment: str = "",
               author: str = "", pause: bool = True, changes: Iterable[str] = (),
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        query = {"container": [container], "repo": _text(repository), "tag": _text(tag),
                 "comment": _text(comment), "author": _text(author), "pause": [] if pause else ["0"],
                 "changes": list(changes)}
        extra = _json_body(config) if config is not None else {}
        return self._json("POST", "/commit", query=query, **extra)

    # -- stdio --------------------------------------------------------------------------------

    def attach(self, id: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               stream: bool = True, logs: bool = False, tty: bool = False) -> Attachment:
        response = self._send("POST", f"/containers/{id}/attach", headers=dict(_UPGRADE), query={
            "stdin": _flag(stdin), "stdout": _flag(stdout), "stderr": _flag(stderr),
            "stream": _flag(stream), "logs": _flag(logs)})
        return _attachment(response, self.api_version, tty=tty)

    # -- exec ---------------------------------------------------------------------------------

    def exec_create(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/containers/{id}/exec", **_json_body(body))

    def exec_start(self, exec_id: str, *, detach: bool = False, tty: bool = False,
                   console_size: tuple[int, int] | None = None) -> Attachment | None:
        body: dict[str, Any] = {"Detach": detach, "Tty": tty}
        if console_size is not None:
            body["ConsoleSize"] = list(console_size)
        arguments = _json_body(body)
        if not detach:
            arguments["headers"].update(_UPGRADE)
        response = self._send("POST", f"/exec/{exec_id}/start", **arguments)
        if detach:
            b"".join(_chunks(response))
            return None
        return _attachment(response, self.api_version, tty=tty)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self._json("GET", f"/exec/{exec_id}/json")

    def exec_resize(self, exec_id: str, *, height: int, width: int) -> None:
        self._empty("POST", f"/exec/{exec_id}/resize", query={"h": [str(height)], "w": [str(width)]})

    # -- volumes ------------------------------------------------------------------------------

    def volumes(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"Volumes": [...], "Warnings": [...]}``."""
        return self._json("GET", "/volumes", query={"filters": _encode_filters(filters)}) or {}

    def create_volume(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"Name": name, "Driver": driver, "DriverOpts": dict(driver_opts or {}), "Labels": dict(labels or {})}
        return self._json("POST", "/volumes/create", **_json_body(body))

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/volumes/{name}")

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        self._empty("DELETE", f"/volumes/{name}", query={"force": _flag(force)})

    def prune_volumes(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/volumes/prune", query={"filters": _encode_filters(filters)}) or {}

    # -- events and networks ------------------------------------------------------------------

    def events(self, *, since: str = "", until: str = "",
               filters: dict[str, list[str]] | None = None) -> Iterator[dict[str, Any]]:
        """``GET /events``: the event messages as they arrive (``since`` / ``until`` as the API
        takes them: unix seconds such as ``1700000000.000000001``); ends at ``until``."""
        response = self._send("GET", "/events", query={
            "since": _text(since), "until": _text(until), "filters": _encode_filters(filters)})
        return _json_messages(response)

    def networks(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/networks", query={"filters": _encode_filters(filters)}) or []

    def inspect_network(self, id: str) -> dict[str, Any]:
        return self._json("GET", f"/networks/{id}")

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /networks/create`` with Docker's NetworkCreateRequest."""
        return self._json("POST", "/networks/create", **_json_body(body))

    def remove_network(self, id: str) -> None:
        self._empty("DELETE", f"/networks/{id}")

    def prune_networks(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/networks/prune", query={"filters": _encode_filters(filters)}) or {}

    def connect_network(self, id: str, container: str, endpoint_config: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"Container": container, "EndpointConfig": endpoint_config or {}}
        self._empty("POST", f"/networks/{id}/connect", **_json_body(body))

    def disconnect_network(self, id: str, container: str, *, force: bool = False) -> None:
        self._empty("POST", f"/networks/{id}/disconnect", **_json_body({"Container": container, "Force": force}))

    # -- builds -------------------------------------------------------------------------------

    def build(self, context: BinaryIO | None, *, dockerfile: str = "", tags: Iterable[str] = (),
              build_args: dict[str, str | None] | None = None, target: str = "",
              labels: dict[str, str] | None = None, no_cache: bool = False, quiet: bool = False,
              remove: bool = True, force_remove: bool = False, network_mode: str = "",
              platform: str = "", context_directory: str = "") -> Iterator[dict[str, Any]]:
        """``POST /build`` with the context tar ``context`` (or lamina's ``laminacontext``
        directory, read in place by an in-process engine); the JSON messages as they arrive."""
        query = {
            "dockerfile": _text(dockerfile), "t": list(tags),
            "buildargs": [json.dumps(build_args, separators=(",", ":"))] if build_args else [],
            "target": _text(target),
            "labels": [json.dumps(labels, separators=(",", ":"))] if labels else [],
            "nocache": _flag(no_cache), "q": _flag(quiet), "rm": ["1" if remove else "0"],
            "forcerm": _flag(force_remove), "networkmode": _text(network_mode), "platform": _text(platform),
            "laminacontext": _text(context_directory),
        }
        headers = {"Content-Type": "application/x-tar"} if context is not None else None
        return _json_messages(self._send("POST", "/build", query=query, body=context, headers=headers))

    def prune_build_cache(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"CachesDeleted": [...], "SpaceReclaimed": n}``."""
        return self._json("POST", "/build/prune",
                          query={"all": _flag(all), "filters": _encode_filters(filters)}) or {}
