"""The subset of Go's ``text/template`` that ``--format`` options use, plus docker's conventions.

Supported: text with ``{{ action }}`` (``{{-`` / ``-}}`` trim whitespace), fields
(``.``, ``.Config.Env``, ``$.Id``), string/number/bool literals, parenthesised pipelines,
pipes (``{{.RepoTags | join ","}}``: the piped value is the last argument), ``range``,
``if``, ``with``, ``else``, ``end``, and the functions docker registers: ``json``, ``join``,
``split``, ``upper``, ``lower``, ``title``, ``truncate``, ``pad``, ``println``, plus Go's
``print``, ``printf`` (``%s %v %d %q``), ``index``, ``len``, ``eq``, ``ne``, ``not``, ``and``,
``or``.  Values print like Go's ``%v``: ``true``, ``[a b]``, ``map[k:v]``, ``<no value>``.

A field missing from a :class:`Record` (the rows docker's formatters build: ``ID``,
``Repository``, ...) is an error, like a missing field of a Go struct; a field missing from
plain JSON data (inspect output) prints ``<no value>``, like a missing map key.

:func:`format_rows` applies docker's ``--format`` conventions: ``table`` (default columns),
``table TEMPLATE`` (aligned, with a header row), ``json`` (``{{json .}}`` per row), or a
template printed once per row; ``\\t`` and ``\\n`` typed literally become tab and newline.
It lives, with the rows, the values' ``%v`` and the rendering of plain tables, in
:mod:`lamina.cli.rows` (re-exported here), which imports this engine only for templates that
need it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from lamina.cli.rows import MISSING as _MISSING
from lamina.cli.rows import HeaderRow, Record, TemplateError, format_rows, go_value, render_each
from lamina.records import dataclass, field

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TemplateError", "Template", "Record", "go_value", "format_rows", "render_each"]


def _truth(value: Any) -> bool:
    if value is None or value is _MISSING:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _json(value: Any) -> str:
    value = None if value is _MISSING else value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      sort_keys=isinstance(value, Record))


# -- functions -----------------------------------------------------------------------------

def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as exc:
            if isinstance(value, dict):
                return None
            raise TemplateError(f"error calling index: cannot index {go_value(value)} with {key!r}") from exc
    return value


def _sprint(*values: Any) -> str:
    out = ""
    for position, value in enumerate(values):
        if position and not isinstance(value, str) and not isinstance(values[position - 1], str):
            out += " "
        out += go_value(value)
    return out


def _printf(template: str, *values: Any) -> str:
    remaining = list(values)

    def substitute(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        if not remaining:
            return f"%!{verb}(MISSING)"
        value = remaining.pop(0)
        if verb == "q":
            return json.dumps(go_value(value), ensure_ascii=False)
        return go_value(value)

    return re.sub(r"%([svdq%])", substitute, template)


def _and(*values: Any) -> Any:
    for value in values:
        if not _truth(value):
            return value
    return values[-1]


def _or(*values: Any) -> Any:
    for value in values:
        if _truth(value):
            return value
    return values[-1]


def _len(value: Any) -> int:
    try:
        return len(value)
    except TypeError as exc:
        raise TemplateError(f"error calling len: cannot take the length of {go_value(value)}") from exc


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": lambda values, separator: separator.join(go_value(item) for item in (values or [])),
    "split": lambda text, separator: go_value(text).split(separator),
    "upper": lambda text: go_value(text).upper(),
    "lower": lambda text: go_value(text).lower(),
    "title": lambda text: go_value(text).title(),
    "truncate": lambda text, length: go_value(text)[: int(length)],
    "pad": lambda text, left, right: " " * int(left) + go_value(text) + " " * int(right),
    "print": _sprint,
    "println": lambda *values: " ".join(go_value(value) for value in values) + "\n",
    "printf": _printf,
    "index": _index,
    "len": _len,
    "eq": lambda first, *others: any(first == other for other in others),
    "ne": lambda first, second: first != second,
    "not": lambda value: not _truth(value),
    "and": _and,
    "or": _or,
}


# -- parsing -------------------------------------------------------------------------------

# patterns compiled on first use (re caches them): listing commands import this module for
# their rows, and only --format needs the template engine
_TOKEN = r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<field>\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\$|\.|[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[|()])
    """


@dataclass
class _Operand:
    kind: str            # "field", "literal", "function", "pipeline"
    value: Any


@dataclass
class _Node:
    kind: str                                    # "text", "print", "range", "if", "with"
    value: Any = None                            # text, or the pipeline
    body: list["_Node"] = field(default_factory=list)
    otherwise: list["_Node"] = field(default_factory=list)


