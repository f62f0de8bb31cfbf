"""Go's formatting of values, as Docker's build history strings and messages show them.

The classic builder writes the step of each image into ``container_config.Cmd`` (``docker
history`` shows it as CREATED BY) with Go's ``fmt``: ``%q`` of a string (:func:`go_quote`) or
of a ``[]string`` (:func:`quoted_list`), ``%v`` of a ``[]string`` (:func:`plain_list`),
``time.Duration.String`` (:func:`go_duration`) and ``%q`` of Docker 20.10's ``*HealthConfig``
(:func:`healthcheck_text`).  :func:`short_id` is the 12-digit id the build messages show.
Reproducing them byte for byte keeps the cache keys and the history equal to Docker's.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from lamina.container.durations import go_duration

if TYPE_CHECKING:
    from lamina.image.config import HealthConfig

__all__ = ["go_quote", "quoted_list", "plain_list", "go_duration", "healthcheck_text", "short_id"]


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for character in text:
        code = ord(character)
        if character in ('"', "\\"):
            out.append("\\" + character)
        elif character == " " or (character.isprintable() and unicodedata.category(character) != "Zs"):
            out.append(character)
        elif character in _GO_ESCAPES:
            out.append(_GO_ESCAPES[character])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def quoted_list(values: tuple[str, ...] | None) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(value) for value in values or ()) + "]"


def plain_list(values: tuple[str, ...] | None) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b]``."""
    return "[" + " ".join(values or ()) + "]"


def _go_char(value: int) -> str:
    """Go's ``%q`` of an int: a quoted character literal (``'\\x03'``)."""
    if 0x20 <= value < 0x7F and chr(value) not in ("'", "\\"):
        return f"'{chr(value)}'"
    if chr(value) in ("'", "\\"):
        return "'\\" + chr(value) + "'"
    escape = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}.get(value)
    if escape:
        return f"'{escape}'"
    if value < 0x80:
        return f"'\\x{value:02x}'"
    if value < 0x10000:
        return f"'\\u{value:04x}'" if not chr(value).isprintable() else f"'{chr(value)}'"
    return f"'\\U{value:08x}'"


def healthcheck_text(health: HealthConfig) -> str:
    """Go's ``%q`` of Docker 20.10's ``*HealthConfig`` (what its history shows)."""
    return (f"&{{{quoted_list(health.test)} {go_quote(go_duration(health.interval))} "
            f"{go_quote(go_duration(health.timeout))} {go_quote(go_duration(health.start_period))} "
            f"{_go_char(health.retries)}}}")


def short_id(image_id: str) -> str:
    """Docker's ``stringid.TruncateID``: the first 12 hex digits, no algorithm."""
    return image_id.split(":", 1)[-1][:12]
