"""``lamina info``: system-wide information in docker's text layout (``-f`` for a template).

The server part lists the storage driver with its status lines, and lamina's extra section
``Skipped Storage Drivers`` (each driver probed and not used, with the reason)."""

from __future__ import annotations

import argparse

from lamina import __version__
from lamina.cli.context import Context
from lamina.cli.formatting import bytes_size
from lamina.cli.rows import render_each

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "render_info"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", metavar="FORMAT", help="'json' or a Go template such as '{{.Driver}}'")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_info(info: dict[str, Any], client: dict[str, Any]) -> tuple[str, list[str]]:
    """The text of ``lamina info`` and the warnings to print on stderr."""
    lines = ["Client:"]
    lines.append(f" Version:    {client['Version']}")
    lines.append(f" Host:       {client['Host']}")
    lines.append("")
    lines.append("Server:")

    def line(label: str, key: str, indent: int = 1) -> None:
        if key in info and info[key] not in (None, ""):
            lines.append(" " * indent + f"{label}: {_text(info[key])}")

    def pairs(key: str) -> None:
        for pair in info.get(key) or []:
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                lines.append(f"  {pair[0]}: {pair[1]}")

    line("Containers", "Containers")
    line("Running", "ContainersRunning", 2)
    line("Paused", "ContainersPaused", 2)
    line("Stopped", "ContainersStopped", 2)
    line("Images", "Images")
    line("Server Version", "ServerVersion")
    line("Storage Driver", "Driver")
    pairs("DriverStatus")
    line("Logging Driver", "LoggingDriver")
    line("Cgroup Driver", "CgroupDriver")
    line("Cgroup Version", "CgroupVersion")
    runtimes = info.get("Runtimes")
    if isinstance(runtimes, dict) and runtimes:
        lines.append(f" Runtimes: {' '.join(runtimes)}")
    line("Default Runtime", "DefaultRuntime")
    line("Init Binary", "InitBinary")
    security = info.get("SecurityOptions") or []
    if security:
        lines.append(" Security Options:")
        for option in security:
            parts = dict(part.split("=", 1) for part in str(option).split(",") if "=" in part)
            lines.append(f"  {parts.get('name', option)}")
            # the docker CLI's layout: each key but the name, title-cased
            for key, value in parts.items():
                if key != "name":
                    lines.append(f"   {key.title()}: {value}")
    line("Kernel Version", "KernelVersion")
    line("Operating System", "OperatingSystem")
    line("OSType", "OSType")
    line("Architecture", "Architecture")
    line("CPUs", "NCPU")
    if isinstance(info.get("MemTotal"), (int, float)):
        lines.append(f" Total Memory: {bytes_size(info['MemTotal'])}")
    line("Name", "Name")
    line("ID", "ID")
    line("Docker Root Dir", "DockerRootDir")
    line("Debug Mode", "Debug")
    line("Experimental", "ExperimentalBuild")
    line("Live Restore Enabled", "LiveRestoreEnabled")
    if info.get("LaminaSkippedDrivers"):
        lines.append(" Skipped Storage Drivers:")
        pairs("LaminaSkippedDrivers")
    lines.append("")
    warnings = [str(warning) for warning in info.get("Warnings") or []]
    return "\n".join(lines), warnings


def run(args: argparse.Namespace, context: Context) -> int:
    info = context.client.info()
    client = {"Version": __version__, "Host": getattr(context.transport, "description", ""),
              "ApiVersion": context.client.api_version}
    if args.format:
        context.out.write(render_each(args.format, [{**info, "ClientInfo": client}]))
        return 0
    text, warnings = render_info(info, client)
    context.print(text)
    for warning in warnings:
        context.error(warning if warning.startswith("WARNING") else f"WARNING: {warning}")
    return 0
