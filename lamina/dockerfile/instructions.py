"""The Dockerfile's instructions as typed frozen records, and the parsed file.

Each instruction class keeps what buildkit's ``instructions`` package keeps for it, with the
arguments as written (nothing expanded); :meth:`Instruction.expand` returns the instruction
with Docker's variable substitution applied (:class:`lamina.dockerfile.substitution.Substitution`),
for the instructions of :data:`lamina.dockerfile.substitution.EXPANDED_INSTRUCTIONS` only.
Every instruction has ``original`` (its text as Docker keeps it), ``start_line`` and
``end_line`` (1-based, heredoc bodies included) and ``flags`` (its ``--flags`` as written).

A :class:`Dockerfile` is every instruction in order, the global (meta) ARGs before the first
FROM, and the :class:`Stage` s, each a FROM and the instructions up to the next FROM.
:mod:`lamina.dockerfile.parser` makes them.

**Heredocs** (RUN, COPY and ADD, also behind ONBUILD, shell form only): ``<<NAME``,
``<<-NAME`` (leading tabs of the body and of the terminator line are stripped), ``<<"NAME"`` or
``<<'NAME'`` (the body is not expanded), an optional file descriptor before (``3<<EOF``),
several per instruction.  The bodies follow the instruction line, each ended by a line equal
to its name (:func:`read_bodies`).  A word opens a heredoc when the lexer of
:mod:`lamina.dockerfile.substitution`, with unset variables kept as written, reads it as one
word; whether its name was quoted is what the raw-quote lexer adds.  RUN's
:meth:`RunInstruction.heredoc_command` and COPY/ADD's inline sources read these words again.
"""

from __future__ import annotations

import re
from typing import ClassVar

from lamina import errdefs
from lamina.dockerfile.lexer import DockerfileSyntaxError, HealthcheckArguments, Heredoc
from lamina.dockerfile.substitution import ShellWords, Substitution
from lamina.records import dataclass, replace

__all__ = [
    "Instruction", "HeredocSource", "KeyValue", "ArgDefinition",
    "FromInstruction", "RunInstruction", "CmdInstruction", "EntrypointInstruction",
    "ShellInstruction", "EnvInstruction", "ArgInstruction", "LabelInstruction",
    "ExposeInstruction", "VolumeInstruction", "UserInstruction", "WorkdirInstruction",
    "StopSignalInstruction", "HealthcheckInstruction", "OnbuildInstruction",
    "MaintainerInstruction", "CopyInstruction", "AddInstruction",
    "INSTRUCTION_NAMES", "DEFAULT_ESCAPE", "Stage", "Dockerfile",
    "parse_heredoc_word", "maybe_heredoc_word", "heredocs_in_line", "read_bodies",
]

DEFAULT_ESCAPE = "\\"


# --------------------------------------------------------------------------------------------
# Heredoc words (buildkit's parser.ParseHeredoc and MustParseHeredoc)

_HEREDOC = re.compile(r"^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")


def parse_heredoc_word(word: str) -> Heredoc | None:
    """The heredoc ``word`` opens (body still empty), or None when it opens none."""
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
        raise DockerfileSyntaxError(str(exc)) from None
    if len(raw_words) != len(words):
        raise DockerfileSyntaxError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    word = words[0]
    quotes = word.count("'") + word.count('"')
    raw_quotes = raw_words[0].count("'") + raw_words[0].count('"')
    return Heredoc(name=word, content="", expand=quotes == raw_quotes, chomp=chomp,
                   file_descriptor=file_descriptor)


def maybe_heredoc_word(word: str) -> Heredoc | None:
    """Like :func:`parse_heredoc_word` but a word that does not lex is simply not a heredoc."""
    try:
        return parse_heredoc_word(word)
    except DockerfileSyntaxError:
        return None


def heredocs_in_line(line: str) -> list[Heredoc]:
    """The heredocs an instruction line opens, in order (a line that does not lex opens none)."""
    lexer = ShellWords("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lexer.process_words(line, {})
    except errdefs.InvalidArgument:
        return []
    docs = []
    for word in words:
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            docs.append(heredoc)
    return docs


def read_bodies(line: str, lines: list[str], start: int) -> tuple[list[Heredoc], int]:
    """The heredocs ``line`` opens with their bodies, read from ``lines[start:]``, and how many
    lines the bodies and their terminators took."""
    index = start
    docs = []
    for heredoc in heredocs_in_line(line):
        body: list[str] = []
        terminated = False
        while index < len(lines):
            raw = lines[index]
            index += 1
            candidate = raw.rstrip("\r\n")
            if heredoc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == heredoc.name:
                terminated = True
                break
            body.append(raw)
        if not terminated:
            raise DockerfileSyntaxError("unterminated heredoc")
        docs.append(replace(heredoc, content="".join(body)))
    return docs, index - start


# --------------------------------------------------------------------------------------------
# Values


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
        only the instructions of :data:`lamina.dockerfile.substitution.EXPANDED_INSTRUCTIONS` change)."""
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
        if maybe_heredoc_word(self.command[0]) is not None:
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
class _KeyValueInstruction(Instruction):
    """ENV and LABEL: ``key=value`` pairs, both sides expanded."""

    pairs: tuple[KeyValue, ...]

    def expand(self, substitution: Substitution) -> _KeyValueInstruction:
        return replace(self, pairs=tuple(
            KeyValue(substitution.word(pair.key), substitution.word(pair.value), pair.legacy)
            for pair in self.pairs))


@dataclass(frozen=True, kw_only=True)
class EnvInstruction(_KeyValueInstruction):
    keyword: ClassVar[str] = "env"


@dataclass(frozen=True, kw_only=True)
class LabelInstruction(_KeyValueInstruction):
    keyword: ClassVar[str] = "label"


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
class _WordInstruction(Instruction):
    """USER, WORKDIR and STOPSIGNAL: one word, expanded; ``expanded`` names its field."""

    expanded: ClassVar[str] = ""

    def expand(self, substitution: Substitution) -> _WordInstruction:
        return replace(self, **{self.expanded: substitution.word(getattr(self, self.expanded))})


@dataclass(frozen=True, kw_only=True)
class UserInstruction(_WordInstruction):
    keyword: ClassVar[str] = "user"
    expanded: ClassVar[str] = "user"
    user: str


@dataclass(frozen=True, kw_only=True)
class WorkdirInstruction(_WordInstruction):
    keyword: ClassVar[str] = "workdir"
    expanded: ClassVar[str] = "path"
    path: str


@dataclass(frozen=True, kw_only=True)
class StopSignalInstruction(_WordInstruction):
    keyword: ClassVar[str] = "stopsignal"
    expanded: ClassVar[str] = "signal"
    signal: str


@dataclass(frozen=True, kw_only=True)
class HealthcheckInstruction(Instruction, HealthcheckArguments):
    """The fields of :class:`~lamina.dockerfile.lexer.HealthcheckArguments`: ``test`` is
    Docker's Healthcheck.Test: ``("NONE",)``, ``("CMD", argv...)`` or ``("CMD-SHELL", "command")``;
    durations are nanoseconds (0: the default)."""

    keyword: ClassVar[str] = "healthcheck"


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
