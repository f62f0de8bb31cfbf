"""The Docker Engine API router: one entry point shared by the HTTP server and the in-process
transport.

``Router(services_factory).handle(request) -> Response`` never raises for request-level
failures: every error becomes Docker's ``{"message": ...}`` with the status from
:mod:`lamina.api.errors`.  The services are built by ``services_factory`` on the first request
that needs them (``/_ping`` does not), so cheap commands stay cheap.

Paths: ``/v<major>.<minor>/<endpoint>`` with a version between :data:`MIN_API_VERSION` and
:data:`API_VERSION`, or the unversioned ``/<endpoint>`` (served as the newest version).
Routes are data (:data:`ROUTES`): a method, a pattern where ``{name}`` matches greedily
(image names contain ``/`` and ``:``, so ``/images/localhost:5000/a/b:tag/json`` has the name
``localhost:5000/a/b:tag``: the endpoint suffix is always the last segment), and a handler
``handler(call) -> Response``.  The first route whose method and pattern match wins; a path
that matches only under another method gets 405, anything else 404 ``page not found``.
Patterns are compiled when a request first reaches them (a CLI command sends a few requests).

Handlers live in one module per resource (:mod:`lamina.api.images`, :mod:`lamina.api.system`,
:mod:`lamina.api.containers`, :mod:`lamina.api.execs`, ...); :mod:`lamina.api.unsupported`
answers for the features lamina lacks (swarm, plugins, ...) the way Docker does without them.
Attach and exec start answer with a hijacked response (``Response.hijacked``, see
:mod:`lamina.api.http`) that the transport or the server turns into a raw connection.

Every response carries ``Api-Version``, ``Docker-Experimental``, ``OSType`` and ``Server``
headers like dockerd's.
"""

from __future__ import annotations

import _thread  # threading's Lock itself: a router that builds no services needs no threading module
import re

from lamina import __version__, errdefs
from lamina.api import unsupported
from lamina.api.call import Call, Handler, ServicesFactory
from lamina.api.errors import error_body, log_unexpected, message_for, status_for
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.versions import API_VERSION, MIN_API_VERSION, parse_version
from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.config import EngineConfig
    from lamina.services.api import Services

__all__ = [
    "API_VERSION", "MIN_API_VERSION", "Call", "Route", "ROUTES", "Router", "engine_services",
    "Request", "Response", "Headers", "StreamAborted", "compile_pattern",
]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``/images/{name}/json`` -> ``^/images/(?P<name>.+)/json\\Z`` (greedy parameters; ``\\Z``,
    not ``$``, which would also match before a trailing newline)."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+)"
                    for index, part in enumerate(parts))
    return re.compile(f"^{regex}\\Z")


@dataclass(frozen=True)
class Route:
    """A method, a path pattern (``{name}`` matches greedily) and its handler: a function, or
    ``"module.function"`` of a module of :mod:`lamina.api`, imported when a request first
    reaches it (a command loads the handlers of its own requests only)."""

    method: str
    pattern: str
    handler: Handler | str

    def resolve(self) -> Handler:
        if not isinstance(self.handler, str):
            return self.handler
        import importlib

        module, _, function = self.handler.rpartition(".")
        return getattr(importlib.import_module("lamina.api." + module), function)  # type: ignore[no-any-return]


