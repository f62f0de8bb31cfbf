"""The rows of a listing and docker's ``--format`` conventions for them, without the template
engine: a listing's table (text and ``{{.Field}}`` actions only, as every default table is) is
rendered here, and :mod:`lamina.cli.templates` (Go's ``text/template``, which also owns the
rules this module follows) is imported only for a template that needs more.

:func:`format_rows`: ``table`` (the default columns), ``table TEMPLATE`` (aligned, with a header
row), ``json`` (``{{json .}}`` per row), or a template printed once per row; ``\\t`` and
``\\n`` typed literally become tab and newline.  :func:`render_each` executes a template once per
item (``inspect -f``).  A field missing from a :class:`Record` is an error (a missing field of a
Go struct); values print like Go's ``%v`` (:func:`go_value`).

:func:`plain_fields` decides without a regular expression whether a template is plain, and
gives exactly what the engine's parser would give for it; anything else (spaces inside the
braces, ``{{-`` trimming, pipelines, an unclosed action...) goes to the engine, which also
reports the errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.cli.errors import UsageError
from lamina.cli.formatting import tabulate

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TemplateError", "Record", "HeaderRow", "MISSING", "go_value", "plain_fields", "render_fields",
           "render_each", "format_rows", "unescape"]


class TemplateError(UsageError):
    """The template does not parse or cannot be executed on the data."""


class Record(dict):  # type: ignore[type-arg]
    """A formatter row: unknown fields are errors; ``{{json .}}`` sorts keys like Go's maps."""


class HeaderRow(dict):  # type: ignore[type-arg]
    """What a ``table`` template's header line is rendered with: field name -> column title."""


#: A value that is not there at all (a field missing from JSON data), as opposed to ``null``.
MISSING: Any = object()


def _go_float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    from decimal import Decimal  # only for a float in a template's output

    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text_digits = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exponent)  # digits before the decimal point
    decimal_exponent = point - 1
    prefix = "-" if sign else ""
    if text_digits == "0":
        return prefix + "0"
    if decimal_exponent < -4 or decimal_exponent >= 6:  # Go: shortest %g decides with precision 6
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if decimal_exponent >= 0 else '-'}{abs(decimal_exponent):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return prefix + text_digits + "0" * (point - len(text_digits))
    return f"{prefix}{text_digits[:point]}.{text_digits[point:]}"


def go_value(value: Any) -> str:
    """A value as Go's ``%v`` prints the JSON-decoded equivalent."""
    if value is None or value is MISSING:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_nested(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_nested(item) for item in value) + "]"
    return str(value)


def _nested(value: Any) -> str:
    return "<nil>" if value is None else go_value(value)


def plain_fields(text: str) -> tuple[tuple[bool, str], ...] | None:
    """(is a field, text or field name) of each part of ``text`` when it is only text and
    ``{{.Field}}`` actions (a field name of ASCII letters, digits and ``_``, not starting with a
    digit, nothing else between the braces); None for any other template."""
    parts: list[tuple[bool, str]] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            break
        end = text.find("}}", start + 2)
        if end < 0 or text[start + 2:start + 3] != ".":
            return None
        name = text[start + 3:end]
        if not (name.isascii() and name.isidentifier()):
            return None
        if start > position:
            parts.append((False, text[position:start]))
        parts.append((True, name))
        position = end + 2
    if position < len(text):
        parts.append((False, text[position:]))
    return tuple(parts)


def render_fields(template: str, parts: tuple[tuple[bool, str], ...], row: Record | HeaderRow) -> str:
    """``template`` (whose :func:`plain_fields` are ``parts``) executed on one row: a header
    row shows a field it lacks as the field's name in capitals, a record refuses it."""
    out = []
    for is_field, text in parts:
        if not is_field:
            out.append(text)
        elif text in row:
            out.append(go_value(row[text]))
        elif isinstance(row, HeaderRow):
            out.append(text.upper())
        else:
            raise TemplateError(f'template: executing "{template}" at <.{text}>: can\'t evaluate field {text}')
    return "".join(out)


def unescape(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n")


def _rendered(template: str, items: Sequence[Any]) -> list[str]:
    """``template`` executed on each item: here when it is plain and the items are rows, else
    by the template engine."""
    parts = plain_fields(template)
    if parts is not None and all(type(item) in (Record, HeaderRow) for item in items):
        return [render_fields(template, parts, item) for item in items]
    from lamina.cli.templates import Template

    engine = Template(template)
    return [engine.render(item) for item in items]


def render_each(format: str, items: Sequence[Any]) -> str:
    """A raw template (or ``json``) executed once per item, each followed by a newline."""
    template = "{{json .}}" if format.strip() == "json" else unescape(format)
    return "".join(text + "\n" for text in _rendered(template, items))


def format_rows(format: str | None, rows: Sequence[Record], *, default_table: str,
                headers: dict[str, str]) -> str:
    """Render formatter rows under docker's ``--format`` rules (see the module docstring)."""
    text = (format or "").strip()
    if text in ("", "table"):
        text = "table " + default_table
    if not text.startswith("table"):
        return render_each(text, rows)
    rendered = _rendered(unescape(text[len("table"):].strip()), [HeaderRow(headers), *rows])
    lines = "\n".join(rendered).split("\n")
    return tabulate(line.split("\t") for line in lines)
