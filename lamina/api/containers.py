"""Container endpoints (Docker Engine API v1.45 names, parameters and shapes).

Lifecycle: ``POST /containers/create?name=`` (body: ContainerCreateRequest, checked by
:mod:`lamina.api.bodies`; 201 ``{"Id", "Warnings"}``), ``POST /containers/{id}/start`` (204,
304 when it already runs), ``/stop?t=&signal=`` (204, 304 when it is not running),
``/restart?t=&signal=``, ``/kill?signal=``, ``/pause``, ``/unpause``, ``/rename?name=``,
``/update`` (body: resources and RestartPolicy; 200 ``{"Warnings"}``), ``/resize?h=&w=``,
``DELETE /containers/{id}?force=&v=``, ``POST /containers/prune?filters=``, and lamina's
``POST /lamina/system/boot`` (restart the ``always`` containers after a host reboot or an
engine crash).

Reading: ``GET /containers/json?all=&limit=&size=&filters=``, ``/containers/{id}/json?size=``,
``/top?ps_args=``, ``/changes``, ``/stats?stream=&one-shot=`` (one JSON document, or a JSON
stream of them), ``/export`` (tar), ``/logs?stdout=&stderr=&follow=&since=&until=&timestamps=&tail=``
(multiplexed frames, raw bytes when the container has a TTY).

Waiting: ``POST /containers/{id}/wait?condition=not-running|next-exit|removed`` answers at
once with 200 and sends ``{"StatusCode": n, "Error": null}`` when the condition is met, like
dockerd; the service's ``wait`` is already running in a worker thread when the answer is
returned, so a client that waits before it starts a container (``docker run``) does not miss
a fast exit.  A failure while waiting is sent in-band: ``{"StatusCode": -1, "Error":
{"Message": "..."}}``.

Stdio: ``POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=`` hijacks the
connection (see :mod:`lamina.api.http`).

Files: ``HEAD|GET /containers/{id}/archive?path=`` (header ``X-Docker-Container-Path-Stat``:
base64 of the PathStat JSON; GET adds the tar of the path), ``PUT`` (body: a tar extracted
into the directory ``path``; ``noOverwriteDirNonDir``, ``copyUIDGID``), and
``POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`` (body: an optional
container Config; 201 ``{"Id"}``).
"""

from __future__ import annotations

import io
import json
import re

