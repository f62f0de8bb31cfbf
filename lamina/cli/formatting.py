"""Text output the way the docker CLI writes it.

* Sizes: ``human_size`` is go-units' ``HumanSizeWithPrecision`` (decimal units B, kB, MB...,
  Go's ``%.<precision>g``); ``docker images`` uses 3 significant digits (``4.26MB``), most
  other places 4.  ``bytes_size`` is ``BytesSize`` (binary units, ``3.824GiB``).
* Durations: ``human_duration`` is go-units' ``HumanDuration`` (``About a minute``,
  ``2 weeks``; one implementation, in :mod:`lamina.container.durations`); ``since`` appends
  `` ago``.
* Tables: ``tabulate`` is Go's ``text/tabwriter`` as the docker CLI configures it (minimum
  cell width 10, padding 3, spaces): every column but the last is padded to its widest cell.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from lamina.container.durations import human_duration

__all__ = [
    "human_size", "bytes_size", "human_duration", "since", "go_time", "rfc3339",
    "truncate_id", "ellipsis", "tabulate", "split_reference", "familiar_name",
]

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(size: float, base: float, units: Sequence[str]) -> tuple[float, str]:
    index = 0
    while size >= base and index < len(units) - 1:
        size /= base
        index += 1
    return size, units[index]


def human_size(size: float, precision: int = 4) -> str:
    value, unit = _scaled(float(size), 1000.0, _DECIMAL)
    return f"{value:.{precision}g}{unit}"


def bytes_size(size: float) -> str:
    value, unit = _scaled(float(size), 1024.0, _BINARY)
    return f"{value:.4g}{unit}"


def since(timestamp: float, now: float | None = None) -> str:
    """``2 weeks ago`` for a unix time."""
    current = time.time() if now is None else now
    return human_duration(current - timestamp) + " ago"


def go_time(timestamp: float) -> str:
    """Go's ``time.Time.String()`` in local time: ``2023-05-19 20:19:23 +0000 UTC``."""
    moment = time.localtime(timestamp)  # a listing calls this per row: no datetime objects
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", moment) + (moment.tm_zone or "")


def rfc3339(timestamp: float) -> str:
    """Go's ``time.RFC3339`` in local time: ``2023-05-19T20:19:23Z`` or ``...+02:00``."""
    from datetime import datetime

    moment = datetime.fromtimestamp(int(timestamp)).astimezone()
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def truncate_id(identifier: str) -> str:
    """``sha256:2b8fd9751c4c0f5d...`` -> ``2b8fd9751c4c`` (docker's stringid.TruncateID)."""
    if ":" in identifier:
        identifier = identifier.split(":", 1)[1]
    return identifier[:12]


def ellipsis(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, the last one being ``…``."""
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    return text[: width - 1] + "…"


def tabulate(rows: Iterable[Sequence[str]], *, min_width: int = 10, padding: int = 3) -> str:
    """Align rows of cells like the docker CLI's tabwriter; returns lines ending in ``\\n``."""
    materialised = [[str(cell) for cell in row] for row in rows]
    widths: dict[int, int] = {}
    for row in materialised:
        for column, cell in enumerate(row[:-1]):
            widths[column] = max(widths.get(column, min_width), len(cell) + padding)
    lines = []
    for row in materialised:
        cells = [cell.ljust(widths[column]) for column, cell in enumerate(row[:-1])]
        if row:
            cells.append(row[-1])
        lines.append("".join(cells) + "\n")
    return "".join(lines)


def split_reference(reference: str) -> tuple[str, str]:
    """``localhost:5000/a/b:tag`` -> (``localhost:5000/a/b``, ``tag``); no tag -> ``""``.
    A digest (``name@sha256:...``) is returned as the second part, with its ``@``."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        return name, "@" + digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1:]
    return reference, ""


def familiar_name(name: str) -> str:
    """``docker.io/library/busybox`` -> ``busybox``, ``docker.io/a/b`` -> ``a/b``."""
    for prefix in ("docker.io/library/", "index.docker.io/library/"):
        if name.startswith(prefix) and "/" not in name[len(prefix):]:
            return name[len(prefix):]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
