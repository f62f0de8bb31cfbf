"""The Dockerfile parser: Docker's syntax, exactly, into typed frozen instructions.

The grammar is the one Docker's builders share (buildkit's ``frontend/dockerfile/parser`` and
``instructions`` packages); this module follows it rule for rule:

**Lines.**  The text is split on ``\\n`` (a trailing ``\\r`` is dropped, a UTF-8 byte order mark
at the start is ignored, bytes that are not UTF-8 become U+FFFD).  Leading whitespace of a
logical line is dropped; a line whose first non-blank character is ``#`` is a comment.

**Parser directives** are comments of the form ``# name=value`` at the very top (before any
instruction, comment or blank line; each at most once).  ``escape`` sets the escape character
(``\\`` by default, or a backtick), ``syntax`` is accepted and reported in
:attr:`Dockerfile.warnings` as ignored (lamina has one front end), ``check`` is ignored.

**Continuations.**  A line whose last non-blank character is the escape character (not itself
escaped) continues on the next line; the escape character and what follows it are removed
and the lines are joined without a separator.  Comment lines inside a continuation are
skipped; empty continuation lines are skipped with a warning, as Docker does.

**Instructions** are ``NAME [--flag[=value]...] arguments`` with a case-insensitive name.
Arguments take one of these forms, depending on the instruction:

- *exec or shell form* (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK CMD): a JSON array of strings
  is the exec form; anything else -- including malformed JSON such as ``['a']`` or an
  unterminated array -- is kept verbatim as the shell form.  A valid JSON array holding a
  non-string is an error.
- *list form* (ADD, COPY, VOLUME): a JSON array or whitespace-separated words.
- *key=value* (ENV, LABEL): quoted words ``k=v k2="v 2"``; ENV and LABEL also accept the
  legacy ``NAME value with spaces``.  Values keep their quotes here: they go away when the
  builder expands the instruction (:meth:`Instruction.expand`).
- *words* (ARG ``name[=default] ...``), *whitespace-separated* (FROM, EXPOSE) or *one string*
  (USER, WORKDIR, STOPSIGNAL, MAINTAINER).

**Heredocs** (RUN, COPY, ADD, also behind ONBUILD, shell form only): ``<<NAME``, ``<<-NAME``
(leading tabs of the body and of the terminator line are stripped), ``<<"NAME"`` or
``<<'NAME'`` (the body is not expanded), several per instruction; the bodies follow the
instruction line, each ended by a line equal to its name.

**Stages.**  Each FROM starts a stage; ARG instructions before the first FROM are the global
(meta) ARGs; any other instruction there is an error.

Every syntax error is :class:`lamina.errdefs.InvalidArgument` with the message
``<file>:<line>: <what was wrong>``, in Docker's words (``unknown instruction: FOO``,
``FROM requires either one or three arguments``, ``ENV names can not be blank``...).
Nothing is expanded here: variable substitution is :meth:`Instruction.expand` with the
builder's :class:`lamina.build.shell_words.Substitution`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import ClassVar

from lamina import errdefs
from lamina.build.shell_words import ShellWords, Substitution
from lamina.image.dockerfile_words import (
    DockerfileSyntaxError,
    Flags,
    Node,
    continuation_regex,
    go_trim_left,
    go_trim_space,
    is_comment,
    parse_healthcheck,
    parse_node,
    split_lines,
    trim_continuation,
)
from lamina.records import dataclass, replace

__all__ = [
    "parse", "parse_trigger", "Dockerfile", "Stage", "Instruction", "Heredoc", "HeredocSource",
    "KeyValue", "ArgDefinition",
    "FromInstruction", "RunInstruction", "CmdInstruction", "EntrypointInstruction",
    "ShellInstruction", "EnvInstruction", "ArgInstruction", "LabelInstruction",
    "ExposeInstruction", "VolumeInstruction", "UserInstruction", "WorkdirInstruction",
    "StopSignalInstruction", "HealthcheckInstruction", "OnbuildInstruction",
    "MaintainerInstruction", "CopyInstruction", "AddInstruction",
    "INSTRUCTION_NAMES", "DEFAULT_ESCAPE", "SUPPORTED_RUN_MOUNT_TYPES",
]

DEFAULT_ESCAPE = "\\"
#: RUN ``--mount`` types lamina's builder implements; the parser refuses the others clearly.
SUPPORTED_RUN_MOUNT_TYPES: frozenset[str] = frozenset()
_RUN_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_RUN_NETWORK_MODES = ("default", "none", "host")
_RUN_SECURITY_MODES = ("sandbox", "insecure")

_HEREDOC = re.compile(r"^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*\Z")
_VALID_DIRECTIVES = ("syntax", "escape", "check")


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


#: A parse error without its location; :func:`parse` adds ``file:line``.
_SyntaxError = DockerfileSyntaxError


# --------------------------------------------------------------------------------------------
# Values


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
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass(frozen=True)
class HeredocSource:
    """An inline file of COPY/ADD: created under ``path`` (the heredoc's name) with ``data``."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True)
class KeyValue:
    """``key=value`` of ENV or LABEL; ``legacy`` for the ``ENV key value`` form."""

    key: str
    value: str
    legacy: bool = False

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class ArgDefinition:
    """``name`` or ``name=default`` of an ARG (``default`` None when there is none)."""

    name: str
    default: str | None = None

    def __str__(self) -> str:
        return self.name if self.default is None else f"{self.name}={self.default}"


# --------------------------------------------------------------------------------------------
# Instructions


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Common part of every instruction.

    ``original`` is the instruction's text as Docker keeps it (continuations joined,
    surrounding whitespace removed; heredoc bodies are not part of it), ``start_line`` and
    ``end_line`` the 1-based lines it spans in the Dockerfile (heredoc bodies included),
    ``flags`` its ``--flags`` as written.
    """

    keyword: ClassVar[str] = ""
    original: str
    start_line: int
    end_line: int
    flags: tuple[str, ...] = ()

    def expand(self, substitution: Substitution) -> Instruction:
        """This instruction with Docker's variable substitution applied (identity by default:
        only the instructions of :data:`lamina.build.shell_words.EXPANDED_INSTRUCTIONS` change)."""
        return self

    def __str__(self) -> str:
        return self.original


@dataclass(frozen=True, kw_only=True)
class FromInstruction(Instruction):
    keyword: ClassVar[str] = "from"
    base_name: str
    stage_name: str = ""           # lower-cased, "" when there is no ``AS name``
    platform: str = ""

    def expand(self, substitution: Substitution) -> FromInstruction:
        base_name = substitution.word(self.base_name)
        if base_name == "":
            raise errdefs.InvalidArgument(f"base name ({self.base_name}) should not be blank")
        platform = substitution.word(self.platform) if self.platform else ""
        return replace(self, base_name=base_name, platform=platform)


@dataclass(frozen=True, kw_only=True)
class _CommandLine(Instruction):
    """RUN, CMD, ENTRYPOINT: ``command`` is the exec form's argv, or one string for the shell
    form (``prepend_shell`` True: the builder runs it with the stage's SHELL)."""

    command: tuple[str, ...] = ()
    prepend_shell: bool = True


@dataclass(frozen=True, kw_only=True)
class RunInstruction(_CommandLine):
    keyword: ClassVar[str] = "run"
    heredocs: tuple[Heredoc, ...] = ()
    network: str = "default"
    security: str = "sandbox"

    def heredoc_command(self) -> tuple[tuple[str, ...], Heredoc | None]:
        """The command once heredocs are resolved, as buildkit runs it.

        ``RUN <<EOF`` alone: the body is the shell command, or -- when it starts with ``#!``
        -- an executable script (returned second; the builder writes it to a file and runs
        that file).  Otherwise the heredocs are appended to the command line for the shell.
        """
        if not self.heredocs:
            return self.command, None
        if len(self.command) != 1 or not self.prepend_shell:
            raise errdefs.InvalidArgument(f"parsing produced an invalid run command: {list(self.command)}")
        if _maybe_heredoc_word(self.command[0]) is not None:
            data = self.heredocs[0].data
            if data.startswith("#!"):
                return (self.heredocs[0].name,), self.heredocs[0]
            return (data,), None
        text = self.command[0] + "".join("\n" + doc.content + doc.name for doc in self.heredocs)
        return (text,), None


@dataclass(frozen=True, kw_only=True)
class CmdInstruction(_CommandLine):
    keyword: ClassVar[str] = "cmd"


@dataclass(frozen=True, kw_only=True)
class EntrypointInstruction(Instruction):
    """``command`` is None for ``ENTRYPOINT []`` (Docker then clears the entrypoint)."""

    keyword: ClassVar[str] = "entrypoint"
    command: tuple[str, ...] | None = None
    prepend_shell: bool = True


@dataclass(frozen=True, kw_only=True)
class ShellInstruction(Instruction):
    keyword: ClassVar[str] = "shell"
    shell: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class EnvInstruction(Instruction):
    keyword: ClassVar[str] = "env"
    pairs: tuple[KeyValue, ...]

    def expand(self, substitution: Substitution) -> EnvInstruction:
        return replace(self, pairs=tuple(
            KeyValue(substitution.word(pair.key), substitution.word(pair.value), pair.legacy)
            for pair in self.pairs))


@dataclass(frozen=True, kw_only=True)
class LabelInstruction(Instruction):
    keyword: ClassVar[str] = "label"
    pairs: tuple[KeyValue, ...]

    def expand(self, substitution: Substitution) -> LabelInstruction:
        return replace(self, pairs=tuple(
            KeyValue(substitution.word(pair.key), substitution.word(pair.value), pair.legacy)
            for pair in self.pairs))


@dataclass(frozen=True, kw_only=True)
class ArgInstruction(Instruction):
    keyword: ClassVar[str] = "arg"
    args: tuple[ArgDefinition, ...]

    def expand(self, substitution: Substitution) -> ArgInstruction:
        return replace(self, args=tuple(
            ArgDefinition(substitution.word(arg.name),
                          None if arg.default is None else substitution.word(arg.default))
            for arg in self.args))


@dataclass(frozen=True, kw_only=True)
class ExposeInstruction(Instruction):
    keyword: ClassVar[str] = "expose"
    ports: tuple[str, ...]

    def expand(self, substitution: Substitution) -> ExposeInstruction:
        ports: list[str] = []
        for port in self.ports:
            ports.extend(substitution.words(port))
        return replace(self, ports=tuple(ports))


@dataclass(frozen=True, kw_only=True)
class VolumeInstruction(Instruction):
    keyword: ClassVar[str] = "volume"
    volumes: tuple[str, ...]

    def expand(self, substitution: Substitution) -> VolumeInstruction:
        volumes = tuple(substitution.word(volume) for volume in self.volumes)
        if any(volume == "" for volume in volumes):
            raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
        return replace(self, volumes=volumes)


@dataclass(frozen=True, kw_only=True)
class UserInstruction(Instruction):
    keyword: ClassVar[str] = "user"
    user: str

    def expand(self, substitution: Substitution) -> UserInstruction:
        return replace(self, user=substitution.word(self.user))


@dataclass(frozen=True, kw_only=True)
class WorkdirInstruction(Instruction):
    keyword: ClassVar[str] = "workdir"
    path: str

    def expand(self, substitution: Substitution) -> WorkdirInstruction:
        return replace(self, path=substitution.word(self.path))


@dataclass(frozen=True, kw_only=True)
class StopSignalInstruction(Instruction):
    keyword: ClassVar[str] = "stopsignal"
    signal: str

    def expand(self, substitution: Substitution) -> StopSignalInstruction:
        return replace(self, signal=substitution.word(self.signal))


@dataclass(frozen=True, kw_only=True)
class HealthcheckInstruction(Instruction):
    """``test`` is Docker's Healthcheck.Test: ``("NONE",)``, ``("CMD", argv...)`` or
    ``("CMD-SHELL", "command")``; durations are nanoseconds (0: the default)."""

    keyword: ClassVar[str] = "healthcheck"
    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class OnbuildInstruction(Instruction):
    """``expression`` is the trigger as stored in the image config's OnBuild list (heredoc
    bodies appended); ``trigger`` its upper-case instruction name.  The trigger is parsed
    again with :func:`parse_trigger` when a child build starts FROM the image."""

    keyword: ClassVar[str] = "onbuild"
    expression: str
    trigger: str


@dataclass(frozen=True, kw_only=True)
class MaintainerInstruction(Instruction):
    keyword: ClassVar[str] = "maintainer"
    maintainer: str


@dataclass(frozen=True, kw_only=True)
class _SourcesAndDestination(Instruction):
    """COPY and ADD: ``sources`` are context (or stage, or URL) paths as written,
    ``heredocs`` the inline files, ``destination`` the target path as written."""

    sources: tuple[str, ...]
    destination: str
    heredocs: tuple[HeredocSource, ...] = ()
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()

    def _expand_common(self, substitution: Substitution) -> dict[str, object]:
        return {
            "sources": tuple(substitution.word(source) for source in self.sources),
            "destination": substitution.word(self.destination),
            "chown": substitution.word(self.chown),
            "chmod": substitution.word(self.chmod),
            "heredocs": tuple(
                replace(doc, data=substitution.heredoc(doc.data)) if doc.expand else doc
                for doc in self.heredocs),
        }


@dataclass(frozen=True, kw_only=True)
class CopyInstruction(_SourcesAndDestination):
    """``copy_from`` is ``--from`` (a stage name, stage index or image; never expanded)."""

    keyword: ClassVar[str] = "copy"
    copy_from: str = ""
    parents: bool = False

    def expand(self, substitution: Substitution) -> CopyInstruction:
        return replace(self, **self._expand_common(substitution))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class AddInstruction(_SourcesAndDestination):
    keyword: ClassVar[str] = "add"
    checksum: str = ""
    keep_git_dir: bool | None = None
    unpack: bool | None = None

    def expand(self, substitution: Substitution) -> AddInstruction:
        values = self._expand_common(substitution)
        values["checksum"] = substitution.word(self.checksum)
        return replace(self, **values)  # type: ignore[arg-type]


INSTRUCTION_NAMES = frozenset({
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
})


# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class Stage:
    """One build stage: its FROM and the instructions up to the next FROM."""

    index: int
    from_instruction: FromInstruction
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str:
        return self.from_instruction.stage_name


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile.

    ``instructions`` is every instruction in order; ``meta_args`` the ARGs before the first
    FROM; ``stages`` the stages (empty when the file has no FROM: the builder reports that);
    ``escape`` the escape character in force; ``warnings`` what Docker would warn about.
    """

    name: str
    instructions: tuple[Instruction, ...]
    meta_args: tuple[ArgInstruction, ...]
    stages: tuple[Stage, ...]
    escape: str = DEFAULT_ESCAPE
    syntax: str = ""
    warnings: tuple[str, ...] = ()

    def stage(self, name: str) -> Stage | None:
        """The stage named ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == wanted:
                return stage
        return None

    def stages_for_target(self, target: str) -> tuple[Stage, ...]:
        """The stages up to and including ``--target``; every stage when ``target`` is ""."""
        if not target:
            return self.stages
        stage = self.stage(target)
        if stage is None:
            raise errdefs.InvalidArgument(f'target stage "{target}" could not be found')
        return self.stages[:stage.index + 1]


# --------------------------------------------------------------------------------------------
# Line level (buildkit's parser package)


def _parse_heredoc_word(word: str) -> Heredoc | None:
    match = _HEREDOC.match(word)
    if match is None:
        return None
    file_descriptor = int(match.group(1)) if match.group(1) else 0
    chomp = match.group(2) == "-"
    rest = match.group(3)
    if not rest:
        return None
    try:
        words = ShellWords("\\", skip_unset_env=True).process_words(rest, {})
        if len(words) != 1:
            return None
        raw_words = ShellWords("\\", skip_unset_env=True, raw_quotes=True).process_words(rest, {})
    except errdefs.InvalidArgument as exc:
        raise _SyntaxError(str(exc)) from None
    if len(raw_words) != len(words):
        raise _SyntaxError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    word = words[0]
    quotes = word.count("'") + word.count('"')
    raw_quotes = raw_words[0].count("'") + raw_words[0].count('"')
    return Heredoc(name=word, content="", expand=quotes == raw_quotes, chomp=chomp,
                   file_descriptor=file_descriptor)


def _maybe_heredoc_word(word: str) -> Heredoc | None:
    """Like :func:`_parse_heredoc_word` but a word that does not lex is simply not a heredoc."""
    try:
        return _parse_heredoc_word(word)
    except _SyntaxError:
        return None


def _heredocs_in_line(line: str) -> list[Heredoc]:
    lexer = ShellWords("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lexer.process_words(line, {})
    except errdefs.InvalidArgument:
        return []
    docs = []
    for word in words:
        heredoc = _parse_heredoc_word(word)
        if heredoc is not None:
            docs.append(heredoc)
    return docs


class _Directives:
    """The parser-directive state: escape character and which directives were seen."""

    def __init__(self) -> None:
        self.escape = DEFAULT_ESCAPE
        self.continuation = continuation_regex(DEFAULT_ESCAPE)
        self.seen: dict[str, str] = {}
        self.done = False

    def possible_directive(self, line: str) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        match = _DIRECTIVE.match(go_trim_left(line[1:]))
        if match is None:
            self.done = True
            return False
        key = match.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return False
        if key in self.seen:
            raise _SyntaxError(f"only one {key} parser directive can be used")
        value = match.group(2)
        self.seen[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise _SyntaxError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = continuation_regex(value)
        return True


@dataclass
class _LineResult:
    nodes: list[Node]
    escape: str
    syntax: str
    warnings: list[str]


def _parse_nodes(text: str, name: str) -> _LineResult:
    directives = _Directives()
    lines = split_lines(text)
    nodes: list[Node] = []
    warnings: list[str] = []
    index = 0
    current_line = 0

    def process(raw: str, strip_left: bool) -> str:
        token = raw.rstrip("\r\n")
        if strip_left:
            token = go_trim_left(token)
        try:
            directives.possible_directive(token)
        except _SyntaxError as exc:
            raise errdefs.InvalidArgument(f"{name}:{current_line + 1}: {exc}") from None
        return "" if is_comment(token) else token

    while index < len(lines):
        raw = lines[index]
        index += 1
        if current_line == 0 and raw.startswith("\ufeff"):
            raw = raw[1:]
        token = process(raw, True)
        current_line += 1
        start_line = current_line
        token, end_of_line = trim_continuation(token, directives.continuation)
        if end_of_line and token == "":
            continue
        pieces = [token]
        empty_continuation = False
        while not end_of_line and index < len(lines):
            raw = lines[index]
            index += 1
            token = process(raw, False)
            current_line += 1
            if is_comment(raw):
                continue
            if go_trim_left(token) == "":
                empty_continuation = True
                continue
            token, end_of_line = trim_continuation(token, directives.continuation)
            pieces.append(token)
        line = "".join(pieces)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {line}")
        try:
            node = parse_node(line, directives.escape)
            if node.can_contain_heredoc() and "<<" in line:
                for heredoc in _heredocs_in_line(line):
                    body: list[str] = []
                    terminated = False
                    while index < len(lines):
                        raw = lines[index]
                        index += 1
                        current_line += 1
                        candidate = raw.rstrip("\r\n")
                        if heredoc.chomp:
                            candidate = candidate.lstrip("\t")
                        if candidate == heredoc.name:
                            terminated = True
                            break
                        body.append(raw)
                    if not terminated:
                        raise _SyntaxError("unterminated heredoc")
                    node.heredocs.append(replace(heredoc, content="".join(body)))
        except _SyntaxError as exc:
            raise errdefs.InvalidArgument(f"{name}:{start_line}: {exc}") from None
        node.start_line = start_line
        node.end_line = current_line
        nodes.append(node)

    if not nodes:
        raise errdefs.InvalidArgument(f"{name}:{max(current_line, 1)}: file with no instructions")
    syntax = directives.seen.get("syntax", "")
    if syntax:
        warnings.insert(0, f"the syntax directive is ignored: lamina builds with its own "
                           f"Dockerfile front end (syntax={syntax})")
    return _LineResult(nodes, directives.escape, syntax, warnings)


# --------------------------------------------------------------------------------------------
# Instruction level (buildkit's instructions package)


def _parse_run_mount(spec: str) -> str:
    """The type of a ``--mount`` spec (``type=cache,target=/x``), validated like buildkit."""
    mount_type = "bind"
    for field_text in spec.split(","):
        key, has_value, value = field_text.partition("=")
        if has_value and key.strip().lower() == "type":
            mount_type = value.strip().lower()
            if mount_type not in _RUN_MOUNT_TYPES:
                raise _SyntaxError(f'unsupported mount type "{value}"')
    return mount_type


def _base(node: Node) -> dict[str, object]:
    return {"original": go_trim_space(node.original), "start_line": node.start_line,
            "end_line": node.end_line, "flags": tuple(node.flags)}


def _command_line(node: Node) -> tuple[str, ...]:
    args = node.all_args()
    if not args:
        return ()
    if node.json_form:
        return tuple(args)
    return (" ".join(args),)


def _key_values(node: Node, keyword: str) -> tuple[KeyValue, ...]:
    args = node.args
    if not args:
        raise _SyntaxError(f"{keyword} requires at least one argument")
    pairs = []
    for index in range(0, len(args), 3):
        if args[index] == "":
            raise _SyntaxError(f"{keyword} names can not be blank")
        pairs.append(KeyValue(args[index], args[index + 1], legacy=args[index + 2] == ""))
    return tuple(pairs)


def _sources_and_destination(node: Node, keyword: str) -> dict[str, object]:
    args = node.args
    destination = args[-1]
    if _maybe_heredoc_word(destination) is not None:
        raise _SyntaxError(f"{keyword} cannot accept a heredoc as a destination")
    by_name = {doc.name: doc for doc in node.heredocs}
    sources: list[str] = []
    inline: list[HeredocSource] = []
    for source in args[:-1]:
        heredoc = _maybe_heredoc_word(source)
        if heredoc is None:
            sources.append(source)
            continue
        found = by_name.get(heredoc.name)
        content = found.content if found is not None else ""
        if heredoc.chomp:
            content = _LEADING_TABS.sub("", content)
        inline.append(HeredocSource(path=heredoc.name, data=content, expand=heredoc.expand))
    return {"sources": tuple(sources), "destination": destination, "heredocs": tuple(inline)}


def _exactly_one(node: Node, keyword: str) -> str:
    if len(node.args) != 1:
        raise _SyntaxError(f"{keyword} requires exactly one argument")
    return node.args[0]


def _instruction(node: Node) -> Instruction:
    keyword = node.command.lower()
    flags = Flags(node.flags)
    base = _base(node)
    args = node.all_args()
    if keyword == "from":
        stage_name = ""
        if len(args) == 3 and args[1].lower() == "as":
            stage_name = args[2].lower()
            if not _STAGE_NAME.match(stage_name):
                raise _SyntaxError(f"invalid name for build stage: {_go_quote(args[2])}, "
                                   "name can't start with a number or contain symbols")
        elif len(args) != 1:
            raise _SyntaxError("FROM requires either one or three arguments")
        flags.add_string("platform")
        flags.parse()
        return FromInstruction(base_name=args[0], stage_name=stage_name,
                               platform=flags.string("platform"), **base)  # type: ignore[arg-type]
    if keyword == "run":
        flags.add_strings("mount")
        flags.add_string("network", "default")
        flags.add_string("security", "sandbox")
        flags.parse()
        for spec in flags.strings("mount"):
            mount_type = _parse_run_mount(spec)
            if mount_type not in SUPPORTED_RUN_MOUNT_TYPES:
                raise _SyntaxError(f"RUN --mount=type={mount_type} is not supported by lamina's "
                                   "builder yet")
        network = flags.string("network")
        if network not in _RUN_NETWORK_MODES:
            raise _SyntaxError(f"invalid network mode {_go_quote(network)}")
        security = flags.string("security")
        if security not in _RUN_SECURITY_MODES:
            raise _SyntaxError(f"security {_go_quote(security)} is not valid")
        return RunInstruction(command=_command_line(node), prepend_shell=not node.json_form,
                              heredocs=tuple(node.heredocs), network=network, security=security,
                              **base)  # type: ignore[arg-type]
    if keyword == "cmd":
        flags.parse()
        return CmdInstruction(command=_command_line(node), prepend_shell=not node.json_form,
                              **base)  # type: ignore[arg-type]
    if keyword == "entrypoint":
        flags.parse()
        command = _command_line(node)
        return EntrypointInstruction(command=command or None, prepend_shell=not node.json_form,
                                     **base)  # type: ignore[arg-type]
    if keyword == "shell":
        flags.parse()
        shell = _command_line(node)
        if not shell:
            raise _SyntaxError("SHELL requires at least one argument")
        if not node.json_form:
            raise _SyntaxError("SHELL requires the arguments to be in JSON form")
        return ShellInstruction(shell=shell, **base)  # type: ignore[arg-type]
    if keyword == "env":
        flags.parse()
        return EnvInstruction(pairs=_key_values(node, "ENV"), **base)  # type: ignore[arg-type]
    if keyword == "label":
        flags.parse()
        return LabelInstruction(pairs=_key_values(node, "LABEL"), **base)  # type: ignore[arg-type]
    if keyword == "maintainer":
        maintainer = _exactly_one(node, "MAINTAINER")
        flags.parse()
        return MaintainerInstruction(maintainer=maintainer, **base)  # type: ignore[arg-type]
    if keyword == "arg":
        # Like Docker, ARG (and STOPSIGNAL) never look at their flags.
        if not args:
            raise _SyntaxError("ARG requires at least one argument")
        definitions = []
        for word in args:
            if "=" in word:
                name, _, default = word.partition("=")
                if name == "":
                    raise _SyntaxError("ARG names can not be blank")
                definitions.append(ArgDefinition(name, default))
            else:
                definitions.append(ArgDefinition(word))
        return ArgInstruction(args=tuple(definitions), **base)  # type: ignore[arg-type]
    if keyword == "expose":
        if not args:
            raise _SyntaxError("EXPOSE requires at least one argument")
        flags.parse()
        return ExposeInstruction(ports=tuple(sorted(args)), **base)  # type: ignore[arg-type]
    if keyword == "volume":
        if not args:
            raise _SyntaxError("VOLUME requires at least one argument")
        flags.parse()
        volumes = []
        for volume in args:
            volume = go_trim_space(volume)
            if volume == "":
                raise _SyntaxError("VOLUME specified can not be an empty string")
            volumes.append(volume)
        return VolumeInstruction(volumes=tuple(volumes), **base)  # type: ignore[arg-type]
    if keyword == "user":
        user = _exactly_one(node, "USER")
        flags.parse()
        return UserInstruction(user=user, **base)  # type: ignore[arg-type]
    if keyword == "workdir":
        path = _exactly_one(node, "WORKDIR")
        flags.parse()
        return WorkdirInstruction(path=path, **base)  # type: ignore[arg-type]
    if keyword == "stopsignal":
        signal = _exactly_one(node, "STOPSIGNAL")
        return StopSignalInstruction(signal=signal, **base)  # type: ignore[arg-type]
    if keyword == "healthcheck":
        return _healthcheck(node, flags, base)
    if keyword == "onbuild":
        if not args:
            raise _SyntaxError("ONBUILD requires at least one argument")
        flags.parse()
        trigger = go_trim_space(args[0]).upper()
        if trigger == "ONBUILD":
            raise _SyntaxError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise _SyntaxError(f"{trigger} isn't allowed as an ONBUILD trigger")
        expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
        if node.heredocs:
            expression += "".join("\n" + doc.content + doc.name for doc in node.heredocs)
        return OnbuildInstruction(expression=expression, trigger=trigger, **base)  # type: ignore[arg-type]
    if keyword in ("copy", "add"):
        upper = keyword.upper()
        if len(args) < 2:
            raise _SyntaxError(f"{upper} requires at least two arguments, but only one was "
                               "provided. Destination could not be determined")
        flags.add_string("chown")
        flags.add_string("chmod")
        flags.add_bool("link")
        flags.add_strings("exclude")
        if keyword == "copy":
            flags.add_string("from")
            flags.add_bool("parents")
        else:
            flags.add_bool("keep-git-dir")
            flags.add_string("checksum")
            flags.add_bool("unpack")
        flags.parse()
        common = _sources_and_destination(node, upper)
        common.update(chown=flags.string("chown"), chmod=flags.string("chmod"),
                      link=flags.boolean("link"), excludes=flags.strings("exclude"))
        if keyword == "copy":
            return CopyInstruction(copy_from=flags.string("from"), parents=flags.boolean("parents"),
                                   **common, **base)  # type: ignore[arg-type]
        return AddInstruction(checksum=flags.string("checksum"),
                              keep_git_dir=flags.optional_boolean("keep-git-dir"),
                              unpack=flags.optional_boolean("unpack"),
                              **common, **base)  # type: ignore[arg-type]
    raise _SyntaxError(f"unknown instruction: {node.command.upper()}")


def _healthcheck(node: Node, flags: Flags, base: dict[str, object]) -> HealthcheckInstruction:
    health = parse_healthcheck(node.args, node.json_form, flags)
    return HealthcheckInstruction(
        test=health.test, interval=health.interval, timeout=health.timeout,
        start_period=health.start_period, start_interval=health.start_interval,
        retries=health.retries, **base)  # type: ignore[arg-type]


def _instructions(nodes: list[Node], name: str) -> Iterator[Instruction]:
    for node in nodes:
        try:
            yield _instruction(node)
        except _SyntaxError as exc:
            raise errdefs.InvalidArgument(f"{name}:{node.start_line}: {exc}") from None


def parse(source: bytes | str, name: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; ``name`` is used in error messages (``Dockerfile:3: ...``)."""
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    if text == "":
        raise errdefs.InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
    result = _parse_nodes(text, name)
    instructions = tuple(_instructions(result.nodes, name))
    meta_args: list[ArgInstruction] = []
    stages: list[Stage] = []
    current: FromInstruction | None = None
    body: list[Instruction] = []
    names: set[str] = set()
    for instruction in instructions:
        if isinstance(instruction, FromInstruction):
            if current is not None:
                stages.append(Stage(len(stages), current, tuple(body)))
            if instruction.stage_name:
                if instruction.stage_name in names:
                    raise errdefs.InvalidArgument(
                        f"{name}:{instruction.start_line}: {instruction.stage_name} stage name already used")
                names.add(instruction.stage_name)
            current, body = instruction, []
        elif current is None:
            if isinstance(instruction, ArgInstruction):
                meta_args.append(instruction)
            else:
                raise errdefs.InvalidArgument(
                    f"{name}:{instruction.start_line}: no build stage in current context")
        else:
            body.append(instruction)
    if current is not None:
        stages.append(Stage(len(stages), current, tuple(body)))
    return Dockerfile(name=name, instructions=instructions, meta_args=tuple(meta_args),
                      stages=tuple(stages), escape=result.escape, syntax=result.syntax,
                      warnings=tuple(result.warnings))


def parse_trigger(expression: str) -> Instruction:
    """Parse one ONBUILD trigger from an image config (Docker parses it as a Dockerfile of one
    instruction, with the default escape character)."""
    result = _parse_nodes(expression, "ONBUILD")
    if len(result.nodes) != 1:
        raise errdefs.InvalidArgument("onbuild trigger should be a single expression")
    instruction = next(_instructions(result.nodes, "ONBUILD"))
    if isinstance(instruction, (FromInstruction, OnbuildInstruction, MaintainerInstruction)):
        raise errdefs.InvalidArgument(f"{instruction.keyword.upper()} isn't allowed as an ONBUILD trigger")
    return instruction
