"""The plumbing every resource of :class:`lamina.client.client.APIClient` shares.

:class:`BaseClient` negotiates the API version (the first call pings the daemon and then uses
``min(daemon's API-Version, 1.45)`` as the path prefix, as the docker CLI does) and sends one
request per call: ``_send`` answers the :class:`~lamina.api.http.Response` (a non-2xx status
not in ``accept`` raises :class:`ClientError` with the daemon's ``message``), ``_json`` its
decoded JSON body, ``_empty`` its status after draining the body.  The query encoders and body
decoders here turn Python values into Docker's query strings and answers back into values.

The resource mixins (:mod:`lamina.client.containers`, :mod:`~lamina.client.images`, ...)
subclass :class:`BaseClient`; a new resource is one more module with one more mixin, listed in
:class:`lamina.client.client.APIClient`'s bases.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.versions import API_VERSION, parse_version

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from lamina.client.api import Transport
    from lamina.client.stdio import Attachment

__all__ = [
    "BaseClient", "ClientError", "UPGRADE", "attachment", "chunks", "encode_filters", "flag", "integer",
    "json_body", "json_messages", "multiplexed", "text", "timestamp",
]

#: The headers of a request that asks the daemon to hijack the connection (attach, exec start).
UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


class ClientError(Exception):
    """The daemon answered with an error status (``status``) and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ClientError({self.status}, {self.message!r})"


# -- query values ---------------------------------------------------------------------------------


def encode_filters(filters: dict[str, list[str]] | None) -> list[str]:
    if not filters:
        return []
    return [json.dumps({key: list(values) for key, values in filters.items()}, separators=(",", ":"))]


def flag(value: bool) -> list[str]:
    return ["1"] if value else []


def integer(value: int | None) -> list[str]:
    return [] if value is None else [str(int(value))]


def text(value: str | None) -> list[str]:
    return [value] if value else []


def timestamp(value: float | None) -> list[str]:
    if not value:
        return []
    whole = int(value)
    nanoseconds = int(round((value - whole) * 1e9))
    return [f"{whole}.{nanoseconds:09d}"]


def json_body(value: Any) -> dict[str, Any]:
    """Keyword arguments of ``_send`` for a JSON request body."""
    return {"body": io.BytesIO(json.dumps(value, separators=(",", ":")).encode()),
            "headers": {"Content-Type": "application/json"}}


# -- answers --------------------------------------------------------------------------------------


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


def chunks(response: Response) -> Iterator[bytes]:
    """The body's chunks, with a broken stream turned into a ClientError."""
    try:
        yield from response.iter_body()
    except StreamAborted as exc:
        raise ClientError(exc.status, exc.message) from exc
    finally:
        response.close()


def json_messages(response: Response) -> Iterator[dict[str, Any]]:
    """Decode a JSON-message stream (one object per line) as it arrives."""
    if "json" not in response.headers.get("Content-Type", "application/json"):
        content = b"".join(chunks(response)).decode("utf-8", "replace")
        if content:
            yield {"stream": content}
        return
    pending = b""
    for chunk in chunks(response):
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


def multiplexed(response: Response, api_version: str, tty: bool) -> bool:
    """Whether a stdio stream is multiplexed: the content type says it from API 1.42 on; an
    older daemon sends ``raw-stream`` for both, and then only the TTY setting tells."""
    from lamina.client.stdio import is_multiplexed  # the stdio code: only for container streams

    content_type = response.headers.get("Content-Type", "")
    try:
        modern = parse_version(api_version) >= (1, 42)
    except ValueError:
        modern = True
    return is_multiplexed(content_type, default=not tty and not (modern and content_type))


def attachment(response: Response, api_version: str, *, tty: bool) -> Attachment:
    """The hijacked connection of an attach or exec start answer."""
    from lamina.client.stdio import Attachment

    duplex = response.hijacked
    if duplex is None:
        body = b"".join(chunks(response))
        raise ClientError(response.status, "the daemon did not hijack the connection"
                          + (f": {body.decode('utf-8', 'replace').strip()}" if body.strip() else ""))
    response.hijacked = None
    return Attachment(duplex, multiplexed=multiplexed(response, api_version, tty))


# -- the client's plumbing ------------------------------------------------------------------------


class BaseClient:
    def __init__(self, transport: Transport, *, api_version: str | None = None) -> None:
        self.transport = transport
        self._api_version = api_version

    @property
    def api_version(self) -> str:
        if self._api_version is None:
            self._api_version = self._negotiate()
        return self._api_version

    def _negotiate(self) -> str:
        response = self._send("GET", "/_ping", versioned=False)
        b"".join(chunks(response))
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
        body = b"".join(chunks(response))
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ClientError(response.status, f"the daemon sent a malformed JSON answer: {exc}") from exc

    def _empty(self, method: str, path: str, **kwargs: Any) -> int:
        response = self._send(method, path, **kwargs)
        b"".join(chunks(response))
        return response.status
