"""The Dockerfile parser: Docker's line rules (from buildkit's parser test files, rewritten as a
table), every instruction's arguments, errors with file:line, heredocs, directives, stages,
expansion per instruction, and hypothesis (parse raises nothing but InvalidArgument)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.dockerfile import instructions as P
from lamina.dockerfile.lexer import Heredoc
from lamina.dockerfile.parser import parse, parse_trigger
from lamina.dockerfile.substitution import EXPANDED_INSTRUCTIONS, Substitution


def only(text: str) -> P.Instruction:
    """The single instruction after ``FROM scratch``."""
    dockerfile = parse("FROM scratch\n" + text)
    assert len(dockerfile.instructions) == 2, dockerfile.instructions
    return dockerfile.instructions[1]


def args_of(instruction: P.Instruction) -> tuple[object, ...]:
    """A compact view of an instruction's parsed arguments, for the table."""
    if isinstance(instruction, (P.RunInstruction, P.CmdInstruction)):
        return ("exec" if not instruction.prepend_shell else "shell", *instruction.command)
    if isinstance(instruction, P.EntrypointInstruction):
        return ("exec" if not instruction.prepend_shell else "shell", *(instruction.command or ()))
    if isinstance(instruction, (P.EnvInstruction, P.LabelInstruction)):
        return tuple((pair.key, pair.value) for pair in instruction.pairs)
    if isinstance(instruction, P.ArgInstruction):
        return tuple((arg.name, arg.default) for arg in instruction.args)
    if isinstance(instruction, (P.CopyInstruction, P.AddInstruction)):
        return (*instruction.sources, "->", instruction.destination)
    if isinstance(instruction, P.VolumeInstruction):
        return instruction.volumes
    if isinstance(instruction, P.ExposeInstruction):
        return instruction.ports
    if isinstance(instruction, P.ShellInstruction):
        return instruction.shell
    if isinstance(instruction, P.HealthcheckInstruction):
        return instruction.test
    if isinstance(instruction, P.OnbuildInstruction):
        return (instruction.trigger, instruction.expression)
    value = {P.UserInstruction: "user", P.WorkdirInstruction: "path",
             P.StopSignalInstruction: "signal", P.MaintainerInstruction: "maintainer"}[type(instruction)]
    return (getattr(instruction, value),)


