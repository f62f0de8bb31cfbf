"""``--change`` instructions: Docker's BuildFromConfig semantics, case by case."""

from __future__ import annotations

import copy

import pytest

from lamina import errdefs
from lamina.image.changes import ShellLex, parse_duration
from lamina.image.config import apply_changes

SECOND = 1_000_000_000

# (sentence, starting config, changes, expected fields of the result)
CASES = [
    ("shell-form CMD runs through /bin/sh -c", {}, ["CMD echo hi"],
     {"Cmd": ["/bin/sh", "-c", "echo hi"]}),
    ("exec-form CMD is kept as given", {}, ['CMD ["echo", "hi there"]'],
     {"Cmd": ["echo", "hi there"]}),
    ("shell-form CMD uses the image's Shell", {"Shell": ["/bin/bash", "-o", "pipefail", "-c"]}, ["CMD ls | wc"],
     {"Cmd": ["/bin/bash", "-o", "pipefail", "-c", "ls | wc"]}),
    ("shell-form CMD keeps quotes and does not expand variables", {"Env": ["HOME=/root"]}, ['CMD echo "$HOME"  x'],
     {"Cmd": ["/bin/sh", "-c", 'echo "$HOME"  x']}),
    ("an empty exec-form CMD is an empty list", {"Cmd": ["x"]}, ["CMD []"], {"Cmd": []}),
    ("broken JSON in CMD falls back to the shell form", {}, ['CMD ["a"'], {"Cmd": ["/bin/sh", "-c", '["a"']}),
    ("a JSON object in CMD is the shell form", {}, ['CMD {"a": 1}'], {"Cmd": ["/bin/sh", "-c", '{"a": 1}']}),
    ("CMD without arguments is the bare shell, as in Docker", {}, ["CMD"], {"Cmd": ["/bin/sh", "-c"]}),
    ("ENTRYPOINT clears an inherited Cmd", {"Cmd": ["sh"]}, ['ENTRYPOINT ["/app"]'],
     {"Entrypoint": ["/app"], "Cmd": None}),
    ("ENTRYPOINT keeps a Cmd set earlier in the same changes", {}, ["CMD help", "ENTRYPOINT /app"],
     {"Entrypoint": ["/bin/sh", "-c", "/app"], "Cmd": ["/bin/sh", "-c", "help"]}),
    ("ENTRYPOINT without arguments removes the entrypoint", {"Entrypoint": ["/x"]}, ["ENTRYPOINT"],
     {"Entrypoint": None}),
    ("CMD and ENTRYPOINT reset ArgsEscaped", {"ArgsEscaped": True}, ["CMD x"], {"ArgsEscaped": None}),
    ("ENV takes several quoted and escaped pairs", {}, ['ENV A=1 B="two words" C=three\\ words D=\'$A\''],
     {"Env": ["A=1", "B=two words", "C=three words", "D=$A"]}),
    ("legacy ENV takes the rest of the line as the value", {}, ["ENV GREETING hello   big world"],
     {"Env": ["GREETING=hello   big world"]}),
    ("legacy ENV removes quotes from the value", {}, ['ENV GREETING "hello world"'],
     {"Env": ["GREETING=hello world"]}),
    ("ENV replaces an existing variable in place", {"Env": ["A=1", "B=2"]}, ["ENV A=3"],
     {"Env": ["A=3", "B=2"]}),
    ("ENV expands with the environment before the instruction", {"Env": ["A=0"]}, ["ENV A=1 B=$A"],
     {"Env": ["A=1", "B=0"]}),
    ("a later ENV sees an earlier one", {}, ["ENV A=1", "ENV B=${A}x C=${UNSET:-dflt} D=${A:+alt} E=${UNSET+alt}"],
     {"Env": ["A=1", "B=1x", "C=dflt", "D=alt", "E="]}),
    ("double quotes expand, single quotes do not", {"Env": ["A=v"]}, ["ENV X=\"$A\" Y='$A' Z=\\$A"],
     {"Env": ["A=v", "X=v", "Y=$A", "Z=$A"]}),
    ("prefix, suffix and replacement expansions", {"Env": ["P=/usr/local/bin/tool.tar.gz"]},
     ["ENV A=${P#*/} B=${P##*/} C=${P%.*} D=${P%%.*} E=${P/o/0} F=${P//o/0}"],
     {"Env": ["P=/usr/local/bin/tool.tar.gz", "A=usr/local/bin/tool.tar.gz", "B=tool.tar.gz",
              "C=/usr/local/bin/tool.tar", "D=/usr/local/bin/tool", "E=/usr/l0cal/bin/tool.tar.gz",
              "F=/usr/l0cal/bin/t00l.tar.gz"]}),
    ("LABEL sets several labels and expands", {"Env": ["V=1.0"]}, ['LABEL version=$V "my key"="my value"'],
     {"Labels": {"version": "1.0", "my key": "my value"}}),
    ("legacy LABEL takes the rest of the line", {"Labels": {"a": "b"}}, ["LABEL description some text"],
     {"Labels": {"a": "b", "description": "some text"}}),
    ("EXPOSE adds ports, protocols and ranges", {"ExposedPorts": {"22/tcp": {}}}, ["EXPOSE 80 53/UDP 8000-8002/tcp"],
     {"ExposedPorts": {"22/tcp": {}, "80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}}),
    ("EXPOSE splits an expanded variable into ports", {"Env": ["PORTS=80 81"]}, ["EXPOSE $PORTS"],
     {"ExposedPorts": {"80/tcp": {}, "81/tcp": {}}}),
    ("EXPOSE host:container exposes the container port", {}, ["EXPOSE 127.0.0.1:8080:80"],
     {"ExposedPorts": {"80/tcp": {}}}),
    ("USER takes the whole line, expanded", {"Env": ["U=app"]}, ["USER $U:staff"], {"User": "app:staff"}),
    ("WORKDIR joins a relative path to the current one", {"WorkingDir": "/srv"}, ["WORKDIR app", "WORKDIR ./x/../y"],
     {"WorkingDir": "/srv/app/y"}),
    ("WORKDIR cleans an absolute path", {}, ["WORKDIR //a/./b/../c/"], {"WorkingDir": "/a/c"}),
    ("WORKDIR expands variables", {"Env": ["D=/data"]}, ["WORKDIR $D/work"], {"WorkingDir": "/data/work"}),
    ("VOLUME takes plain words", {}, ["VOLUME /a /b"], {"Volumes": {"/a": {}, "/b": {}}}),
    ("VOLUME takes a JSON array and expands it", {"Env": ["D=/d"]}, ['VOLUME ["$D", "/e f"]'],
     {"Volumes": {"/d": {}, "/e f": {}}}),
    ("STOPSIGNAL keeps the name as written", {}, ["STOPSIGNAL sigquit"], {"StopSignal": "sigquit"}),
    ("STOPSIGNAL takes a number", {}, ["STOPSIGNAL 9"], {"StopSignal": "9"}),
    ("STOPSIGNAL takes a real-time signal", {}, ["STOPSIGNAL SIGRTMIN+3"], {"StopSignal": "SIGRTMIN+3"}),
    ("ONBUILD stores the trigger text unexpanded", {"OnBuild": ["ADD . /app"]}, ["onbuild   RUN echo $HOME"],
     {"OnBuild": ["ADD . /app", "RUN echo $HOME"]}),
    ("HEALTHCHECK CMD shell form with options", {},
     ["HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --retries=3 CMD curl -f http://x/"],
     {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 30 * SECOND, "Timeout": 90 * SECOND,
                      "StartPeriod": SECOND // 2, "Retries": 3}}),
    ("HEALTHCHECK CMD exec form", {}, ['HEALTHCHECK --start-interval=2s CMD ["/bin/check", "-q"]'],
     {"Healthcheck": {"Test": ["CMD", "/bin/check", "-q"], "StartInterval": 2 * SECOND}}),
    ("HEALTHCHECK NONE disables the check", {"Healthcheck": {"Test": ["CMD", "x"]}}, ["HEALTHCHECK NONE"],
     {"Healthcheck": {"Test": ["NONE"]}}),
    ("instructions are case-insensitive", {}, ["cmd x", "Env A=1"], {"Cmd": ["/bin/sh", "-c", "x"], "Env": ["A=1"]}),
    ("a trailing backslash continues the instruction on the next change", {}, ["ENV A=1 \\", "# a comment", "   B=2"],
     {"Env": ["A=1", "B=2"]}),
    ("comment and blank lines are ignored", {}, ["# only a comment", "", "USER x"], {"User": "x"}),
    ("a -- ends the flags of an instruction", {}, ["CMD -- --help"], {"Cmd": ["/bin/sh", "-c", "--help"]}),
]


@pytest.mark.parametrize("base, changes, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_change_is_applied_like_docker(base: dict, changes: list[str], expected: dict) -> None:
    original = copy.deepcopy(base)
    result = apply_changes(base, changes)
    assert base == original, "the input config must not be modified"
    for key, value in expected.items():
        assert result.get(key) == value, key


# (sentence, changes, error message)
ERRORS = [
    ("RUN is not allowed", ["RUN make"], "RUN is not a valid change command"),
    ("FROM is not allowed", ["FROM scratch"], "FROM is not a valid change command"),
    ("an unknown word is not allowed, as typed", ["bogus x"], "bogus is not a valid change command"),
    ("an invalid command anywhere refuses all", ["ENV A=1", "COPY . /"], "COPY is not a valid change command"),
    ("a non-string in an exec form", ['CMD ["a", 1]'], "arrays must be comprised of strings only"),
    ("an unknown flag", ["CMD --foo bar"], "unknown flag: --foo"),
    ("a leading --word in CMD, read as a flag as Docker does", ["CMD --help"], "unknown flag: --help"),
    ("a flag on ENV", ["ENV --x=1 A=1"], "unknown flag: --x"),
    ("ENV without arguments", ["ENV"], "ENV requires at least one argument"),
    ("legacy ENV with one word", ["ENV A"], "ENV must have two arguments"),
    ("ENV mixing forms", ["ENV A=1 B"], "Syntax error - can't find = in \"B\". Must be of the form: name=value"),
    ("ENV with a blank name", ["ENV =x"], "ENV names can not be blank"),
    ("LABEL without arguments", ["LABEL"], "LABEL requires at least one argument"),
    ("an unterminated quote", ['ENV A="x'], "unexpected end of statement while looking for matching double-quote"),
    ("a required variable that is unset", ['ENV A="${MISSING:?must be set}"'], "MISSING: must be set"),
    ("a bad substitution", ["ENV A=${}"], "bad substitution"),
    ("EXPOSE without ports", ["EXPOSE"], "EXPOSE requires at least one argument"),
    ("EXPOSE with an unknown protocol", ["EXPOSE 80/xyz"], "invalid proto: xyz"),
    ("EXPOSE with a port that is not a number", ["EXPOSE http"], "invalid containerPort: http"),
    ("EXPOSE with a port over 65535", ["EXPOSE 70000"], "invalid containerPort: 70000"),
    ("EXPOSE with mismatched ranges", ["EXPOSE 8000-8001:80-82"], "invalid ranges specified"),
    ("USER without a name", ["USER"], "USER requires exactly one argument"),
    ("WORKDIR without a path", ["WORKDIR"], "WORKDIR requires exactly one argument"),
    ("WORKDIR expanding to nothing", ["WORKDIR $NOTHING"], "cannot normalize nothing"),
    ("VOLUME without a path", ["VOLUME"], "VOLUME requires at least one argument"),
    ("VOLUME with an empty path", ['VOLUME ["/a", " "]'], "VOLUME specified can not be an empty string"),
    ("STOPSIGNAL with an unknown name", ["STOPSIGNAL SIGFOO"], "invalid signal: SIGFOO"),
    ("STOPSIGNAL zero", ["STOPSIGNAL 0"], "invalid signal: 0"),
    ("ONBUILD without a trigger", ["ONBUILD"], "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD", ["ONBUILD ONBUILD RUN x"], "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM", ["ONBUILD FROM busybox"], "FROM isn't allowed as an ONBUILD trigger"),
    ("HEALTHCHECK of an unknown type", ["HEALTHCHECK PING x"], 'Unknown type "PING" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK CMD without a command", ["HEALTHCHECK CMD"], "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK NONE with arguments", ["HEALTHCHECK NONE x"], "HEALTHCHECK NONE takes no arguments"),
    ("a health interval under a millisecond", ["HEALTHCHECK --interval=10us CMD x"],
     'Interval "interval" cannot be less than 1ms'),
    ("a health interval without a unit", ["HEALTHCHECK --timeout=5 CMD x"], 'time: missing unit in duration "5"'),
    ("negative retries", ["HEALTHCHECK --retries=-1 CMD x"], "--retries cannot be negative (-1)"),
    ("a health flag without a value", ["HEALTHCHECK --interval CMD x"], "missing a value on flag: --interval"),
    ("a health flag given twice", ["HEALTHCHECK --retries=1 --retries=2 CMD x"], "duplicate flag specified: --retries"),
    ("only blank changes", ["", "   "], "file with no instructions"),
]


@pytest.mark.parametrize("changes, message", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_bad_change_is_refused_with_dockers_message(changes: list[str], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as caught:
        apply_changes({"Env": ["A=0"]}, changes)
    assert message in str(caught.value)


def test_no_changes_returns_an_equal_copy() -> None:
    base = {"Env": ["A=1"], "Labels": {"a": "b"}}
    result = apply_changes(base, [])
    assert result == base and result is not base and result["Labels"] is not base["Labels"]


def test_a_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        apply_changes({}, "CMD x")  # type: ignore[arg-type]


def test_words_are_split_after_expansion_only_outside_quotes() -> None:
    lex = ShellLex()
    env = {"A": "one two"}
    assert lex.process_words('$A "$A" \'x y\' z\\ w', env) == ["one", "two", "one two", "x y", "z w"]
    assert lex.process_word('$A "$A"', env) == "one two one two"


@pytest.mark.parametrize("text, nanoseconds", [
    ("0", 0), ("1ns", 1), ("1.5us", 1500), ("1µs", 1000), ("2ms", 2_000_000), ("1m30s", 90 * SECOND),
    ("1.5h", 5400 * SECOND), ("-2s", -2 * SECOND), (".5s", SECOND // 2),
], ids=lambda value: str(value))
def test_durations_parse_like_go(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1..2s", "."])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_duration(text)