ROUTES: tuple[Route, ...] = (
    Route("GET", "/_ping", "system.ping"),
    Route("HEAD", "/_ping", "system.ping"),
    Route("GET", "/version", "system.version"),
    Route("GET", "/info", "system.info"),
    Route("GET", "/system/df", "system.disk_usage"),
    Route("GET", "/events", "events.get_events"),
    Route("POST", "/lamina/system/check", "system.check"),
    Route("GET", "/images/json", "images.list_images"),
    Route("POST", "/images/create", "images.create_image"),
    Route("POST", "/images/load", "images.load_images"),
    Route("GET", "/images/get", "images.save_images"),
    Route("POST", "/images/prune", "images.prune_images"),
    Route("GET", "/images/{name}/json", "images.inspect_image"),
    Route("GET", "/images/{name}/history", "images.image_history"),
    Route("GET", "/images/{name}/get", "images.save_image"),
    Route("POST", "/images/{name}/tag", "images.tag_image"),
    Route("POST", "/images/{name}/push", "distribution.push_image"),
    Route("GET", "/images/search", "distribution.search_images"),
    Route("POST", "/auth", "distribution.auth"),
    Route("GET", "/distribution/{name}/json", "distribution.inspect_distribution"),
    Route("GET", "/lamina/distribution/{name}/manifest", "distribution.manifest"),
    Route("DELETE", "/images/{name}", "images.remove_image"),
    Route("POST", "/lamina/system/boot", "containers.boot"),
    Route("POST", "/containers/create", "containers.create_container"),
    Route("GET", "/containers/json", "containers.list_containers"),
    Route("POST", "/containers/prune", "containers.prune_containers"),
    Route("GET", "/containers/{id}/json", "containers.inspect_container"),
    Route("GET", "/containers/{id}/top", "containers.container_top"),
    Route("GET", "/containers/{id}/logs", "containers.container_logs"),
    Route("GET", "/containers/{id}/changes", "containers.container_changes"),
    Route("GET", "/containers/{id}/export", "containers.export_container"),
    Route("GET", "/containers/{id}/stats", "containers.container_stats"),
    Route("POST", "/containers/{id}/resize", "containers.resize_container"),
    Route("POST", "/containers/{id}/start", "containers.start_container"),
    Route("POST", "/containers/{id}/stop", "containers.stop_container"),
    Route("POST", "/containers/{id}/restart", "containers.restart_container"),
    Route("POST", "/containers/{id}/kill", "containers.kill_container"),
    Route("POST", "/containers/{id}/update", "containers.update_container"),
    Route("POST", "/containers/{id}/rename", "containers.rename_container"),
    Route("POST", "/containers/{id}/pause", "containers.pause_container"),
    Route("POST", "/containers/{id}/unpause", "containers.unpause_container"),
    Route("POST", "/containers/{id}/attach", "containers.attach_container"),
    Route("POST", "/containers/{id}/wait", "containers.wait_container"),
    Route("HEAD", "/containers/{id}/archive", "containers.archive_head"),
    Route("GET", "/containers/{id}/archive", "containers.archive_get"),
    Route("PUT", "/containers/{id}/archive", "containers.archive_put"),
    Route("POST", "/containers/{id}/exec", "execs.create_exec"),
    *(Route(*entry) for entry in unsupported.CHECKPOINT_ROUTES),
    Route("DELETE", "/containers/{id}", "containers.remove_container"),
    Route("POST", "/commit", "containers.commit_container"),
    Route("POST", "/exec/{id}/start", "execs.start_exec"),
    Route("POST", "/exec/{id}/resize", "execs.resize_exec"),
    Route("GET", "/exec/{id}/json", "execs.inspect_exec"),
    Route("GET", "/volumes", "volumes.list_volumes"),
    Route("POST", "/volumes/create", "volumes.create_volume"),
    Route("POST", "/volumes/prune", "volumes.prune_volumes"),
    Route("GET", "/volumes/{name}", "volumes.inspect_volume"),
    Route("DELETE", "/volumes/{name}", "volumes.remove_volume"),
    Route("POST", "/build", "build.build_image"),
    Route("POST", "/build/prune", "build.prune_build_cache"),
    Route("GET", "/networks", "networks.list_networks"),
    Route("POST", "/networks/create", "networks.create_network"),
    Route("POST", "/networks/prune", "networks.prune_networks"),
    Route("POST", "/networks/{id}/connect", "networks.connect_network"),
    Route("POST", "/networks/{id}/disconnect", "networks.disconnect_network"),
    Route("GET", "/networks/{id}", "networks.inspect_network"),
    Route("DELETE", "/networks/{id}", "networks.remove_network"),
    *(Route(*entry) for entry in unsupported.ROUTES),
)

_VERSION_CHARACTERS = frozenset("0123456789.")


def _versioned(path: str) -> tuple[str, str] | None:
    """``/v1.45/images/json`` -> ``("1.45", "/images/json")``, what ``^/v([0-9][0-9.]*)(/.*)$``
    matches, without compiling it for every command: the version is a digit then digits and
    dots up to the first ``/``; the rest holds no newline but, at most, a final one (which
    ``$`` lets through and the match leaves out)."""
    slash = path.find("/", 2)
    if not path.startswith("/v") or slash < 0:
        return None
    text, rest = path[2:slash], path[slash:]
    if not text or text[0] == "." or not _VERSION_CHARACTERS.issuperset(text):
        return None
    newline = rest.find("\n")
    if newline >= 0:
        if newline != len(rest) - 1:
            return None
        rest = rest[:-1]
    return text, rest


