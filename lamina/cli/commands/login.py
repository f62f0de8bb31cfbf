"""``lamina login [-u USER] [-p PASS | --password-stdin] [SERVER]``: check credentials against a
registry (through the engine's ``POST /auth``) and store them in ``~/.docker/config.json``
(or the configured credential helper).  Default server: Docker Hub."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import EXIT_BAD_REQUEST, CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--username", default="", help="username")
    parser.add_argument("-p", "--password", default="", help="password (prefer --password-stdin)")
    parser.add_argument("--password-stdin", action="store_true", help="take the password from stdin")
    parser.add_argument("server", nargs="?", default="", metavar="SERVER")


def run(args: argparse.Namespace, context: Context) -> int:
    import getpass

    from lamina.cli.dockerconfig import DockerConfig, registry_key

    password = args.password
    if args.password_stdin:
        if args.password:
            raise CommandError("--password and --password-stdin are mutually exclusive", EXIT_BAD_REQUEST)
        if not args.username:
            raise CommandError("Must provide --username with --password-stdin", EXIT_BAD_REQUEST)
        password = context.stdin.read().rstrip("\r\n")
    elif args.password:
        context.error("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    username = args.username
    if not username:
        try:
            context.out.write("Username: ")
            context.out.flush()
            username = context.stdin.readline().strip()
        except OSError:
            username = ""
    if not username:
        raise CommandError("Error: Non-null Username Required", EXIT_BAD_REQUEST)
    if not password:
        password = getpass.getpass("Password: ")
    if not password:
        raise CommandError("Error: Non-null Password Required", EXIT_BAD_REQUEST)
    server = registry_key(args.server or "docker.io")
    context.client.login(username=username, password=password, server=server)
    DockerConfig().store(server, username, password)
    context.print("Login Succeeded")
    return 0
