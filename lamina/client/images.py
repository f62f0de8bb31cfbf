"""Images: list, inspect, history, tag, remove, prune, load, save, import, pull."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lamina.client.calls import BaseClient, chunks, encode_filters, flag, json_messages, text

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["ImageMixin"]


class ImageMixin(BaseClient):
    def images(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
               digests: bool = False) -> list[dict[str, Any]]:
        return self._json("GET", "/images/json", query={
            "all": flag(all), "filters": encode_filters(filters), "digests": flag(digests)}) or []

    def inspect_image(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{name}/json")

    def history(self, name: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/images/{name}/history") or []

    def tag(self, source: str, repository: str, tag: str = "") -> None:
        response = self._send("POST", f"/images/{source}/tag",
                              query={"repo": [repository], "tag": [tag] if tag else []})
        b"".join(chunks(response))

    def remove_image(self, name: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        return self._json("DELETE", f"/images/{name}", query={
            "force": flag(force), "noprune": flag(not prune)}) or []

    def prune_images(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("POST", "/images/prune", query={"filters": encode_filters(filters)}) or {}

    def load(self, stream: BinaryIO, *, quiet: bool = False) -> Iterator[dict[str, Any]]:
        response = self._send("POST", "/images/load", query={"quiet": flag(quiet)}, body=stream,
                              headers={"Content-Type": "application/x-tar"})
        return json_messages(response)

    def save(self, names: list[str], *, format: str = "docker") -> Iterator[bytes]:
        query = {"names": list(names), "format": [] if format == "docker" else [format]}
        return chunks(self._send("GET", "/images/get", query=query))

    def import_image(self, stream: BinaryIO | None, *, source: str = "-", repository: str = "",
                     tag: str = "", changes: Iterable[str] = (), message: str = "",
                     platform: str = "") -> Iterator[dict[str, Any]]:
        """Import a filesystem tar (``source="-"``: the tar is ``stream``)."""
        query = {"fromSrc": [source], "repo": [repository] if repository else [],
                 "tag": [tag] if tag else [], "changes": list(changes),
                 "message": [message] if message else [], "platform": [platform] if platform else []}
        response = self._send("POST", "/images/create", query=query, body=stream,
                              headers={"Content-Type": "application/x-tar"} if stream is not None else None)
        return json_messages(response)

    def pull(self, image: str, *, tag: str = "", platform: str = "") -> Iterator[dict[str, Any]]:
        """Pull ``image`` (``fromImage``); the JSON-message stream of the pull."""
        query = {"fromImage": [image], "tag": text(tag), "platform": text(platform)}
        return json_messages(self._send("POST", "/images/create", query=query))
