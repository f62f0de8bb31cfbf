"""``lamina search [--limit N] [--format F] [--no-trunc] REGISTRY/TEXT``: repositories of a
registry whose name contains TEXT.

The registry API v2 has no search: lamina lists the registry's catalog (``/v2/_catalog``) and
filters it, so the term must name the registry (``localhost:5000/busy``).  Docker Hub's own
search API is not supported."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=25, help="max number of search results (default 25)")
    parser.add_argument("--format", default="", help="pretty-print with a Go template ({{.Name}})")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("term", metavar="REGISTRY/TERM")


def run(args: argparse.Namespace, context: Context) -> int:
    from lamina.cli.commands.pull import auth_for

    domain = args.term.split("/", 1)[0]
    from lamina.cli.errors import CommandError

    try:
        _, auth = auth_for(domain + "/x")
    except CommandError:  # a term that names no registry: the engine says why
        auth = None
    results = context.client.search(args.term, limit=args.limit, auth=auth)
    from lamina.cli.rows import Record, format_rows

    rows = [Record({"Name": r.get("name", ""), "Description": r.get("description", ""),
                    "StarCount": r.get("star_count", 0), "IsOfficial": r.get("is_official", False)})
            for r in results]
    context.out.write(format_rows(args.format or None, rows, default_table="{{.Name}}\t{{.Description}}",
                                  headers={"Name": "NAME", "Description": "DESCRIPTION"}))
    return 0