class _Matcher:
    """Matches a path against one route pattern as :func:`compile_pattern`'s regex would, by
    comparing the literal parts when the pattern has at most one parameter (all but one of
    the table's: compiling ~60 regexes cost a command ~5 ms)."""

    __slots__ = ("pattern", "prefix", "suffix", "name", "_regex")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex: re.Pattern[str] | None = None
        self.prefix, _, rest = pattern.partition("{")
        self.name, _, self.suffix = rest.partition("}")
        if "{" in self.suffix or (rest and not self.name.isidentifier()):
            self.name = "*"  # two parameters: the regex

    def match(self, path: str) -> dict[str, str] | None:
        if not self.name:
            return {} if path == self.pattern else None
        if self.name != "*":
            end = len(path) - len(self.suffix)
            if end <= len(self.prefix) or not path.startswith(self.prefix) or not path.endswith(self.suffix):
                return None
            value = path[len(self.prefix):end]
            return None if "\n" in value else {self.name: value}
        if self._regex is None:
            self._regex = compile_pattern(self.pattern)
        found = self._regex.match(path)
        return None if found is None else found.groupdict()


class Router:
    def __init__(self, services_factory: ServicesFactory,
                 routes: tuple[Route, ...] = ROUTES) -> None:
        self._services_factory = services_factory
        self._services: "Services | None" = None
        self._lock = _thread.allocate_lock()
        self._routes = routes
        self._matchers = [_Matcher(route.pattern) for route in routes]
        self._handlers: dict[Route, Handler] = {}

    def services(self) -> "Services":
        """The services, built once on first use."""
        if self._services is None:
            with self._lock:
                if self._services is None:
                    self._services = self._services_factory()
        return self._services

    def handle(self, request: Request) -> Response:
        try:
            response = self._dispatch(request)
        except Exception as exc:  # every failure becomes a status and a one-line message
            log_unexpected(exc, f"{request.method} {request.path}")
            response = Response(status_for(exc), Headers({"Content-Type": "application/json"}),
                                error_body(message_for(exc)))
        headers = response.headers
        headers.setdefault("Api-Version", API_VERSION)
        headers.setdefault("Docker-Experimental", "false")
        headers.setdefault("OSType", "linux")
        headers.setdefault("Server", f"lamina/{__version__} (linux)")
        if request.method == "HEAD":
            response.close()
            response.body = b""
        return response

    def _dispatch(self, request: Request) -> Response:
        path, api_version = _strip_version(request.path)
        method_mismatch = False
        for route, matcher in zip(self._routes, self._matchers):
            params = matcher.match(path)
            if params is None:
                continue
            if route.method != request.method:
                method_mismatch = True
                continue
            handler = self._handlers.get(route)
            if handler is None:
                handler = self._handlers[route] = route.resolve()
            return handler(Call(request, params, api_version, self.services))
        if method_mismatch:
            return Response(405, Headers({"Content-Type": "application/json"}),
                            error_body(f"method {request.method} is not allowed on {path}"))
        return Response(404, Headers({"Content-Type": "application/json"}), error_body("page not found"))


def engine_services(config: EngineConfig) -> Services:
    """The engine's services for ``config``, for a router in this process (the CLI's in-process
    transport): each service is built when a request first needs it, so a command pays only
    for its own, and the engine is imported only when this is called."""
    from lamina.services.compose import build_services

    return build_services(config, lazy=True)


def _strip_version(path: str) -> tuple[str, str]:
    versioned = _versioned(path)
    if versioned is None:
        return path, API_VERSION
    text, rest = versioned
    try:
        requested = parse_version(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid API version {text!r}") from exc
    if requested > parse_version(API_VERSION):
        raise errdefs.InvalidArgument(
            f"client version {text} is too new. Maximum supported API version is {API_VERSION}")
    if requested < parse_version(MIN_API_VERSION):
        raise errdefs.InvalidArgument(
            f"client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version")
    return rest, text