from lamina import errdefs
from lamina.api import params
from lamina.api.errors import log_unexpected, message_for
from lamina.api.http import Headers, Response
from lamina.api.streams import (
    JSON,
    byte_stream,
    empty_response,
    hijacked_response,
    json_line,
    json_response,
    json_stream,
    stdio_stream,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.api.call import Call

__all__ = [
    "LIST_FILTERS",
    "PATH_STAT_HEADER",
    "PRUNE_FILTERS",
    "VALID_NAME",
    "WAIT_CONDITIONS",
    "archive_get",
    "archive_head",
    "archive_put",
    "attach_container",
    "boot",
    "commit_container",
    "container_changes",
    "container_logs",
    "container_stats",
    "container_top",
    "create_container",
    "export_container",
    "inspect_container",
    "kill_container",
    "list_containers",
    "pause_container",
    "prune_containers",
    "remove_container",
    "rename_container",
    "resize_container",
    "restart_container",
    "start_container",
    "stop_container",
    "terminal_size",
    "unpause_container",
    "update_container",
    "wait_container",
]

LIST_FILTERS = frozenset({"ancestor", "before", "expose", "exited", "health", "id", "isolation",
                          "is-task", "label", "name", "network", "publish", "since", "status", "volume"})
PRUNE_FILTERS = frozenset({"label", "label!", "until"})
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
# dockerd's restrictions on container names (daemon/names.go)
VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def _integer(call: Call, name: str, default: int | None = None) -> int | None:
    text = params.string(call.request, name).strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(
            f"invalid value {text!r} for query parameter {name!r}: expected an integer") from exc


def _timestamp(call: Call, name: str) -> float:
    """A unix time as docker sends it: ``1700000000``, ``1700000000.123456789`` (0: unset)."""
    text = params.string(call.request, name).strip()
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(
            f"invalid value {text!r} for query parameter {name!r}: expected a unix timestamp") from exc
    import math

    if not math.isfinite(value) or value < 0:
        raise errdefs.InvalidArgument(f"invalid value {text!r} for query parameter {name!r}")
    return value


def _tty(call: Call, id: str) -> bool:
    """Whether the container has a TTY (also: a 404 for a container that does not exist)."""
    config = call.services.container_views.identify(id).get("Config") or {}
    return bool(config.get("Tty"))


def _state(call: Call, id: str) -> dict[str, Any]:
    return call.services.container_views.identify(id).get("State") or {}


# -- lifecycle ---------------------------------------------------------------------------------

def create_container(call: Call) -> Response:
    name = params.string(call.request, "name")
    if name and not VALID_NAME.match(name):
        raise errdefs.InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    from lamina.api import bodies  # the body schemas: only for the calls that take a body

    body = bodies.read_object(call.request.body, bodies.CONTAINER_CREATE)
    platform = params.string(call.request, "platform").strip()
    if platform:
        _check_image_platform(call, body, platform)
    answer = call.services.containers.create(body, name=name or None)
    answer = dict(answer)
    answer.setdefault("Warnings", [])
    if answer["Warnings"] is None:
        answer["Warnings"] = []
    return json_response(answer, 201)


def _check_image_platform(call: Call, body: dict[str, Any], platform: str) -> None:
    """``create?platform=``: the image must be of that platform (Docker's NotFound when not);
    lamina pulls nothing on create, so there is no other image to choose."""
    from lamina.distribution.pull import parse_platform  # only when asked: it loads the registry client

    wanted = parse_platform(platform)
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        return  # the create itself refuses it
    config = call.services.images.inspect_image(image)
    actual = "/".join(part for part in (str(config.get("Os") or ""), str(config.get("Architecture") or ""),
                                        str(config.get("Variant") or "")) if part)
    if (config.get("Os"), config.get("Architecture")) != (wanted.os, wanted.architecture) or (
            wanted.variant and config.get("Variant") and config.get("Variant") != wanted.variant):
        raise errdefs.NotFound(f"image with reference {image} was found but does not match the specified "
                               f"platform: wanted {wanted}, actual: {actual}")


def start_container(call: Call) -> Response:
    id = call.params["id"]
    state = _state(call, id)
    if state.get("Running") and not state.get("Restarting"):
        return empty_response(304)
    call.services.containers.start(id)
    return empty_response(204)


def _signal(call: Call) -> str | None:
    return params.string(call.request, "signal").strip() or None


def stop_container(call: Call) -> Response:
    id = call.params["id"]
    timeout, signal = _integer(call, "t"), _signal(call)
    if not _state(call, id).get("Running"):
        return empty_response(304)
    call.services.containers.stop(id, timeout=timeout, signal=signal)
    return empty_response(204)


def restart_container(call: Call) -> Response:
    call.services.containers.restart(call.params["id"], timeout=_integer(call, "t"), signal=_signal(call))
    return empty_response(204)


def kill_container(call: Call) -> Response:
    call.services.containers.kill(call.params["id"], signal=_signal(call) or "SIGKILL")
    return empty_response(204)


def remove_container(call: Call) -> Response:
    request = call.request
    if params.boolean(request, "link"):
        call.services.containers.remove_link(call.params["id"])
        return empty_response(204)
    call.services.containers.remove(call.params["id"], force=params.boolean(request, "force"),
                                    volumes=params.boolean(request, "v"))
    return empty_response(204)


def pause_container(call: Call) -> Response:
    call.services.containers.pause(call.params["id"])
    return empty_response(204)


def unpause_container(call: Call) -> Response:
    call.services.containers.unpause(call.params["id"])
    return empty_response(204)


def rename_container(call: Call) -> Response:
    name = params.string(call.request, "name").strip()
    if not name:
        raise errdefs.InvalidArgument("Neither old nor new names may be empty")
    if not VALID_NAME.match(name):
        raise errdefs.InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    call.services.containers.rename(call.params["id"], name)
    return empty_response(204)


# Fields of Docker's UpdateConfig that are pointers in Go: present (even 0 / false) means "set".
_UPDATE_POINTER_FIELDS = frozenset({"PidsLimit", "MemorySwappiness", "OomKillDisable", "Init"})


def _update_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The fields an update really changes: the docker CLI sends every Resources field, and
    for dockerd a zero value (0, false, "", [], null) of a non-pointer field means "leave it"."""
    changes = {}
    for key, value in body.items():
        if value is None:
            continue
        if key in _UPDATE_POINTER_FIELDS:
            changes[key] = value
        elif key == "RestartPolicy":
            if value.get("Name"):
                changes[key] = value
        elif value not in (0, "", [], {}):
            changes[key] = value
    return changes


def update_container(call: Call) -> Response:
    from lamina.api import bodies

    body = _update_changes(bodies.read_object(call.request.body, bodies.CONTAINER_UPDATE))
    answer = dict(call.services.containers.update(call.params["id"], body) or {})
    if answer.get("Warnings") is None:
        answer["Warnings"] = []
    return json_response(answer)


def resize_container(call: Call) -> Response:
    height, width = terminal_size(call)
    call.services.container_streams.resize(call.params["id"], height=height, width=width)
    return empty_response(200)


def terminal_size(call: Call) -> tuple[int, int]:
    """The ``h`` and ``w`` parameters of a resize request."""
    height = _integer(call, "h")
    width = _integer(call, "w")
    if height is None or width is None:
        raise errdefs.InvalidArgument("both h and w are required to resize a terminal")
    if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
        raise errdefs.InvalidArgument(f"invalid terminal size {height}x{width}")
    return height, width


def prune_containers(call: Call) -> Response:
    report = dict(call.services.containers.prune(filters=params.filters(call.request, PRUNE_FILTERS)))
    report.setdefault("SpaceReclaimed", 0)
    return json_response(report)


def boot(call: Call) -> Response:
    containers = call.services.containers
    boot_method = getattr(containers, "boot", None)
    if boot_method is None:
        raise errdefs.NotImplemented("this engine cannot restart containers at boot")
    return json_response(boot_method() or {})


# -- waiting -----------------------------------------------------------------------------------

def wait_container(call: Call) -> Response:
    condition = params.string(call.request, "condition").strip() or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise errdefs.InvalidArgument(
            f"invalid condition: {condition!r}: use one of {', '.join(WAIT_CONDITIONS)}")
    containers = call.services.containers
    # The full id: the name may change (or be reused) while we wait.
    id = str(call.services.container_views.identify(call.params["id"]).get("Id") or call.params["id"])
    import queue  # with threading: only a wait needs them
    import threading

    results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    # registered before the answer's head goes out (a NotFound is still a 404): the start
    # that the docker CLI sends after it cannot end unseen, however soon the container goes
    finish = containers.begin_wait(id, condition=condition)

    def work() -> None:
        try:
            results.put((True, finish()))
        except BaseException as exc:  # noqa: BLE001 - reported in-band: the 200 is already sent
            results.put((False, exc))

    # A daemon thread: an interrupted CLI must be able to exit while it waits.
    threading.Thread(target=work, name="lamina-api-wait", daemon=True).start()

    def body() -> Any:
        ok, value = results.get()
        if ok:
            answer = dict(value)
            answer.setdefault("Error", None)
        else:
            log_unexpected(value, f"wait {id}")
            answer = {"StatusCode": -1, "Error": {"Message": message_for(value)}}
        yield json_line(answer)

    return byte_stream(body(), JSON, context="wait", prefetch=False)


# -- reading -----------------------------------------------------------------------------------

def list_containers(call: Call) -> Response:
    request = call.request
    limit = _integer(call, "limit", -1)
    assert limit is not None
    containers = call.services.container_views.list_containers(
        all=params.boolean(request, "all"), limit=limit if limit > 0 else -1,
        size=params.boolean(request, "size"), filters=params.filters(request, LIST_FILTERS))
    # dockerd answers newest first.
    containers = sorted(containers, key=lambda container: container.get("Created") or 0, reverse=True)
    return json_response(containers)


def inspect_container(call: Call) -> Response:
    return json_response(call.services.container_views.inspect(call.params["id"],
                                                               size=params.boolean(call.request, "size")))


def container_top(call: Call) -> Response:
    ps_args = params.string(call.request, "ps_args") or "-ef"
    return json_response(call.services.container_views.top(call.params["id"], ps_args=ps_args))


def container_changes(call: Call) -> Response:
    return json_response(call.services.container_files.changes(call.params["id"]))


def container_stats(call: Call) -> Response:
    request = call.request
    stream = params.boolean(request, "stream", True)
    one_shot = params.boolean(request, "one-shot")
    if one_shot and stream:
        raise errdefs.InvalidArgument("cannot have stream=true and one-shot=true")
    documents = call.services.container_views.stats(call.params["id"], stream=stream, one_shot=one_shot)
    if not stream:
        iterator = iter(documents)
        try:
            first = next(iterator, None)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        if first is None:
            raise errdefs.Unavailable(f"no statistics for container {call.params['id']}")
        return json_response(first)
    return json_stream(documents, context="stats")


def container_logs(call: Call) -> Response:
    request = call.request
    id = call.params["id"]
    stdout = params.boolean(request, "stdout")
    stderr = params.boolean(request, "stderr")
    if not (stdout or stderr):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = params.boolean(request, "follow")
    tail = params.string(request, "tail").strip() or "all"
    if tail != "all":
        try:
            int(tail)
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"invalid value {tail!r} for tail: expected a number or 'all'") from exc
    tty = _tty(call, id)
    items = call.services.container_streams.logs(
        id, stdout=stdout, stderr=stderr, follow=follow, since=_timestamp(call, "since"),
        until=_timestamp(call, "until"), timestamps=params.boolean(request, "timestamps"), tail=tail)
    return stdio_stream(items, tty=tty, context="logs", prefetch=not follow)


def export_container(call: Call) -> Response:
    return byte_stream(call.services.container_files.export(call.params["id"]), "application/x-tar",
                       context="export")


# -- stdio -------------------------------------------------------------------------------------

def attach_container(call: Call) -> Response:
    request = call.request
    id = call.params["id"]
    stdin = params.boolean(request, "stdin")
    stdout = params.boolean(request, "stdout")
    stderr = params.boolean(request, "stderr")
    stream = params.boolean(request, "stream")
    logs = params.boolean(request, "logs")
    if not (stream or logs):
        raise errdefs.InvalidArgument("Bad parameters: you must choose at least one of stream or logs")
    tty = _tty(call, id)
    duplex = call.services.container_streams.attach(id, stdin=stdin, stdout=stdout, stderr=stderr,
                                                    stream=stream, logs=logs,
                                                    detach_keys=params.string(request, "detachKeys") or None)
    return hijacked_response(request, duplex, tty=tty)


# -- files -------------------------------------------------------------------------------------

def _archive_path(call: Call) -> str:
    path = params.string(call.request, "path")
    if not path:
        raise errdefs.InvalidArgument("the path parameter is required")
    return path


def _stat_header(stat: dict[str, Any]) -> str:
    import base64

    document = json.dumps(stat, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(document).decode("ascii")


def archive_head(call: Call) -> Response:
    stat = call.services.container_files.archive_stat(call.params["id"], _archive_path(call))
    return Response(200, Headers({PATH_STAT_HEADER: _stat_header(stat), "Content-Type": "application/x-tar"}), b"")


def archive_get(call: Call) -> Response:
    stat, chunks = call.services.container_files.archive_get(call.params["id"], _archive_path(call))
    response = byte_stream(chunks, "application/x-tar", context="archive")
    response.headers[PATH_STAT_HEADER] = _stat_header(stat)
    return response


def archive_put(call: Call) -> Response:
    request = call.request
    body = request.body if request.body is not None else io.BytesIO(b"")
    call.services.container_files.archive_put(
        call.params["id"], _archive_path(call), body,
        no_overwrite_dir_non_dir=params.boolean(request, "noOverwriteDirNonDir"),
        copy_uid_gid=params.boolean(request, "copyUIDGID"))
    return empty_response(200)


def commit_container(call: Call) -> Response:
    request = call.request
    container = params.string(request, "container").strip()
    if not container:
        raise errdefs.InvalidArgument("the container parameter is required to commit")
    from lamina.api import bodies

    config = bodies.read_json(request.body, required=False)
    if config is not None:
        if not isinstance(config, dict):
            raise errdefs.InvalidArgument("invalid JSON body: expected a container Config object")
        bodies.check(config, bodies.CONTAINER_CONFIG)
    answer = call.services.container_files.commit(
        container, repository=params.string(request, "repo"), tag=params.string(request, "tag"),
        comment=params.string(request, "comment"), author=params.string(request, "author"),
        pause=params.boolean(request, "pause", True), changes=params.strings(request, "changes"),
        config=config or None)
    return json_response(answer, 201)
