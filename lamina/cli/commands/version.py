"""``lamina version``: client and server versions in docker's layout (``-f`` for a template
over ``{"Client": {...}, "Server": {...}}``)."""

from __future__ import annotations

import argparse
import os
import sys

from lamina import __version__
from lamina.cli.context import Context

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "client_version", "render_version"]

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Server.Version}}'")


def client_version(context: Context, api_version: str) -> dict[str, Any]:
    machine = os.uname().machine
    return {"Version": __version__, "ApiVersion": api_version,
            "PythonVersion": ".".join(str(part) for part in sys.version_info[:3]),
            "Os": "linux", "Arch": _ARCHITECTURES.get(machine, machine),
            "Host": getattr(context.transport, "description", "")}


def _block(pairs: list[tuple[str, Any]], indent: str) -> list[str]:
    return [f"{indent}{label + ':':<{19 - len(indent)}}{value}" for label, value in pairs
            if value not in (None, "")]


def render_version(client: dict[str, Any], server: dict[str, Any] | None) -> str:
    lines = ["Client:"]
    lines += _block([("Version", client["Version"]), ("API version", client["ApiVersion"]),
                     ("Python version", client["PythonVersion"]),
                     ("OS/Arch", f"{client['Os']}/{client['Arch']}"), ("Host", client["Host"])], " ")
    if server is not None:
        platform_name = (server.get("Platform") or {}).get("Name", "")
        lines += ["", f"Server: {platform_name}".rstrip(), " Engine:"]
        api = server.get("ApiVersion", "")
        if server.get("MinAPIVersion"):
            api = f"{api} (minimum version {server['MinAPIVersion']})"
        experimental = server.get("Experimental")
        lines += _block([
            ("Version", server.get("Version")), ("API version", api),
            ("Go version", server.get("GoVersion")), ("Git commit", server.get("GitCommit")),
            ("Built", server.get("BuildTime")),
            ("OS/Arch", f"{server.get('Os', '')}/{server.get('Arch', '')}".strip("/")),
            ("Kernel version", server.get("KernelVersion")),
            ("Experimental", "true" if experimental else "false"),
        ], "  ")
        for component in server.get("Components") or []:
            name = component.get("Name", "")
            if name in ("Engine", ""):
                continue
            lines.append(f" {name}:")
            lines += _block([("Version", component.get("Version"))]
                            + [(key, value) for key, value in (component.get("Details") or {}).items()
                               if key not in ("ApiVersion", "MinAPIVersion", "Os", "Arch")], "  ")
    return "\n".join(lines)


def run(args: argparse.Namespace, context: Context) -> int:
    client = client_version(context, context.client.api_version)
    try:
        server = context.client.version()
    except Exception:
        if not args.format:
            context.print(render_version(client, None))
            context.print()
        raise
    if args.format:
        from lamina.cli.rows import render_each  # only for -f

        context.out.write(render_each(args.format, [{"Client": client, "Server": server}]))
        return 0
    context.print(render_version(client, server))
    return 0
