"""``lamina attach [--no-stdin] CONTAINER``: connect the local stdin, stdout and stderr to a
running container until it exits; the exit code is the container's."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.detach import detach_keys_for
from lamina.cli.foreground import EngineError, input_is_not_a_terminal, report, run_attached

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    parser.add_argument("--sig-proxy", action="store_true", default=True,
                        help="proxy all received signals to the process (default true)")
    parser.add_argument("--detach-keys", metavar="KEYS", help="override the key sequence for detaching a container")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    client = context.client
    try:
        try:
            info = client.inspect_container(args.container)
        except ClientError as exc:
            raise EngineError(exc, "attach") from exc
        config = info.get("Config") or {}
        state = info.get("State") or {}
        if not state.get("Running"):
            context.error("You cannot attach to a stopped container, start it first")
            return 1
        if state.get("Paused"):
            context.error("You cannot attach to a paused container, unpause it first")
            return 1
        if input_is_not_a_terminal(context, tty=bool(config.get("Tty")),
                                   stdin=bool(config.get("OpenStdin")) and not args.no_stdin):
            return 1
        return run_attached(context, client, str(info.get("Id") or args.container), command="attach",
                            tty=bool(config.get("Tty")),
                            stdin=bool(config.get("OpenStdin")) and not args.no_stdin,
                            stdout=True, stderr=True, start=False, wait_condition="not-running",
                            sig_proxy=args.sig_proxy, detach_keys=detach_keys_for(args.detach_keys, "attach"))
    except EngineError as exc:
        return report(context, exc)