# (id, instruction text after FROM, expected class, expected args_of)
LINES = [
    ("exec form with spaces inside the array", 'CMD [ "a", "b" ]', P.CmdInstruction, ("exec", "a", "b")),
    ("exec form with tabs", 'CMD\t[\t"a",\t"b"\t]\t', P.CmdInstruction, ("exec", "a", "b")),
    ("an empty array is an empty exec form", "CMD []", P.CmdInstruction, ("exec",)),
    ("an array of an empty string", 'CMD [""]', P.CmdInstruction, ("exec", "")),
    ("JSON escapes are decoded", 'CMD ["\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 \\u2603"]', P.CmdInstruction,
     ("exec", "\" \\ / \b \f \n \r \t \x00 \u2603")),
    ("single-quoted JSON falls back to the shell form", "CMD ['echo','single quotes are invalid JSON']",
     P.CmdInstruction, ("shell", "['echo','single quotes are invalid JSON']")),
    ("an unterminated array falls back to the shell form", 'CMD ["echo", "close the brackets"',
     P.CmdInstruction, ("shell", '["echo", "close the brackets"')),
    ("an unterminated string falls back to the shell form", 'CMD ["echo", "no quote!]', P.CmdInstruction,
     ("shell", '["echo", "no quote!]')),
    ("JSON inside a string is shell form", "CMD '[\"echo\", \"hi\"]'", P.CmdInstruction,
     ("shell", "'[\"echo\", \"hi\"]'")),
    ("trailing text after the array is shell form", 'RUN ["a"] b', P.RunInstruction, ("shell", '["a"] b')),
    ("NaN is not JSON for Go", 'RUN ["a", NaN]', P.RunInstruction, ("shell", '["a", NaN]')),
    ("the shell form is kept verbatim", "RUN echo '1234' && echo \"456\"", P.RunInstruction,
     ("shell", "echo '1234' && echo \"456\"")),
    ("entrypoint exec form", 'ENTRYPOINT [ "/usr/bin/redis-server" ]', P.EntrypointInstruction,
     ("exec", "/usr/bin/redis-server")),
    ("legacy ENV takes the rest of the line", "ENV SCUBA 1 DUBA 3", P.EnvInstruction, (("SCUBA", "1 DUBA 3"),)),
    ("legacy ENV keeps quotes for expansion", 'ENV SCUBA "1 DUBA 3"', P.EnvInstruction,
     (("SCUBA", '"1 DUBA 3"'),)),
    ("ENV with several pairs", "ENV name=value name2=value2", P.EnvInstruction,
     (("name", "value"), ("name2", "value2"))),
    ("ENV keeps escaped spaces", "ENV name=value\\ value2", P.EnvInstruction, (("name", "value\\ value2"),)),
    ("ENV with single quotes inside double quotes", "ENV name=\"value'quote space'value2\"",
     P.EnvInstruction, (("name", "\"value'quote space'value2\""),)),
    ("ENV with an escaped quote in single quotes", "ENV name='a\\'b''", P.EnvInstruction,
     (("name", "'a\\'b''"),)),
    ("ENV with an empty value", "ENV name=", P.EnvInstruction, (("name", ""),)),
    ("LABEL legacy form keeps quotes", 'LABEL maintainer James Turnbull "james@example.com"',
     P.LabelInstruction, (("maintainer", 'James Turnbull "james@example.com"'),)),
    ("LABEL with quoted key", 'LABEL "com.example key"="a b"', P.LabelInstruction,
     (('"com.example key"', '"a b"'),)),
    ("ARG names and defaults", 'ARG abc="123 456" def', P.ArgInstruction, (("abc", '"123 456"'), ("def", None))),
    ("ARG with an empty default", "ARG a= b", P.ArgInstruction, (("a", ""), ("b", None))),
    ("COPY words", "COPY a b /dest/", P.CopyInstruction, ("a", "b", "->", "/dest/")),
    ("COPY JSON form allows spaces", 'COPY ["a file", "/dest dir/"]', P.CopyInstruction,
     ("a file", "->", "/dest dir/")),
    ("ADD keeps escapes as written", 'ADD \\conf\\\\" /.znc', P.AddInstruction, ('\\conf\\\\"', "->", "/.znc")),
    ("VOLUME JSON form", 'VOLUME ["/test", "/test2"]', P.VolumeInstruction, ("/test", "/test2")),
    ("VOLUME words", "VOLUME /a /b", P.VolumeInstruction, ("/a", "/b")),
    ("EXPOSE ports are sorted like Docker", "EXPOSE 9000 5000 6000/udp", P.ExposeInstruction,
     ("5000", "6000/udp", "9000")),
    ("USER keeps the whole rest", "USER docker:root", P.UserInstruction, ("docker:root",)),
    ("WORKDIR keeps spaces", "WORKDIR /my dir", P.WorkdirInstruction, ("/my dir",)),
    ("STOPSIGNAL", "STOPSIGNAL SIGKILL", P.StopSignalInstruction, ("SIGKILL",)),
    ("MAINTAINER keeps the text", "MAINTAINER Erik <erik@example.org>", P.MaintainerInstruction,
     ("Erik <erik@example.org>",)),
    ("SHELL exec form", 'SHELL ["/bin/bash", "-c"]', P.ShellInstruction, ("/bin/bash", "-c")),
    ("HEALTHCHECK NONE", "HEALTHCHECK NONE", P.HealthcheckInstruction, ("NONE",)),
    ("HEALTHCHECK shell command", "HEALTHCHECK   CMD   a b", P.HealthcheckInstruction, ("CMD-SHELL", "a b")),
    ("HEALTHCHECK exec command", 'HEALTHCHECK --timeout=3s CMD ["foo"]', P.HealthcheckInstruction,
     ("CMD", "foo")),
    ("HEALTHCHECK type is case-insensitive", "HEALTHCHECK cmd true", P.HealthcheckInstruction,
     ("CMD-SHELL", "true")),
    ("ONBUILD keeps its trigger as text", 'ONBUILD RUN ["echo", "test"]', P.OnbuildInstruction,
     ("RUN", 'RUN ["echo", "test"]')),
    ("lower-case instruction names work", "run echo hi", P.RunInstruction, ("shell", "echo hi")),
    ("mixed-case instruction names work", "CoPy a b", P.CopyInstruction, ("a", "->", "b")),
    ("a double dash ends the flags", "COPY -- --weird /x", P.CopyInstruction, ("--weird", "->", "/x")),
]


@pytest.mark.parametrize("text,kind,expected", [case[1:] for case in LINES], ids=[case[0] for case in LINES])
def test_instruction_table(text: str, kind: type, expected: tuple[object, ...]) -> None:
    instruction = only(text)
    assert type(instruction) is kind
    assert args_of(instruction) == expected


