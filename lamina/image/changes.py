"""``--change`` instructions for ``docker import`` / ``docker commit`` (Docker's BuildFromConfig).

The changes are joined with newlines and read as a Dockerfile: line continuations (``\\`` at the
end of a line), comment lines and blank lines behave as in a Dockerfile.  Only these
instructions are allowed (Docker's ``validCommitCommands``): CMD, ENTRYPOINT, ENV, EXPOSE,
HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR; anything else is
``"<INSTRUCTION> is not a valid change command"``.  Each instruction is applied in order to a
container config given as a dict with Docker's field names (``Cmd``, ``Env``, ...), with the
same rules as Docker's classic builder:

- CMD / ENTRYPOINT: a JSON array of strings is the exec form; anything else is the shell form,
  ``Shell`` (default ``["/bin/sh", "-c"]``) + the raw text.  ENTRYPOINT clears Cmd unless a CMD
  came earlier in the same change list.  Neither expands variables.
- ENV ``k=v ...`` (quotes and escapes processed) and the legacy ``ENV k v w`` (value = rest of
  line); a new value replaces an existing ``k=`` entry in place.  LABEL likewise.
- ENV, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL, EXPOSE expand ``$VAR``/``${VAR...}`` from the
  Env as it was before the instruction (so ``ENV a=1 b=$a`` does not see the new ``a``).
- EXPOSE ``80``, ``80/udp``, ``8000-8002``, ``host:container``; WORKDIR is joined with the
  current one and cleaned; STOPSIGNAL must name a signal; HEALTHCHECK takes
  ``--interval/--timeout/--start-period/--start-interval/--retries``.

Not supported (Docker would accept them): the ``# escape=`` parser directive and heredocs.
Lines, flags, words and ``$VAR`` expansion are read by the :mod:`lamina.dockerfile` package,
whose parser (:mod:`lamina.dockerfile.parser`) is the build's front end.
Errors are :class:`lamina.errdefs.InvalidArgument` with Docker's messages.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lamina import errdefs
from lamina.dockerfile.lexer import (
    DockerfileSyntaxError,
    Flags,
    continuation_regex,
    go_clean,
    go_trim_left,
    is_comment,
    parse_go_duration,
    parse_healthcheck,
    parse_node,
    split_lines,
    trim_continuation,
)
from lamina.dockerfile.substitution import ShellWords
from lamina.image.config import HealthConfig
from lamina.records import dataclass, field

__all__ = ["apply_changes", "VALID_CHANGE_COMMANDS", "ShellLex", "parse_duration"]

VALID_CHANGE_COMMANDS = frozenset({
    "cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild", "stopsignal",
    "user", "volume", "workdir",
})

_ESCAPE = "\\"
_CONTINUATION = continuation_regex(_ESCAPE)
_ONBUILD_PREFIX_RE = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)

_LINUX_SIGNALS = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8, "HUP": 1,
    "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29, "PROF": 27,
    "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31, "TERM": 15,
    "TRAP": 5, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12,
    "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25,
    **{"RTMIN": 34, **{f"RTMIN+{n}": 34 + n for n in range(1, 16)}},
    **{"RTMAX": 64, **{f"RTMAX-{n}": 64 - n for n in range(1, 15)}},
}


class _ChangeError(Exception):
    """Internal: a Docker error message, turned into InvalidArgument at the boundary."""


#: The name this module exported for its word lexer; it is the Dockerfile front end's one.
ShellLex = ShellWords
#: Go's ``time.ParseDuration`` in nanoseconds (ValueError with Go's message), as exported before.
parse_duration = parse_go_duration


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# the Dockerfile line parser (buildkit's parser, for the instructions allowed here)


@dataclass
class _Instruction:
    command: str            # as typed
    flags: list[str]
    args: list[str]
    json_form: bool
    original: str
    flag_values: dict[str, str] = field(default_factory=dict)
    healthcheck: dict[str, Any] | None = None


def _logical_lines(text: str) -> list[str]:
    # Lines end at "\n" only (Go's scanner), not at the other characters str.splitlines knows.
    lines = split_lines(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    result: list[str] = []
    index = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        line = go_trim_left(raw.rstrip("\r\n"))
        line = "" if is_comment(line) else line
        line, complete = trim_continuation(line, _CONTINUATION)
        if complete and line == "":
            continue
        parts = [line]
        while not complete and index < len(lines):
            raw = lines[index]
            index += 1
            if is_comment(raw):
                continue
            line = raw.rstrip("\r\n")
            if go_trim_left(line) == "":
                continue
            line, complete = trim_continuation(line, _CONTINUATION)
            parts.append(line)
        result.append("".join(parts))
    return result


def _parse_line(line: str) -> _Instruction:
    node = parse_node(line, _ESCAPE)  # ONBUILD's args are its instruction's name and args
    return _Instruction(command=node.command, flags=node.flags, args=node.all_args(),
                        json_form=node.json_form, original=line)


# --------------------------------------------------------------------------------------------
# instruction semantics: a check phase over every instruction (Docker's ParseCommand), then
# the dispatch phase that changes the config in order


def _parse_flags(instruction: _Instruction, known: Sequence[str] = ()) -> dict[str, str]:
    """The instruction's ``--flags`` (all string-valued), by name; only those given."""
    flags = Flags(instruction.flags)
    for name in known:
        flags.add_string(name)
    flags.parse()
    return {name: flags.string(name) for name in flags.used}


