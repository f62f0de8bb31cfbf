"""The instructions that change only the configuration (Docker's ``dispatchers.go`` for ENV,
LABEL, MAINTAINER, ONBUILD, USER, VOLUME, STOPSIGNAL, ARG, SHELL, CMD, ENTRYPOINT, EXPOSE and
HEALTHCHECK): each applies its (already expanded) instruction to the stage's run config and
returns the comment of its history entry (``ENV A=1``, ``CMD ["sh"]``...).  The builder
commits an image with no layer for it (:meth:`lamina.build.commits.Commits.commit`), whose
``container_config.Cmd`` is ``[shell..., "#(nop) ", comment]``: the text ``docker history``
shows, and the step's cache key.  :data:`STEPS` maps each instruction class to its function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lamina import errdefs
from lamina.build.history import healthcheck_text, plain_list, quoted_list
from lamina.build.state import StageState
from lamina.dockerfile.instructions import (
    ArgInstruction,
    CmdInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    ShellInstruction,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
)
from lamina.image.config import HealthConfig
from lamina.records import replace

__all__ = ["STEPS", "parse_port_spec"]

_PORT_PROTOCOLS = ("tcp", "udp", "sctp")

#: Where a step writes a note for the user (``Note: overriding previous HEALTHCHECK``).
Say = Callable[[str], None]


def _env(state: StageState, instruction: EnvInstruction, say: Say) -> str:
    env = list(state.run_config.env or ())
    message = "ENV"
    for pair in instruction.pairs:
        entry = f"{pair.key}={pair.value}"
        message += " " + entry
        for index, existing in enumerate(env):
            if existing.split("=", 1)[0] == pair.key:
                env[index] = entry
                break
        else:
            env.append(entry)
    state.run_config = replace(state.run_config, env=tuple(env))
    return message


def _label(state: StageState, instruction: LabelInstruction, say: Say) -> str:
    labels = dict(state.run_config.labels or {})
    message = "LABEL"
    for pair in instruction.pairs:
        labels[pair.key] = pair.value
        message += f" {pair.key}={pair.value}"
    state.run_config = replace(state.run_config, labels=labels)
    return message


def _maintainer(state: StageState, instruction: MaintainerInstruction, say: Say) -> str:
    state.maintainer = instruction.maintainer
    return "MAINTAINER " + instruction.maintainer


def _onbuild(state: StageState, instruction: OnbuildInstruction, say: Say) -> str:
    state.run_config = replace(state.run_config,
                               on_build=(*(state.run_config.on_build or ()), instruction.expression))
    return "ONBUILD " + instruction.expression


def _user(state: StageState, instruction: UserInstruction, say: Say) -> str:
    state.run_config = replace(state.run_config, user=instruction.user)
    return "USER " + instruction.user


def _volume(state: StageState, instruction: VolumeInstruction, say: Say) -> str:
    volumes = list(state.run_config.volumes or ())
    for volume in instruction.volumes:
        if volume == "":
            raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
        if volume not in volumes:
            volumes.append(volume)
    state.run_config = replace(state.run_config, volumes=tuple(volumes))
    return "VOLUME " + plain_list(instruction.volumes)


def _stopsignal(state: StageState, instruction: StopSignalInstruction, say: Say) -> str:
    from lamina.container.spec import parse_signal

    parse_signal(instruction.signal)
    state.run_config = replace(state.run_config, stop_signal=instruction.signal)
    return "STOPSIGNAL " + instruction.signal


def _arg(state: StageState, instruction: ArgInstruction, say: Say) -> str:
    return "ARG " + " ".join(str(argument) for argument in instruction.args)


def _shell(state: StageState, instruction: ShellInstruction, say: Say) -> str:
    state.run_config = replace(state.run_config, shell=tuple(instruction.shell))
    return "SHELL " + plain_list(instruction.shell)


def _cmd(state: StageState, instruction: CmdInstruction, say: Say) -> str:
    command = state.command(instruction.command, instruction.prepend_shell)
    state.run_config = replace(state.run_config, cmd=command, args_escaped=False)
    if instruction.command:
        state.cmd_set = True
    return "CMD " + quoted_list(command)


def _entrypoint(state: StageState, instruction: EntrypointInstruction, say: Say) -> str:
    command = state.command(instruction.command, instruction.prepend_shell)
    changes: dict[str, Any] = {"entrypoint": command, "args_escaped": False}
    if not state.cmd_set:
        changes["cmd"] = None
    state.run_config = replace(state.run_config, **changes)
    return "ENTRYPOINT " + quoted_list(command)


def _expose(state: StageState, instruction: ExposeInstruction, say: Say) -> str:
    ports = list(state.run_config.exposed_ports or ())
    for spec in instruction.ports:
        for port in parse_port_spec(spec):
            if port not in ports:
                ports.append(port)
    state.run_config = replace(state.run_config, exposed_ports=tuple(ports))
    return "EXPOSE " + " ".join(instruction.ports)


def _healthcheck(state: StageState, instruction: HealthcheckInstruction, say: Say) -> str:
    previous = state.run_config.healthcheck
    if previous is not None and previous.test and previous.test[0] != "NONE":
        say(f"Note: overriding previous HEALTHCHECK: {plain_list(previous.test)}\n")
    health = HealthConfig(test=tuple(instruction.test), interval=instruction.interval,
                          timeout=instruction.timeout, start_period=instruction.start_period,
                          start_interval=instruction.start_interval, retries=instruction.retries)
    state.run_config = replace(state.run_config, healthcheck=health)
    return "HEALTHCHECK " + healthcheck_text(health)


#: Each metadata instruction's class and its step: ``step(state, instruction, say)`` changes
#: ``state`` and returns the history comment.
STEPS: dict[type, Callable[[StageState, Any, Say], str]] = {
    EnvInstruction: _env,
    LabelInstruction: _label,
    MaintainerInstruction: _maintainer,
    OnbuildInstruction: _onbuild,
    UserInstruction: _user,
    VolumeInstruction: _volume,
    StopSignalInstruction: _stopsignal,
    ArgInstruction: _arg,
    ShellInstruction: _shell,
    CmdInstruction: _cmd,
    EntrypointInstruction: _entrypoint,
    ExposeInstruction: _expose,
    HealthcheckInstruction: _healthcheck,
}


def parse_port_spec(spec: str) -> list[str]:
    """nat.ParsePortSpecs for EXPOSE: ``80``, ``80/udp``, ``8000-8002/tcp`` (and the
    ``ip:host:container`` forms, of which only the container port counts)."""
    rest = spec.rsplit(":", 1)[-1] if ":" in spec else spec
    port, _, protocol = rest.partition("/")
    protocol = (protocol or "tcp").lower()
    if port == "":
        raise errdefs.InvalidArgument(f"no port specified: {spec}<empty>")
    if protocol not in _PORT_PROTOCOLS:
        raise errdefs.InvalidArgument(f"invalid proto: {protocol}")
    low, dash, high = port.partition("-")
    try:
        start = int(low)
        end = int(high) if dash else start
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"invalid containerPort: {port}") from exc
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise errdefs.InvalidArgument(f"invalid containerPort: {port}")
    return [f"{number}/{protocol}" for number in range(start, end + 1)]