# (id, Dockerfile, expected instructions as (class, args_of) after the first)
CONTINUATIONS = [
    ("continuation lines are joined without separator", "RUN echo hello\\\n  world\\\n  good\\\nnight\n",
     ("shell", "echo hello  world  goodnight")),
    ("whitespace after the escape still continues", "RUN echo hello  \\  \nworld\n", ("shell", "echo hello  world")),
    ("comment lines inside a continuation are skipped",
     "RUN echo hello \\\n# a comment\n\n# another\n\nthis is more\n", ("shell", "echo hello this is more")),
    ("empty continuation lines are skipped", "RUN foo \\\n\nbar \\\n\nbaz\n", ("shell", "foo bar baz")),
    ("a lone escape line continues", "RUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n",
     ("shell", "echo hi   world  goodnight")),
    ("a continuation at the end of file ends the instruction", "RUN something \\", ("shell", "something")),
    ("an escaped escape does not continue", "ENV C trailing\\\\backslash\\\\\nENV D x\n", None),
    ("CRLF line endings", "RUN a \\\r\n b\r\n", ("shell", "a  b")),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in CONTINUATIONS],
                         ids=[case[0] for case in CONTINUATIONS])
def test_continuation_table(text: str, expected: tuple[str, ...] | None) -> None:
    dockerfile = parse("FROM scratch\n" + text)
    if expected is None:
        env = dockerfile.instructions[1]
        assert isinstance(env, P.EnvInstruction)
        assert env.pairs == (P.KeyValue("C", "trailing\\\\backslash\\\\", legacy=True),)
        assert len(dockerfile.instructions) == 3
    else:
        assert args_of(dockerfile.instructions[1]) == expected


def test_empty_continuation_line_is_a_warning() -> None:
    dockerfile = parse("FROM scratch\nRUN a \\\n\n b\n")
    assert dockerfile.warnings == ("Empty continuation line found in: RUN a  b",)


def test_lines_and_original_text() -> None:
    dockerfile = parse("# comment\n\nFROM busybox AS base\nRUN a \\\n  b\n\nCOPY <<EOF /x\nhi\nEOF\nCMD c\n")
    spans = [(type(i).__name__, i.start_line, i.end_line, i.original) for i in dockerfile.instructions]
    assert spans == [("FromInstruction", 3, 3, "FROM busybox AS base"),
                     ("RunInstruction", 4, 5, "RUN a   b"),
                     ("CopyInstruction", 7, 9, "COPY <<EOF /x"),
                     ("CmdInstruction", 10, 10, "CMD c")]


# -- directives ----------------------------------------------------------------------------

def test_escape_directive_backtick() -> None:
    dockerfile = parse("# escape=`\nFROM image\nRUN dir c:\\ `\n  && echo\nENV P `\n\\go\n")
    assert dockerfile.escape == "`"
    assert args_of(dockerfile.instructions[1]) == ("shell", "dir c:\\   && echo")
    assert args_of(dockerfile.instructions[2]) == (("P", "\\go"),)


def test_escape_directive_with_spaces_and_case() -> None:
    assert parse("#  ESCAPE = `\nFROM a\n").escape == "`"


def test_directive_after_a_comment_is_a_comment() -> None:
    dockerfile = parse("# a comment\n# escape=`\nFROM image\nENV GOPATH \\\n\\go\n")
    assert dockerfile.escape == "\\"
    assert args_of(dockerfile.instructions[1]) == (("GOPATH", "\\go"),)


def test_directive_after_a_blank_line_is_a_comment() -> None:
    assert parse("\n# escape=`\nFROM a\n").escape == "\\"


def test_syntax_directive_is_reported_as_ignored() -> None:
    dockerfile = parse("# syntax = docker/dockerfile:1\n# escape = `\n\nFROM `\n    image\n")
    assert dockerfile.syntax == "docker/dockerfile:1"
    assert dockerfile.escape == "`"
    assert dockerfile.instructions[0].base_name == "image"  # type: ignore[attr-defined]
    assert any("syntax directive is ignored" in warning for warning in dockerfile.warnings)


def test_check_directive_is_ignored_quietly() -> None:
    dockerfile = parse("# check=skip=all\nFROM a\n")
    assert dockerfile.warnings == ()


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeff# escape=`\nFROM a\n".encode()).escape == "`"


def test_non_utf8_bytes_do_not_break_parsing() -> None:
    dockerfile = parse(b"FROM a\nLABEL x=\xff\n")
    assert dockerfile.instructions[1].pairs[0].value == "\ufffd"  # type: ignore[attr-defined]


# -- errors --------------------------------------------------------------------------------

