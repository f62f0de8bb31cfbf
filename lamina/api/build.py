"""Build endpoints: ``POST /build`` (the classic builder) and ``POST /build/prune``.

``POST /build``: the body is the build context as a tar archive (plain, gzip, bzip2, xz or
zstd).  Query parameters (Docker's): ``dockerfile`` (path inside the context, default
``Dockerfile``), ``t`` (repeated: tags applied when the build succeeded), ``buildargs`` and
``labels`` (JSON objects of strings; a build arg may be ``null``), ``target``, ``nocache``,
``q``, ``rm`` (default true), ``forcerm``, ``networkmode`` (``default``, ``none``, ``host``
or a network's name or id), ``extrahosts`` (repeated ``host:ip``: RUN steps' ``/etc/hosts``),
``cachefrom`` (a JSON array of images the cache may match, see :mod:`lamina.services.buildcache`),
``platform``, ``pull`` (pull the image of every FROM, even a present one; without it a
missing image is pulled, as Docker's classic builder does); ``remote`` (a git or HTTP context) answers 501, and ``version=2`` (BuildKit)
answers 501 too.  Lamina's extension ``laminacontext=<directory>``: read the context in place
from that directory of the engine's host instead of a tar body (the in-process CLI uses it to
skip the tar round trip; like a bind mount, it only gives API clients what the API already
gives them).  Credentials for those pulls: the ``X-Registry-Config`` header the docker CLI
sends, base64url of a JSON object that maps each registry (``https://index.docker.io/v1/``,
``localhost:5000``) to an auth object as ``X-Registry-Auth`` carries one; a registry not named
there is pulled from anonymously.  A header that does not decode is refused (400), not echoed.

The answer is Docker's JSON-message stream: ``{"stream": "Step 1/4 : FROM busybox\\n"}``
lines, ``{"aux": {"ID": "sha256:..."}}`` at the end of each stage, and on failure
``{"errorDetail": {"message": ...}, "error": ...}`` as the last line (with ``"code"``: the
exit code of a RUN command that failed, as Docker sends it).  A failure before the first
line (a Dockerfile syntax error, a bad tag) is an HTTP error instead.  With ``q`` the output is
held back and the stream carries only ``{"stream": "sha256:...\\n"}``; on failure the held-back
output comes first, then the error.

``POST /build/prune``: ``all``, ``filters`` (``until``); answers
``{"CachesDeleted": [...], "SpaceReclaimed": n}``.
"""

from __future__ import annotations

from lamina import errdefs
from lamina.api import params
from lamina.api.errors import log_unexpected, message_for
from lamina.api.http import Request, Response
from lamina.api.streams import json_response, progress_stream

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.api.call import Call
    from lamina.distribution.registry.auth import Credentials

__all__ = ["CONTEXT_DIRECTORY_PARAMETER", "PRUNE_FILTERS", "build_image", "decode_registry_config",
           "prune_build_cache"]

CONTEXT_DIRECTORY_PARAMETER = "laminacontext"
PRUNE_FILTERS = frozenset({"until"})


def _json_map(call: Call, name: str, *, nullable: bool) -> dict[str, Any]:
    _, decoded = params.json_object(call.request, name, "a JSON object of strings")
    for key, value in decoded.items():
        if not (isinstance(value, str) or (nullable and value is None)):
            raise errdefs.InvalidArgument(f"invalid {name}: the value of {key!r} must be a string")
    return decoded


