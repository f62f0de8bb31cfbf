"""Volume endpoints (Docker Engine API v1.45 names, shapes and statuses).

``GET /volumes`` (``filters``: ``dangling``, ``name``, ``driver``, ``label``) answers
``{"Volumes": [...], "Warnings": []}``; ``POST /volumes/create`` (body ``{"Name", "Driver",
"DriverOpts", "Labels"}``, all optional; an empty body makes an anonymous volume) answers 201
with the volume; ``GET /volumes/{name}``; ``DELETE /volumes/{name}`` (``force``: a missing
volume is not an error) answers 204; ``POST /volumes/prune`` (``filters``: ``label``,
``label!``, ``all``) answers ``{"VolumesDeleted": [...], "SpaceReclaimed": n}``.
Statuses come from the error table: unknown volume or driver 404, bad name or option 400,
volume in use 409.
"""

from __future__ import annotations

import json

from lamina import errdefs
from lamina.api import params
from lamina.api.http import Response
from lamina.api.streams import empty_response, json_response

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.api.call import Call

__all__ = [
    "list_volumes", "create_volume", "inspect_volume", "remove_volume", "prune_volumes",
    "LIST_FILTERS", "PRUNE_FILTERS", "MAX_BODY",
]

LIST_FILTERS = frozenset({"dangling", "name", "driver", "label"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})
MAX_BODY = 1 << 20

# field -> (accepted JSON type, its name in messages); null is the zero value, as in Go
_CREATE_FIELDS = {"Name": (str, "a string"), "Driver": (str, "a string"),
                  "DriverOpts": (dict, "an object of strings"), "Labels": (dict, "an object of strings")}


def _create_body(call: "Call") -> dict[str, Any]:
    body = call.request.body
    data = body.read(MAX_BODY + 1) if body is not None else b""
    if len(data) > MAX_BODY:
        raise errdefs.InvalidArgument(f"the request body is larger than {MAX_BODY} bytes")
    if not data.strip():
        return {}  # dockerd: an empty body is not invalid
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise errdefs.InvalidArgument(f"invalid JSON body: {exc}") from exc
    if not isinstance(document, dict):
        raise errdefs.InvalidArgument("invalid JSON body: expected an object")
    for name, (kind, what) in _CREATE_FIELDS.items():
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is dict and not all(
                isinstance(item, str) for item in value.values())):
            raise errdefs.InvalidArgument(f"invalid JSON body: {name} must be {what}")
    return document


def list_volumes(call: "Call") -> Response:
    filters = params.filters(call.request, LIST_FILTERS)
    return json_response(call.services.volumes.list(filters=filters))


def create_volume(call: "Call") -> Response:
    body = _create_body(call)
    volume = call.services.volumes.create(
        body.get("Name") or "", driver=body.get("Driver") or "",
        driver_opts=body.get("DriverOpts"), labels=body.get("Labels"))
    return json_response(volume, status=201)


def inspect_volume(call: "Call") -> Response:
    return json_response(call.services.volumes.inspect(call.params["name"]))


def remove_volume(call: "Call") -> Response:
    call.services.volumes.remove(call.params["name"], force=params.boolean(call.request, "force"))
    return empty_response(204)


def prune_volumes(call: "Call") -> Response:
    filters = params.filters(call.request, PRUNE_FILTERS)
    return json_response(call.services.volumes.prune(filters=filters))