ERRORS = [
    ("unknown instruction names Docker's upper-case word", "FROM a\nfoo bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("FROM with two words", "FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM with no words", "FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM with a bad stage name", "FROM a AS 1x\n",
     'Dockerfile:1: invalid name for build stage: "1x", name can\'t start with a number or contain symbols'),
    ("a stage name used twice", "FROM a AS x\nFROM b AS X\n", "Dockerfile:2: x stage name already used"),
    ("an instruction before FROM", "RUN x\nFROM a\n", "Dockerfile:1: no build stage in current context"),
    ("ENV with a blank name", "FROM a\nENV =x\n", "Dockerfile:2: ENV names can not be blank"),
    ("ENV without a value", "FROM a\nENV x\n", "Dockerfile:2: ENV must have two arguments"),
    ("ENV mixing forms", "FROM a\nENV a=b c\n",
     'Dockerfile:2: Syntax error - can\'t find = in "c". Must be of the form: name=value'),
    ("ENV with nothing", "FROM a\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
    ("LABEL with nothing", "FROM a\nLABEL\n", "Dockerfile:2: LABEL requires at least one argument"),
    ("ARG with a blank name", "FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
    ("ARG with nothing", "ARG\nFROM a\n", "Dockerfile:1: ARG requires at least one argument"),
    ("COPY with one argument", "FROM a\n\nCOPY x\n",
     ("Dockerfile:3: COPY requires at least two arguments, but only one was provided. "
     "Destination could not be determined")),
    ("ADD with a heredoc destination", "FROM a\nADD x <<EOF\nEOF\n",
     "Dockerfile:2: ADD cannot accept a heredoc as a destination"),
    ("an unknown flag", "FROM a\nCOPY --user=me a b\n", "Dockerfile:2: unknown flag: --user"),
    ("a flag given twice", "FROM a\nCOPY --from=a --from=b x y\n", "Dockerfile:2: duplicate flag specified: --from"),
    ("a string flag without value", "FROM a\nCOPY --chown x y\n", "Dockerfile:2: missing a value on flag: --chown"),
    ("a bool flag with an empty value", "FROM a\nCOPY --link= x y\n", "Dockerfile:2: missing a value on flag: --link"),
    ("a bool flag with a bad value", "FROM a\nCOPY --link=maybe x y\n",
     "Dockerfile:2: expecting boolean value for flag --link, not: maybe"),
    ("flags on ENV", "FROM a\nENV --x=1 a=b\n", "Dockerfile:2: unknown flag: --x"),
    ("a JSON array of numbers", 'FROM a\nCMD [1, 2]\n',
     "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("nested JSON arrays", 'FROM a\nCMD [["a"]]\n',
     "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("SHELL in shell form", "FROM a\nSHELL /bin/sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("SHELL with an empty array", "FROM a\nSHELL []\n", "Dockerfile:2: SHELL requires at least one argument"),
    ("WORKDIR with nothing", "FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
    ("USER with nothing", "FROM a\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
    ("EXPOSE with nothing", "FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
    ("VOLUME with nothing", "FROM a\nVOLUME []\n", "Dockerfile:2: VOLUME requires at least one argument"),
    ("VOLUME with a blank entry", 'FROM a\nVOLUME [" "]\n', "Dockerfile:2: VOLUME specified can not be an empty string"),
    ("HEALTHCHECK with nothing", "FROM a\nHEALTHCHECK\n", "Dockerfile:2: HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE with arguments", "FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK of an unknown type", "FROM a\nHEALTHCHECK CONNECT TCP 7000\n",
     'Dockerfile:2: Unknown type "CONNECT" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK CMD without command", "FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK with a tiny interval", "FROM a\nHEALTHCHECK --interval=1us CMD x\n",
     'Dockerfile:2: Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK with a bad duration", "FROM a\nHEALTHCHECK --timeout=abc CMD x\n",
     'Dockerfile:2: time: invalid duration "abc"'),
    ("HEALTHCHECK with a duration without unit", "FROM a\nHEALTHCHECK --timeout=5 CMD x\n",
     'Dockerfile:2: time: missing unit in duration "5"'),
    ("HEALTHCHECK with negative retries", "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
     "Dockerfile:2: --retries cannot be negative (-1)"),
    ("HEALTHCHECK with non-numeric retries", "FROM a\nHEALTHCHECK --retries=x CMD x\n",
     'Dockerfile:2: strconv.ParseInt: parsing "x": invalid syntax'),
    ("ONBUILD ONBUILD", "FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM", "FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER", "FROM a\nonbuild maintainer me\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD with nothing", "FROM a\nONBUILD\n", "Dockerfile:2: ONBUILD requires at least one argument"),
    ("RUN with an invalid network", "FROM a\nRUN --network=bridge x\n", 'Dockerfile:2: invalid network mode "bridge"'),
    ("RUN --mount is refused clearly", "FROM a\nRUN --mount=type=cache,target=/x make\n",
     "Dockerfile:2: RUN --mount=type=cache is not supported by lamina's builder yet"),
    ("RUN --mount of an unknown type", "FROM a\nRUN --mount=type=nfs x\n", 'Dockerfile:2: unsupported mount type "nfs"'),
    ("an unterminated heredoc", "FROM a\nRUN <<EOF\nhello\n", "Dockerfile:2: unterminated heredoc"),
    ("a repeated directive", "# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
    ("a bad escape directive", "# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ("only comments", "# just\n# comments\n", "Dockerfile:2: file with no instructions"),
    ("an empty file", "", "the Dockerfile (Dockerfile) cannot be empty"),
]


@pytest.mark.parametrize("text,message", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_error_table(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as info:
        parse(text)
    assert str(info.value) == message


def test_error_names_the_file() -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"^build/Dockerfile\.dev:1: unknown instruction: NOPE$"):
        parse("NOPE\n", name="build/Dockerfile.dev")


# -- flags and instruction details -----------------------------------------------------------

def test_copy_flags() -> None:
    copy = only("COPY --from=builder --chown=1:2 --chmod=0755 --link --exclude=*.md --exclude=x "
                "--parents src/ /app/")
    assert isinstance(copy, P.CopyInstruction)
    assert (copy.copy_from, copy.chown, copy.chmod, copy.link, copy.parents) == ("builder", "1:2", "0755", True, True)
    assert copy.excludes == ("*.md", "x")
    assert copy.flags == ("--from=builder", "--chown=1:2", "--chmod=0755", "--link", "--exclude=*.md",
                          "--exclude=x", "--parents")


def test_add_flags() -> None:
    add = only("ADD --checksum=sha256:abc --keep-git-dir=false --unpack=true --link=false a b")
    assert isinstance(add, P.AddInstruction)
    assert (add.checksum, add.keep_git_dir, add.unpack, add.link) == ("sha256:abc", False, True, False)
    assert only("ADD a b").unpack is None  # type: ignore[attr-defined]


def test_quoted_flag_values() -> None:
    copy = only('COPY --chown="user name" a b')
    assert copy.chown == "user name"  # type: ignore[attr-defined]


def test_from_platform_and_stage() -> None:
    dockerfile = parse("FROM --platform=$BUILDPLATFORM golang:1.21 As Build\n")
    stage = dockerfile.stages[0]
    assert (stage.from_instruction.base_name, stage.name, stage.from_instruction.platform) == (
        "golang:1.21", "build", "$BUILDPLATFORM")


def test_run_network_and_security() -> None:
    run = only("RUN --network=none --security=insecure make")
    assert isinstance(run, P.RunInstruction)
    assert (run.network, run.security, run.command) == ("none", "insecure", ("make",))
    assert only("RUN make").network == "default"  # type: ignore[attr-defined]


def test_healthcheck_options() -> None:
    check = only("HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=0s --start-interval=250ms "
                 "--retries=3 CMD curl -f http://localhost/")
    assert isinstance(check, P.HealthcheckInstruction)
    assert check.test == ("CMD-SHELL", "curl -f http://localhost/")
    assert (check.interval, check.timeout, check.start_period, check.start_interval, check.retries) == (
        90_000_000_000, 1_500_000_000, 0, 250_000_000, 3)


def test_healthcheck_none_ignores_flags_like_docker() -> None:
    assert only("HEALTHCHECK --bogus NONE").test == ("NONE",)  # type: ignore[attr-defined]


def test_arg_and_stopsignal_ignore_flags_like_docker() -> None:
    assert args_of(only("ARG --x a")) == (("a", None),)
    assert only("STOPSIGNAL --x SIGTERM").signal == "SIGTERM"  # type: ignore[attr-defined]


def test_entrypoint_empty_array_clears() -> None:
    entrypoint = only("ENTRYPOINT []")
    assert isinstance(entrypoint, P.EntrypointInstruction)
    assert entrypoint.command is None and not entrypoint.prepend_shell


def test_shell_form_is_joined_as_written() -> None:
    run = only("RUN    sh -c 'echo root:testpass \\\n        > /tmp/passwd'")
    assert run.command == ("sh -c 'echo root:testpass         > /tmp/passwd'",)  # type: ignore[attr-defined]


# -- heredocs ------------------------------------------------------------------------------

HEREDOCS = [
    ("a plain heredoc", "RUN <<EOF\nline\nEOF\n", [("EOF", "line\n", True, False, 0)]),
    ("an empty heredoc", "RUN <<EMPTY\nEMPTY\n", [("EMPTY", "", True, False, 0)]),
    ("a heredoc on a file descriptor", "RUN 3<<EOF\nx\nEOF\n", [("EOF", "x\n", True, False, 3)]),
    ("tabs are kept without the dash", "RUN <<IN\n\tfoo\nIN\n", [("IN", "\tfoo\n", True, False, 0)]),
    ("the dash allows an indented terminator", "RUN <<-UN\n\tbaz\n\tUN\n", [("UN", "\tbaz\n", True, True, 0)]),
    ("a quoted name disables expansion", "RUN <<-'NO'\n\tdon't $X\nNO\n", [("NO", "\tdon't $X\n", False, True, 0)]),
    ("a partly quoted name disables expansion", "RUN <<eo'f'\necho\neof\n", [("eof", "echo\n", False, False, 0)]),
    ("an escaped quote is part of the name", "RUN <<eo\\'f\necho\neo'f\n", [("eo'f", "echo\n", True, False, 0)]),
    ("a name with a space", "RUN <<'one two'\nbar\none two\n", [("one two", "bar\n", False, False, 0)]),
    ("a dollar name is literal", "RUN <<$EOF\n$EOF\n", [("$EOF", "", True, False, 0)]),
    ("spaces after the marker", "RUN <<  EOF  > foo\nEOF\n", [("EOF", "", True, False, 0)]),
    ("comments in the body are content", "RUN <<C\n# internal\necho x # trailing\nC\n",
     [("C", "# internal\necho x # trailing\n", True, False, 0)]),
    ("two heredocs in order", "COPY <<X <<Y /dest\nY\nX\nX\nY\n", [("X", "Y\n", True, False, 0), ("Y", "X\n", True, False, 0)]),
    ("a heredoc after a command", "RUN <<PY python3\nprint(1)\nPY\n", [("PY", "print(1)\n", True, False, 0)]),
    ("a quoted marker is not a heredoc", 'RUN "<<NO"\n', []),
    ("the exec form has no heredocs", 'RUN ["<<EOF"]\n', []),
    ("USER cannot have heredocs", "USER <<X\n", []),
]


@pytest.mark.parametrize("text,expected", [case[1:] for case in HEREDOCS], ids=[case[0] for case in HEREDOCS])
def test_heredoc_table(text: str, expected: list[tuple[object, ...]]) -> None:
    instruction = parse("FROM a\n" + text).instructions[1]
    heredocs = getattr(instruction, "heredocs", ())
    if isinstance(instruction, P.CopyInstruction):
        assert [(doc.path, doc.data, doc.expand) for doc in heredocs] == [item[:3] for item in expected]
    else:
        assert [(doc.name, doc.content, doc.expand, doc.chomp, doc.file_descriptor) for doc in heredocs] == expected


def test_copy_heredoc_sources_are_inline_files() -> None:
    copy = only("COPY <<-one.txt <<'two.txt' plain /dest/\n\t$A\none.txt\n$B\ntwo.txt\n")
    assert isinstance(copy, P.CopyInstruction)
    assert copy.sources == ("plain",)
    assert copy.heredocs == (P.HeredocSource("one.txt", "$A\n", True), P.HeredocSource("two.txt", "$B\n", False))
    expanded = copy.expand(Substitution({"A": "a", "B": "b"}))
    assert expanded.heredocs == (P.HeredocSource("one.txt", "a\n", True), P.HeredocSource("two.txt", "$B\n", False))


def test_heredoc_chomp_strips_leading_tabs() -> None:
    assert Heredoc(name="X", content="\thello\n\t\tworld\n", chomp=True).data == "hello\nworld\n"


def test_run_heredoc_command_forms() -> None:
    plain = only("RUN <<EOF\necho a\necho b\nEOF\n")
    assert plain.heredoc_command() == (("echo a\necho b\n",), None)  # type: ignore[attr-defined]
    script = only("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n")
    command, file = script.heredoc_command()  # type: ignore[attr-defined]
    assert command == ("EOF",) and file is not None and file.data.startswith("#!")
    piped = only("RUN <<EOF python3\nprint(1)\nEOF\n")
    assert piped.heredoc_command() == (("<<EOF python3\nprint(1)\nEOF",), None)  # type: ignore[attr-defined]


def test_onbuild_heredoc_is_kept_in_the_expression() -> None:
    onbuild = only("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(onbuild, P.OnbuildInstruction)
    assert onbuild.expression == "RUN <<EOF\necho hi\nEOF"
    trigger = parse_trigger(onbuild.expression)
    assert isinstance(trigger, P.RunInstruction)
    assert trigger.heredocs[0].content == "echo hi\n"


def test_parse_trigger() -> None:
    trigger = parse_trigger("COPY . /app")
    assert isinstance(trigger, P.CopyInstruction) and trigger.sources == (".",)
    with pytest.raises(errdefs.InvalidArgument, match="unknown instruction: NOPE"):
        parse_trigger("NOPE x")
    with pytest.raises(errdefs.InvalidArgument, match="isn't allowed as an ONBUILD trigger"):
        parse_trigger("FROM x")


# -- stages --------------------------------------------------------------------------------

def test_stages_and_meta_args() -> None:
    dockerfile = parse("ARG BASE=alpine\nARG V\nFROM $BASE AS build\nRUN make\nFROM scratch\n"
                       "COPY --from=build /out /\n")
    assert [arg.args for arg in dockerfile.meta_args] == [(P.ArgDefinition("BASE", "alpine"),),
                                                          (P.ArgDefinition("V"),)]
    assert [(stage.index, stage.name, len(stage.instructions)) for stage in dockerfile.stages] == [
        (0, "build", 1), (1, "", 1)]
    assert dockerfile.stage("BUILD") is dockerfile.stages[0]
    assert dockerfile.stages_for_target("build") == dockerfile.stages[:1]
    assert dockerfile.stages_for_target("") == dockerfile.stages
    with pytest.raises(errdefs.InvalidArgument, match='target stage "nope" could not be found'):
        dockerfile.stages_for_target("nope")


def test_a_file_of_global_args_has_no_stage() -> None:
    assert parse("ARG A\n").stages == ()


# -- expansion per instruction -----------------------------------------------------------------

EXPAND = [
    ("ENV keys and values", "ENV $K=\"$V x\" B=${V}", lambda i: [(p.key, p.value) for p in i.pairs],
     [("k", "v x"), ("B", "v")]),
    ("legacy ENV value", "ENV A $V and 'more'", lambda i: [(p.key, p.value) for p in i.pairs], [("A", "v and more")]),
    ("LABEL", 'LABEL "$K"=$V', lambda i: [(p.key, p.value) for p in i.pairs], [("k", "v")]),
    ("ARG default", "ARG A=$V B", lambda i: [(a.name, a.default) for a in i.args], [("A", "v"), ("B", None)]),
    ("COPY sources, destination and flags", "COPY --chown=$V --from=$K $K/* /$V/",
     lambda i: (i.sources, i.destination, i.chown, i.copy_from), (("k/*",), "/v/", "v", "$K")),
    ("ADD checksum", "ADD --checksum=$V a b", lambda i: i.checksum, "v"),
    ("EXPOSE splits words", "EXPOSE $PORTS", lambda i: i.ports, ("80", "443/udp")),
    ("EXPOSE quoted stays one", 'EXPOSE "$PORTS"', lambda i: i.ports, ("80 443/udp",)),
    ("VOLUME", "VOLUME /$V", lambda i: i.volumes, ("/v",)),
    ("USER", "USER $V:$K", lambda i: i.user, "v:k"),
    ("WORKDIR", "WORKDIR /$V/${K:-x}", lambda i: i.path, "/v/k"),
    ("STOPSIGNAL", "STOPSIGNAL $SIG", lambda i: i.signal, "SIGTERM"),
    ("RUN is never expanded", "RUN echo $V", lambda i: i.command, ("echo $V",)),
    ("CMD is never expanded", 'CMD ["$V"]', lambda i: i.command, ("$V",)),
    ("ENTRYPOINT is never expanded", "ENTRYPOINT $V", lambda i: i.command, ("$V",)),
    ("HEALTHCHECK is never expanded", "HEALTHCHECK CMD $V", lambda i: i.test, ("CMD-SHELL", "$V")),
    ("ONBUILD is never expanded", "ONBUILD RUN $V", lambda i: i.expression, "RUN $V"),
    ("SHELL is never expanded", 'SHELL ["$V"]', lambda i: i.shell, ("$V",)),
    ("MAINTAINER is never expanded", "MAINTAINER $V", lambda i: i.maintainer, "$V"),
]
ENV = {"K": "k", "V": "v", "PORTS": "80 443/udp", "SIG": "SIGTERM"}


@pytest.mark.parametrize("text,view,expected", [case[1:] for case in EXPAND], ids=[case[0] for case in EXPAND])
def test_expansion_per_instruction(text: str, view: object, expected: object) -> None:
    instruction = only(text).expand(Substitution(ENV))
    assert view(instruction) == expected  # type: ignore[operator]


def test_from_expansion_and_blank_base() -> None:
    from_instruction = parse("FROM ${BASE}:${TAG:-latest} AS x\n").instructions[0]
    expanded = from_instruction.expand(Substitution({"BASE": "alpine"}))
    assert expanded.base_name == "alpine:latest"  # type: ignore[attr-defined]
    with pytest.raises(errdefs.InvalidArgument, match=r"base name \(\$NOPE\) should not be blank"):
        parse("FROM $NOPE\n").instructions[0].expand(Substitution({}))


def test_expanded_instruction_classes_match_the_documented_set() -> None:
    overriding = {cls.keyword for cls in (
        P.FromInstruction, P.RunInstruction, P.CmdInstruction, P.EntrypointInstruction,
        P.ShellInstruction, P.EnvInstruction, P.ArgInstruction, P.LabelInstruction,
        P.ExposeInstruction, P.VolumeInstruction, P.UserInstruction, P.WorkdirInstruction,
        P.StopSignalInstruction, P.HealthcheckInstruction, P.OnbuildInstruction,
        P.MaintainerInstruction, P.CopyInstruction, P.AddInstruction)
        if cls.expand is not P.Instruction.expand}
    assert overriding == EXPANDED_INSTRUCTIONS
    classes, pending = set(), [P.Instruction]
    while pending:  # the instruction classes, also those below a shared base (_CommandLine, ...)
        for subclass in pending.pop().__subclasses__():
            classes.add(subclass)
            pending.append(subclass)
    assert {cls.keyword for cls in classes if cls.keyword} == P.INSTRUCTION_NAMES


MINIMAL = {"add": "a b", "arg": "A", "cmd": "x", "copy": "a b", "entrypoint": "x", "env": "A=1",
           "expose": "80", "from": "scratch", "healthcheck": "NONE", "label": "a=b", "maintainer": "me",
           "onbuild": "RUN x", "run": "x", "shell": '["sh"]', "stopsignal": "TERM", "user": "u",
           "volume": "/v", "workdir": "/w"}


@pytest.mark.parametrize("keyword", sorted(P.INSTRUCTION_NAMES))
def test_every_keyword_reaches_its_own_parse_function_in_any_case(keyword: str) -> None:
    for written in (keyword, keyword.upper(), keyword.capitalize()):
        dockerfile = parse(f"FROM scratch\n{written} {MINIMAL[keyword]}\n")
        assert dockerfile.instructions[-1].keyword == keyword


def test_instructions_are_frozen() -> None:
    instruction = only("USER a")
    with pytest.raises(AttributeError):
        instruction.user = "b"  # type: ignore[misc]


# -- properties ----------------------------------------------------------------------------

LINE_PIECES = st.sampled_from([
    "FROM", "from", "RUN", "CMD", "ENTRYPOINT", "SHELL", "ENV", "ARG", "LABEL", "EXPOSE", "VOLUME", "USER",
    "WORKDIR", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "MAINTAINER", "COPY", "ADD", "NONE", "AS", "x",
    "a=b", "=", '"', "'", "\\", "`", "[", "]", '["a"]', "[1]", ",", "<<EOF", "<<-'E'", "EOF", "E", "\t",
    "--from=x", "--chown", "--link", "--", "--mount=type=bind", "--interval=5s", "--retries=x", "$A",
    "${A:-b}", "${", "#", "# escape=`", "# syntax=x", "\n", "\n", "\n", " ", " ", "CMD", "é", "\r", "\x00",
])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE_PIECES, max_size=40).map(" ".join))
def test_parse_raises_only_invalid_argument(text: str) -> None:
    try:
        dockerfile = parse(text)
    except errdefs.InvalidArgument as exc:
        assert str(exc)
        return
    for instruction in dockerfile.instructions:
        assert 1 <= instruction.start_line <= instruction.end_line
        try:
            instruction.expand(Substitution({"A": "1"}, dockerfile.escape))
        except errdefs.InvalidArgument:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_of_arbitrary_bytes_raises_only_invalid_argument(data: bytes) -> None:
    try:
        parse(data)
    except errdefs.InvalidArgument:
        pass


WORD = st.from_regex(r"[A-Za-z0-9_./:-]{1,8}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=5), st.sampled_from(["RUN", "CMD", "ENTRYPOINT"]))
def test_exec_form_round_trips_through_json(words: list[str], keyword: str) -> None:
    import json
    instruction = only(f"{keyword} {json.dumps(words)}")
    assert instruction.command == tuple(words)  # type: ignore[attr-defined]
    assert instruction.prepend_shell is False  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
                          st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=10)),
                min_size=1, max_size=4))
def test_env_values_round_trip_through_quoting_and_expansion(pairs: list[tuple[str, str]]) -> None:
    quoted = " ".join(f"{key}='{value}'" for key, value in pairs if "'" not in value)
    if not quoted:
        return
    env = only(f"ENV {quoted}").expand(Substitution({}))
    assert [(p.key, p.value) for p in env.pairs] == [(k, v) for k, v in pairs if "'" not in v]  # type: ignore[attr-defined]
