"""The Dockerfile lexer: text into logical lines, one logical line into a :class:`Node`, and
an instruction's ``--flags`` into values.

This is buildkit's ``frontend/dockerfile/parser`` package below the instruction level, shared
by both Dockerfile readers: the build front end (:mod:`lamina.dockerfile.parser`) and the
``--change`` engine of import/commit (:mod:`lamina.image.changes`).

**Lines**: :func:`split_lines` (on ``\\n`` only), :func:`is_comment`,
:func:`continuation_regex` and :func:`trim_continuation` (a line ending in the escape character
continues on the next one).

**Words before expansion**: :func:`extract_flags` (leading ``--flag[=value]`` words, quotes and
escapes processed), :func:`parse_words` (whitespace-separated words that keep their quotes and
escapes, as ENV/LABEL/ARG are split before expansion), :func:`split_whitespace`.  Whitespace is
Go's ``unicode.IsSpace`` (:func:`is_go_space`, :func:`go_trim_space`, :func:`go_trim_left`);
:func:`go_clean` is Go's ``path.Clean`` (WORKDIR and ``.dockerignore`` paths).

**Nodes**: :func:`parse_node` reads one logical line (continuations joined) into a
:class:`Node`: the instruction's name as written, its ``--flags``, and its arguments in the
instruction's form -- exec/shell (:func:`parse_json_array`), list, name=value
(:func:`parse_name_value`), words or one string.  Nothing is expanded here
(:mod:`lamina.dockerfile.substitution` does that).

**Flags and values** (buildkit's ``instructions`` package): :class:`Flags` declares and reads
an instruction's ``--flags`` (buildkit's BFlags, with its messages); :func:`parse_go_duration`,
:func:`parse_interval` and :func:`parse_go_int32` read Go's syntax for HEALTHCHECK's flags, and
:func:`parse_healthcheck` its arguments.

Errors are :class:`DockerfileSyntaxError` (a ValueError) in Docker's words, without a
location: each reader adds its own (``Dockerfile:3: ...``) or none (``--change``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from lamina.records import dataclass, field

__all__ = [
    "is_go_space", "WHITESPACE", "go_clean", "go_trim_space", "go_trim_left", "split_whitespace",
    "parse_words", "extract_flags", "continuation_regex", "trim_continuation", "is_comment",
    "split_lines", "DockerfileSyntaxError", "json_quote", "parse_json_array", "parse_name_value",
    "Heredoc", "strip_leading_tabs", "Node", "parse_node", "Flags", "parse_go_duration", "parse_interval",
    "parse_go_int32", "HealthcheckArguments", "parse_healthcheck",
]

# Go's unicode.IsSpace: Python's str.isspace() also accepts the ASCII separators 0x1c-0x1f.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def is_go_space(character: str) -> bool:
    """Go's ``unicode.IsSpace`` for one character (the rule every Docker parser uses)."""
    return character.isspace() and character not in _NOT_GO_SPACE


# --------------------------------------------------------------------------------------------
# line level (buildkit's parser: lines, continuations, flags, words before expansion)

#: Runs of the whitespace that separates an instruction's name and words.
WHITESPACE = re.compile(r"[\t\v\f\r ]+")


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: the shortest equivalent slash path (``""`` -> ``"."``)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for component in path.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(component)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def go_trim_space(text: str) -> str:
    start, end = 0, len(text)
    while start < end and is_go_space(text[start]):
        start += 1
    while end > start and is_go_space(text[end - 1]):
        end -= 1
    return text[start:end]


def go_trim_left(text: str) -> str:
    start = 0
    while start < len(text) and is_go_space(text[start]):
        start += 1
    return text[start:]


def split_whitespace(rest: str) -> list[str]:
    if rest == "":
        return []
    return WHITESPACE.split(rest)


