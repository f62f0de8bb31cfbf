"""Variable substitution and word splitting for Dockerfile arguments.

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

import re
from collections.abc import Callable, Mapping

from lamina import errdefs
from lamina.dockerfile.lexer import is_go_space
from lamina.records import dataclass, field

__all__ = [
    "ShellWords", "WordResult", "Substitution", "EXPANDED_INSTRUCTIONS", "WORD_SPLIT_INSTRUCTIONS",
    "environment_from_list",
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
_EOF = ""
_GO_EOF = "\ufffd"  # how Go formats text/scanner.EOF as a string


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
        return self._process_quoted("'", "single-quote", self._literal_character)

    def process_double_quote(self) -> str:
        return self._process_quoted('"', "double-quote", self._double_quoted_character)

    def _process_quoted(self, quote: str, name: str, inner: Callable[[list[str]], None]) -> str:
        """From an opening ``quote`` to its closing one; ``inner`` reads what lies between,
        one character (or one ``$`` expansion) at a time."""
        out: list[str] = []
        character = self.next()
        if self.options.raw_quotes:
            out.append(character)
        while True:
            following = self.peek()
            if following == _EOF:
                raise _LexError(f"unexpected end of statement while looking for matching {name}")
            if following == quote:
                character = self.next()
                if self.options.raw_quotes:
                    out.append(character)
                return "".join(out)
            inner(out)

    def _literal_character(self, out: list[str]) -> None:
        out.append(self.next())

    def _double_quoted_character(self, out: list[str]) -> None:
        if self.peek() == "$":
            out.append(self.process_dollar())
            return
        escape = self.options.escape
        character = self.next()
        if character == escape:
            if self.raw_escapes:
                out.append(character)
            after = self.peek()
            if after == _EOF:
                return
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
            word = self._process_until_or_missing("}", raw, "syntax error: missing '}'")
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
            pattern = self._process_until_or_missing("/", True, "syntax error: missing '/' in ${}")
            replacement = self._process_until_or_missing("}", True, "syntax error: missing '}'")
            value, found = self.lookup(name)
            if self.options.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            expression = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return expression.sub(lambda match: _go_expand(replacement, match), value)
            return expression.sub(lambda _match: replacement, value, count=1)
        raise _LexError(f"unsupported modifier ({modifier}) in substitution")

    def _process_until_or_missing(self, stop: str, raw_escapes: bool, missing: str) -> str:
        """:meth:`process_until` inside ``${...}``: the text ending before ``stop`` is the
        ``missing`` error (Docker's wording for each part of a substitution)."""
        try:
            text, _ = self.process_until(stop, raw_escapes)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError(missing) from None
            raise
        return text

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

