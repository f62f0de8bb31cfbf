"""Image endpoints (Docker Engine API v1.45 names and shapes).

``GET /images/json`` (``all``, ``filters``, ``digests``), ``GET /images/{name}/json``,
``GET /images/{name}/history``, ``POST /images/{name}/tag`` (``repo``, ``tag``; 201),
``DELETE /images/{name}`` (``force``, ``noprune``), ``POST /images/prune`` (``filters``),
``POST /images/load`` (``quiet``; body: the archive; JSON-message stream; every failure, even
before the first message, is its last message in a 200 answer, as Docker reports it),
``GET /images/get`` (``names`` repeated) and ``GET /images/{name}/get`` (``application/x-tar``;
lamina extension: ``format=oci`` for an OCI image layout instead of ``docker save``'s format),
``POST /images/create`` with ``fromSrc=-`` (import: body is a filesystem tar; ``repo``, ``tag``,
``message``, ``changes`` repeated; JSON-message stream ending with ``{"status": "<image id>"}``).
Pulling (``fromImage``) and importing from a URL are not implemented yet (501).
"""

from __future__ import annotations

import io

from lamina import errdefs
from lamina.api import params
from lamina.api.http import Headers, Response
from lamina.api.streams import JSON, byte_stream, empty_response, json_response, progress_stream

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from lamina.api.call import Call

__all__ = [
    "list_images", "inspect_image", "image_history", "tag_image", "remove_image", "prune_images",
    "load_images", "save_images", "save_image", "create_image",
    "LIST_FILTERS", "PRUNE_FILTERS", "SAVE_FORMATS",
]

LIST_FILTERS = frozenset({"before", "dangling", "label", "reference", "since", "until"})
PRUNE_FILTERS = frozenset({"dangling", "label", "label!", "until"})
SAVE_FORMATS = ("docker", "oci")


def _body(call: "Call") -> BinaryIO:
    return call.request.body if call.request.body is not None else io.BytesIO(b"")


def list_images(call: "Call") -> Response:
    request = call.request
    # newest first, as dockerd answers (the order is part of what clients show); the body
    # comes encoded: a long-lived server keeps it while the image store does not change
    body = call.services.images.list_images_json(
        all=params.boolean(request, "all"),
        filters=params.filters(request, LIST_FILTERS),
        digests=params.boolean(request, "digests"),
    )
    return Response(200, Headers({"Content-Type": JSON}), body)


def inspect_image(call: "Call") -> Response:
    return json_response(call.services.images.inspect_image(call.params["name"]))


def image_history(call: "Call") -> Response:
    return json_response(call.services.images.image_history(call.params["name"]))


def tag_image(call: "Call") -> Response:
    repository = params.string(call.request, "repo")
    if not repository:
        raise errdefs.InvalidArgument("the repo parameter is required to tag an image")
    call.services.images.tag_image(call.params["name"], repository, params.string(call.request, "tag"))
    return empty_response(201)


def remove_image(call: "Call") -> Response:
    request = call.request
    deleted = call.services.images.remove_image(
        call.params["name"], force=params.boolean(request, "force"),
        prune=not params.boolean(request, "noprune"))
    return json_response(deleted)


def prune_images(call: "Call") -> Response:
    report = call.services.images.prune_images(filters=params.filters(call.request, PRUNE_FILTERS))
    return json_response(report)


def load_images(call: "Call") -> Response:
    quiet = params.boolean(call.request, "quiet")
    body = _body(call)
    images = call.services.images
    # Docker answers 200 and reports any failure in the stream (docker-py's ImageLoadError)
    return progress_stream(lambda progress: images.load(body, progress=progress, quiet=quiet),
                           context="load", errors_in_band=True)


def _save(call: "Call", names: list[str]) -> Response:
    format = params.string(call.request, "format", "docker") or "docker"
    if format not in SAVE_FORMATS:
        raise errdefs.InvalidArgument(f"invalid format {format!r}: use one of {', '.join(SAVE_FORMATS)}")
    if not names:
        raise errdefs.InvalidArgument("no image names given to save")
    return byte_stream(call.services.images.save(names, format=format), "application/x-tar", context="save")


def save_images(call: "Call") -> Response:
    return _save(call, params.strings(call.request, "names"))


def save_image(call: "Call") -> Response:
    return _save(call, [call.params["name"]])


def create_image(call: "Call") -> Response:
    request = call.request
    from_image = params.string(request, "fromImage")
    from_source = params.string(request, "fromSrc")
    if from_image:
        from lamina.api.distribution import pull_image

        return pull_image(call)
    if not from_source:
        raise errdefs.InvalidArgument("either fromImage (pull) or fromSrc (import) is required")
    if from_source != "-":
        raise errdefs.NotImplemented(
            f"cannot import from {from_source}: importing from a URL is not supported; "
            "download the archive and import the file")
    body = _body(call)
    images = call.services.images
    repository = params.string(request, "repo")
    tag = params.string(request, "tag")
    changes = params.strings(request, "changes")
    message = params.string(request, "message")

    def run(progress: Any) -> str:
        return images.import_image(body, repository=repository, tag=tag, changes=changes,
                                   message=message, progress=progress)

    def finish(image_id: str, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Docker's import ends with {"status": "<id>"}; say it unless the service did.
        if any(message.get("status") == image_id for message in sent):
            return []
        return [{"status": image_id}]

    return progress_stream(run, finish=finish, context="import")
