"""``lamina start [-a] [-i] CONTAINER...``: start stopped containers and print their names.

With ``-a`` (one container only), like ``docker start -a``: attach to its output (and stdin
with ``-i``) before starting, copy stdio until it ends, and exit with the container's exit
code (125 / 126 / 127 when the engine refuses, see :mod:`lamina.cli.foreground`).
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.detach import detach_keys_for
from lamina.cli.errors import UsageError
from lamina.cli.foreground import EngineError, report, run_attached
from lamina.cli.targets import for_each

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR and forward signals")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach container's STDIN")
    parser.add_argument("--detach-keys", metavar="KEYS", help="override the key sequence for detaching a container")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    client = context.client
    if not (args.attach or args.interactive):
        return for_each(context, args.containers, client.start)
    if len(args.containers) > 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    name = args.containers[0]
    try:
        try:
            info = client.inspect_container(name)
        except ClientError as exc:
            raise EngineError(exc, "start") from exc
        config = info.get("Config") or {}
        state = info.get("State") or {}
        tty = bool(config.get("Tty"))
        stdin = bool(args.interactive and config.get("OpenStdin"))
        return run_attached(context, client, str(info.get("Id") or name), command="start", tty=tty,
                            stdin=stdin, stdout=True, stderr=True,
                            start=not state.get("Running"), wait_condition="next-exit",
                            detach_keys=detach_keys_for(args.detach_keys, "start"))
    except EngineError as exc:
        return report(context, exc)
