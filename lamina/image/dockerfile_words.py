"""Dockerfile words: the line-level lexing and the variable substitution Docker applies.

One module for both Dockerfile readers: the build front end (:mod:`lamina.build.parser`,
which re-exports this through :mod:`lamina.build.shell_words`) and the ``--change`` engine of
import/commit (:mod:`lamina.image.changes`).  It sits at the image layer so both may use it.

**Line level** (buildkit's ``frontend/dockerfile/parser``): :func:`split_lines` (on ``\\n``
only), :func:`is_comment`, :func:`continuation_regex` (a line ending in the escape character
continues), :func:`extract_flags` (leading ``--flag[=value]`` words, quotes and escapes
processed), :func:`parse_words` (whitespace-separated words that keep their quotes and
escapes, as ENV/LABEL/ARG are split before expansion), :func:`split_whitespace`,
:func:`go_trim_space` / :func:`go_trim_left` (whitespace as Go's ``unicode.IsSpace`` sees it),
:func:`go_clean` (Go's ``path.Clean``, for WORKDIR and .dockerignore paths).

**Instruction arguments** (buildkit's ``parser`` / ``instructions``): :func:`parse_node` reads
one logical line into a :class:`Node` (name, ``--flags``, arguments in the instruction's form:
exec/shell via :func:`parse_json_array`, list, :func:`parse_name_value`, words or one string);
:func:`parse_go_duration`, :func:`parse_interval` and :func:`parse_go_int32` read HEALTHCHECK's
flags.  Their errors are :class:`DockerfileSyntaxError` (a ValueError) in Docker's words,
without a location: each reader adds its own (``Dockerfile:3: ...``) or none (``--change``).

**Variable substitution and word splitting** for Dockerfile arguments:

This is the small shell-like lexer the Dockerfile front end applies to the arguments of some
instructions (buildkit's ``frontend/dockerfile/shell``).  It is *not* a shell: there is no
command substitution, globbing or arithmetic.  The rules, in the order the lexer meets them:

- ``$NAME`` and ``${NAME}``: the value of ``NAME`` (empty when unset).  A name is letters,
  digits and ``_``; ``$`` followed by digits (``$1``, ``$001``) or by one special parameter
  (``@ * # ? - $ ! 0``) names that parameter, which a Dockerfile never sets (so ``$$`` is
  empty).  A ``$`` followed by anything else is literal (``$.`` stays ``$.``).
- ``${NAME:-word}`` / ``${NAME-word}``: ``word`` when NAME is unset or empty / unset;
  ``${NAME:+word}`` / ``${NAME+word}``: ``word`` when NAME is set and non-empty / set, else
  empty; ``${NAME:?message}`` / ``${NAME?message}``: an error when unset or empty / unset.
  ``word`` is itself expanded (nested ``${...}`` and quotes work).
- ``${NAME#pattern}``, ``${NAME##pattern}``, ``${NAME%pattern}``, ``${NAME%%pattern}``: remove
  the shortest/longest matching prefix/suffix; ``${NAME/pattern/replacement}`` and
  ``${NAME//pattern/replacement}``: replace the first/every match.  Patterns know ``*`` and
  ``?`` (no brackets); escapes in them are kept raw.
- Anything else after the name (``${A:=b}``, ``${A b}``), ``${}``, ``${:}`` and an unterminated
  ``${`` are errors.
  Like Go, which prints its scanner's end of text as U+FFFD, ``${A`` (the text ends right
  after the name) is ``unsupported modifier (\ufffd) in substitution``; ``${A:`` and ``${A:-x``
  are ``syntax error: missing '}'``.
- Single quotes keep everything literal up to the next single quote (no escape inside);
  double quotes keep everything literal except ``$`` expansions and the escape character
  before ``"``, ``$`` or itself (before any other character it stays).
- Outside quotes the escape character (``\\`` or the ``# escape=`` directive's backtick)
  makes the next character literal; a trailing escape character vanishes.

:meth:`ShellWords.process_word` returns one string (spaces kept); :meth:`process_words` splits
into words *after* expansion: unquoted whitespace, including whitespace coming from a
variable's value, separates words, quoted text never does, and empty words are dropped.

Which instructions are expanded (Docker's classic builder and buildkit agree):
:data:`EXPANDED_INSTRUCTIONS`.  FROM is expanded with the global (before the first FROM)
ARGs only; EXPOSE is the one instruction whose arguments are split into several words after
expansion (:data:`WORD_SPLIT_INSTRUCTIONS`); RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
MAINTAINER and ONBUILD are never expanded by the builder (a shell in the container expands
RUN's shell form at run time); ``COPY --from`` is never expanded.

Errors are :class:`lamina.errdefs.InvalidArgument` with Docker's text, e.g.
``failed to process "${A:": syntax error: missing '}'``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lamina import errdefs
from lamina.records import dataclass, field

__all__ = [
    "ShellWords", "WordResult", "Substitution", "EXPANDED_INSTRUCTIONS", "WORD_SPLIT_INSTRUCTIONS",
    "is_go_space", "environment_from_list",
    "WHITESPACE", "go_clean", "go_trim_space", "go_trim_left", "split_whitespace", "parse_words",
    "extract_flags", "continuation_regex", "trim_continuation", "is_comment", "split_lines",
    "DockerfileSyntaxError", "Flags", "parse_json_array", "parse_name_value", "parse_go_duration",
    "parse_interval", "parse_go_int32", "Node", "parse_node", "HealthcheckArguments",
    "parse_healthcheck",
]

#: Instructions whose arguments the builder expands (lower-case names).  ``from`` uses only
#: the global ARGs; ``expose`` additionally splits words.
EXPANDED_INSTRUCTIONS = frozenset({
    "add", "arg", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume",
    "workdir",
})
#: Instructions whose arguments may expand into several words (``EXPOSE $PORTS``).
WORD_SPLIT_INSTRUCTIONS = frozenset({"expose"})

_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")
# Go's unicode.IsSpace: Python's str.isspace() also accepts the ASCII separators 0x1c-0x1f.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")
_EOF = ""
_GO_EOF = "\ufffd"  # how Go formats text/scanner.EOF as a string


def is_go_space(character: str) -> bool:
    """Go's ``unicode.IsSpace`` for one character (the rule every Docker parser uses)."""
    return character.isspace() and character not in _NOT_GO_SPACE


