"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/system/df`` and lamina's
``/lamina/system/check`` (no Docker equivalent: a consistency check of the data root, with
``repair=1`` to fix what can be fixed; answers ``{"Problems": [...], "Repaired": [...]}``).
"""

from __future__ import annotations

import os
import sys

from lamina import __version__, errdefs
from lamina.api import params
from lamina.api.http import Headers, Response
from lamina.api.streams import json_response
from lamina.api.versions import API_VERSION, MIN_API_VERSION

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.api.call import Call

__all__ = ["ping", "version", "info", "disk_usage", "check", "engine_version", "PING_HEADERS"]

PING_HEADERS = {
    "API-Version": API_VERSION,
    "Builder-Version": "1",
    "OSType": "linux",
    "Docker-Experimental": "false",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}

# /system/df?type=... (API 1.42): which parts of the answer each type selects.
_DISK_USAGE_TYPES = {
    "image": ("LayersSize", "Images"),
    "container": ("Containers",),
    "volume": ("Volumes",),
    "build-cache": ("BuildCache",),
}


def ping(call: "Call") -> Response:
    """Served without building the services: clients ping first to negotiate the version."""
    headers = Headers(PING_HEADERS)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return Response(200, headers, b"OK")


def engine_version() -> dict[str, Any]:
    """Docker's /version answer: what this program is (no engine state, so the services are
    not built for it, as for ``/_ping``)."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    kernel = os.uname().release
    return {
        "Platform": {"Name": "lamina"},
        "Components": [{"Name": "Engine", "Version": __version__,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": arch, "KernelVersion": kernel}}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "python" + ".".join(str(part) for part in sys.version_info[:3]),
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": kernel,
        "BuildTime": "",
    }


def version(call: "Call") -> Response:
    return json_response(engine_version())


def info(call: "Call") -> Response:
    return json_response(call.services.system.info())


def disk_usage(call: "Call") -> Response:
    types = params.strings(call.request, "type")
    for name in types:
        if name not in _DISK_USAGE_TYPES:
            raise errdefs.InvalidArgument(
                f"invalid type {name!r} for /system/df: use one of {', '.join(_DISK_USAGE_TYPES)}")
    answer = call.services.system.disk_usage()
    if types:
        keep = {key for name in types for key in _DISK_USAGE_TYPES[name]}
        answer = {key: value for key, value in answer.items() if key in keep}
    return json_response(answer)


def check(call: "Call") -> Response:
    repair = params.boolean(call.request, "repair")
    return json_response(call.services.system.check(repair=repair))
