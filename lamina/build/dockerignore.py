"""``.dockerignore``: Docker's pattern semantics, and Go's ``filepath.Match``.

File format (moby ``patternmatcher/ignorefile``): one pattern per line; a UTF-8 byte order mark
is ignored; a line *starting* with ``#`` is a comment; surrounding whitespace is trimmed;
``!`` makes an exception (re-inclusion); each pattern is cleaned like Go's ``filepath.Clean``
(``./a/../b/`` -> ``b``) and a leading ``/`` is dropped.

Matching (moby ``patternmatcher``): patterns apply in order and the last one that matches a
path decides (exception or exclusion).  ``*`` matches any run of characters except ``/``,
``?`` one character except ``/``, ``[...]`` a class, ``\\`` escapes, and ``**`` any number of
path components (``**/foo`` also matches ``foo``; a trailing ``**`` matches everything
below).  A pattern also matches every path below a path it matches (``foo`` excludes
``foo/bar``).

Walking (the Docker client's context tar): a directory that is excluded is not entered unless
an exception pattern starts with that directory's path (``!foo/keep`` re-includes
``foo/keep`` below an excluded ``foo``; ``!**/keep`` does not, exactly like Docker).

The Dockerfile and ``.dockerignore`` are always sent with the context so the builder can read
them, but when a pattern excludes them COPY/ADD do not see them: see
:mod:`lamina.build.context`.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator

from lamina import errdefs
from lamina.dockerfile.lexer import go_clean
from lamina.records import dataclass

__all__ = [
    "DockerIgnore", "read_patterns", "go_match", "go_clean", "contains_wildcards", "BadPattern",
]


class BadPattern(errdefs.InvalidArgument):
    """A pattern Go's ``filepath.Match`` rejects (``syntax error in pattern``)."""


def contains_wildcards(name: str) -> bool:
    """Whether a COPY source is a pattern (``*``, ``?`` or ``[`` not escaped by ``\\``)."""
    index = 0
    while index < len(name):
        character = name[index]
        if character == "\\":
            index += 2
            continue
        if character in "*?[":
            return True
        index += 1
    return False


# --- Go's filepath.Match ----------------------------------------------------------------------


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    index = 0
    while index < len(pattern):
        character = pattern[index]
        if character == "\\":
            if index + 1 < len(pattern):
                index += 1
        elif character == "[":
            in_range = True
        elif character == "]":
            in_range = False
        elif character == "*" and not in_range:
            break
        index += 1
    return star, pattern[:index], pattern[index:]


def _class_character(chunk: str) -> tuple[str, str]:
    if chunk == "" or chunk[0] in "-]":
        raise BadPattern("syntax error in pattern")
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if chunk == "":
            raise BadPattern("syntax error in pattern")
    character, rest = chunk[0], chunk[1:]
    if rest == "":
        raise BadPattern("syntax error in pattern")
    return character, rest


