"""``lamina volume create [NAME]``: create a volume and print its name, like ``docker volume create``.

``--driver`` (default ``local``), ``--label k=v`` and ``-o k=v`` (driver options: ``type``,
``device``, ``o``) may repeat; without a name the daemon makes an anonymous volume.
"""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import UsageError

__all__ = ["configure", "run", "parse_pairs"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume_name", nargs="?", metavar="VOLUME", help="the volume's name")
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    parser.add_argument("-d", "--driver", default="local", help="volume driver name (default local)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="set metadata for a volume")
    parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="set driver specific options (type, device, o)")


def parse_pairs(values: list[str], what: str, *, require_equals: bool) -> dict[str, str]:
    """``["a=b", "c"]`` -> ``{"a": "b", "c": ""}`` (docker's label and option lists)."""
    result: dict[str, str] = {}
    for value in values:
        key, equals, item = value.partition("=")
        if not key or (require_equals and not equals):
            raise UsageError(f'invalid argument "{value}" for "{what}" flag: expected KEY=VALUE')
        result[key] = item
    return result


def run(args: argparse.Namespace, context: Context) -> int:
    if args.volume_name and args.name and args.volume_name != args.name:
        raise UsageError("conflicting options: either specify --name or provide positional arg, not both")
    name = args.volume_name or args.name
    volume = context.client.create_volume(
        name, driver=args.driver, driver_opts=parse_pairs(args.opt, "-o, --opt", require_equals=True),
        labels=parse_pairs(args.label, "--label", require_equals=False))
    context.print(str(volume.get("Name", "")))
    return 0
