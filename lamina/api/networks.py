"""Network endpoints (Docker Engine API v1.45 names, shapes and statuses), over
:class:`lamina.services.api.NetworkService`.

``GET /networks`` (``filters``: ``dangling``, ``driver``, ``id``, ``label``, ``name``, ``scope``,
``type``) answers the NetworkResource list; ``GET /networks/{id}`` (``verbose``, ``scope``) one
resource with its ``Containers``; ``POST /networks/create`` (NetworkCreateRequest) answers 201
``{"Id", "Warning"}``; ``DELETE /networks/{id}`` 204 (409 while endpoints exist, 403 for the
predefined networks); ``POST /networks/prune`` (``until``, ``label``, ``label!``) answers
``{"NetworksDeleted": [...]}``; ``POST /networks/{id}/connect`` (``{"Container",
"EndpointConfig"}``) and ``/disconnect`` (``{"Container", "Force"}``) answer 200.
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
    "LIST_FILTERS", "PRUNE_FILTERS", "connect_network", "create_network", "disconnect_network", "inspect_network",
    "list_networks", "prune_networks", "remove_network",
]

LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})
MAX_BODY = 1 << 20


def _body(call: Call) -> dict[str, Any]:
    body = call.request.body
    data = body.read(MAX_BODY + 1) if body is not None else b""
    if len(data) > MAX_BODY:
        raise errdefs.InvalidArgument(f"the request body is larger than {MAX_BODY} bytes")
    if not data.strip():
        return {}
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errdefs.InvalidArgument(f"invalid JSON body: {exc}") from exc
    except RecursionError as exc:
        raise errdefs.InvalidArgument("invalid JSON body: nested too deeply") from exc
    if not isinstance(document, dict):
        raise errdefs.InvalidArgument("invalid JSON body: expected an object")
    return document


def list_networks(call: Call) -> Response:
    filters = params.filters(call.request, LIST_FILTERS)
    return json_response(call.services.networks.list(filters=filters))


def inspect_network(call: Call) -> Response:
    return json_response(call.services.networks.inspect(
        call.params["id"], verbose=params.boolean(call.request, "verbose"), scope=params.string(call.request, "scope")))


def create_network(call: Call) -> Response:
    return json_response(call.services.networks.create(_body(call)), status=201)


def remove_network(call: Call) -> Response:
    call.services.networks.remove(call.params["id"])
    return empty_response()


def prune_networks(call: Call) -> Response:
    filters = params.filters(call.request, PRUNE_FILTERS)
    return json_response(call.services.networks.prune(filters=filters))


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise errdefs.InvalidArgument("a container (Container) is required")
    return container


def connect_network(call: Call) -> Response:
    body = _body(call)
    config = body.get("EndpointConfig")
    if config is not None and not isinstance(config, dict):
        raise errdefs.InvalidArgument("invalid EndpointConfig: expected an object")
    call.services.networks.connect(call.params["id"], _container(body), config)
    return empty_response(status=200)


def disconnect_network(call: Call) -> Response:
    body = _body(call)
    call.services.networks.disconnect(call.params["id"], _container(body), force=bool(body.get("Force")))
    return empty_response(status=200)
