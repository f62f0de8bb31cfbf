"""Reading query parameters the way the Docker Engine API defines them, strictly.

Docker's daemon treats any boolean value other than ``""``, ``0``, ``false``, ``no`` and
``none`` as true; lamina rejects values it cannot read (``all=maybe``) with 400 instead of
guessing.  Filters are JSON: ``{"dangling": ["true"], "reference": ["busybox*"]}``, or the
legacy ``{"dangling": {"true": true}}`` shape old clients send; both become
``dict[str, list[str]]``.  Unknown filter names are rejected like Docker does
(``invalid filter 'foo'``).
"""

from __future__ import annotations

from collections.abc import Collection

from lamina import errdefs
from lamina.api.http import Request
from lamina.jsonobject import load_object

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["boolean", "string", "strings", "filters", "TRUE_VALUES", "FALSE_VALUES"]

TRUE_VALUES = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_VALUES = frozenset({"0", "false", "f", "no", "n", "off", "none"})


def string(request: Request, name: str, default: str = "") -> str:
    """The first value of a parameter (Go's ``FormValue``), or ``default`` when absent."""
    values = request.query.get(name)
    return values[0] if values else default


def strings(request: Request, name: str) -> list[str]:
    """Every value of a repeated parameter, in order."""
    return list(request.query.get(name, []))


def boolean(request: Request, name: str, default: bool = False) -> bool:
    values = request.query.get(name)
    if not values:
        return default
    value = values[0].strip().lower()
    if value == "":
        return default
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise errdefs.InvalidArgument(
        f"invalid value {values[0]!r} for query parameter {name!r}: expected a boolean (1/0, true/false)")


def json_object(request: Request, name: str, expected: str) -> tuple[str, dict[str, Any]]:
    """(the raw text, the decoded JSON object) of parameter ``name``: ("", {}) when absent or
    blank; anything but a JSON object is refused, saying ``expected``."""
    raw = string(request, name).strip()
    if not raw:
        return raw, {}
    return raw, load_object(raw, f"invalid {name} {raw!r}", expected)


def filters(request: Request, accepted: Collection[str], name: str = "filters") -> dict[str, list[str]]:
    """The decoded ``filters`` parameter; empty when absent."""
    raw, decoded = json_object(request, name, "a JSON object of name -> [values]")
    result: dict[str, list[str]] = {}
    for key, values in decoded.items():
        if isinstance(values, list) and all(isinstance(value, str) for value in values):
            result[key] = list(values)
        elif isinstance(values, dict) and all(isinstance(flag, bool) for flag in values.values()):
            result[key] = [value for value, enabled in values.items() if enabled]
        else:
            raise errdefs.InvalidArgument(
                f"invalid filters {raw!r}: the value of {key!r} must be a list of strings")
        if key not in accepted:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
    for value in result.get("dangling", []):
        if value.lower() not in TRUE_VALUES | FALSE_VALUES:
            raise errdefs.InvalidArgument(f"invalid filter 'dangling={value}'")
    return result
