"""``lamina inspect`` / ``image inspect`` / ``container inspect``: the objects' JSON, as a JSON
array indented like docker's (4 spaces), or ``-f TEMPLATE`` once per object.

``lamina inspect NAME`` looks for a container first, then an image, like docker (``--type
container|image`` restricts it); ``-s`` adds SizeRw / SizeRootFs to containers.  Names that
are not found are reported after the others (``Error: No such object: x``, ``No such image``,
``No such container``); the exit code is that of the last failure.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import UsageError
from lamina.cli.inspecting import write_inspected
from lamina.client.client import ClientError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TYPES", "configure", "run"]

TYPES = ("container", "image")


def _kind(prog: str) -> str:
    if prog.endswith("image inspect"):
        return "image"
    if prog.endswith("container inspect"):
        return "container"
    return ""


def configure(parser: argparse.ArgumentParser) -> None:
    kind = _kind(parser.prog)
    parser.add_argument("names", nargs="+", metavar=kind.upper() or "NAME|ID")
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Id}}'")
    if kind != "image":
        parser.add_argument("-s", "--size", action="store_true", help="display total file sizes (containers)")
    if not kind:
        parser.add_argument("--type", default="", help="only inspect objects of this type: container or image")
    parser.set_defaults(kind=kind)


def run(args: argparse.Namespace, context: Context) -> int:
    kind = args.kind or getattr(args, "type", "") or ""
    if kind not in ("", *TYPES):
        raise UsageError(f'"{kind}" is not a valid value for --type')
    size = getattr(args, "size", False)
    found: list[dict[str, Any]] = []
    failures: list[ClientError] = []
    for name in args.names:
        result = None
        last_error: ClientError | None = None
        for candidate in ([kind] if kind else list(TYPES)):
            try:
                if candidate == "container":
                    result = context.client.inspect_container(name, size=size)
                else:
                    result = context.client.inspect_image(name)
                break
            except ClientError as exc:
                if exc.status != 404:
                    raise
                last_error = exc
        if result is not None:
            found.append(result)
        elif last_error is not None:
            message = last_error.message if kind else f"No such object: {name}"
            failures.append(ClientError(last_error.status, message))
    return write_inspected(context, args.format, found, failures)
