"""JSON request bodies, checked against the field types of the Docker Engine API.

dockerd decodes bodies into Go structs: unknown fields are ignored, ``null`` is the zero value,
and a value of the wrong type is an error (``json: cannot unmarshal string into Go struct field
HostConfig.Memory of type int64``).  lamina does the same check before a body reaches the
services, so they can trust the types, and answers 400 with the field's path::

    invalid JSON body: HostConfig.Memory must be an integer, not a string

Schemas are data: a dict from field name to a type (see :data:`CONTAINER_CREATE`).  Types are
``"string"``, ``"boolean"``, ``"integer"`` (a JSON number without a fraction; booleans are not
numbers), ``"number"``, ``"object"`` / ``"array"`` (any content), ``"strings"`` (an array of
strings), ``"string-map"`` (an object of strings), ``"strslice"`` (a string or an array of
strings, Docker's ``StrSlice`` for ``Cmd`` and ``Entrypoint``), ``("array", item_type)`` and a
nested schema dict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from lamina import errdefs

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = [
    "CONTAINER_CONFIG",
    "CONTAINER_CREATE",
    "CONTAINER_UPDATE",
    "EXEC_CONFIG",
    "EXEC_START",
    "HOST_CONFIG",
    "RESOURCES",
    "check",
    "read_json",
    "read_object",
]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# A body larger than this is not a container configuration.
MAX_BODY = 16 << 20

Schema = Mapping[str, "Any"]  # a string: typing is not imported at run time

_THROTTLE_DEVICE = {"Path": "string", "Rate": "integer"}

RESOURCES: Schema = {
    "CpuShares": "integer", "Memory": "integer", "CgroupParent": "string", "BlkioWeight": "integer",
    "BlkioWeightDevice": ("array", {"Path": "string", "Weight": "integer"}),
    "BlkioDeviceReadBps": ("array", _THROTTLE_DEVICE), "BlkioDeviceWriteBps": ("array", _THROTTLE_DEVICE),
    "BlkioDeviceReadIOps": ("array", _THROTTLE_DEVICE), "BlkioDeviceWriteIOps": ("array", _THROTTLE_DEVICE),
    "CpuPeriod": "integer", "CpuQuota": "integer", "CpuRealtimePeriod": "integer",
    "CpuRealtimeRuntime": "integer", "CpusetCpus": "string", "CpusetMems": "string",
    "Devices": ("array", {"PathOnHost": "string", "PathInContainer": "string", "CgroupPermissions": "string"}),
    "DeviceCgroupRules": "strings", "DeviceRequests": "array", "KernelMemory": "integer",
    "KernelMemoryTCP": "integer", "MemoryReservation": "integer", "MemorySwap": "integer",
    "MemorySwappiness": "integer", "NanoCpus": "integer", "OomKillDisable": "boolean",
    "Init": "boolean", "PidsLimit": "integer",
    "Ulimits": ("array", {"Name": "string", "Soft": "integer", "Hard": "integer"}),
    "CpuCount": "integer", "CpuPercent": "integer", "IOMaximumIOps": "integer",
    "IOMaximumBandwidth": "integer",
}

HOST_CONFIG: Schema = {
    **RESOURCES,
    "Binds": "strings", "ContainerIDFile": "string",
    "LogConfig": {"Type": "string", "Config": "string-map"},
    "NetworkMode": "string", "PortBindings": "object",
    "RestartPolicy": {"Name": "string", "MaximumRetryCount": "integer"},
    "AutoRemove": "boolean", "VolumeDriver": "string", "VolumesFrom": "strings", "Mounts": "array",
    "ConsoleSize": ("array", "integer"), "Annotations": "string-map", "CapAdd": "strings",
    "CapDrop": "strings", "CgroupnsMode": "string", "Dns": "strings", "DnsOptions": "strings",
    "DnsSearch": "strings", "ExtraHosts": "strings", "GroupAdd": "strings", "IpcMode": "string",
    "Cgroup": "string", "Links": "strings", "OomScoreAdj": "integer", "PidMode": "string",
    "Privileged": "boolean", "PublishAllPorts": "boolean", "ReadonlyRootfs": "boolean",
    "SecurityOpt": "strings", "StorageOpt": "string-map", "Tmpfs": "string-map", "UTSMode": "string",
    "UsernsMode": "string", "ShmSize": "integer", "Sysctls": "string-map", "Runtime": "string",
    "Isolation": "string", "MaskedPaths": "strings", "ReadonlyPaths": "strings",
}

CONTAINER_CONFIG: Schema = {
    "Hostname": "string", "Domainname": "string", "User": "string", "AttachStdin": "boolean",
    "AttachStdout": "boolean", "AttachStderr": "boolean", "ExposedPorts": "object", "Tty": "boolean",
    "OpenStdin": "boolean", "StdinOnce": "boolean", "Env": "strings", "Cmd": "strslice",
    "Healthcheck": {"Test": "strslice", "Interval": "integer", "Timeout": "integer",
                    "Retries": "integer", "StartPeriod": "integer", "StartInterval": "integer"},
    "ArgsEscaped": "boolean", "Image": "string", "Volumes": "object", "WorkingDir": "string",
    "Entrypoint": "strslice", "NetworkDisabled": "boolean", "MacAddress": "string",
    "OnBuild": "strings", "Labels": "string-map", "StopSignal": "string", "StopTimeout": "integer",
    "Shell": "strings",
}

CONTAINER_CREATE: Schema = {
    **CONTAINER_CONFIG,
    "HostConfig": HOST_CONFIG,
    "NetworkingConfig": {"EndpointsConfig": "object"},
}

CONTAINER_UPDATE: Schema = {**RESOURCES, "RestartPolicy": HOST_CONFIG["RestartPolicy"]}

EXEC_CONFIG: Schema = {
    "AttachStdin": "boolean", "AttachStdout": "boolean", "AttachStderr": "boolean",
    "ConsoleSize": ("array", "integer"), "DetachKeys": "string", "Tty": "boolean", "Env": "strings",
    "Cmd": "strings", "Privileged": "boolean", "User": "string", "WorkingDir": "string",
}

EXEC_START: Schema = {"Detach": "boolean", "Tty": "boolean", "ConsoleSize": ("array", "integer")}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_EXPECTED = {
    "string": "a string", "boolean": "a boolean", "integer": "an integer", "number": "a number",
    "object": "an object", "array": "an array", "strings": "an array of strings",
    "string-map": "an object of strings", "strslice": "a string or an array of strings",
}


def _fail(path: str, expected: str, value: Any) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid JSON body: {path} must be {expected}, not {_json_type(value)}")


def _check_value(value: Any, kind: Any, path: str) -> None:
    if value is None:
        return  # Go: null leaves the zero value
    if isinstance(kind, Mapping):
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        check(value, kind, prefix=path + ".")
        return
    if isinstance(kind, tuple):
        _, item_kind = kind
        if not isinstance(value, list):
            raise _fail(path, "an array", value)
        for index, item in enumerate(value):
            _check_value(item, item_kind, f"{path}[{index}]")
        return
    ok = {
        "string": lambda: isinstance(value, str),
        "boolean": lambda: isinstance(value, bool),
        # Go refuses 1.0 and 1e9 for an int64 as well
        "integer": lambda: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda: isinstance(value, (int, float)) and not isinstance(value, bool),
        "object": lambda: isinstance(value, dict),
        "array": lambda: isinstance(value, list),
        "strings": lambda: isinstance(value, list) and all(isinstance(item, str) for item in value),
        "string-map": lambda: isinstance(value, dict) and all(
            isinstance(item, str) for item in value.values()),
        "strslice": lambda: isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)),
    }[kind]()
    if not ok:
        raise _fail(path, _EXPECTED[kind], value)
    if kind == "integer" and not _INT64_MIN <= value <= _INT64_MAX:
        raise errdefs.InvalidArgument(
            f"invalid JSON body: {path} must be a 64-bit integer, not {value}")
    if kind in ("string", "strings", "string-map", "strslice"):
        texts = [value] if isinstance(value, str) else list(value.items()) if isinstance(value, dict) else value
        for text in texts:
            if "\x00" in (text if isinstance(text, str) else "".join(text)):
                raise errdefs.InvalidArgument(f"invalid JSON body: {path} contains a NUL byte")


def check(document: Mapping[str, Any], schema: Schema, *, prefix: str = "") -> None:
    """Raise InvalidArgument naming the first field of ``document`` whose type is wrong."""
    for name, kind in schema.items():
        if name in document:
            _check_value(document[name], kind, prefix + name)


def read_json(body: BinaryIO | None, *, required: bool = True) -> Any:
    """The decoded JSON body; an absent or empty body is ``None`` (an error if ``required``)."""
    data = body.read(MAX_BODY + 1) if body is not None else b""
    if len(data) > MAX_BODY:
        raise errdefs.InvalidArgument(f"the request body is larger than {MAX_BODY} bytes")
    if not data.strip():
        if required:
            raise errdefs.InvalidArgument("invalid JSON body: the request body is empty")
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errdefs.InvalidArgument(f"invalid JSON body: {exc}") from exc
    except RecursionError as exc:
        raise errdefs.InvalidArgument("invalid JSON body: nested too deeply") from exc


def read_object(body: BinaryIO | None, schema: Schema, *, required: bool = True) -> dict[str, Any]:
    """A JSON object body checked against ``schema``; ``{}`` when absent and not ``required``."""
    document = read_json(body, required=required)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise errdefs.InvalidArgument(f"invalid JSON body: expected an object, not {_json_type(document)}")
    check(document, schema)
    return document
