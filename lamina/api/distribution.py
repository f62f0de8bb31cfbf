"""Registry endpoints: pull (``POST /images/create?fromImage=``), push, ``/auth``,
``/distribution/{name}/json`` and ``/images/search``.

Credentials come as Docker's ``X-Registry-Auth`` header: base64url (padding optional) of a
JSON object ``{"username", "password", "serveraddress", "identitytoken", "registrytoken"}``
(``POST /auth`` takes the same object as its body).  A header that does not decode is refused
(400) without echoing it: secrets never reach an error message or a log.

Push takes lamina's extension ``laminaformat=oci`` to push OCI image manifests instead of
Docker's schema 2 (``docker``, the default); other values answer 400.
"""

from __future__ import annotations

import base64
import json

from lamina import errdefs
from lamina.api import params
from lamina.api.bodies import read_json
from lamina.api.http import Response
from lamina.api.streams import json_response, progress_stream

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.api.router import Call
    from lamina.distribution.registry.auth import Credentials

#: lamina's extension of ``POST /images/{name}/push``: the manifest format, ``docker`` (schema 2,
#: the default, what Docker pushes) or ``oci`` (an OCI image manifest).
MANIFEST_FORMAT_PARAMETER = "laminaformat"

__all__ = ["MANIFEST_FORMAT_PARAMETER", "pull_image", "push_image", "auth", "inspect_distribution", "search_images", "decode_auth", "decode_header_json", "manifest",
           "registry_credentials"]


def registry_credentials(document: Any) -> Credentials:
    """The credentials of one auth configuration object (``username``, ``password``,
    ``identitytoken``, ``registrytoken``)."""
    from lamina.distribution.registry.auth import Credentials

    if not isinstance(document, dict):
        raise errdefs.InvalidArgument("the registry auth configuration must be a JSON object")

    def text(*names: str) -> str:
        for name in names:
            value = document.get(name)
            if isinstance(value, str) and value:
                return value
        return ""

    return Credentials(username=text("username", "Username"), password=text("password", "Password"),
                       identity_token=text("identitytoken", "IdentityToken"),
                       registry_token=text("registrytoken", "RegistryToken"))


def decode_header_json(header: str | None, name: str) -> Any:
    """The JSON document of a base64url-encoded header (``X-Registry-Auth``,
    ``X-Registry-Config``; padding optional, as Go's decoder takes it); None when the header
    is absent or empty.  The header's value is never echoed: it holds secrets."""
    if not header or not header.strip():
        return None
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errdefs.InvalidArgument(f"{name} is not base64url-encoded JSON") from None


def decode_auth(header: str | None) -> Credentials | None:
    """The credentials of an ``X-Registry-Auth`` header (None when absent or empty)."""
    document = decode_header_json(header, "X-Registry-Auth")
    if document is None:
        return None
    credentials = registry_credentials(document)
    return None if credentials.empty else credentials


def _header_credentials(call: Call) -> Credentials | None:
    return decode_auth(call.request.headers.get("X-Registry-Auth"))


def pull_image(call: Call) -> Response:
    request = call.request
    from_image = params.string(request, "fromImage")
    tag = params.string(request, "tag")
    platform = params.string(request, "platform")
    credentials = _header_credentials(call)
    service = call.services.distribution
    return progress_stream(lambda progress: service.pull(from_image, tag=tag, platform=platform,
                                                         credentials=credentials, progress=progress),
                           context="pull")


def push_image(call: Call) -> Response:
    tag = params.string(call.request, "tag")
    manifest_format = params.string(call.request, MANIFEST_FORMAT_PARAMETER) or "docker"
    if manifest_format not in ("docker", "oci"):
        raise errdefs.InvalidArgument(f"unknown manifest format {manifest_format!r}: docker or oci")
    credentials = _header_credentials(call)
    service = call.services.distribution
    name = call.params["name"]
    return progress_stream(lambda progress: service.push(name, tag=tag, credentials=credentials, progress=progress,
                                                         manifest_format=manifest_format), context="push")


def auth(call: Call) -> Response:
    document = read_json(call.request.body)
    credentials = registry_credentials(document)
    server = str(document.get("serveraddress") or "") if isinstance(document, dict) else ""
    return json_response(call.services.distribution.login(server, credentials))


def inspect_distribution(call: Call) -> Response:
    return json_response(call.services.distribution.inspect_distribution(
        call.params["name"], credentials=_header_credentials(call)))


def search_images(call: Call) -> Response:
    term = params.string(call.request, "term")
    if not term:
        raise errdefs.InvalidArgument("the term parameter is required to search")
    limit_text = params.string(call.request, "limit", "25") or "25"
    try:
        limit = int(limit_text)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid limit {limit_text!r}") from None
    return json_response(call.services.distribution.search(term, limit=limit,
                                                          credentials=_header_credentials(call)))


def manifest(call: Call) -> Response:
    """``GET /lamina/distribution/{name}/manifest``: the manifest or index as the registry
    serves it (lamina's own endpoint, for ``lamina manifest inspect``)."""
    return json_response(call.services.distribution.manifest(call.params["name"],
                                                             credentials=_header_credentials(call)))