def _is_name_character(character: str) -> bool:
    return character.isalpha() or character.isdecimal() or character == "_"


def environment_from_list(entries: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["K=V", ...]`` (an image config's Env) as a mapping; later entries win, like Docker."""
    result: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        result[key] = value
    return result


@dataclass
class WordResult:
    """What one expansion produced: the string, its words, and the names looked up."""

    result: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class _LexError(Exception):
    """A syntax or substitution error; converted to InvalidArgument at the public boundary."""


class _Words:
    """Accumulates words while a string is built; unquoted spaces separate words."""

    __slots__ = ("buffer", "in_word", "words")

    def __init__(self) -> None:
        self.buffer = ""
        self.words: list[str] = []
        self.in_word = False

    def add_character(self, character: str) -> None:
        if is_go_space(character):
            if self.in_word and self.buffer:
                self.words.append(self.buffer)
                self.buffer = ""
                self.in_word = False
        else:
            self.add_raw_character(character)

    def add_raw_character(self, character: str) -> None:
        self.buffer += character
        self.in_word = True

    def add_string(self, text: str) -> None:
        for character in text:
            self.add_character(character)

    def add_raw_string(self, text: str) -> None:
        self.buffer += text
        self.in_word = True

    def finish(self) -> list[str]:
        if self.buffer:
            self.words.append(self.buffer)
            self.buffer = ""
            self.in_word = False
        return self.words


class ShellWords:
    """Docker's word lexer for one escape character (``\\`` or a backtick).

    Options (all off by default, as the builder uses it):

    - ``raw_quotes``: keep the quote characters in the result.
    - ``raw_escapes``: keep the escape characters in the result.
    - ``skip_process_quotes``: quotes are ordinary characters (heredoc bodies).
    - ``skip_unset_env``: leave references to unset variables as written.
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_process_quotes: bool = False, skip_unset_env: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise errdefs.InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    # -- public API -------------------------------------------------------------------------

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """``word`` with every substitution applied and quotes removed, as one string."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """``word`` expanded, then split into words (quoted text never splits)."""
        return self.process(word, env).words

    def process(self, word: str, env: Mapping[str, str]) -> WordResult:
        """Expand ``word``; the result also names the variables found and not found."""
        lexer = _Lexer(self, word, env)
        try:
            result, words = lexer.process_until(_EOF, self.raw_escapes)
        except _LexError as exc:
            raise errdefs.InvalidArgument(f"failed to process {_go_quote(word)}: {exc}") from None
        except RecursionError:
            raise errdefs.InvalidArgument(
                f"failed to process {_go_quote(word)}: substitutions nested too deeply") from None
        return WordResult(result, words, lexer.matched, lexer.unmatched)


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable strings messages quote (escapes \\ and ")."""
    out = ['"']
    for character in text:
        if character in '"\\':
            out.append("\\" + character)
        elif character == "\n":
            out.append("\\n")
        elif character == "\t":
            out.append("\\t")
        elif character == "\r":
            out.append("\\r")
        elif not character.isprintable():
            code = ord(character)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(character)
    out.append('"')
    return "".join(out)


class _Lexer:
    """One expansion run over ``text`` (the scanner state of buildkit's shellWord)."""

    def __init__(self, options: ShellWords, text: str, env: Mapping[str, str]) -> None:
        self.options = options
        self.text = text
        self.position = 0
        self.env = env
        self.raw_escapes = options.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else _EOF

    def next(self) -> str:
        if self.position >= len(self.text):
            return _EOF
        character = self.text[self.position]
        self.position += 1
        return character

    def lookup(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True

    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_until(stop)
        finally:
            self.raw_escapes = saved

    def _process_until(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        escape = self.options.escape
        handle_quotes = not self.options.skip_process_quotes
        while self.peek() != _EOF:
            character = self.peek()
            if stop != _EOF and character == stop:
                self.next()
                return "".join(result), words.finish()
            if character == "$":
                value = self.process_dollar()
                result.append(value)
                words.add_string(value)
            elif character == "<":
                value = self.process_possible_heredoc()
                result.append(value)
                words.add_raw_string(value)
            elif handle_quotes and character == "'":
                value = self.process_single_quote()
                result.append(value)
                words.add_raw_string(value)
            elif handle_quotes and character == '"':
                value = self.process_double_quote()
                result.append(value)
                words.add_raw_string(value)
            else:
                character = self.next()
                if character == escape:
                    if self.raw_escapes:
                        words.add_raw_character(character)
                        result.append(character)
                    character = self.next()
                    if character == _EOF:
                        break
                    words.add_raw_character(character)
                else:
                    words.add_character(character)
                result.append(character)
        if stop != _EOF:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def process_single_quote(self) -> str:
        out: list[str] = []
        character = self.next()
        if self.options.raw_quotes:
            out.append(character)
        while True:
            character = self.next()
            if character == _EOF:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if character == "'":
                if self.options.raw_quotes:
                    out.append(character)
                return "".join(out)
            out.append(character)

    def process_double_quote(self) -> str:
        out: list[str] = []
        escape = self.options.escape
        character = self.next()
        if self.options.raw_quotes:
            out.append(character)
        while True:
            following = self.peek()
            if following == _EOF:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if following == '"':
                character = self.next()
                if self.options.raw_quotes:
                    out.append(character)
                return "".join(out)
            if following == "$":
                out.append(self.process_dollar())
                continue
            character = self.next()
            if character == escape:
                if self.raw_escapes:
                    out.append(character)
                after = self.peek()
                if after == _EOF:
                    continue
                if after in ('"', "$", escape):
                    character = self.next()
            out.append(character)

    def process_name(self) -> str:
        name: list[str] = []
        while self.peek() != _EOF:
            character = self.peek()
            if not name and character.isdecimal():
                while self.peek() != _EOF and self.peek().isdecimal():
                    name.append(self.next())
                return "".join(name)
            if not name and character in _SPECIAL_PARAMETERS:
                return self.next()
            if not _is_name_character(character):
                break
            name.append(self.next())
        return "".join(name)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.options.skip_unset_env:
                return "$" + name
            return value

        self.next()
        following = self.peek()
        if following == _EOF:
            raise _LexError("syntax error: missing '}'")
        if following in ("{", "}", ":"):
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        character = self.next()
        # Go prints the scanner's EOF as U+FFFD: "${A" is "unsupported modifier (\ufffd)".
        modifier = character or _GO_EOF
        null_is_unset = False

        if character == "}":
            value, found = self.lookup(name)
            if not found and self.options.skip_unset_env:
                return "${" + name + "}"
            return value
        if character == ":":
            null_is_unset = True
            character = self.next()
            modifier += character or _GO_EOF
        if null_is_unset or character in ("+", "-", "?", "#", "%"):
            # Like Go's fallthrough: after ':' the word is read whatever the modifier is.
            raw = character in ("#", "%")
            if null_is_unset and raw:
                raise _LexError(f"unsupported modifier ({modifier}) in substitution")
            try:
                word, _ = self.process_until("}", raw)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if self.options.skip_unset_env and not found:
                return "${" + name + modifier + word + "}"
            if character == "-":
                return word if not found or (null_is_unset and value == "") else value
            if character == "+":
                return "" if not found or (null_is_unset and value == "") else word
            if character == "?":
                if not found:
                    raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if character in ("#", "%"):
                greedy = False
                if word.startswith(character):
                    greedy = True
                    word = word[1:]
                if character == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        if character == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process_until("/", True)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process_until("}", True)
            except _LexError:
                if self.peek() == _EOF:
                    raise _LexError("syntax error: missing '}'") from None
                raise
            value, found = self.lookup(name)
            if self.options.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            expression = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return expression.sub(lambda match: _go_expand(replacement, match), value)
            return expression.sub(lambda _match: replacement, value, count=1)
        raise _LexError(f"unsupported modifier ({modifier}) in substitution")

    def process_possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        spaces: list[str] = []
        while self.peek() in ("\t", "\r", " ") and self.peek() != _EOF:
            spaces.append(self.next())
        return "<<" + "".join(spaces)


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A ``${A#pattern}`` shell pattern (``*``, ``?``, ``\\`` escapes) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    index = 0
    while index < len(pattern):
        character = pattern[index]
        index += 1
        if character == "*":
            out.append(star)
        elif character == "?":
            out.append(".")
        elif character == "\\":
            following = pattern[index] if index < len(pattern) else ""
            if following in ("}", "/"):
                continue
            index += 1
            if following not in ("*", "?", "\\"):
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape "
                                f"'\\{following}'")
            out.append("\\" + following)
        elif character in _REGEX_SPECIAL:
            out.append("\\" + character)
        else:
            out.append(re.escape(character))
    try:
        return re.compile("".join(out))
    except re.error as exc:  # pragma: no cover - every character above is escaped
        raise _LexError(f"invalid pattern ({pattern}) in substitution: {exc}") from exc


def _go_expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.Expand`` of a replacement template (``$$``, ``$0``; other groups empty)."""
    out: list[str] = []
    index = 0
    while index < len(template):
        character = template[index]
        if character != "$":
            out.append(character)
            index += 1
            continue
        if template[index + 1:index + 2] == "$":
            out.append("$")
            index += 2
            continue
        rest = template[index + 1:]
        brace = rest.startswith("{")
        if brace:
            rest = rest[1:]
        length = 0
        while length < len(rest) and _is_name_character(rest[length]):
            length += 1
        if length == 0 or (brace and rest[length:length + 1] != "}"):
            out.append("$")  # malformed: the dollar is plain text
            index += 1
            continue
        name = rest[:length]
        if name == "0":
            out.append(match.group(0))
        index += 1 + length + (2 if brace else 0)
    return "".join(out)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``)."""
    pieces: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index != len(pattern) - 1:
            pieces.append(pattern[index:index + 2])
            index += 2
        else:
            pieces.append(pattern[index])
            index += 1
    return "".join(reversed(pieces))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regular expression cannot find the shortest rightmost match: reverse both sides.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


@dataclass(frozen=True)
class Substitution:
    """The variables one instruction is expanded with, and the lexer of its Dockerfile.

    ``word`` is the single-word expansion most instructions use, ``words`` the splitting one
    (EXPOSE), ``heredoc`` the expansion of an unquoted heredoc body (quotes are ordinary
    characters there and the escape character is always ``\\``, like buildkit).
    """

    env: Mapping[str, str]
    escape: str = "\\"

    def word(self, text: str) -> str:
        return ShellWords(self.escape).process_word(text, self.env)

    def words(self, text: str) -> list[str]:
        return ShellWords(self.escape).process_words(text, self.env)

    def heredoc(self, text: str) -> str:
        return ShellWords("\\", skip_process_quotes=True).process_word(text, self.env)


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


def parse_words(rest: str, escape: str) -> list[str]:
    """Words separated by whitespace; quotes group (and are kept), escapes are kept."""
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    quote = ""
    blank_ok = False
    buffer: list[str] = []
    position = 0
    length = len(rest)
    while position <= length:
        character = rest[position] if position < length else ""
        if phase == in_spaces:
            if position == length:
                break
            if is_go_space(character):
                position += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and position == length:
            if blank_ok or buffer:
                words.append("".join(buffer))
            break
        if phase == in_word:
            if is_go_space(character):
                phase = in_spaces
                if blank_ok or buffer:
                    words.append("".join(buffer))
                buffer = []
                blank_ok = False
                position += 1
                continue
            if character in ("'", '"'):
                quote = character
                blank_ok = True
                phase = in_quote
            if character == escape:
                if position + 1 == length:
                    position += 1
                    continue
                buffer.append(character)
                position += 1
                character = rest[position]
            buffer.append(character)
            position += 1
            continue
        # in_quote
        if character == quote:
            phase = in_word
        if character == escape and quote != "'":
            if position + 1 == length:
                phase = in_word
                position += 1
                continue
            position += 1
            buffer.append(character)
            character = rest[position]
        buffer.append(character)
        position += 1
    return words


def extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag`` words of ``line`` and the rest (buildkit's extractBuilderFlags)."""
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    buffer: list[str] = []
    quote = ""
    blank_ok = False
    position = 0
    length = len(line)
    while position <= length:
        character = line[position] if position < length else ""
        if phase == in_spaces:
            if position == length:
                break
            if is_go_space(character):
                position += 1
                continue
            if character != "-" or position + 1 == length or line[position + 1] != "-":
                return line[position:], words
            phase = in_word
        if phase in (in_word, in_quote) and position == length:
            word = "".join(buffer)
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == in_word:
            if is_go_space(character):
                word = "".join(buffer)
                phase = in_spaces
                if word == "--":
                    return line[position:], words
                if blank_ok or word:
                    words.append(word)
                buffer = []
                blank_ok = False
                position += 1
                continue
            if character in ("'", '"'):
                quote = character
                blank_ok = True
                phase = in_quote
                position += 1
                continue
            if character == escape:
                if position + 1 == length:
                    position += 1
                    continue
                position += 1
                character = line[position]
            buffer.append(character)
            position += 1
            continue
        if character == quote:
            phase = in_word
            position += 1
            continue
        if character == escape:
            if position + 1 == length:
                phase = in_word
                position += 1
                continue
            position += 1
            character = line[position]
        buffer.append(character)
        position += 1
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
# instruction arguments (buildkit's parser and instructions packages)


class DockerfileSyntaxError(ValueError):
    """A Dockerfile syntax error in Docker's words, without its location (readers add it)."""


def _json_quote(text: str) -> str:
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
            raise DockerfileSyntaxError(f"Syntax error - can't find = in {_json_quote(word)}. "
                                        "Must be of the form: name=value")
        key, _, value = word.partition("=")
        args.extend((key, value, "="))
    return args


_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``1m30s``, ``1.5h``, ``300ms``, ``-2s``)."""
    original = text
    invalid = DockerfileSyntaxError(f"time: invalid duration {_json_quote(original)}")
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
            raise DockerfileSyntaxError(f"time: missing unit in duration {_json_quote(original)}")
        if unit not in _DURATION_UNITS:
            # The unit ends at the first digit or dot; Go names just the unit it did not know.
            raise DockerfileSyntaxError(f"time: unknown unit {_json_quote(unit)} in duration {_json_quote(original)}")
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
        raise DockerfileSyntaxError(f"strconv.ParseInt: parsing {_json_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise DockerfileSyntaxError(f"strconv.ParseInt: parsing {_json_quote(text)}: value out of range")
    return value


_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})


@dataclass
class Node:
    """One instruction as the line parser sees it (buildkit's parser.Node).

    ``heredocs``, ``start_line`` and ``end_line`` are filled in by the build parser
    (:class:`lamina.build.parser.Heredoc` values); ``child`` is ONBUILD's instruction.
    """

    command: str
    flags: list[str]
    args: list[str]
    json_form: bool
    original: str
    child: Node | None = None
    heredocs: list[Any] = field(default_factory=list)
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
        raise DockerfileSyntaxError(f"Unknown type {_json_quote(kind)} in HEALTHCHECK (try CMD)")
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
