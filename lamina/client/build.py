"""Builds: ``POST /build`` and the build cache's prune."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from lamina.client.calls import BaseClient, encode_filters, flag, json_messages, text

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["BuildMixin"]


class BuildMixin(BaseClient):
    def build(self, context: BinaryIO | None, *, dockerfile: str = "", tags: Iterable[str] = (),
              build_args: dict[str, str | None] | None = None, target: str = "",
              labels: dict[str, str] | None = None, no_cache: bool = False, quiet: bool = False,
              remove: bool = True, force_remove: bool = False, network_mode: str = "",
              platform: str = "", context_directory: str = "", pull: bool = False,
              registry_config: str | None = None, extra_hosts: Iterable[str] = (),
              cache_from: Iterable[str] = ()) -> Iterator[dict[str, Any]]:
        """``POST /build`` with the context tar ``context`` (or lamina's ``laminacontext``
        directory, read in place by an in-process engine); the JSON messages as they arrive."""
        query = {
            "dockerfile": text(dockerfile), "t": list(tags),
            "buildargs": [json.dumps(build_args, separators=(",", ":"))] if build_args else [],
            "target": text(target),
            "labels": [json.dumps(labels, separators=(",", ":"))] if labels else [],
            "nocache": flag(no_cache), "q": flag(quiet), "rm": ["1" if remove else "0"],
            "forcerm": flag(force_remove), "networkmode": text(network_mode), "platform": text(platform),
            "pull": flag(pull), "extrahosts": list(extra_hosts),
            "cachefrom": [json.dumps(list(cache_from))] if cache_from else [],
            "laminacontext": text(context_directory),
        }
        headers = {"Content-Type": "application/x-tar"} if context is not None else {}
        if registry_config:
            headers["X-Registry-Config"] = registry_config
        return json_messages(self._send("POST", "/build", query=query, body=context, headers=headers))

    def prune_build_cache(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"CachesDeleted": [...], "SpaceReclaimed": n}``."""
        return self._json("POST", "/build/prune",
                          query={"all": flag(all), "filters": encode_filters(filters)}) or {}
