"""Networks: list and inspect."""

from __future__ import annotations

from typing import Any

from lamina.client.calls import BaseClient, encode_filters

__all__ = ["NetworkMixin"]


class NetworkMixin(BaseClient):
    def networks(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/networks", query={"filters": encode_filters(filters)}) or []

    def inspect_network(self, id: str) -> dict[str, Any]:
        return self._json("GET", f"/networks/{id}")