def _scan_words(text: str, escape: str, literal: bool) -> Iterator[tuple[int, str, int, bool]]:
    """(start, word, end, quoted) of each word of ``text``: words are separated by whitespace,
    quotes group.  ``literal`` (Docker's ``parseWords``): quotes and escape characters stay in
    the word, and an escape inside single quotes is an ordinary character; otherwise (buildkit's
    flag parser) quotes and escapes are removed, in either kind of quote."""
    length = len(text)
    position = 0
    while True:
        while position < length and is_go_space(text[position]):
            position += 1
        if position == length:
            return
        start = position
        buffer: list[str] = []
        quote = ""
        quoted = False
        while position < length:
            character = text[position]
            if quote:
                if character == quote:
                    quote = ""
                    if literal:
                        buffer.append(character)
                    position += 1
                    continue
                escapes = character == escape and (not literal or quote != "'")
            else:
                if is_go_space(character):
                    break
                if character in ("'", '"'):
                    quote = character
                    quoted = True
                    if literal:
                        buffer.append(character)
                    position += 1
                    continue
                escapes = character == escape
            if escapes:
                position += 1
                if position == length:
                    break
                if literal:
                    buffer.append(character)
                character = text[position]
            buffer.append(character)
            position += 1
        yield start, "".join(buffer), position, quoted


def parse_words(rest: str, escape: str) -> list[str]:
    """Words separated by whitespace; quotes group (and are kept), escapes are kept."""
    return [word for _, word, _, quoted in _scan_words(rest, escape, literal=True) if quoted or word]


def extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag`` words of ``line`` and the rest (buildkit's extractBuilderFlags)."""
    words: list[str] = []
    for start, word, end, quoted in _scan_words(line, escape, literal=False):
        if not line.startswith("--", start):
            return line[start:], words
        if word == "--":
            return line[end:], words
        if quoted or word:
            words.append(word)
    return "", words


def continuation_regex(escape: str) -> re.Pattern[str]:
    token = re.escape(escape)
    return re.compile(rf"([^{token}]){token}[ \t]*\Z|^{token}[ \t]*\Z")


def trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    """``line`` without its continuation mark, and whether the logical line ends here."""
    match = continuation.search(line)
    if match is None:
        return line, True
    return line[:match.start()] + (match.group(1) or ""), False


def is_comment(line: str) -> bool:
    return go_trim_left(line).startswith("#")


def split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# --------------------------------------------------------------------------------------------
# nodes (buildkit's parser.Node and its argument forms)


class DockerfileSyntaxError(ValueError):
    """A Dockerfile syntax error in Docker's words, without its location (readers add it)."""


def json_quote(text: str) -> str:
    """``text`` as a JSON string literal (how Docker's messages quote with ``%q`` mostly)."""
    return json.dumps(text, ensure_ascii=False)


def _reject_constant(text: str) -> object:
    raise ValueError(f"invalid JSON constant {text}")


def _finite_number(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return number


def _valid_text(text: str) -> str:
    """Lone surrogates from ``\\ud800`` escapes become U+FFFD, as Go's decoder does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")



def parse_json_array(rest: str) -> list[str] | None:
    """The exec form's array, or None when ``rest`` is not a (valid) JSON array."""
    rest = go_trim_left(rest)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant, parse_float=_finite_number,
                           parse_int=_finite_number)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileSyntaxError("when using JSON array syntax, arrays must be comprised of strings only")
    return [_valid_text(item) for item in value]


def parse_name_value(rest: str, keyword: str, escape: str) -> list[str]:
    """ENV/LABEL arguments as a flat ``[name, value, separator, ...]`` list (words keep quotes).

    The separator is ``"="`` for ``k=v`` words and ``""`` for the legacy ``NAME value`` form.
    """
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileSyntaxError(f"{keyword} must have two arguments")
        return [parts[0], parts[1], ""]
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileSyntaxError(f"Syntax error - can't find = in {json_quote(word)}. "
                                        "Must be of the form: name=value")
        key, _, value = word.partition("=")
        args.extend((key, value, "="))
    return args



_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass(frozen=True)
class Heredoc:
    """One heredoc of an instruction: ``<<[-]NAME`` and the body that followed it.

    ``content`` is the body as written (each line with its newline); :attr:`data` applies the
    ``<<-`` tab stripping.  ``expand`` is False when any part of the name was quoted.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    file_descriptor: int = 0

    @property
    def data(self) -> str:
        return strip_leading_tabs(self.content) if self.chomp else self.content


def strip_leading_tabs(text: str) -> str:
    """``<<-``: the leading tabs of every line removed."""
    return _LEADING_TABS.sub("", text)


@dataclass
class Node:
    """One instruction as the line parser sees it (buildkit's parser.Node).

    ``heredocs``, ``start_line`` and ``end_line`` are filled in by the build parser
    (:mod:`lamina.dockerfile.parser`); ``child`` is ONBUILD's instruction.
    """

    command: str
    flags: list[str]
    args: list[str]
    json_form: bool
    original: str
    child: Node | None = None
    heredocs: list[Heredoc] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0

    def can_contain_heredoc(self) -> bool:
        node = self
        if node.command.lower() == "onbuild" and node.child is not None:
            node = node.child
        return node.command.lower() in _HEREDOC_INSTRUCTIONS and not node.json_form

    def all_args(self) -> list[str]:
        if self.child is not None:
            return [self.child.command, *self.child.all_args()]
        return self.args


def _parse_maybe_json(rest: str) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    array = parse_json_array(rest)
    if array is not None:
        return array, True
    return [rest], False


def _parse_maybe_json_to_list(rest: str) -> tuple[list[str], bool]:
    array = parse_json_array(rest)
    if array is not None:
        return array, True
    return split_whitespace(rest), False


def parse_node(line: str, escape: str) -> Node:
    """One logical line (continuations joined) as a :class:`Node`: name, ``--flags`` and the
    arguments in the form the instruction takes (exec/shell, list, name=value, words...)."""
    parts = WHITESPACE.split(go_trim_space(line), maxsplit=1)
    command = parts[0]
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = extract_flags(parts[1], escape)
    rest = go_trim_space(rest)
    lowered = command.lower()
    args: list[str] = []
    json_form = False
    child = None
    if lowered in ("run", "cmd", "entrypoint", "shell"):
        args, json_form = _parse_maybe_json(rest)
    elif lowered in ("add", "copy", "volume"):
        args, json_form = _parse_maybe_json_to_list(rest)
    elif lowered in ("env", "label"):
        args = parse_name_value(rest, "ENV" if lowered == "env" else "LABEL", escape)
    elif lowered == "arg":
        args = parse_words(rest, escape)
    elif lowered in ("from", "expose"):
        args = split_whitespace(rest)
    elif lowered in ("maintainer", "stopsignal", "user", "workdir"):
        args = [rest] if rest else []
    elif lowered == "healthcheck":
        separator = 0
        while separator < len(rest) and not is_go_space(rest[separator]):
            separator += 1
        following = separator
        while following < len(rest) and is_go_space(rest[following]):
            following += 1
        if separator:
            command_args, json_form = _parse_maybe_json(rest[following:])
            args = [rest[:separator], *command_args]
    elif lowered == "onbuild" and rest:
        child = parse_node(rest, escape)
    return Node(command, flags, args, json_form, line, child)


# --------------------------------------------------------------------------------------------
# flags and their values (buildkit's instructions package: BFlags, HEALTHCHECK's arguments)


class Flags:
    """An instruction's ``--flags``: declare each (bool, string, repeatable strings), then
    :meth:`parse` (buildkit's BFlags, with its messages: ``unknown flag: --x``...)."""

    def __init__(self, arguments: list[str]) -> None:
        self.arguments = arguments
        self.kinds: dict[str, str] = {}
        self.values: dict[str, object] = {}
        self.used: list[str] = []

    def add_bool(self, name: str, default: bool = False) -> None:
        self.kinds[name] = "bool"
        self.values[name] = default

    def add_string(self, name: str, default: str = "") -> None:
        self.kinds[name] = "string"
        self.values[name] = default

    def add_strings(self, name: str) -> None:
        self.kinds[name] = "strings"
        self.values[name] = []

    def parse(self) -> None:
        for argument in self.arguments:
            if argument == "--":
                return
            if not argument.startswith("--"):
                raise DockerfileSyntaxError(f"arg should start with -- : {argument}")
            flag_name, has_value, value = argument.partition("=")
            name = flag_name[2:]
            kind = self.kinds.get(name)
            if kind is None:
                raise DockerfileSyntaxError(f"unknown flag: {flag_name}")
            if name in self.used and kind != "strings":
                raise DockerfileSyntaxError(f"duplicate flag specified: {flag_name}")
            if name not in self.used:
                self.used.append(name)
            if kind == "bool":
                if has_value and value == "":
                    raise DockerfileSyntaxError(f"missing a value on flag: {flag_name}")
                lowered = value.lower()
                if lowered in ("true", ""):
                    self.values[name] = True
                elif lowered == "false":
                    self.values[name] = False
                else:
                    raise DockerfileSyntaxError(f"expecting boolean value for flag {flag_name}, not: {value}")
            elif not has_value:
                raise DockerfileSyntaxError(f"missing a value on flag: {flag_name}")
            elif kind == "string":
                self.values[name] = value
            else:
                self.values[name].append(value)  # type: ignore[attr-defined]

    def string(self, name: str) -> str:
        return str(self.values[name])

    def boolean(self, name: str) -> bool:
        return bool(self.values[name])

    def optional_boolean(self, name: str) -> bool | None:
        return bool(self.values[name]) if name in self.used else None

    def strings(self, name: str) -> tuple[str, ...]:
        return tuple(self.values[name])  # type: ignore[call-overload]



_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``1m30s``, ``1.5h``, ``300ms``, ``-2s``)."""
    original = text
    invalid = DockerfileSyntaxError(f"time: invalid duration {json_quote(original)}")
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise invalid
    total = 0
    while text:
        match = _DURATION_PART.match(text)
        assert match is not None
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise invalid
        if not unit:
            raise DockerfileSyntaxError(f"time: missing unit in duration {json_quote(original)}")
        if unit not in _DURATION_UNITS:
            # The unit ends at the first digit or dot; Go names just the unit it did not know.
            raise DockerfileSyntaxError(f"time: unknown unit {json_quote(unit)} in duration {json_quote(original)}")
        scale = _DURATION_UNITS[unit]
        value = int(whole or "0") * scale
        if fraction:
            value += int(fraction) * scale // 10 ** len(fraction)
        total += value
        if total > (1 << 63) - 1:
            raise invalid
        text = text[match.end():]
    return -total if negative else total


def parse_interval(name: str, text: str) -> int:
    """A HEALTHCHECK ``--interval``-like flag in nanoseconds: 0 when empty, else at least 1ms."""
    if text == "":
        return 0
    value = parse_go_duration(text)
    if value == 0:
        return 0
    if value < 1_000_000:
        raise DockerfileSyntaxError(f'Interval "{name}" cannot be less than 1ms')
    return value


def parse_go_int32(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 10, 32)`` with its error messages."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not all("0" <= character <= "9" for character in digits):
        raise DockerfileSyntaxError(f"strconv.ParseInt: parsing {json_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise DockerfileSyntaxError(f"strconv.ParseInt: parsing {json_quote(text)}: value out of range")
    return value


@dataclass(frozen=True)
class HealthcheckArguments:
    """HEALTHCHECK's arguments read: ``test`` (``("NONE",)``, ``("CMD", ...)`` or
    ``("CMD-SHELL", line)``), the intervals in nanoseconds and the retries (0 when not given)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


def parse_healthcheck(args: list[str], json_form: bool, flags: Flags) -> HealthcheckArguments:
    """HEALTHCHECK ``NONE`` or ``[--interval=... ...] CMD command`` (buildkit's parseHealthcheck:
    its checks in its order, its messages)."""
    if not args:
        raise DockerfileSyntaxError("HEALTHCHECK requires at least one argument")
    kind = args[0].upper()
    rest = args[1:]
    if kind == "NONE":
        if rest:
            raise DockerfileSyntaxError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckArguments(test=("NONE",))
    for name in ("interval", "timeout", "start-period", "start-interval", "retries"):
        flags.add_string(name)
    flags.parse()
    if kind != "CMD":
        raise DockerfileSyntaxError(f"Unknown type {json_quote(kind)} in HEALTHCHECK (try CMD)")
    command = tuple(rest) if json_form else ((" ".join(rest),) if rest else ())
    if not command:
        raise DockerfileSyntaxError("Missing command after HEALTHCHECK CMD")
    intervals = [parse_interval(name, flags.string(name))
                 for name in ("interval", "timeout", "start-period", "start-interval")]
    retries = 0
    if flags.string("retries"):
        retries = parse_go_int32(flags.string("retries"))
        if retries < 0:
            raise DockerfileSyntaxError(f"--retries cannot be negative ({retries})")
    return HealthcheckArguments(("CMD" if json_form else "CMD-SHELL", *command), *intervals, retries)
