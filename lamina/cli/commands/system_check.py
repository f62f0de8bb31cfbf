"""``lamina system check [--repair]``: check the data root (lamina only; no docker equivalent).

Prints one line per problem (``KIND OBJECT: MESSAGE``) and what was repaired; exits 1 when
problems remain (with ``--repair``: those it could not repair)."""

from __future__ import annotations

import argparse

from lamina.cli.context import Context
from lamina.cli.errors import EXIT_FAILURE

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["configure", "run", "remaining_problems"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repair", action="store_true", help="repair what can be repaired")


def _describe(problem: Any) -> str:
    if isinstance(problem, dict):
        kind = problem.get("Kind", "problem")
        target = problem.get("Object", "")
        message = problem.get("Message", "")
        return f"{kind} {target}: {message}" if target else f"{kind}: {message}"
    return str(problem)


def remaining_problems(report: dict[str, Any]) -> list[Any]:
    """Problems not listed as repaired (``Repaired`` holds problems or their objects)."""
    repaired = report.get("Repaired") or []
    repaired_objects = {item.get("Object") if isinstance(item, dict) else item for item in repaired}
    return [problem for problem in report.get("Problems") or []
            if problem not in repaired
            and not (isinstance(problem, dict) and problem.get("Object") in repaired_objects
                     and problem.get("Object") is not None)]


def run(args: argparse.Namespace, context: Context) -> int:
    report = context.client.system_check(repair=args.repair)
    problems = report.get("Problems") or []
    repaired = report.get("Repaired") or []
    for problem in problems:
        context.print(_describe(problem))
    for item in repaired:
        context.print(f"repaired: {_describe(item)}")
    remaining = remaining_problems(report)
    if not problems:
        context.print("no problems found")
        return 0
    summary = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found"
    if args.repair:
        summary += f", {len(problems) - len(remaining)} repaired"
    context.print(summary)
    return EXIT_FAILURE if remaining else 0
