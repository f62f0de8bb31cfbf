"""``lamina exec [-d] [-i] [-t] [-e K=V] [--env-file F] [-w DIR] [-u USER] [--privileged]
CONTAINER COMMAND [ARG...]``: run a command in a running container.

Like docker: create the exec, then start it attached to stdout/stderr (and stdin with ``-i``;
``-t`` gives it a pty sized like the local terminal, which is put in raw mode), copy stdio
until it ends, and exit with the process's exit code from ``GET /exec/{id}/json``; ``-d``
starts it in the background and prints nothing.  125 when the engine refuses (container not
running, no such container), 126 / 127 when the command cannot be invoked / is not found.
"""

from __future__ import annotations

import argparse
import time

from lamina.cli.container_flags import FlagError, parse_env, read_env_file
from lamina.cli.context import Context
from lamina.cli.errors import UsageError
from lamina.cli.foreground import EXIT_ENGINE, EngineError, input_is_not_a_terminal, pump, report
from lamina.cli.stdio import terminal_size

_EXIT_RECORD_SECONDS = 3.0

__all__ = ["OPTIONS_END_AT_POSITIONAL", "USAGE_EXIT_CODE", "configure", "run"]

OPTIONS_END_AT_POSITIONAL = True
USAGE_EXIT_CODE = 125


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true", help="detached mode: run command in the background")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open even if not attached")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set environment variables")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE", help="read in a file of environment variables")
    parser.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    parser.add_argument("-u", "--user", metavar="USER", help="username or UID (format: <name|uid>[:<group|gid>])")
    parser.add_argument("--privileged", action="store_true", help="give extended privileges to the command")
    parser.add_argument("--detach-keys", metavar="KEYS", help="override the key sequence for detaching a container")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.client.client import ClientError

    if not args.command:
        raise UsageError('"lamina exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]')
    try:
        environment: list[str] = []
        for path in args.env_file:
            environment.extend(read_env_file(path))
        environment.extend(parse_env(args.env))
    except FlagError as exc:
        context.error(f"lamina: {exc.message}\nSee 'lamina exec --help'.")
        return exc.exit_code
    from lamina import errdefs
    from lamina.cli.detach import resolve_detach_keys

    try:
        detach_keys = resolve_detach_keys(args.detach_keys)
    except errdefs.InvalidArgument as exc:
        context.error(f"lamina: {exc}\nSee 'lamina exec --help'.")
        return EXIT_ENGINE
    attach = not args.detach
    if attach and input_is_not_a_terminal(context, tty=args.tty, stdin=args.interactive):
        return 1
    body = {
        "User": args.user or "", "Privileged": args.privileged, "Tty": args.tty,
        "AttachStdin": attach and args.interactive, "AttachStdout": attach, "AttachStderr": attach,
        "DetachKeys": detach_keys.specification, "Env": environment or None,
        "WorkingDir": args.workdir or "", "Cmd": list(args.command),
    }
    size = terminal_size(context.out) if args.tty else None
    if size is not None:
        body["ConsoleSize"] = list(size)
    client = context.client
    try:
        try:
            exec_id = str(client.exec_create(args.container, body)["Id"])
            attachment = client.exec_start(exec_id, detach=args.detach, tty=args.tty, console_size=size)
        except ClientError as exc:
            raise EngineError(exc, "exec") from exc
    except EngineError as exc:
        return report(context, exc)
    if attachment is None:
        return 0
    with attachment:
        detached = pump(context, client, attachment, tty=args.tty, stdin=bool(body["AttachStdin"]),
                        resize=lambda height, width: client.exec_resize(exec_id, height=height, width=width),
                        detach_keys=detach_keys.keys)
    if detached:
        return 0
    # the monitor records the exit as the stream ends: give it a moment, never take a missing
    # exit code (the container's monitor died with the exec attached) for success
    deadline = time.monotonic() + _EXIT_RECORD_SECONDS
    while True:
        try:
            record = client.exec_inspect(exec_id)
        except ClientError as exc:
            context.error(f"Error response from daemon: {exc.message}")
            return EXIT_ENGINE
        exit_code = record.get("ExitCode")
        if isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code >= 0:
            return exit_code
        if time.monotonic() >= deadline:
            context.error(f"Error: exec {exec_id[:12]} ended without an exit code "
                          "(the container's monitor is gone)")
            return EXIT_ENGINE
        time.sleep(0.02)