def _tokenize(action: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = action.strip()
    while position < len(text):
        match = re.compile(_TOKEN, re.VERBOSE).match(text, position)
        if match is None or match.end() == position:
            raise TemplateError(f"template: unexpected {text[position:]!r} in {{{{{action}}}}}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


def _parse_pipeline(tokens: list[tuple[str, str]], position: int, source: str) -> tuple[list[list[_Operand]], int]:
    commands: list[list[_Operand]] = [[]]
    while position < len(tokens):
        kind, text = tokens[position]
        if kind == "punct" and text == ")":
            break
        position += 1
        if kind == "punct" and text == "|":
            if not commands[-1]:
                raise TemplateError(f"template: missing command before '|' in {{{{{source}}}}}")
            commands.append([])
        elif kind == "punct" and text == "(":
            inner, position = _parse_pipeline(tokens, position, source)
            if position >= len(tokens) or tokens[position] != ("punct", ")"):
                raise TemplateError(f"template: unclosed '(' in {{{{{source}}}}}")
            position += 1
            commands[-1].append(_Operand("pipeline", inner))
        elif kind == "string":
            commands[-1].append(_Operand("literal", json.loads(text)))
        elif kind == "raw":
            commands[-1].append(_Operand("literal", text[1:-1]))
        elif kind == "number":
            commands[-1].append(_Operand("literal", float(text) if "." in text else int(text)))
        elif text in ("true", "false"):
            commands[-1].append(_Operand("literal", text == "true"))
        elif text == "nil":
            commands[-1].append(_Operand("literal", None))
        elif text.startswith((".", "$")):
            commands[-1].append(_Operand("field", text))
        elif text in FUNCTIONS:
            commands[-1].append(_Operand("function", text))
        else:
            raise TemplateError(f'template: function "{text}" not defined')
    if not commands[-1]:
        raise TemplateError(f"template: missing value in {{{{{source}}}}}")
    return commands, position


def _pipeline(source: str) -> list[list[_Operand]]:
    tokens = _tokenize(source)
    commands, position = _parse_pipeline(tokens, 0, source)
    if position != len(tokens):
        raise TemplateError(f"template: unexpected ')' in {{{{{source}}}}}")
    return commands


_ACTION = r"\{\{(-\s)?(.*?)(\s-)?\}\}"


def _parse(text: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    position = 0
    trim_next = False
    for match in re.finditer(_ACTION, text, re.DOTALL):
        literal = text[position:match.start()]
        if trim_next:
            literal = literal.lstrip()
        if match.group(1):
            literal = literal.rstrip()
        if literal:
            stack[-1][1].append(_Node("text", literal))
        position = match.end()
        trim_next = bool(match.group(3))
        action = match.group(2).strip()
        if action.startswith("/*"):
            continue
        keyword, _, rest = action.partition(" ")
        if keyword in ("range", "if", "with"):
            node = _Node(keyword, _pipeline(rest))
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif keyword == "else":
            owner = stack[-1][0]
            if owner is None:
                raise TemplateError("template: unexpected {{else}}")
            stack[-1] = (owner, owner.otherwise)
        elif keyword == "end":
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif not action:
            raise TemplateError("template: missing value for command")
        else:
            stack[-1][1].append(_Node("print", _pipeline(action)))
    literal = text[position:]
    if "{{" in literal:
        line = text.count("\n", 0, position + literal.index("{{")) + 1
        raise TemplateError(f"template: :{line}: unclosed action")
    if trim_next:
        literal = literal.lstrip()
    if literal:
        stack[-1][1].append(_Node("text", literal))
    if len(stack) != 1:
        raise TemplateError(f"template: unexpected EOF: {{{{{stack[-1][0].kind if stack[-1][0] else ''}}}}} has no {{{{end}}}}")
    return root


# -- execution -----------------------------------------------------------------------------

class Template:
    def __init__(self, text: str) -> None:
        self.text = text
        self._nodes = _parse(text)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._run(self._nodes, data, data, out)
        return "".join(out)

    def _run(self, nodes: list[_Node], dot: Any, root: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "print":
                out.append(go_value(self._evaluate(node.value, dot, root)))
            elif node.kind == "if":
                branch = node.body if _truth(self._evaluate(node.value, dot, root)) else node.otherwise
                self._run(branch, dot, root, out)
            elif node.kind == "with":
                value = self._evaluate(node.value, dot, root)
                if _truth(value):
                    self._run(node.body, value, root, out)
                else:
                    self._run(node.otherwise, dot, root, out)
            elif node.kind == "range":
                value = self._evaluate(node.value, dot, root)
                items = [value[key] for key in sorted(value)] if isinstance(value, dict) else value
                if not _truth(items):
                    self._run(node.otherwise, dot, root, out)
                    continue
                if not isinstance(items, (list, tuple)):
                    raise TemplateError(f"template: range can't iterate over {go_value(value)}")
                for item in items:
                    self._run(node.body, item, root, out)

    def _evaluate(self, commands: list[list[_Operand]], dot: Any, root: Any) -> Any:
        piped: Any = _MISSING
        for command in commands:
            head = command[0]
            if head.kind == "function":
                arguments = [self._operand(operand, dot, root) for operand in command[1:]]
                if piped is not _MISSING:
                    arguments.append(piped)
                try:
                    piped = FUNCTIONS[head.value](*arguments)
                except TemplateError:
                    raise
                except (TypeError, ValueError, AttributeError) as exc:
                    raise TemplateError(f"template: error calling {head.value}: {exc}") from exc
            else:
                if len(command) > 1 or piped is not _MISSING:
                    raise TemplateError(f"template: can't give argument to non-function {self._describe(head)}")
                piped = self._operand(head, dot, root)
        return piped

    def _operand(self, operand: _Operand, dot: Any, root: Any) -> Any:
        if operand.kind == "literal":
            return operand.value
        if operand.kind == "pipeline":
            return self._evaluate(operand.value, dot, root)
        if operand.kind == "function":
            return FUNCTIONS[operand.value]()
        path: str = operand.value
        value = dot
        if path.startswith("$"):
            value, path = root, path[1:]
        for name in [part for part in path.split(".") if part]:
            value = self._field(value, name)
        return value

    def _field(self, value: Any, name: str) -> Any:
        if isinstance(value, HeaderRow):
            return value.get(name, name.upper())
        if isinstance(value, Record):
            if name not in value:
                raise TemplateError(f'template: executing "{self.text}" at <.{name}>: '
                                    f"can't evaluate field {name}")
            return value[name]
        if isinstance(value, dict):
            return value.get(name)
        if value is None or value is _MISSING:
            return None
        raise TemplateError(f'template: executing "{self.text}" at <.{name}>: '
                            f"can't evaluate field {name} in {go_value(value)}")

    @staticmethod
    def _describe(operand: _Operand) -> str:
        return str(operand.value)

