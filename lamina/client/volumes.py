"""Volumes: list, create, inspect, remove, prune."""

from __future__ import annotations

from lamina.client.calls import BaseClient, encode_filters, flag, json_body

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["VolumeMixin"]


class VolumeMixin(BaseClient):
    def volumes(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"Volumes": [...], "Warnings": [...]}``."""
        return self._json("GET", "/volumes", query={"filters": encode_filters(filters)}) or {}

    def create_volume(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"Name": name, "Driver": driver, "DriverOpts": dict(driver_opts or {}), "Labels": dict(labels or {})}
        return self._json("POST", "/volumes/create", **json_body(body))

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/volumes/{name}")

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        self._empty("DELETE", f"/volumes/{name}", query={"force": flag(force)})

    def prune_volumes(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/volumes/prune", query={"filters": encode_filters(filters)}) or {}
