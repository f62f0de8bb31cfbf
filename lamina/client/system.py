"""The daemon itself: ping, version, info, disk usage, events, and lamina's check and boot."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lamina.client.calls import BaseClient, chunks, encode_filters, flag, json_messages, text

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SystemMixin"]


class SystemMixin(BaseClient):
    def ping(self) -> dict[str, str]:
        """The daemon's advertised ``API-Version``, ``OSType``, ``Builder-Version``,
        ``Docker-Experimental`` headers (and the body, normally ``OK``)."""
        response = self._send("GET", "/_ping", versioned=False)
        body = b"".join(chunks(response)).decode("utf-8", "replace")
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
        return self._json("POST", "/lamina/system/check", query={"repair": flag(repair)})

    def system_boot(self) -> dict[str, Any]:
        return self._json("POST", "/lamina/system/boot") or {}

    def events(self, *, since: str = "", until: str = "",
               filters: dict[str, list[str]] | None = None) -> Iterator[dict[str, Any]]:
        """``GET /events``: the event messages as they arrive (``since`` / ``until`` as the API
        takes them: unix seconds such as ``1700000000.000000001``); ends at ``until``."""
        response = self._send("GET", "/events", query={
            "since": text(since), "until": text(until), "filters": encode_filters(filters)})
        return json_messages(response)
