"""Decoding a JSON document that must be an object: a registry's manifest, an Engine API
query parameter such as ``filters``.

Nothing here touches the disk or keeps state: :func:`load_object` turns text into a ``dict``
or raises :class:`~lamina.errdefs.InvalidArgument` saying what was wrong with it.
"""

from __future__ import annotations

import json

from lamina import errdefs

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["load_object"]


def load_object(text: str | bytes, what: str, expected: str = "a JSON object") -> dict[str, Any]:
    """The JSON object ``text`` holds; anything else is refused as ``"<what>: not valid JSON:
    <reason>"`` or ``"<what>: expected <expected>"``."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise errdefs.InvalidArgument(f"{what}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise errdefs.InvalidArgument(f"{what}: expected {expected}")
    return document
