"""Registry calls of :class:`~lamina.client.client.APIClient` (a mixin): pull with credentials,
push, login (``POST /auth``), distribution inspect and search.

``auth`` is the ``X-Registry-Auth`` header value (see :mod:`lamina.cli.dockerconfig`, which
builds it from ``~/.docker/config.json``); it is sent only when given.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:  # the protocol costs import time the CLI's start-up does not pay
    from typing import Any, Protocol

    from lamina.api.http import Response

    class _Sender(Protocol):
        def _send(self, method: str, path: str, **kwargs: Any) -> Response: ...

        def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...

__all__ = ["DistributionMixin"]


def _auth_headers(auth: str | None) -> dict[str, str]:
    return {"X-Registry-Auth": auth} if auth else {}


def _messages(response: Response) -> Iterator[dict[str, Any]]:
    from lamina.client.calls import json_messages

    return json_messages(response)


class DistributionMixin:
    def pull_image(self: _Sender, image: str, *, tag: str = "", platform: str = "",
                   auth: str | None = None) -> Iterator[dict[str, Any]]:
        """Pull ``image`` (``fromImage``, with ``tag``: a tag or a digest; empty: every tag)."""
        query = {"fromImage": [image], "tag": [tag] if tag else [], "platform": [platform] if platform else []}
        return _messages(self._send("POST", "/images/create", query=query, headers=_auth_headers(auth)))

    def push(self: _Sender, name: str, *, tag: str = "", auth: str | None = None,
             manifest_format: str = "") -> Iterator[dict[str, Any]]:
        """Push ``name`` (a repository, ``tag`` one of its tags; no tag: every tag);
        ``manifest_format`` ``oci`` asks for OCI manifests (lamina's ``laminaformat``)."""
        query = {"tag": [tag] if tag else [], "laminaformat": [manifest_format] if manifest_format else []}
        return _messages(self._send("POST", f"/images/{name}/push", query=query, headers=_auth_headers(auth)))

    def login(self: _Sender, *, username: str, password: str, server: str) -> dict[str, Any]:
        """Check credentials against a registry (``POST /auth``); Docker's answer."""
        body = json.dumps({"username": username, "password": password, "serveraddress": server}).encode()
        answer = self._json("POST", "/auth", body=io.BytesIO(body), headers={"Content-Type": "application/json"})
        return answer if isinstance(answer, dict) else {}

    def inspect_distribution(self: _Sender, name: str, *, auth: str | None = None) -> dict[str, Any]:
        answer = self._json("GET", f"/distribution/{name}/json", headers=_auth_headers(auth))
        return answer if isinstance(answer, dict) else {}

    def search(self: _Sender, term: str, *, limit: int = 25, auth: str | None = None) -> list[dict[str, Any]]:
        answer = self._json("GET", "/images/search", query={"term": [term], "limit": [str(limit)]},
                            headers=_auth_headers(auth))
        return answer if isinstance(answer, list) else []

    def manifest(self: _Sender, name: str, *, auth: str | None = None) -> dict[str, Any]:
        """The manifest or index of ``name`` as its registry serves it (lamina's endpoint)."""
        answer = self._json("GET", f"/lamina/distribution/{name}/manifest", headers=_auth_headers(auth))
        return answer if isinstance(answer, dict) else {}
