"""API versions lamina serves, and their comparison (``"1.9" < "1.24"``: numeric, per part)."""

from __future__ import annotations

__all__ = ["API_VERSION", "MIN_API_VERSION", "parse_version"]

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.45"`` -> ``(1, 45)``; raises ValueError for anything but dot-separated integers."""
    parts = text.strip().split(".")
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"malformed API version {text!r}")
    return tuple(int(part) for part in parts)
