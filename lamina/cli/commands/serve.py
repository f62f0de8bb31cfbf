"""``lamina serve``: serve the Docker Engine API on unix sockets for the docker CLI, docker-py
and ``lamina -H``.

Sockets: every ``-H unix:///path`` given to the command; else the global ``-H`` (``lamina -H
unix:///x serve``); else :func:`lamina.config.default_host` (``/run/lamina.sock``, or
``$XDG_RUNTIME_DIR/lamina.sock`` for an unprivileged user, whose sockets stay the user's: no
group is given them).  ``LAMINA_HOST`` and
``DOCKER_HOST`` are not used: they name a daemon to *talk* to.  The data root and storage
driver come from the global options (``--data-root``, ``--storage-driver``) and their
environment variables.  Requests are logged at INFO, which is this command's default log level
(``--log-level`` or ``LAMINA_LOG_LEVEL`` override it).  SIGTERM or SIGINT stops the server
cleanly (exit 0); running containers keep running.
"""

from __future__ import annotations

import argparse
import logging
import os

from lamina.cli.context import Context
from lamina.cli.errors import UsageError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", action="append", default=[], metavar="HOST",
                        help="socket to listen on, unix:///path (repeatable; default unix:///run/lamina.sock)")
    parser.add_argument("-G", "--group", default=None, metavar="GROUP",
                        help="group owning the sockets when it exists, else root's (default docker; "
                             "rootless: the user's own group)")
    parser.add_argument("--max-connections", type=int, default=512, metavar="N",
                        help="connections served at once; past it a new client takes the place of the "
                             "one idle longest, or is answered 503 when all serve requests (default 512)")
    parser.add_argument("--header-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="time a client may take to send a request's head once begun; 0: no limit (default 60)")
    parser.add_argument("--idle-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="time an open connection may wait for its next request; 0: no limit (default 300)")
    parser.add_argument("--userns-remap", metavar="default|USER[:GROUP]",
                        help="as the global --userns-remap: containers run in remapped user namespaces")
    parser.add_argument("--userns-remap-layers", choices=("auto", "idmap", "copy"),
                        help="as the global --userns-remap-layers: idmapped mounts or chowned layer copies")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, how long requests in progress may take to finish before "
                             "they are cut (default 10)")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.config import default_host, rootless_uid
    from lamina.records import replace
    from lamina.server.server import ServerConfig, serve

    if args.userns_remap is not None:
        context.options = replace(context.options, userns_remap=args.userns_remap)
    if args.userns_remap_layers is not None:
        context.options = replace(context.options, userns_remap_layers=args.userns_remap_layers)
    if args.shutdown_timeout < 0:
        raise UsageError("--shutdown-timeout must not be negative")
    hosts = list(args.host) or ([context.options.host] if context.options.host
                                else [default_host(rootless_uid())])
    from lamina.log import load

    load()  # the command line's handler first: its level and format are adjusted below
    if context.options.log_level is None and not os.environ.get("LAMINA_LOG_LEVEL"):
        logging.getLogger("lamina").setLevel(logging.INFO)
    for handler in logging.getLogger("lamina").handlers:
        if getattr(handler, "_lamina_cli", False):
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if args.max_connections < 1:
        raise UsageError("--max-connections must be at least 1")
    # rootless: the sockets keep the user's group (uid/gid 0 inside); host groups are not mapped
    group = args.group or (None if rootless_uid() is not None else "docker")
    config = ServerConfig(hosts=tuple(hosts), socket_group=group, shutdown_timeout=args.shutdown_timeout,
                          max_connections=args.max_connections, header_timeout=args.header_timeout or None,
                          idle_timeout=args.idle_timeout or None)
    from lamina.cli.forwarded import CommandHandler

    engine = context.config()
    return serve(engine, config, handler=lambda router: CommandHandler(router, engine))
