"""``lamina rmi`` / ``lamina image rm``: remove images, printing what was untagged and deleted.

Each name is removed in turn; a failure is reported and the next name is still tried; the
exit code is that of the last failure."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import exit_code_for_status
from lamina.client.client import ClientError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    parser.add_argument("--no-prune", action="store_true", help="do not delete untagged parents")


def run(args: argparse.Namespace, context: Context) -> int:
    status = 0
    for name in args.images:
        try:
            deleted = context.client.remove_image(name, force=args.force, prune=not args.no_prune)
        except ClientError as exc:
            context.error(f"Error response from daemon: {exc.message}")
            status = exit_code_for_status(exc.status)
            continue
        for item in deleted:
            if item.get("Untagged"):
                context.print(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                context.print(f"Deleted: {item['Deleted']}")
    return status