def _match_chunk(chunk: str, text: str) -> tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and text == "":
            failed = True
        head = chunk[0]
        if head == "[":
            character = ""
            if not failed:
                character, text = text[0], text[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            matched = False
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                low, chunk = _class_character(chunk)
                high = low
                if chunk[0] == "-":
                    high, chunk = _class_character(chunk[1:])
                if character and low <= character <= high:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif head == "?":
            if not failed:
                if text[0] == "/":
                    failed = True
                text = text[1:]
            chunk = chunk[1:]
        else:
            if head == "\\":
                chunk = chunk[1:]
                if chunk == "":
                    raise BadPattern("syntax error in pattern")
            if not failed:
                if chunk[0] != text[0]:
                    failed = True
                text = text[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return text, True


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match`` on Linux (raises :class:`BadPattern` for a malformed pattern)."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        rest, ok = _match_chunk(chunk, name)
        if ok and (rest == "" or pattern):
            name = rest
            continue
        if star:
            found = False
            index = 0
            while index < len(name) and name[index] != "/":
                rest, ok = _match_chunk(chunk, name[index + 1:])
                if ok:
                    if not pattern and rest:
                        index += 1
                        continue
                    name = rest
                    found = True
                    break
                index += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


# --- patterns ----------------------------------------------------------------------------------


def read_patterns(text: str | bytes) -> list[str]:
    """The patterns of a ``.dockerignore`` file, cleaned like Docker's ``ignorefile.ReadAll``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    patterns = []
    for number, line in enumerate(text.split("\n")):
        if number == 0 and line.startswith("\ufeff"):
            line = line[1:]
        line = line.rstrip("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if pattern == "":
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


_EXACT, _PREFIX, _SUFFIX, _REGEX = range(4)
_REGEX_ESCAPED = frozenset(".+()|{}$")


@dataclass(frozen=True)
class _Pattern:
    text: str            # cleaned, without the "!"
    exclusion: bool
    kind: int
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    out = ["^"]
    kind = _EXACT
    index = 0
    iteration = 0
    in_class = False
    while index < len(text):
        character = text[index]
        index += 1
        if character == "*":
            if text[index:index + 1] == "*":
                index += 1
                if text[index:index + 1] == "/":
                    index += 1
                if index >= len(text):
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        out.append(".*")
                        kind = _REGEX
                else:
                    out.append("(.*/)?")
                    kind = _REGEX
                if iteration == 0:
                    kind = _SUFFIX
            else:
                out.append("[^/]*")
                kind = _REGEX
        elif character == "?":
            out.append("[^/]")
            kind = _REGEX
        elif character in _REGEX_ESCAPED:
            out.append("\\" + character)
        elif character == "\\":
            if index < len(text):
                out.append(re.escape(text[index]))
                index += 1
                kind = _REGEX
            else:
                out.append("\\\\")
        elif character == "[":
            out.append("\\[" if in_class else "[")
            in_class = True
            kind = _REGEX
        elif character == "]":
            out.append("]")
            in_class = False
            kind = _REGEX
        else:
            out.append(character if in_class else re.escape(character))
        iteration += 1
    regex = None
    if kind == _REGEX:
        out.append(r"\Z")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                regex = re.compile("".join(out))
        except re.error as exc:
            raise BadPattern(f"syntax error in pattern {text!r}: {exc}") from exc
    return _Pattern(text, exclusion, kind, regex)


class DockerIgnore:
    """A compiled ``.dockerignore``: :meth:`matches` (is a path excluded?), :meth:`included`
    (would the Docker client send it?) and :meth:`walk` (every path it would send)."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        compiled: list[_Pattern] = []
        for raw in patterns:
            pattern = raw.strip()
            if pattern == "":
                continue
            pattern = go_clean(pattern)
            exclusion = pattern.startswith("!")
            if exclusion:
                if len(pattern) == 1:
                    raise BadPattern('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            go_match(pattern, ".")  # syntax check, as Docker does
            compiled.append(_compile(pattern, exclusion))
        self._patterns = tuple(compiled)
        self.has_exclusions = any(pattern.exclusion for pattern in compiled)

    @classmethod
    def from_text(cls, text: str | bytes) -> DockerIgnore:
        return cls(read_patterns(text))

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(("!" if p.exclusion else "") + p.text for p in self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative to the context) is excluded, itself or
        through a parent directory (``MatchesOrParentMatches``)."""
        path = go_clean(path)
        if path == ".":
            return False
        matched = False
        parent = os.path.dirname(path) or "."
        parents = parent.split("/") if parent != "." else []
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for count in range(1, len(parents) + 1):
                    if pattern.match("/".join(parents[:count])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def _matches_with_parent(self, path: str, parent: tuple[bool, ...] | None
                             ) -> tuple[bool, tuple[bool, ...]]:
        """``MatchesUsingParentResults``: the walk's incremental form of :meth:`matches`."""
        matched = False
        info = [False] * len(self._patterns)
        for index, pattern in enumerate(self._patterns):
            hit = parent[index] if parent else False
            if not hit:
                if pattern.exclusion != matched:
                    continue
                hit = pattern.match(path)
                if not hit and not parent:
                    directory = os.path.dirname(path)
                    if directory:
                        components = directory.split("/")
                        for count in range(1, len(components) + 1):
                            if pattern.match("/".join(components[:count])):
                                hit = True
                                break
            info[index] = hit
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def _may_reinclude_below(self, directory: str) -> bool:
        prefix = directory + "/"
        return any(pattern.exclusion and (pattern.text + "/").startswith(prefix)
                   for pattern in self._patterns)

    def included(self, path: str) -> bool:
        """Whether the Docker client would send ``path``: it is not excluded and the walk
        reaches it (no excluded ancestor directory without a matching exception)."""
        path = go_clean(path)
        if path == "." or not self._patterns:
            return True
        if path.startswith(("../", "/")) or path == "..":
            return False
        components = path.split("/")
        parent: tuple[bool, ...] | None = None
        for count in range(1, len(components) + 1):
            current = "/".join(components[:count])
            skip, parent = self._matches_with_parent(current, parent)
            if count == len(components):
                return not skip
            if skip and not (self.has_exclusions and self._may_reinclude_below(current)):
                return False
        return True  # pragma: no cover - the loop always returns

    def walk(self, root: str | os.PathLike[str], start: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """Every path below ``root`` (or below ``root/start``) the client would send, as
        ``(relative slash path, lstat)`` in lexical order, directories before their content.
        Symbolic links are reported, never followed; excluded directories are not entered
        when no exception can re-include something below them."""
        root = os.fspath(root)
        start = "" if start in ("", ".") else go_clean(start)
        parent: tuple[bool, ...] | None = None
        if start:
            components = start.split("/")
            for count in range(1, len(components) + 1):
                current = "/".join(components[:count])
                skip, parent = self._matches_with_parent(current, parent)
                if skip and not (self.has_exclusions and self._may_reinclude_below(current)):
                    return
            try:
                info = os.lstat(os.path.join(root, start))
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(info.st_mode):
                return
        yield from self._walk(root, start, parent)

    def _walk(self, root: str, directory: str, parent: tuple[bool, ...] | None
              ) -> Iterator[tuple[str, os.stat_result]]:
        try:
            with os.scandir(os.path.join(root, directory) if directory else root) as entries:
                names = sorted(entry.name for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            relative = f"{directory}/{name}" if directory else name
            try:
                info = os.lstat(os.path.join(root, relative))
            except FileNotFoundError:
                continue
            is_directory = stat.S_ISDIR(info.st_mode)
            if self._patterns:
                skip, matched = self._matches_with_parent(relative, parent)
            else:
                skip, matched = False, ()
            if skip:
                if is_directory and self.has_exclusions and self._may_reinclude_below(relative):
                    yield from self._walk(root, relative, matched)
                continue
            yield relative, info
            if is_directory:
                yield from self._walk(root, relative, matched)
