"""Exec endpoints (Docker Engine API v1.45).

``POST /containers/{id}/exec`` (body: ExecConfig, checked by :mod:`lamina.api.bodies`;
201 ``{"Id"}``), ``POST /exec/{id}/start`` (body ``{"Detach", "Tty", "ConsoleSize": [h, w]}``:
detached, 200 with an empty body once the process started; otherwise the connection is
hijacked, 101 with ``Upgrade: tcp`` or a 200 plain hijack, multiplexed frames unless ``Tty``),
``POST /exec/{id}/resize?h=&w=`` and ``GET /exec/{id}/json``.
"""

from __future__ import annotations

from lamina import errdefs
from lamina.api import bodies, params
from lamina.api.containers import terminal_size
from lamina.api.http import Response
from lamina.api.streams import empty_response, hijacked_response, json_response

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.call import Call

__all__ = ["create_exec", "inspect_exec", "resize_exec", "start_exec"]


def create_exec(call: Call) -> Response:
    body = bodies.read_object(call.request.body, bodies.EXEC_CONFIG)
    if not body.get("Cmd"):
        raise errdefs.InvalidArgument("No exec command specified")
    answer = call.services.execs.create(call.params["id"], body)
    return json_response(answer, 201)


def start_exec(call: Call) -> Response:
    body = bodies.read_object(call.request.body, bodies.EXEC_START, required=False)
    exec_id = call.params["id"]
    detach = bool(body.get("Detach"))
    tty = bool(body.get("Tty"))
    console = body.get("ConsoleSize")
    if console is not None and len(console) != 2:
        raise errdefs.InvalidArgument("invalid JSON body: ConsoleSize must be [height, width]")
    execs = call.services.execs
    duplex = execs.start(exec_id, detach=detach, tty=tty,
                         detach_keys=params.string(call.request, "detachKeys") or None)
    if console and tty:
        try:
            execs.resize(exec_id, height=console[0], width=console[1])
        except errdefs.LaminaError:
            pass  # the process may be gone already: the size no longer matters
    if duplex is None:
        return empty_response(200)
    return hijacked_response(call.request, duplex, tty=tty)


def resize_exec(call: Call) -> Response:
    height, width = terminal_size(call)
    call.services.execs.resize(call.params["id"], height=height, width=width)
    return empty_response(200)


def inspect_exec(call: Call) -> Response:
    return json_response(call.services.execs.inspect(call.params["id"]))
