"""The Dockerfile parser: Docker's syntax, exactly, into typed frozen instructions.

The grammar is the one Docker's builders share (buildkit's ``frontend/dockerfile/parser`` and
``instructions`` packages); this module follows it rule for rule:

**Lines.**  The text is split on ``\\n`` (a trailing ``\\r`` is dropped, a UTF-8 byte order mark
at the start is ignored, bytes that are not UTF-8 become U+FFFD).  Leading whitespace of a
logical line is dropped; a line whose first non-blank character is ``#`` is a comment.

**Parser directives** are comments of the form ``# name=value`` at the very top (before any
instruction, comment or blank line; each at most once).  ``escape`` sets the escape character
(``\\`` by default, or a backtick), ``syntax`` is accepted and reported in
:attr:`~lamina.dockerfile.instructions.Dockerfile.warnings` as ignored (lamina has one front
end), ``check`` is ignored.

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
  builder expands the instruction
  (:meth:`~lamina.dockerfile.instructions.Instruction.expand`).
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
Nothing is expanded here: variable substitution is
:meth:`lamina.dockerfile.instructions.Instruction.expand` with the builder's
:class:`lamina.dockerfile.substitution.Substitution`.

Each instruction keyword has one parse function in :data:`_PARSERS` (buildkit's
``ParseInstruction`` switch as a table): it declares the instruction's flags, checks its
arguments in buildkit's order and with its messages, and returns the record of
:mod:`lamina.dockerfile.instructions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from lamina import errdefs
from lamina.dockerfile.instructions import (
    DEFAULT_ESCAPE,
    AddInstruction,
    ArgDefinition,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    Dockerfile,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    HeredocSource,
    Instruction,
    KeyValue,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    Stage,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    maybe_heredoc_word,
    read_bodies,
)
from lamina.dockerfile.lexer import (
    DockerfileSyntaxError,
    Flags,
    Node,
    continuation_regex,
    go_trim_left,
    go_trim_space,
    is_comment,
    json_quote,
    parse_healthcheck,
    parse_node,
    split_lines,
    strip_leading_tabs,
    trim_continuation,
)
from lamina.records import dataclass, fields

__all__ = ["parse", "parse_trigger", "SUPPORTED_RUN_MOUNT_TYPES"]

#: RUN ``--mount`` types lamina's builder implements; the parser refuses the others clearly.
SUPPORTED_RUN_MOUNT_TYPES: frozenset[str] = frozenset()
_RUN_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_RUN_NETWORK_MODES = ("default", "none", "host")
_RUN_SECURITY_MODES = ("sandbox", "insecure")

_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*\Z")
_VALID_DIRECTIVES = ("syntax", "escape", "check")

#: A parse error without its location; :func:`parse` adds ``file:line``.
_SyntaxError = DockerfileSyntaxError


# --------------------------------------------------------------------------------------------
# Line level (buildkit's parser package)


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
                heredocs, consumed = read_bodies(line, lines, index)
                node.heredocs.extend(heredocs)
                index += consumed
                current_line += consumed
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
# Instruction level (buildkit's instructions package): one parse function per keyword


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


def _exactly_one(node: Node, keyword: str) -> str:
    if len(node.args) != 1:
        raise _SyntaxError(f"{keyword} requires exactly one argument")
    return node.args[0]


def _parse_from(node: Node, flags: Flags) -> Instruction:
    args = node.args
    stage_name = ""
    if len(args) == 3 and args[1].lower() == "as":
        stage_name = args[2].lower()
        if not _STAGE_NAME.match(stage_name):
            raise _SyntaxError(f"invalid name for build stage: {json_quote(args[2])}, "
                               "name can't start with a number or contain symbols")
    elif len(args) != 1:
        raise _SyntaxError("FROM requires either one or three arguments")
    flags.add_string("platform")
    flags.parse()
    return FromInstruction(base_name=args[0], stage_name=stage_name,
                           platform=flags.string("platform"), **_base(node))  # type: ignore[arg-type]


def _parse_run(node: Node, flags: Flags) -> Instruction:
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
        raise _SyntaxError(f"invalid network mode {json_quote(network)}")
    security = flags.string("security")
    if security not in _RUN_SECURITY_MODES:
        raise _SyntaxError(f"security {json_quote(security)} is not valid")
    return RunInstruction(command=_command_line(node), prepend_shell=not node.json_form,
                          heredocs=tuple(node.heredocs), network=network, security=security,
                          **_base(node))  # type: ignore[arg-type]


def _parse_cmd(node: Node, flags: Flags) -> Instruction:
    flags.parse()
    return CmdInstruction(command=_command_line(node), prepend_shell=not node.json_form,
                          **_base(node))  # type: ignore[arg-type]


def _parse_entrypoint(node: Node, flags: Flags) -> Instruction:
    flags.parse()
    command = _command_line(node)
    return EntrypointInstruction(command=command or None, prepend_shell=not node.json_form,
                                 **_base(node))  # type: ignore[arg-type]


def _parse_shell(node: Node, flags: Flags) -> Instruction:
    flags.parse()
    shell = _command_line(node)
    if not shell:
        raise _SyntaxError("SHELL requires at least one argument")
    if not node.json_form:
        raise _SyntaxError("SHELL requires the arguments to be in JSON form")
    return ShellInstruction(shell=shell, **_base(node))  # type: ignore[arg-type]


def _parse_env(node: Node, flags: Flags) -> Instruction:
    flags.parse()
    return EnvInstruction(pairs=_key_values(node, "ENV"), **_base(node))  # type: ignore[arg-type]


def _parse_label(node: Node, flags: Flags) -> Instruction:
    flags.parse()
    return LabelInstruction(pairs=_key_values(node, "LABEL"), **_base(node))  # type: ignore[arg-type]


def _parse_maintainer(node: Node, flags: Flags) -> Instruction:
    maintainer = _exactly_one(node, "MAINTAINER")
    flags.parse()
    return MaintainerInstruction(maintainer=maintainer, **_base(node))  # type: ignore[arg-type]


def _parse_arg(node: Node, flags: Flags) -> Instruction:
    # Like Docker, ARG (and STOPSIGNAL) never look at their flags.
    if not node.args:
        raise _SyntaxError("ARG requires at least one argument")
    definitions = []
    for word in node.args:
        if "=" in word:
            name, _, default = word.partition("=")
            if name == "":
                raise _SyntaxError("ARG names can not be blank")
            definitions.append(ArgDefinition(name, default))
        else:
            definitions.append(ArgDefinition(word))
    return ArgInstruction(args=tuple(definitions), **_base(node))  # type: ignore[arg-type]


def _parse_expose(node: Node, flags: Flags) -> Instruction:
    if not node.args:
        raise _SyntaxError("EXPOSE requires at least one argument")
    flags.parse()
    return ExposeInstruction(ports=tuple(sorted(node.args)), **_base(node))  # type: ignore[arg-type]


def _parse_volume(node: Node, flags: Flags) -> Instruction:
    if not node.args:
        raise _SyntaxError("VOLUME requires at least one argument")
    flags.parse()
    volumes = []
    for volume in node.args:
        volume = go_trim_space(volume)
        if volume == "":
            raise _SyntaxError("VOLUME specified can not be an empty string")
        volumes.append(volume)
    return VolumeInstruction(volumes=tuple(volumes), **_base(node))  # type: ignore[arg-type]


def _parse_user(node: Node, flags: Flags) -> Instruction:
    user = _exactly_one(node, "USER")
    flags.parse()
    return UserInstruction(user=user, **_base(node))  # type: ignore[arg-type]


def _parse_workdir(node: Node, flags: Flags) -> Instruction:
    path = _exactly_one(node, "WORKDIR")
    flags.parse()
    return WorkdirInstruction(path=path, **_base(node))  # type: ignore[arg-type]


def _parse_stopsignal(node: Node, flags: Flags) -> Instruction:
    # Like ARG, STOPSIGNAL never looks at its flags.
    signal = _exactly_one(node, "STOPSIGNAL")
    return StopSignalInstruction(signal=signal, **_base(node))  # type: ignore[arg-type]


def _parse_healthcheck(node: Node, flags: Flags) -> Instruction:
    health = parse_healthcheck(node.args, node.json_form, flags)
    arguments = {item.name: getattr(health, item.name) for item in fields(health)}
    return HealthcheckInstruction(**arguments, **_base(node))  # type: ignore[arg-type]


def _parse_onbuild(node: Node, flags: Flags) -> Instruction:
    args = node.all_args()
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
    return OnbuildInstruction(expression=expression, trigger=trigger, **_base(node))  # type: ignore[arg-type]


def _sources_and_destination(node: Node, flags: Flags, keyword: str) -> dict[str, object]:
    """What COPY and ADD share: at least two arguments, ``--chown``, ``--chmod``, ``--link``
    and ``--exclude`` (the caller declared its own flags), heredocs as inline sources."""
    args = node.args
    if len(args) < 2:
        raise _SyntaxError(f"{keyword} requires at least two arguments, but only one was "
                           "provided. Destination could not be determined")
    flags.add_string("chown")
    flags.add_string("chmod")
    flags.add_bool("link")
    flags.add_strings("exclude")
    flags.parse()
    destination = args[-1]
    if maybe_heredoc_word(destination) is not None:
        raise _SyntaxError(f"{keyword} cannot accept a heredoc as a destination")
    by_name = {doc.name: doc for doc in node.heredocs}
    sources: list[str] = []
    inline: list[HeredocSource] = []
    for source in args[:-1]:
        heredoc = maybe_heredoc_word(source)
        if heredoc is None:
            sources.append(source)
            continue
        found = by_name.get(heredoc.name)
        content = found.content if found is not None else ""
        if heredoc.chomp:
            content = strip_leading_tabs(content)
        inline.append(HeredocSource(path=heredoc.name, data=content, expand=heredoc.expand))
    return {"sources": tuple(sources), "destination": destination, "heredocs": tuple(inline),
            "chown": flags.string("chown"), "chmod": flags.string("chmod"),
            "link": flags.boolean("link"), "excludes": flags.strings("exclude"), **_base(node)}


def _parse_copy(node: Node, flags: Flags) -> Instruction:
    flags.add_string("from")
    flags.add_bool("parents")
    common = _sources_and_destination(node, flags, "COPY")
    return CopyInstruction(copy_from=flags.string("from"), parents=flags.boolean("parents"),
                           **common)  # type: ignore[arg-type]


def _parse_add(node: Node, flags: Flags) -> Instruction:
    flags.add_bool("keep-git-dir")
    flags.add_string("checksum")
    flags.add_bool("unpack")
    common = _sources_and_destination(node, flags, "ADD")
    return AddInstruction(checksum=flags.string("checksum"),
                          keep_git_dir=flags.optional_boolean("keep-git-dir"),
                          unpack=flags.optional_boolean("unpack"), **common)  # type: ignore[arg-type]


#: Each instruction keyword (lower case) and the function that reads its node.
_PARSERS: dict[str, Callable[[Node, Flags], Instruction]] = {
    "add": _parse_add,
    "arg": _parse_arg,
    "cmd": _parse_cmd,
    "copy": _parse_copy,
    "entrypoint": _parse_entrypoint,
    "env": _parse_env,
    "expose": _parse_expose,
    "from": _parse_from,
    "healthcheck": _parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_maintainer,
    "onbuild": _parse_onbuild,
    "run": _parse_run,
    "shell": _parse_shell,
    "stopsignal": _parse_stopsignal,
    "user": _parse_user,
    "volume": _parse_volume,
    "workdir": _parse_workdir,
}


def _instruction(node: Node) -> Instruction:
    parse_function = _PARSERS.get(node.command.lower())
    if parse_function is None:
        raise _SyntaxError(f"unknown instruction: {node.command.upper()}")
    return parse_function(node, Flags(node.flags))


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
