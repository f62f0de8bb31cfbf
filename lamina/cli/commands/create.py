"""``lamina create [OPTIONS] IMAGE [COMMAND] [ARG...]``: create a container and print its id
(the flags are ``run``'s, see :mod:`lamina.cli.container_flags`)."""

from __future__ import annotations

import argparse

from lamina.cli.container_flags import configure_create
from lamina.cli.context import Context
from lamina.cli.creating import create_container
from lamina.cli.foreground import EngineError, report

__all__ = ["ADD_HELP", "OPTIONS_END_AT_POSITIONAL", "USAGE_EXIT_CODE", "configure", "run"]

ADD_HELP = False                  # -h is --hostname, like docker's
OPTIONS_END_AT_POSITIONAL = True  # flags after IMAGE belong to the command
USAGE_EXIT_CODE = 125


def configure(parser: argparse.ArgumentParser) -> None:
    configure_create(parser)


def run(args: argparse.Namespace, context: Context) -> int:
    try:
        context.print(create_container(context, args, detach=False, command="create"))
    except EngineError as exc:
        return report(context, exc)
    return 0
