"""JSON text the way Go's ``encoding/json.Marshal`` writes it.

Docker's stores (repositories.json, image configs, container configs) are written by Go; an
image id is the sha256 of the exact config bytes, so configs lamina creates for new images
must be byte-for-byte what Go would emit for the same values.  The rules that differ from
Python's :func:`json.dumps`:

- no whitespace (``,`` and ``:`` separators);
- non-ASCII text is written as raw UTF-8, except U+2028 and U+2029 which are escaped;
- ``<``, ``>`` and ``&`` are escaped as ``\\u003c``, ``\\u003e``, ``\\u0026`` (HTML-safe);
- control characters use ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f`` or ``\\u00xx`` (lowercase hex);
- invalid text (a lone surrogate) becomes U+FFFD.

Key order is the caller's: build dicts in Go struct field order, and use
:func:`sorted_map` for Go maps (which Go writes with keys sorted bytewise).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "sorted_map"]

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


@functools.cache
def _expressions() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(what Go escapes, lone surrogates), compiled on the first write: a command that only
    reads configs does not pay for them."""
    return re.compile("[<>&\u2028\u2029]"), re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> bytes:
    """Serialise ``value`` (dicts keep their insertion order) as Go would."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # These characters only ever occur inside JSON strings, so replacing them everywhere is
    # the same as escaping them inside strings.
    escape, surrogate = _expressions()
    text = escape.sub(lambda match: _GO_ESCAPES[match.group(0)], text)
    text = surrogate.sub("\ufffd", text)
    return text.encode("utf-8")


def sorted_map(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with keys in Go's order (bytewise on the UTF-8 encoding)."""
    return {key: mapping[key] for key in sorted(mapping, key=lambda key: key.encode("utf-8", "surrogatepass"))}
