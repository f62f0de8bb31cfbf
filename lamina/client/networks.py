"""Networks: list, inspect, create, remove, prune, connect, disconnect."""

from __future__ import annotations

from lamina.client.calls import BaseClient, encode_filters, json_body

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NetworkMixin"]


class NetworkMixin(BaseClient):
    def networks(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/networks", query={"filters": encode_filters(filters)}) or []

    def inspect_network(self, id: str) -> dict[str, Any]:
        return self._json("GET", f"/networks/{id}")

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /networks/create`` with Docker's NetworkCreateRequest."""
        return self._json("POST", "/networks/create", **json_body(body))

    def remove_network(self, id: str) -> None:
        self._empty("DELETE", f"/networks/{id}")

    def prune_networks(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/networks/prune", query={"filters": encode_filters(filters)}) or {}

    def connect_network(self, id: str, container: str, endpoint_config: dict[str, Any] | None = None) -> None:
        self._empty("POST", f"/networks/{id}/connect",
                    **json_body({"Container": container, "EndpointConfig": endpoint_config or {}}))

    def disconnect_network(self, id: str, container: str, *, force: bool = False) -> None:
        self._empty("POST", f"/networks/{id}/disconnect", **json_body({"Container": container, "Force": force}))
