"""``lamina run [OPTIONS] IMAGE [COMMAND] [ARG...]``: create and start a container.

``-d`` prints the full id once it started.  Otherwise, like docker: attach to stdout and
stderr (and stdin with ``-i``; ``-a`` picks streams), ask to be told of the exit (``removed``
with ``--rm``: the container's monitor removes it), start, copy stdio (``-t``: the local
terminal in raw mode, window size forwarded), and exit with the container's exit code.  See
:mod:`lamina.cli.foreground` for the exit codes (125 / 126 / 127).

This is the hot path of ``lamina run --rm IMAGE true``: it imports only the client, the API
router and what the in-process engine needs.
"""

from __future__ import annotations

import argparse

from lamina.cli.container_flags import FlagError, configure_create, create_body
from lamina.cli.context import Context
from lamina.cli.creating import create_container
from lamina.cli.foreground import EngineError, input_is_not_a_terminal, report, run_attached, start_failure_code

__all__ = ["ADD_HELP", "OPTIONS_END_AT_POSITIONAL", "USAGE_EXIT_CODE", "configure", "run"]

ADD_HELP = False
OPTIONS_END_AT_POSITIONAL = True
USAGE_EXIT_CODE = 125


def configure(parser: argparse.ArgumentParser) -> None:
    configure_create(parser, run=True)


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    from lamina import errdefs
    from lamina.cli.detach import resolve_detach_keys

    try:
        body = create_body(args, detach=args.detach)
        try:
            detach_keys = resolve_detach_keys(args.detach_keys)
        except errdefs.InvalidArgument as exc:
            raise FlagError(str(exc)) from exc
    except FlagError as exc:
        context.error(f"lamina: {exc.message}\nSee 'lamina run --help'.")
        return exc.exit_code
    if not args.detach and input_is_not_a_terminal(context, tty=body["Tty"], stdin=body["AttachStdin"]):
        return 1
    try:
        id = create_container(context, args, detach=args.detach, command="run", body=body)
        if args.detach:
            try:
                context.client.start(id)
            except ClientError as exc:
                if args.rm:
                    try:
                        context.client.remove_container(id, force=True)
                    except ClientError:
                        pass  # the engine removed it already
                raise EngineError(exc, "run", start_failure_code(exc.message)) from exc
            context.print(id)
            return 0
        return run_attached(
            context, context.client, id, command="run", tty=body["Tty"], stdin=body["AttachStdin"],
            stdout=body["AttachStdout"], stderr=body["AttachStderr"], start=True,
            wait_condition="removed" if args.rm else "next-exit", sig_proxy=args.sig_proxy,
            remove_on_failure=args.rm, detach_keys=detach_keys)
    except EngineError as exc:
        return report(context, exc)
