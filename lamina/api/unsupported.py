"""Endpoints of features lamina does not have, answered the way a Docker engine without the
feature answers, so that clients print a clear message (and fall back where they can).

================================================  ======  ======================================
endpoints                                         status  answer
================================================  ======  ======================================
``/swarm``, ``/swarm/*`` (but init, join, leave), 503     Docker's "This node is not a swarm
``/nodes*``, ``/services*``, ``/tasks*``,                 manager. Use "docker swarm init" or
``/secrets*``, ``/configs*``                              "docker swarm join" to connect this
                                                          node to swarm and try again."
``POST /swarm/init``, ``POST /swarm/join``        503     lamina has no swarm mode to enter
``POST /swarm/leave``                             503     Docker's "This node is not part of a
                                                          swarm"
``GET /plugins``                                  200     ``[]`` (no plugins installed)
``GET /plugins/{name}/json``,                     404     Docker's "plugin "NAME" not found":
``DELETE /plugins/{name}``                                none is installed (``docker inspect``
                                                          then tries the next kind of object)
``/plugins/*``                                    501     no plugin support
``POST /session``                                 501     no BuildKit: the docker CLI uses the
                                                          classic builder (``Builder-Version: 1``)
``/containers/{id}/checkpoints*``                 501     no checkpoint/restore
================================================  ======  ======================================

:data:`ROUTES` holds these as ``(method, pattern, handler)`` for every method clients use (GET,
POST, PUT, DELETE), for :class:`lamina.api.router.Route`; :data:`CHECKPOINT_ROUTES` must come before ``DELETE /containers/{id}``, whose greedy ``{id}``
would otherwise take ``/containers/x/checkpoints/y`` for a container named ``x/checkpoints/y``.
"""

from __future__ import annotations

from collections.abc import Callable

from lamina import errdefs
from lamina.api.http import Response
from lamina.api.streams import json_response

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.call import Call

__all__ = [
    "CHECKPOINT_ROUTES", "NOT_A_SWARM_MANAGER", "NOT_PART_OF_A_SWARM", "ROUTES", "SWARM_UNSUPPORTED",
    "Entry", "list_plugins",
]

NOT_A_SWARM_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                       "to connect this node to swarm and try again.")
NOT_PART_OF_A_SWARM = "This node is not part of a swarm"
SWARM_UNSUPPORTED = "lamina does not support swarm mode: this node cannot initialize or join a swarm"
_PLUGINS = "lamina does not support plugins"
_SESSION = ("lamina does not support BuildKit sessions (/session): use the classic builder "
            "(DOCKER_BUILDKIT=0 docker build)")
_CHECKPOINTS = "lamina does not support checkpoint and restore of containers"
Entry = tuple[str, str, Callable[["Call"], Response]]
_METHODS = ("GET", "POST", "PUT", "DELETE")
_SWARM_RESOURCES = ("nodes", "services", "tasks", "secrets", "configs")


def _raising(kind: type[errdefs.LaminaError], message: str) -> Callable[[Call], Response]:
    def handler(call: Call) -> Response:
        raise kind(message)

    handler.__name__ = f"answer_{kind.__name__}"
    handler.__doc__ = message
    return handler


def list_plugins(call: Call) -> Response:
    return json_response([])


def _no_such_plugin(call: Call) -> Response:
    raise errdefs.NotFound(f'plugin "{call.params["name"]}" not found')


def _entries() -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
    not_manager = _raising(errdefs.Unavailable, NOT_A_SWARM_MANAGER)
    entries: list[Entry] = [
        ("POST", "/swarm/init", _raising(errdefs.Unavailable, SWARM_UNSUPPORTED)),
        ("POST", "/swarm/join", _raising(errdefs.Unavailable, SWARM_UNSUPPORTED)),
        ("POST", "/swarm/leave", _raising(errdefs.Unavailable, NOT_PART_OF_A_SWARM)),
    ]
    for method in _METHODS:
        entries.append((method, "/swarm", not_manager))
        entries.append((method, "/swarm/{path}", not_manager))
        for resource in _SWARM_RESOURCES:
            entries.append((method, f"/{resource}", not_manager))
            entries.append((method, f"/{resource}/{{path}}", not_manager))
    entries.append(("GET", "/plugins", list_plugins))
    entries.append(("GET", "/plugins/{name}/json", _no_such_plugin))
    entries.append(("DELETE", "/plugins/{name}", _no_such_plugin))
    plugins = _raising(errdefs.NotImplemented, _PLUGINS)
    entries.extend((method, "/plugins/{path}", plugins) for method in _METHODS)
    entries.append(("POST", "/session", _raising(errdefs.NotImplemented, _SESSION)))
    checkpoints = _raising(errdefs.NotImplemented, _CHECKPOINTS)
    checkpoint_entries: tuple[Entry, ...] = (
        ("GET", "/containers/{id}/checkpoints", checkpoints),
        ("POST", "/containers/{id}/checkpoints", checkpoints),
        ("DELETE", "/containers/{id}/checkpoints/{checkpoint}", checkpoints),
    )
    return tuple(entries), checkpoint_entries


ROUTES, CHECKPOINT_ROUTES = _entries()
