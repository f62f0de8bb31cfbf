"""The classic builder: a Dockerfile into images, one step at a time, like Docker's
``builder/dockerfile`` (the builder behind ``DOCKER_BUILDKIT=0 docker build``).

Each instruction is a *step* that starts from the current image (its *parent*) and commits a
new image through :class:`lamina.build.api.BuildImages`:

- RUN runs its command in a container (:class:`~lamina.build.api.BuildContainers`) with the
  stage's environment (ENV plus the ARGs in scope), user, working directory and SHELL, and
  commits the container's read-write layer (its overlay upper directory, no tree walk);
- COPY and ADD write into a fresh read-write layer mounted in this process
  (:class:`~lamina.build.api.BuildLayers`, :mod:`lamina.build.copy`) and commit it; WORKDIR
  does the same when the directory is missing;
- every other instruction changes only the configuration: its image adds no layer, only a
  history entry with ``empty_layer: true``.

The committed ``container_config`` has a ``Cmd`` that describes the step, which is also what
``docker history`` shows as CREATED BY::

    /bin/sh -c #(nop)  CMD ["sh"]                     metadata steps: "#(nop) " then the text
    /bin/sh -c #(nop) WORKDIR /app                    WORKDIR, COPY, ADD: one "#(nop) ..." word
    /bin/sh -c #(nop) COPY file:<sha256> in /dest     the sources' content checksum
    |1 A=b /bin/sh -c make                            RUN with the build args it sees
    /bin/sh -c echo hi                                RUN

Cache: before doing any work a step asks :meth:`BuildImages.probe_cache` for an image made
from the same parent with the same container config; the first miss in a stage disables the
cache for the rest of the stage, as in Docker.  ``--no-cache`` never probes.

Output (Docker's JSON messages through ``output``): ``Step 2/5 : RUN make``, `` ---> Running in
<id>``, the command's output, `` ---> Using cache``, ``Removing intermediate container <id>``,
`` ---> <image id>`` after each step, and ``{"aux": {"ID": ...}}`` at the end of each stage.
Errors carry the Dockerfile line: ``Dockerfile:4: The command '/bin/sh -c exit 3' returned a
non-zero code: 3``.  Intermediate containers are removed after each successful step
(``--rm``, the default) and also after a failed one (``--rm``/``--force-rm``); read-write
layers made for COPY/ADD/WORKDIR are always removed.  Nothing is tagged here: the caller tags
the returned image once the whole build succeeded.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from lamina import errdefs
from lamina.build.api import (
    BuildContainers,
    BuildImages,
    BuildLayers,
    BuildOptions,
    Output,
    RunFailed,
)
from lamina.build.buildargs import BuildArgs, StageArgs
from lamina.build.context import (
    BuildContext,
    SourceMatch,
    SourceTree,
    is_url,
    normalize_destination,
    normalize_workdir,
    plan_copy,
)
from lamina.build.dockerignore import go_clean
from lamina.dockerfile.instructions import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
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
)
from lamina.dockerfile.parser import parse, parse_trigger
from lamina.dockerfile.substitution import Substitution
from lamina.image.config import ContainerConfig, HealthConfig, host_architecture
from lamina.records import dataclass, field, replace

if TYPE_CHECKING:
    from lamina.build.copy import RootWriter

__all__ = ["DEFAULT_PATH", "DEFAULT_SHELL", "Builder", "go_duration", "go_quote", "short_id"]

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PORT_PROTOCOLS = ("tcp", "udp", "sctp")


# -- Go's formatting, as Docker's history strings use it -------------------------------------


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for character in text:
        code = ord(character)
        if character in ('"', "\\"):
            out.append("\\" + character)
        elif character == " " or (character.isprintable() and unicodedata.category(character) != "Zs"):
            out.append(character)
        elif character in _GO_ESCAPES:
            out.append(_GO_ESCAPES[character])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _quoted_list(values: tuple[str, ...] | None) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(value) for value in values or ()) + "]"


def _plain_list(values: tuple[str, ...] | None) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b]``."""
    return "[" + " ".join(values or ()) + "]"


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if value >= size or unit == "ns":
                return sign + _go_fraction(value, size) + unit
    hours, rest = divmod(value, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _go_fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _go_fraction(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{fraction:0{digits}d}".rstrip("0")


def _go_char(value: int) -> str:
    """Go's ``%q`` of an int: a quoted character literal (``'\\x03'``)."""
    if 0x20 <= value < 0x7F and chr(value) not in ("'", "\\"):
        return f"'{chr(value)}'"
    if chr(value) in ("'", "\\"):
        return "'\\" + chr(value) + "'"
    escape = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}.get(value)
    if escape:
        return f"'{escape}'"
    if value < 0x80:
        return f"'\\x{value:02x}'"
    if value < 0x10000:
        return f"'\\u{value:04x}'" if not chr(value).isprintable() else f"'{chr(value)}'"
    return f"'\\U{value:08x}'"


def _healthcheck_text(health: HealthConfig) -> str:
    """Go's ``%q`` of Docker 20.10's ``*HealthConfig`` (what its history shows)."""
    return (f"&{{{_quoted_list(health.test)} {go_quote(go_duration(health.interval))} "
            f"{go_quote(go_duration(health.timeout))} {go_quote(go_duration(health.start_period))} "
            f"{_go_char(health.retries)}}}")


def short_id(image_id: str) -> str:
    """Docker's ``stringid.TruncateID``: the first 12 hex digits, no algorithm."""
    return image_id.split(":", 1)[-1][:12]


# -- state ------------------------------------------------------------------------------------


@dataclass
class _State:
    """The dispatch state of one stage (Docker's ``dispatchState``)."""

    run_config: ContainerConfig
    image_id: str
    args: StageArgs
    stage_name: str = ""
    maintainer: str = ""
    cmd_set: bool = False
    cache_busted: bool = False

    def shell(self) -> tuple[str, ...]:
        return tuple(self.run_config.shell) if self.run_config.shell else DEFAULT_SHELL

    def update_image(self) -> None:
        self.run_config = replace(self.run_config, image=self.image_id)


@dataclass
class _Step:
    """Resources a step holds, released after it (containers per --rm, layers always)."""

    containers: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


class _ImageTree(SourceTree):
    """An image's root filesystem as a COPY --from source, mounted on the throwaway read-write
    layer ``layer``: symlinks resolve inside it, as Docker's ``FollowSymlinkInScope`` does
    (absolute targets start at its root)."""

    def __init__(self, root: str, layer: str) -> None:
        super().__init__(root)
        self.layer = layer

    def _resolve(self, path: str, *, strict: bool, original: str) -> str:
        return super()._resolve(path, strict=False, original=original)


# -- the builder ------------------------------------------------------------------------------


class Builder:
    """One build of ``context`` with ``options``; :meth:`build` returns the final image id."""

    def __init__(self, *, images: BuildImages, layers: BuildLayers, containers: BuildContainers,
                 context: BuildContext, options: BuildOptions, output: Output) -> None:
        self.images = images
        self.layers = layers
        self.containers = containers
        self.context = context
        self.options = options
        self.output = output  # raises errdefs.Cancelled once nobody reads: the build stops there
        self.dockerfile_name = os.path.basename(context.dockerfile_name) or "Dockerfile"
        self.escape = "\\"
        self.stage_images: dict[str, str] = {}     # stage name -> image id
        self.stage_list: list[str] = []            # image id by stage index
        self.step = _Step()

    # -- output -------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.output({"stream": text})

    # -- the whole build ----------------------------------------------------------------------

    def build(self) -> str:
        if self.options.platform:
            _check_platform(self.options.platform)
        dockerfile = parse(self.context.dockerfile, self.dockerfile_name)
        self.escape = dockerfile.escape
        if not dockerfile.stages:
            raise errdefs.InvalidArgument("No image was generated. Is your Dockerfile empty?")
        try:
            stages = dockerfile.stages_for_target(self.options.target)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f"failed to reach build target {self.options.target} in Dockerfile") from exc
        labels = [self._label_option(key, value) for key, value in sorted(self.options.labels.items())]
        for warning in dockerfile.warnings:
            self.say("[WARNING]: " + warning.rstrip("\n") + "\n")
        total = len(dockerfile.meta_args) + len(stages) + sum(len(stage.instructions) for stage in stages) + len(labels)
        number = 0
        build_args = BuildArgs(self.options.build_args)
        for meta in dockerfile.meta_args:
            number += 1
            self.say(f"Step {number}/{total} : {meta.original}\n")
            with self._at(meta):
                build_args.declare_global(meta, self.escape)
        state: _State | None = None
        for stage in stages:
            number += 1
            self.say(f"Step {number}/{total} : {stage.from_instruction.original}\n")
            state = self._begin_stage(stage, build_args)
            self.say(f" ---> {short_id(state.image_id)}\n")
            instructions = list(stage.instructions)
            if stage is stages[-1]:
                instructions.extend(labels)
            for instruction in instructions:
                number += 1
                self.say(f"Step {number}/{total} : {instruction.original}\n")
                self._dispatch(state, instruction, expand=not any(instruction is label for label in labels))
                state.update_image()
                self.say(f" ---> {short_id(state.image_id)}\n")
            if state.image_id:
                self.output({"aux": {"ID": state.image_id}})
            if state.stage_name:
                self.stage_images[state.stage_name] = state.image_id
            self.stage_list.append(state.image_id)
        warning = build_args.unused_warning()
        if warning:
            self.say(warning + "\n")
        if state is None or not state.image_id:
            raise errdefs.InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return state.image_id

    @staticmethod
    def _label_option(key: str, value: str) -> LabelInstruction:
        pair = KeyValue(key, value)
        return LabelInstruction(pairs=(pair,), original=f"LABEL {pair}", start_line=0, end_line=0)

    @contextmanager
    def _at(self, instruction: Instruction) -> Iterator[None]:
        """Name the Dockerfile line of ``instruction`` in errors raised by the block (once: an
        ONBUILD trigger's error names the FROM line that ran it)."""
        try:
            yield
        except (errdefs.LaminaError, OSError) as exc:
            if getattr(exc, "located", False) or isinstance(exc, errdefs.Cancelled):
                raise
            located: errdefs.LaminaError
            if isinstance(exc, RunFailed):
                located = RunFailed(self._where(instruction) + str(exc), exc.exit_code)
            elif isinstance(exc, errdefs.LaminaError):
                located = type(exc)(self._where(instruction) + str(exc))
            else:
                located = errdefs.System(f"{self._where(instruction)}{instruction.keyword.upper()} failed: "
                                         f"{exc.strerror or exc}")
            located.located = True  # type: ignore[attr-defined]
            raise located from exc

    def _where(self, instruction: Instruction) -> str:
        if not instruction.start_line:
            return ""
        return f"{self.dockerfile_name}:{instruction.start_line}: "

    # -- stages -------------------------------------------------------------------------------

    def _begin_stage(self, stage: Stage, build_args: BuildArgs) -> _State:
        instruction = stage.from_instruction
        with self._at(instruction):
            expanded = build_args.expand_from(instruction, self.escape)
            if expanded.platform:
                _check_platform(expanded.platform)
            image_id, config = self._base_image(expanded.base_name)
            run_config = replace(config or ContainerConfig(), open_stdin=False, stdin_once=False)
            env = list(run_config.env or ())
            if not any(item.split("=", 1)[0] == "PATH" for item in env):
                run_config = replace(run_config, env=(*env, "PATH=" + DEFAULT_PATH))
            state = _State(run_config=run_config, image_id=image_id, args=build_args.stage(),
                           stage_name=stage.name)
            triggers = tuple(run_config.on_build or ())
            if triggers:
                state.run_config = replace(state.run_config, on_build=None)
                self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
                for trigger in triggers:
                    state.update_image()
                    self._dispatch(state, parse_trigger(trigger), expand=True, where=instruction)
        state.update_image()
        return state

    def _base_image(self, name: str) -> tuple[str, ContainerConfig | None]:
        """FROM's image: an earlier stage by name (or by index, as COPY --from takes it),
        ``scratch``, or a local image."""
        stage_image = self.stage_images.get(name.lower())
        if stage_image is None and name.isdigit() and int(name) < len(self.stage_list):
            stage_image = self.stage_list[int(name)]
        if stage_image is not None:
            image_id = stage_image
        elif name == "scratch":
            return "", None
        else:
            image_id = self.images.resolve(name)
        if not image_id:
            return "", None
        config = self.images.config(image_id)
        if config.os and config.os != "linux":
            raise errdefs.InvalidArgument(f"the base image {name} is for {config.os}; lamina builds linux images")
        return image_id, config.config

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, state: _State, instruction: Instruction, *, expand: bool,
                  where: Instruction | None = None) -> None:
        self.step = _Step()
        try:
            with self._at(where or instruction):
                if expand:
                    if isinstance(instruction, ArgInstruction):
                        instruction = state.args.declare_instruction(instruction, state.run_config.env or (),
                                                                     self.escape)
                    else:
                        instruction = instruction.expand(self._substitution(state))
                handler = self._handlers.get(type(instruction))
                if handler is None:
                    raise errdefs.InvalidArgument(f"unsupported instruction {instruction.keyword.upper()}")
                handler(self, state, instruction)
        finally:
            self._release_step()

    def _substitution(self, state: _State) -> Substitution:
        return Substitution(state.args.environment(state.run_config.env or ()), self.escape)

    def _release_step(self) -> None:
        """After a step, successful or not: remove its read-write layers, and its containers
        unless ``--rm=false`` (Docker keeps a failed step's container unless ``--force-rm``;
        lamina removes it with ``--rm`` too, so that a failed build leaves nothing behind).
        A removal that fails is reported, not raised: it must not hide the step's own error."""
        step, self.step = self.step, _Step()
        lines = []
        for layer in step.layers:
            try:
                self.layers.remove(layer)
            except errdefs.LaminaError as exc:
                lines.append(f"Error removing the read-write layer {layer}: {exc}\n")
        if self.options.force_remove or self.options.remove:
            for container_id in step.containers:
                try:
                    self.containers.remove(container_id)
                except errdefs.LaminaError as exc:
                    lines.append(f"Error removing intermediate container {short_id(container_id)}: {exc}\n")
                    continue
                lines.append(f"Removing intermediate container {short_id(container_id)}\n")
        for line in lines:  # after every removal: a reader gone (Cancelled) must not stop them
            self.say(line)

    # -- commits and the cache ----------------------------------------------------------------

    def _probe(self, state: _State, container_config: ContainerConfig) -> bool:
        if self.options.no_cache or state.cache_busted:
            return False
        cached = self.images.probe_cache(state.image_id, container_config)
        if cached is None:
            state.cache_busted = True
            return False
        self.say(" ---> Using cache\n")
        state.image_id = cached
        return True

    def _commit(self, state: _State, comment: str) -> None:
        """A metadata-only step (Docker's ``commit`` with the ``#(nop) `` comment)."""
        container_config = replace(state.run_config, cmd=(*state.shell(), "#(nop) ", comment))
        if self._probe(state, container_config):
            return
        state.image_id = self.images.commit(state.image_id, layer=None, config=state.run_config,
                                            container_config=container_config, author=state.maintainer)

    def _commit_layer(self, state: _State, layer: str, container_config: ContainerConfig,
                      container: str = "") -> None:
        state.image_id = self.images.commit(state.image_id, layer=layer, config=state.run_config,
                                            container_config=container_config, author=state.maintainer,
                                            container=container)

    @contextmanager
    def _writer(self, layer: str) -> Iterator[RootWriter]:
        # the copy code (and the runtime's path and account helpers it uses) only for steps
        # that write: a build answered from the cache never loads it
        from lamina.build.copy import RootWriter

        """The read-write layer's tree mounted for writing; unmounted afterwards."""
        root = self.layers.mount(layer)
        try:
            with RootWriter(root) as writer:
                yield writer
        finally:
            self.layers.unmount(layer)

    def _new_layer(self, image_id: str) -> str:
        layer = self.layers.create(image_id)
        self.step.layers.append(layer)
        return layer

    # -- metadata instructions ----------------------------------------------------------------

    def _env(self, state: _State, instruction: EnvInstruction) -> None:
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
        self._commit(state, message)

    def _label(self, state: _State, instruction: LabelInstruction) -> None:
        labels = dict(state.run_config.labels or {})
        message = "LABEL"
        for pair in instruction.pairs:
            labels[pair.key] = pair.value
            message += f" {pair.key}={pair.value}"
        state.run_config = replace(state.run_config, labels=labels)
        self._commit(state, message)

    def _maintainer(self, state: _State, instruction: MaintainerInstruction) -> None:
        state.maintainer = instruction.maintainer
        self._commit(state, "MAINTAINER " + instruction.maintainer)

    def _onbuild(self, state: _State, instruction: OnbuildInstruction) -> None:
        state.run_config = replace(state.run_config,
                                   on_build=(*(state.run_config.on_build or ()), instruction.expression))
        self._commit(state, "ONBUILD " + instruction.expression)

    def _user(self, state: _State, instruction: UserInstruction) -> None:
        state.run_config = replace(state.run_config, user=instruction.user)
        self._commit(state, "USER " + instruction.user)

    def _volume(self, state: _State, instruction: VolumeInstruction) -> None:
        volumes = list(state.run_config.volumes or ())
        for volume in instruction.volumes:
            if volume == "":
                raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
            if volume not in volumes:
                volumes.append(volume)
        state.run_config = replace(state.run_config, volumes=tuple(volumes))
        self._commit(state, "VOLUME " + _plain_list(instruction.volumes))

    def _stopsignal(self, state: _State, instruction: StopSignalInstruction) -> None:
        from lamina.container.spec import parse_signal

        parse_signal(instruction.signal)
        state.run_config = replace(state.run_config, stop_signal=instruction.signal)
        self._commit(state, "STOPSIGNAL " + instruction.signal)

    def _arg(self, state: _State, instruction: ArgInstruction) -> None:
        words = [str(argument) for argument in instruction.args]
        self._commit(state, "ARG " + " ".join(words))

    def _shell(self, state: _State, instruction: ShellInstruction) -> None:
        state.run_config = replace(state.run_config, shell=tuple(instruction.shell))
        self._commit(state, "SHELL " + _plain_list(instruction.shell))

    def _command(self, state: _State, command: tuple[str, ...] | None, prepend_shell: bool) -> tuple[str, ...] | None:
        if command is None:
            return None
        if prepend_shell and command:
            return (*state.shell(), *command)
        return tuple(command)

    def _cmd(self, state: _State, instruction: CmdInstruction) -> None:
        command = self._command(state, instruction.command, instruction.prepend_shell)
        state.run_config = replace(state.run_config, cmd=command, args_escaped=False)
        self._commit(state, "CMD " + _quoted_list(command))
        if instruction.command:
            state.cmd_set = True

    def _entrypoint(self, state: _State, instruction: EntrypointInstruction) -> None:
        command = self._command(state, instruction.command, instruction.prepend_shell)
        changes: dict[str, Any] = {"entrypoint": command, "args_escaped": False}
        if not state.cmd_set:
            changes["cmd"] = None
        state.run_config = replace(state.run_config, **changes)
        self._commit(state, "ENTRYPOINT " + _quoted_list(command))

    def _expose(self, state: _State, instruction: ExposeInstruction) -> None:
        ports = list(state.run_config.exposed_ports or ())
        for spec in instruction.ports:
            for port in _parse_port_spec(spec):
                if port not in ports:
                    ports.append(port)
        state.run_config = replace(state.run_config, exposed_ports=tuple(ports))
        self._commit(state, "EXPOSE " + " ".join(instruction.ports))

    def _healthcheck(self, state: _State, instruction: HealthcheckInstruction) -> None:
        previous = state.run_config.healthcheck
        if previous is not None and previous.test and previous.test[0] != "NONE":
            self.say(f"Note: overriding previous HEALTHCHECK: {_plain_list(previous.test)}\n")
        health = HealthConfig(test=tuple(instruction.test), interval=instruction.interval,
                              timeout=instruction.timeout, start_period=instruction.start_period,
                              start_interval=instruction.start_interval, retries=instruction.retries)
        state.run_config = replace(state.run_config, healthcheck=health)
        self._commit(state, "HEALTHCHECK " + _healthcheck_text(health))

    # -- WORKDIR ------------------------------------------------------------------------------

    def _workdir(self, state: _State, instruction: WorkdirInstruction) -> None:
        working_dir = normalize_workdir(state.run_config.working_dir, instruction.path)
        state.run_config = replace(state.run_config, working_dir=working_dir)
        container_config = replace(state.run_config, cmd=(*state.shell(), "#(nop) WORKDIR " + working_dir))
        if self._probe(state, container_config):
            return
        layer = self._new_layer(state.image_id)
        with self._writer(layer) as writer:
            created = not writer.is_directory(working_dir)
            if created:
                from lamina.build.copy import ROOT

                os.close(writer.make_directories(working_dir, ROOT))
        if created:
            self._commit_layer(state, layer, container_config)
        else:
            state.image_id = self.images.commit(state.image_id, layer=None, config=state.run_config,
                                                container_config=container_config, author=state.maintainer)

    # -- RUN ----------------------------------------------------------------------------------

    def _run(self, state: _State, instruction: RunInstruction) -> None:
        if instruction.security != "sandbox":
            raise errdefs.InvalidArgument("RUN --security=insecure is not allowed: lamina's builder grants no "
                                          "extra privileges to build steps")
        command, script = instruction.heredoc_command()
        if script is not None:
            history = (*state.shell(), instruction.command[0] + "".join(
                "\n" + doc.content + doc.name for doc in instruction.heredocs))
            executed: tuple[str, ...] = (f"/.lamina-heredoc-{os.urandom(8).hex()}",)
        else:
            history = self._command(state, command, instruction.prepend_shell) or ()
            executed = history
        env = tuple(state.run_config.env or ())
        run_args = state.args.run_args(env)
        save_command = tuple(state.args.history_command(env, list(history)))
        probe_config = replace(state.run_config, cmd=save_command, args_escaped=False,
                               entrypoint=None if save_command else state.run_config.entrypoint)
        if self._probe(state, probe_config):
            return
        if not state.image_id:
            raise errdefs.InvalidArgument("cannot RUN in a stage that has no image yet (FROM scratch): "
                                          "there is nothing to run the command with")
        network = instruction.network if instruction.network != "default" else self.options.network_mode
        run_config = replace(state.run_config, cmd=executed, args_escaped=False, env=(*env, *run_args),
                             entrypoint=None, healthcheck=HealthConfig(test=("NONE",)))
        body = run_config.to_dict()
        body["Entrypoint"] = []  # Docker's [""]: the image's ENTRYPOINT does not wrap RUN
        body["Image"] = state.image_id
        body["HostConfig"] = {"NetworkMode": _network_mode(network), "LogConfig": {"Type": "none", "Config": {}}}
        container_id = self.containers.create(body)
        self.step.containers.append(container_id)
        self.say(f" ---> Running in {short_id(container_id)}\n")
        if script is not None:
            self._write_script(container_id, executed[0], script.data)
        exit_code = self.containers.run(container_id, self._step_output())
        if exit_code != 0:
            raise RunFailed(f"The command '{' '.join(executed if script is None else history)}' returned a "
                            f"non-zero code: {exit_code}", exit_code)
        if script is not None:
            self._remove_script(container_id, executed[0])
        self._commit_layer(state, container_id, probe_config, container=container_id)

    def _write_script(self, container_id: str, path: str, data: str) -> None:
        from lamina.build.copy import ROOT

        with self._writer(container_id) as writer:
            writer.write_file(path, data.encode(), ROOT, 0o755)

    def _remove_script(self, container_id: str, path: str) -> None:
        root = self.layers.mount(container_id)
        try:
            try:
                os.unlink(os.path.join(root, path.lstrip("/")))
            except FileNotFoundError:
                pass
        finally:
            self.layers.unmount(container_id)

    def _step_output(self) -> Callable[[int, bytes], None]:
        decoders = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                    2: codecs.getincrementaldecoder("utf-8")("replace")}

        def write(stream: int, data: bytes) -> None:
            text = decoders.get(stream, decoders[1]).decode(data)
            if text:
                self.say(text)

        return write

    # -- COPY and ADD -------------------------------------------------------------------------

    def _copy(self, state: _State, instruction: CopyInstruction | AddInstruction) -> None:
        name = instruction.keyword.upper()
        is_add = isinstance(instruction, AddInstruction)
        for source in instruction.sources:
            if is_url(source):
                if not is_add:
                    raise errdefs.InvalidArgument(f"{name} failed: source can't be a URL for COPY")
                raise errdefs.NotImplemented(
                    f"ADD failed: cannot download {source}: lamina's builder has no network access for "
                    "remote sources; download the file into the build context and ADD it from there")
        if is_add:
            if instruction.checksum:
                raise errdefs.InvalidArgument("ADD failed: --checksum is only supported with HTTP(S) sources")
            if instruction.keep_git_dir is not None:
                raise errdefs.InvalidArgument("ADD failed: --keep-git-dir is only supported for Git sources")
        if instruction.excludes:
            raise errdefs.NotImplemented(f"{name} --exclude is not supported by lamina's builder yet")
        if isinstance(instruction, CopyInstruction) and instruction.parents:
            raise errdefs.NotImplemented("COPY --parents is not supported by lamina's builder yet")
        mode = None
        if instruction.chmod:
            from lamina.build.copy import parse_chmod

            mode = parse_chmod(instruction.chmod)
        copy_from = instruction.copy_from if isinstance(instruction, CopyInstruction) else ""
        tree: SourceTree = self.context
        if copy_from:
            tree = self._image_tree(copy_from)
        try:
            matches: list[SourceMatch] = []
            try:
                for source in instruction.sources:
                    matches.extend(tree.match(source))
                if not matches and not instruction.heredocs:
                    raise errdefs.NotFound("no source files were specified")
                checksums = [tree.source_hash(match) for match in matches]
            except errdefs.LaminaError as exc:
                raise type(exc)(f"{name} failed: {exc}") from exc
            checksums.extend("file:" + hashlib.sha256(f"{doc.path}\0{doc.data}".encode()).hexdigest()
                             for doc in instruction.heredocs)
            source_hash = checksums[0] if len(checksums) == 1 else \
                "multi:" + hashlib.sha256(",".join(checksums).encode()).hexdigest()
            comment = f"{name} "
            if instruction.chown:
                comment += f"--chown={instruction.chown} "
            if mode is not None:
                comment += f"--chmod={instruction.chmod} "
            comment += f"{source_hash} in {instruction.destination} "
            container_config = replace(state.run_config, cmd=(*state.shell(), "#(nop) " + comment))
            if self._probe(state, container_config):
                return
            layer = self._new_layer(state.image_id)
            with self._writer(layer) as writer:
                self._write_sources(writer, state, instruction, tree, matches, mode, bool(copy_from))
            self._commit_layer(state, layer, container_config)
        finally:
            if copy_from:
                self._release_tree(tree)

    def _write_sources(self, writer: RootWriter, state: _State, instruction: CopyInstruction | AddInstruction,
                       tree: SourceTree, matches: list[SourceMatch], mode: int | None, from_image: bool) -> None:
        from lamina.build.copy import ROOT, is_archive

        name = instruction.keyword.upper()
        if instruction.chown:
            identity = writer.identity(instruction.chown)
        else:
            identity = None if from_image else ROOT
        workdir = state.run_config.working_dir or "/"
        destination = instruction.destination
        pseudo = [SourceMatch(doc.path, doc.path, False) for doc in instruction.heredocs]
        try:
            steps = plan_copy(matches + pseudo, destination, workdir, instruction=name,
                              is_directory=writer.is_directory)
        except errdefs.LaminaError as exc:
            raise type(exc)(f"{name} failed: {exc}") from exc
        target = go_clean(normalize_destination(workdir, destination))
        heredocs = {doc.path: doc for doc in instruction.heredocs}
        for step in steps:
            source = step.source
            if any(source is item for item in pseudo):
                doc = heredocs[source.path]
                writer.write_file(step.destination, doc.data.encode(), identity or ROOT,
                                  mode if mode is not None else 0o644)
                continue
            if isinstance(instruction, AddInstruction) and not source.is_directory \
                    and instruction.unpack is not False:
                with tree.open(source.path) as handle:
                    if is_archive(handle):
                        handle.seek(0)
                        writer.extract(handle, target)
                        continue
            writer.copy(tree, source, step.destination, identity=identity, mode=mode)

    def _image_tree(self, copy_from: str) -> SourceTree:
        """The root filesystem of the stage or image ``--from`` names, mounted read-write on a
        throwaway layer (released by :meth:`_release_tree`)."""
        try:
            image_id = self.stage_images.get(copy_from.lower())
            if image_id is None and copy_from.isdigit():
                index = int(copy_from)
                if index == len(self.stage_list):
                    raise errdefs.InvalidArgument("refers to current build stage")
                if index > len(self.stage_list):
                    raise errdefs.InvalidArgument("index out of bounds")
                image_id = self.stage_list[index]
            if image_id is None:
                try:
                    image_id = self.images.resolve(copy_from)
                except errdefs.NotFound as exc:
                    raise errdefs.NotFound(f"no build stage named {copy_from!r} and no such image: "
                                           f"{copy_from}") from exc
        except errdefs.LaminaError as exc:
            raise type(exc)(f"invalid from flag value {copy_from}: {exc}") from exc
        layer = self.layers.create(image_id)
        try:
            root = self.layers.mount(layer)
        except BaseException:
            self.layers.remove(layer)
            raise
        return _ImageTree(root, layer)

    def _release_tree(self, tree: SourceTree) -> None:
        if isinstance(tree, _ImageTree):
            self.layers.remove(tree.layer)

    _handlers: ClassVar[dict[type, Callable[[Builder, _State, Any], None]]] = {
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
        WorkdirInstruction: _workdir,
        RunInstruction: _run,
        CopyInstruction: _copy,
        AddInstruction: _copy,
    }


# -- helpers ----------------------------------------------------------------------------------


def _network_mode(network: str) -> str:
    if network in ("", "default", "bridge"):
        return "default"
    if network in ("none", "host"):
        return network
    raise errdefs.InvalidArgument(f"network mode {network!r} is not supported for builds (default, none or host)")


def _check_platform(text: str) -> None:
    parts = text.lower().split("/")
    wanted_os = parts[0]
    arch = parts[1] if len(parts) > 1 else host_architecture()
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if wanted_os != "linux" or arch != host_architecture() or len(parts) > 3:
        raise errdefs.NotImplemented(
            f"platform {text} is not supported: lamina builds for linux/{host_architecture()} "
            f"({os.uname().machine}) only")


def _parse_port_spec(spec: str) -> list[str]:
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
