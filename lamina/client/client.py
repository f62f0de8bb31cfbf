"""APIClient: typed Docker Engine API calls over any :class:`~lamina.client.transport.Transport`.

Every method builds one request; a non-2xx answer raises :class:`ClientError` carrying the
HTTP status and the daemon's ``message``.  Streams stay streams: ``load`` and
``import_image`` yield the decoded JSON messages as they arrive (an in-band
``{"error": ...}`` message is yielded like any other: the caller renders it), ``save`` yields
the archive's bytes.

The API version is negotiated like the docker CLI does it: the first call pings the daemon
and then uses ``min(daemon's API-Version, 1.45)`` as the path prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.versions import API_VERSION, parse_version
from lamina.client.transport import Transport

__all__ = ["APIClient", "ClientError"]


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
              versioned: bool = True) -> Response:
        if versioned:
            path = f"/v{self.api_version}{path}"
        clean_query = {name: values for name, values in (query or {}).items() if values}
        request = Request(method, path, clean_query, Headers(headers or {}), body)
        response = self.transport.handle(request)
        if not 200 <= response.status < 300:
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
