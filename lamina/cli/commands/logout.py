"""``lamina logout [SERVER]``: forget the stored credentials of a registry (default Docker Hub)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", nargs="?", default="", metavar="SERVER")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.cli.dockerconfig import DockerConfig, registry_key

    server = registry_key(args.server or "docker.io")
    if DockerConfig().erase(server):
        context.print(f"Removing login credentials for {server}")
    else:
        context.print(f"Not logged in to {server}")
    return 0