def _check_signal(raw: str) -> None:
    if re.fullmatch(r"[+-]?[0-9]+", raw):
        if int(raw) == 0:
            raise _ChangeError(f"invalid signal: {raw}")
        return
    name = raw.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in _LINUX_SIGNALS:
        raise _ChangeError(f"invalid signal: {raw}")


def _parse_port_number(text: str) -> int:
    if text == "" or not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _parse_port_range(text: str) -> tuple[int, int]:
    start_text, dash, end_text = text.partition("-")
    start = _parse_port_number(start_text)
    if not dash or start_text == end_text:
        return start, start
    end = _parse_port_number(end_text)
    if end < start:
        raise ValueError(text)
    return start, end


def _exposed_ports(spec: str) -> list[str]:
    """Docker's parsePortSpec for EXPOSE: ``[ip:][host:]container[/proto]`` -> ``["80/tcp"]``."""
    parts = spec.split(":")
    if len(parts) == 1:
        host_ip, host_port, container_port = "", "", parts[0]
    elif len(parts) == 2:
        host_ip, host_port, container_port = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host_port, container_port = parts
    else:
        host_ip, host_port, container_port = ":".join(parts[:-2]), parts[-2], parts[-1]
    container_port, _, protocol = container_port.partition("/")
    if container_port == "":
        raise _ChangeError(f"no port specified: {spec}<empty>")
    protocol = (protocol or "tcp").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise _ChangeError(f"invalid proto: {protocol}")
    if host_ip:
        address = host_ip[1:-1] if host_ip.startswith("[") and host_ip.endswith("]") else host_ip
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise _ChangeError(f"invalid IP address: {host_ip}") from None
    try:
        start, end = _parse_port_range(container_port)
    except ValueError:
        raise _ChangeError(f"invalid containerPort: {container_port}") from None
    if host_port:
        try:
            host_start, host_end = _parse_port_range(host_port)
        except ValueError:
            raise _ChangeError(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise _ChangeError(
                f"invalid ranges specified for container and host Ports: {container_port} and {host_port}")
    return [f"{port}/{protocol}" for port in range(start, end + 1)]


def _env_map(env: Sequence[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for entry in env or ():
        name, _, value = entry.partition("=")
        result[name] = value
    return result


def _shell(config: Mapping[str, Any], os: str) -> list[str]:
    shell = config.get("Shell")
    if shell:
        return list(shell)
    return ["cmd", "/S", "/C"] if os == "windows" else ["/bin/sh", "-c"]


def _command_line(instruction: _Instruction, config: Mapping[str, Any], os: str, *,
                  empty_as_none: bool) -> list[str] | None:
    if instruction.json_form:
        command: list[str] | None = list(instruction.args)
    else:
        command = [" ".join(instruction.args)] if instruction.args else []
    if empty_as_none and not command:
        command = None
    if command is not None and not instruction.json_form:
        command = _shell(config, os) + command
    return command


def _key_values(instruction: _Instruction) -> list[tuple[str, str]]:
    args = instruction.args
    return [(args[index], args[index + 1]) for index in range(0, len(args), 3)]


def _check(instruction: _Instruction) -> None:
    """Argument and flag checks of one instruction, before anything is applied."""
    command = instruction.command.lower()
    name = command.upper()
    args = instruction.args
    if command in ("env", "label"):
        _parse_flags(instruction)
        if not args:
            raise _ChangeError(f"{name} requires at least one argument")
        if len(args) % 3:
            raise _ChangeError(f"Bad input to {name}, too many arguments")
        for index in range(0, len(args), 3):
            if args[index] == "":
                raise _ChangeError(f"{name} names can not be blank")
    elif command in ("cmd", "entrypoint"):
        _parse_flags(instruction)
    elif command in ("expose", "volume"):
        if not args:
            raise _ChangeError(f"{name} requires at least one argument")
        _parse_flags(instruction)
        if command == "volume":
            instruction.args = [arg.strip() for arg in args]
            if any(arg == "" for arg in instruction.args):
                raise _ChangeError("VOLUME specified can not be an empty string")
        else:
            instruction.args = sorted(args)
    elif command in ("user", "workdir"):
        if len(args) != 1:
            raise _ChangeError(f"{name} requires exactly one argument")
        _parse_flags(instruction)
    elif command == "stopsignal":
        if len(args) != 1:
            raise _ChangeError("STOPSIGNAL requires exactly one argument")
    elif command == "onbuild":
        if not args:
            raise _ChangeError("ONBUILD requires at least one argument")
        _parse_flags(instruction)
        trigger = args[0].strip().upper()
        if trigger == "ONBUILD":
            raise _ChangeError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise _ChangeError(f"{trigger} isn't allowed as an ONBUILD trigger")
    elif command == "healthcheck":
        instruction.healthcheck = _healthcheck(instruction)


def _healthcheck(instruction: _Instruction) -> dict[str, Any]:
    """Docker's HealthConfig fields (zero values left out) of a HEALTHCHECK instruction."""
    health = parse_healthcheck(instruction.args, instruction.json_form, Flags(instruction.flags))
    return HealthConfig(test=health.test, interval=health.interval, timeout=health.timeout,
                        start_period=health.start_period, start_interval=health.start_interval,
                        retries=health.retries).to_dict()


def _apply(instruction: _Instruction, config: dict[str, Any], state: dict[str, bool], os: str) -> None:
    command = instruction.command.lower()
    lex = ShellLex()
    # Variables expand against the Env as it was before this instruction.
    env = _env_map(config.get("Env"))

    def expand(word: str) -> str:
        return lex.process_word(word, env)

    if command == "env":
        pairs = [(expand(key), expand(value)) for key, value in _key_values(instruction)]
        entries = list(config.get("Env") or [])
        for key, value in pairs:
            new_entry = f"{key}={value}"
            for index, entry in enumerate(entries):
                if entry.partition("=")[0] == key:
                    entries[index] = new_entry
                    break
            else:
                entries.append(new_entry)
        config["Env"] = entries
    elif command == "label":
        pairs = [(expand(key), expand(value)) for key, value in _key_values(instruction)]
        labels = dict(config.get("Labels") or {})
        labels.update(pairs)
        config["Labels"] = labels
    elif command == "cmd":
        config["Cmd"] = _command_line(instruction, config, os, empty_as_none=False)
        config.pop("ArgsEscaped", None)
        if instruction.args:
            state["cmd_set"] = True
    elif command == "entrypoint":
        config["Entrypoint"] = _command_line(instruction, config, os, empty_as_none=True)
        config.pop("ArgsEscaped", None)
        if not state.get("cmd_set"):
            config["Cmd"] = None
    elif command == "expose":
        exposed = dict(config.get("ExposedPorts") or {})
        for word in instruction.args:
            for spec in lex.process_words(word, env):
                for port in _exposed_ports(spec):
                    exposed[port] = {}
        config["ExposedPorts"] = exposed
    elif command == "user":
        config["User"] = expand(instruction.args[0])
    elif command == "workdir":
        requested = expand(instruction.args[0])
        if requested == "":
            raise _ChangeError("cannot normalize nothing")
        if requested.startswith("/"):
            config["WorkingDir"] = go_clean(requested)
        else:
            config["WorkingDir"] = go_clean("/" + (config.get("WorkingDir") or "") + "/" + requested)
    elif command == "volume":
        volumes = dict(config.get("Volumes") or {})
        for raw in instruction.args:
            volume = expand(raw)
            if volume == "":
                raise _ChangeError("VOLUME specified can not be an empty string")
            volumes[volume] = {}
        config["Volumes"] = volumes
    elif command == "stopsignal":
        signal = expand(instruction.args[0])
        _check_signal(signal)
        config["StopSignal"] = signal
    elif command == "onbuild":
        expression = _ONBUILD_PREFIX_RE.sub("", instruction.original, count=1)
        config["OnBuild"] = [*(config.get("OnBuild") or []), expression]
    elif command == "healthcheck":
        config["Healthcheck"] = instruction.healthcheck


def apply_changes(config: Mapping[str, Any], changes: Sequence[str], *, os: str = "linux") -> dict[str, Any]:
    """Apply ``--change`` instructions to a container config (Docker field names) and return
    the new config; the input is not modified.  All or nothing: on an error nothing applies."""
    result = copy.deepcopy(dict(config))
    if isinstance(changes, str):
        raise errdefs.InvalidArgument("changes must be a list of instructions, not a string")
    if not changes:
        return result
    try:
        lines = _logical_lines("\n".join(changes))
        if not lines:
            raise _ChangeError("file with no instructions")
        instructions = [_parse_line(line) for line in lines]
        for instruction in instructions:
            if instruction.command.lower() not in VALID_CHANGE_COMMANDS:
                raise _ChangeError(f"{instruction.command} is not a valid change command")
            _check(instruction)
        state: dict[str, bool] = {}
        for instruction in instructions:
            _apply(instruction, result, state, os)
    except (_ChangeError, DockerfileSyntaxError) as exc:
        raise errdefs.InvalidArgument(str(exc)) from None
    return result
