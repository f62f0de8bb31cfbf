"""Creating a container for ``create`` and ``run``: the request body from the flags, the
create call (with ``-t`` on a terminal, ``HostConfig.ConsoleSize`` is the terminal's size),
and docker's pull-on-missing-image behaviour (``Unable to find image 'x:latest'
locally``, then a pull, then the create again; ``--pull never`` skips the pull, ``--pull
always`` pulls first).  Warnings from the engine print as ``WARNING: ...`` on stderr.
Failures raise :class:`lamina.cli.foreground.EngineError` (exit code 125)."""

from __future__ import annotations

import argparse
import os

from lamina.cli.container_flags import create_body
from lamina.cli.context import Context, is_terminal
from lamina.cli.foreground import EngineError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["create_container", "image_reference"]


def image_reference(image: str) -> str:
    """``busybox`` -> ``busybox:latest`` (references with a tag or digest stay as they are)."""
    from lamina.cli.formatting import (
        split_reference,  # datetime: only on this error path
    )

    _, tag = split_reference(image)
    return image if tag else f"{image}:latest"


def _pull(context: Context, image: str, command: str, platform: str = "") -> None:
    from lamina.cli.formatting import split_reference
    from lamina.cli.progress import render_stream
    from lamina.client.client import ClientError

    name, tag = split_reference(image)
    try:
        from lamina.cli.commands.pull import auth_for

        _, auth = auth_for(image)  # credentials from ~/.docker/config.json
        messages = context.client.pull_image(name if not tag.startswith("@") else image,
                                             tag="" if tag.startswith("@") else tag or "latest", auth=auth,
                                             platform=platform)
        code = render_stream(messages, context.err, context.err, terminal=is_terminal(context.err))
    except ClientError as exc:
        raise EngineError(exc, command) from exc
    if code:
        raise EngineError(ClientError(500, f"pulling {image} failed"), command)


def create_container(context: Context, args: argparse.Namespace, *, detach: bool, command: str,
                     body: dict[str, Any] | None = None) -> str:
    """Create the container the flags describe; returns its id."""
    from lamina.client.client import ClientError

    if body is None:
        body = create_body(args, detach=detach)
    if body.get("Tty"):
        # The pty gets the terminal's size from the start (a resize after the start would
        # come too late for a process that asks at once), like docker's ConsoleSize.
        from lamina.cli.stdio import terminal_size

        size = terminal_size(context.out)
        if size is not None:
            body["HostConfig"]["ConsoleSize"] = list(size)
    client = context.client
    cidfile = body["HostConfig"].get("ContainerIDFile") or ""
    if cidfile and os.path.exists(cidfile):
        # docker refuses before it creates anything
        raise EngineError(ClientError(400, f"container ID file found, make sure the other container isn't "
                                           f"running or delete {cidfile}"), command)
    platform = getattr(args, "platform", None) or ""
    if getattr(args, "pull", "missing") == "always":
        _pull(context, args.image, command, platform)
    try:
        answer = client.create_container(body, name=args.name, platform=platform or None)
    except ClientError as exc:
        # only a missing image is pulled (a 404 also says: unknown network, volume driver...)
        if exc.status != 404 or "No such image" not in exc.message or getattr(args, "pull", "missing") == "never":
            raise EngineError(exc, command) from exc
        context.error(f"Unable to find image '{image_reference(args.image)}' locally")
        _pull(context, image_reference(args.image), command, platform)
        try:
            answer = client.create_container(body, name=args.name, platform=platform or None)
        except ClientError as retry_exc:
            raise EngineError(retry_exc, command) from retry_exc
    for warning in answer.get("Warnings") or []:
        context.error(f"WARNING: {warning}")
    if cidfile:
        try:
            with open(cidfile, "x", encoding="ascii") as handle:
                handle.write(str(answer["Id"]))
        except OSError as exc:
            raise EngineError(ClientError(400, f"failed to write the container ID to the file: "
                                               f"{(exc.strerror or str(exc)).lower()}"), command) from exc
    return str(answer["Id"])