def _cache_from(call: Call) -> tuple[str, ...]:
    """``cachefrom``: a JSON array of image names (Docker's form)."""
    text = params.string(call.request, "cachefrom")
    if not text:
        return ()
    import json

    try:
        names = json.loads(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid cachefrom: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise errdefs.InvalidArgument("invalid cachefrom: expected a JSON array of image names")
    return tuple(names)


def decode_registry_config(header: str | None) -> dict[str, Credentials]:
    """The credentials of an ``X-Registry-Config`` header, by registry domain (``docker.io``
    for Docker Hub's ``https://index.docker.io/v1/``); empty entries are left out."""
    from lamina.api.distribution import decode_header_json, registry_credentials
    from lamina.image.reference import registry_domain

    document = decode_header_json(header, "X-Registry-Config")
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise errdefs.InvalidArgument("X-Registry-Config must be a JSON object of auth configurations")
    out: dict[str, Credentials] = {}
    for server, entry in document.items():
        credentials = registry_credentials(entry)
        if not credentials.empty:
            out[registry_domain(str(server))] = credentials
    return out


def _error_message(exc: BaseException) -> dict[str, Any]:
    """Docker's in-band build error (``code`` only for a failed RUN: its exit code)."""
    message = message_for(exc)
    detail: dict[str, Any] = {"message": message}
    code = getattr(exc, "exit_code", None)
    if type(exc).__name__ == "RunFailed" and isinstance(code, int):
        detail["code"] = code
    return {"errorDetail": detail, "error": message}


# The docker CLI sends these on every build (0 or "" when not set); lamina's builder puts no
# resource limit on RUN steps, so a value is refused rather than ignored.
_RESOURCE_PARAMETERS = ("memory", "memswap", "cpushares", "cpuperiod", "cpuquota", "shmsize")


def _refuse_resource_limits(request: Request) -> None:
    for name in _RESOURCE_PARAMETERS:
        text = params.string(request, name).strip()
        try:
            value = int(text) if text else 0
        except ValueError:
            raise errdefs.InvalidArgument(
                f"invalid value {text!r} for query parameter {name!r}: expected an integer") from None
        if value and not (name == "memswap" and value == -1):
            raise errdefs.NotImplemented(f"lamina's builder does not limit the resources of RUN steps ({name}={text})")
    if params.string(request, "cpusetcpus").strip() or params.string(request, "cpusetmems").strip():
        raise errdefs.NotImplemented("lamina's builder does not limit the resources of RUN steps (cpusetcpus, cpusetmems)")


def build_image(call: Call) -> Response:
    from lamina.build.api import BuildOptions

    request = call.request
    if params.string(request, "remote"):
        raise errdefs.NotImplemented("remote build contexts (git, URL) are not supported: send the context as a tar")
    if params.string(request, "version") == "2":
        raise errdefs.NotImplemented("BuildKit is not supported by lamina: use the classic builder "
                                     "(DOCKER_BUILDKIT=0)")
    _refuse_resource_limits(request)
    network = params.string(request, "networkmode") or "default"
    options = BuildOptions(
        build_args=_json_map(call, "buildargs", nullable=True),
        target=params.string(request, "target"),
        labels=_json_map(call, "labels", nullable=False),
        no_cache=params.boolean(request, "nocache"),
        remove=params.boolean(request, "rm", True),
        force_remove=params.boolean(request, "forcerm"),
        network_mode=network,
        platform=params.string(request, "platform"),
        pull=params.boolean(request, "pull"),
        extra_hosts=tuple(params.strings(request, "extrahosts")),
        cache_from=_cache_from(call),
    )
    registry_credentials = decode_registry_config(request.headers.get("X-Registry-Config"))
    quiet = params.boolean(request, "q")
    directory = params.string(request, CONTEXT_DIRECTORY_PARAMETER) or None
    dockerfile = params.string(request, "dockerfile")
    tags = params.strings(request, "t")
    body = request.body if directory is None else None
    builds = call.services.builds

    def run(progress: Any) -> str | None:
        held: list[dict[str, Any]] = []
        sent = [False]

        def forward(message: dict[str, Any]) -> None:
            if quiet:
                held.append(message)
                return
            progress(message)
            sent[0] = True

        try:
            return builds.build(progress=forward, stream=body, directory=directory, dockerfile=dockerfile,
                                tags=tags, options=options, registry_credentials=registry_credentials)
        except Exception as exc:
            for message in held:
                progress(message)
                sent[0] = True
            if not sent[0]:
                raise  # nothing streamed yet: an HTTP error status
            log_unexpected(exc, "build")
            progress(_error_message(exc))
            return None

    def finish(image_id: str | None, sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if image_id is not None and quiet:
            return [{"stream": image_id + "\n"}]
        return []

    return progress_stream(run, finish=finish, context="build")


def prune_build_cache(call: Call) -> Response:
    request = call.request
    report = call.services.builds.prune(all=params.boolean(request, "all"),
                                        filters=params.filters(request, PRUNE_FILTERS))
    return json_response(report)
