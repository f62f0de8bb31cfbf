"""Whether a class implements a ``typing.Protocol``: every method the protocol names exists with
the same parameters (name, kind, default); the class may add parameters only with defaults.
No type checker runs in the test suite, so the protocol tests use this."""

from __future__ import annotations

import inspect

__all__ = ["methods", "mismatches"]


def methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


def mismatches(protocol: type, implementation: type) -> list[str]:
    problems = []
    for name in methods(protocol):
        method = getattr(implementation, name, None)
        if method is None:
            problems.append(f"{name}: missing")
            continue
        wanted = inspect.signature(getattr(protocol, name)).parameters
        given = inspect.signature(method).parameters
        for parameter in wanted.values():
            other = given.get(parameter.name)
            if other is None:
                problems.append(f"{name}: no parameter {parameter.name!r}")
            elif other.kind != parameter.kind:
                problems.append(f"{name}: {parameter.name!r} is {other.kind.description}, "
                                f"the protocol says {parameter.kind.description}")
            elif other.default != parameter.default:
                problems.append(f"{name}: {parameter.name!r} defaults to {other.default!r}, "
                                f"the protocol says {parameter.default!r}")
        for parameter in given.values():
            if parameter.name not in wanted and parameter.default is inspect.Parameter.empty \
                    and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                problems.append(f"{name}: the required parameter {parameter.name!r} is not in the protocol")
    return problems
