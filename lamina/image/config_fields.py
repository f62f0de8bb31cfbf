"""Typed reads of an image config's JSON fields, and Go's ``omitempty`` for writing them.

Each ``read_*`` takes the object, the key and ``where`` (the path of the object, ending in a
dot: ``config.``, ``history[2].``) and returns the value, or the Go zero value when the key is
absent or null; a value of the wrong type raises :class:`lamina.errdefs.InvalidArgument`
naming the field (``invalid image config: config.Env[1]: expected a string, got number``).
A record's fields are a table of :data:`Field` rows, ``(attribute, JSON key, reader)`` in
Go's field order, read by :func:`read_fields`; keys outside the table are kept as they are
(:func:`unknown_keys`) so that nothing read from an existing config is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from lamina import errdefs
from lamina.image import gojson
from lamina.image.rfc3339 import parse_time

__all__ = [
    "invalid", "type_name", "read_string", "read_bool", "read_integer", "read_string_list",
    "read_string_set", "read_string_map", "read_object", "read_array", "read_time", "read_command", "read_count",
    "read_fields", "unknown_keys", "go_set", "omit_empty",
]

_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
                    float: "number", type(None): "null"}


def invalid(where: str, message: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"invalid image config: {where}: {message}")


def type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _value(data: Mapping[str, Any], key: str, where: str, kind: type, what: str) -> Any:
    """``data[key]`` checked to be a ``kind`` (``None`` when absent or null)."""
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise invalid(f"{where}{key}", f"expected {what}, got {type_name(value)}")
    return value


def _check_items(items: Iterable[tuple[Any, Any]], where: str, kind: type, what: str, *,
                 null: bool = False) -> None:
    """Each ``(label, item)`` of a container is a ``kind`` (or null, with ``null``); ``where`` names the container."""
    for label, item in items:
        if not isinstance(item, kind) and not (null and item is None):
            raise invalid(f"{where}[{label!r}]", f"expected {what}, got {type_name(item)}")


def read_string(data: Mapping[str, Any], key: str, where: str) -> str:
    return _value(data, key, where, str, "a string") or ""


def read_bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    return _value(data, key, where, bool, "a bool") or False


def read_integer(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise invalid(f"{where}{key}", f"expected an integer, got {type_name(value)}")
    return value


def read_string_list(data: Mapping[str, Any], key: str, where: str, *, allow_string: bool = False) -> tuple[str, ...] | None:
    value = data.get(key)
    if allow_string and isinstance(value, str):
        # Docker's old strslice.StrSlice accepted a plain string for Cmd/Entrypoint.
        return (value,)
    value = _value(data, key, where, list, "an array of strings")
    if value is None:
        return None
    _check_items(enumerate(value), f"{where}{key}", str, "a string")
    return tuple(value)


def read_string_set(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """A Go ``map[string]struct{}`` (ExposedPorts, Volumes): the keys, sorted."""
    value = _value(data, key, where, dict, "an object")
    if value is None:
        return None
    _check_items(value.items(), f"{where}{key}", dict, "an object", null=True)
    return tuple(gojson.sorted_map(value))


def read_string_map(data: Mapping[str, Any], key: str, where: str) -> dict[str, str] | None:
    value = _value(data, key, where, dict, "an object")
    if value is None:
        return None
    _check_items(value.items(), f"{where}{key}", str, "a string")
    return dict(value)


def read_object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    return _value(data, key, where, dict, "an object")


def go_set(names: tuple[str, ...] | None) -> dict[str, Any] | None:
    if names is None:
        return None
    return gojson.sorted_map({name: {} for name in names})


def read_array(data: Mapping[str, Any], key: str, where: str, what: str = "an array") -> list[Any]:
    """A JSON array (``[]`` when absent or null); ``what`` names the expected items in the error."""
    value = _value(data, key, where, list, what)
    return [] if value is None else value


def read_time(data: Mapping[str, Any], key: str, where: str) -> str | None:
    """An RFC 3339 time kept as its text (``None`` when absent or null)."""
    value = _value(data, key, where, str, "a string")
    if value is None:
        return None
    try:
        parse_time(value)
    except errdefs.InvalidArgument as exc:
        raise invalid(f"{where}{key}", f"not an RFC 3339 time: {value!r}") from exc
    return value


def omit_empty(out: dict[str, Any], fields: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Go's ``omitempty``: add each ``(key, value)`` whose value is not a zero value, in order."""
    for key, value in fields:
        if value:
            out[key] = value
    return out


def read_command(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """``Cmd`` / ``Entrypoint``: an array of strings, or one string as Docker's old ``strslice`` allowed."""
    return read_string_list(data, key, where, allow_string=True)


def read_count(data: Mapping[str, Any], key: str, where: str) -> int:
    """An integer whose absence means 0 (durations, retries)."""
    return read_integer(data, key, where) or 0


TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    Field = tuple[str, str, Callable[[Mapping[str, Any], str, str], Any]]


def read_fields(data: Mapping[str, Any], fields: Sequence[Field], where: str) -> dict[str, Any]:
    """A record's keyword arguments from its JSON object, each field read by its reader in table order."""
    return {attribute: reader(data, key, where) for attribute, key, reader in fields}


def unknown_keys(data: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The keys of ``data`` outside ``known``, with their values as read."""
    return {key: value for key, value in data.items() if key not in known}
