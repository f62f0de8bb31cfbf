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

This module runs the build: the stages in order, each FROM (with the base image's ONBUILD
triggers), and the dispatch of each instruction, expanded first, to its step:
:mod:`lamina.build.metadata` (configuration only), :mod:`lamina.build.layer_steps` (RUN,
COPY, ADD, WORKDIR), both ending through :mod:`lamina.build.commits` (cache probe, commit,
release of the step's containers and layers).  :mod:`lamina.build.state` holds the stage's
state and the finished stages; :mod:`lamina.build.history` Go's formatting of the history.

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

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lamina import errdefs
from lamina.build import metadata
from lamina.build.api import (
    BuildContainers,
    BuildImages,
    BuildLayers,
    BuildOptions,
    BuildPulls,
    Output,
    RunFailed,
)
from lamina.build.buildargs import BuildArgs
from lamina.build.commits import Commits
from lamina.build.context import BuildContext
from lamina.build.history import short_id
from lamina.build.layer_steps import LayerSteps
from lamina.build.state import DEFAULT_PATH, BuiltStages, StageState
from lamina.dockerfile.instructions import (
    AddInstruction,
    ArgInstruction,
    CopyInstruction,
    Instruction,
    KeyValue,
    LabelInstruction,
    RunInstruction,
    Stage,
    WorkdirInstruction,
)
from lamina.dockerfile.parser import parse, parse_trigger
from lamina.dockerfile.substitution import Substitution
from lamina.image.config import ContainerConfig, host_architecture
from lamina.records import replace

__all__ = ["Builder"]


class Builder:
    """One build of ``context`` with ``options``; :meth:`build` returns the final image id."""

    def __init__(self, *, images: BuildImages, layers: BuildLayers, containers: BuildContainers,
                 context: BuildContext, options: BuildOptions, output: Output,
                 pulls: BuildPulls | None = None) -> None:
        self.images = images
        self.pulls = pulls
        self.context = context
        self.options = options
        self.output = output  # raises errdefs.Cancelled once nobody reads: the build stops there
        self.dockerfile_name = os.path.basename(context.dockerfile_name) or "Dockerfile"
        self.escape = "\\"
        self.stages = BuiltStages()
        self.commits = Commits(images=images, layers=layers, containers=containers, options=options,
                               say=self.say)
        steps = LayerSteps(commits=self.commits, context=context, stages=self.stages)
        self.layer_steps: dict[type, Callable[[StageState, Any], None]] = {
            RunInstruction: steps.run,
            CopyInstruction: steps.copy,
            AddInstruction: steps.copy,
            WorkdirInstruction: steps.workdir,
        }

    def say(self, text: str) -> None:
        self.output({"stream": text})

    # -- the whole build ----------------------------------------------------------------------

    def build(self) -> str:
        if self.options.platform:
            _check_platform(self.options.platform)
        if self.options.pull and self.pulls is None:
            raise errdefs.NotImplemented("--pull: this engine cannot pull images from a registry")
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
        state: StageState | None = None
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
            self.stages.add(state.stage_name, state.image_id)
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

    def _begin_stage(self, stage: Stage, build_args: BuildArgs) -> StageState:
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
            state = StageState(run_config=run_config, image_id=image_id, args=build_args.stage(),
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
        stage_image = self.stages.base(name)
        if stage_image is not None:
            image_id = stage_image
        elif name == "scratch":
            return "", None
        else:
            image_id = self._local_or_pulled(name)
        if not image_id:
            return "", None
        config = self.images.config(image_id)
        if config.os and config.os != "linux":
            raise errdefs.InvalidArgument(f"the base image {name} is for {config.os}; lamina builds linux images")
        return image_id, config.config

    def _local_or_pulled(self, name: str) -> str:
        """The image FROM names, pulled first with ``--pull``, or when it is missing (Docker's
        classic builder; an image id is never pulled)."""
        if self.pulls is None or _names_an_id(name):
            return self.images.resolve(name)
        if not self.options.pull:
            try:
                return self.images.resolve(name)
            except errdefs.NotFound:
                pass
        self.pulls.pull(name, self.output)
        return self.images.resolve(name)

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, state: StageState, instruction: Instruction, *, expand: bool,
                  where: Instruction | None = None) -> None:
        """Expand ``instruction`` (unless ``expand`` is False) and run its step; errors name the
        line of ``where`` (the FROM of an ONBUILD trigger) or of the instruction."""
        try:
            with self._at(where or instruction):
                if expand:
                    if isinstance(instruction, ArgInstruction):
                        instruction = state.args.declare_instruction(instruction, state.run_config.env or (),
                                                                     self.escape)
                    else:
                        instruction = instruction.expand(self._substitution(state))
                configure = metadata.STEPS.get(type(instruction))
                if configure is not None:
                    self.commits.commit(state, configure(state, instruction, self.say))
                    return
                write_layer = self.layer_steps.get(type(instruction))
                if write_layer is None:
                    raise errdefs.InvalidArgument(f"unsupported instruction {instruction.keyword.upper()}")
                write_layer(state, instruction)
        finally:
            self.commits.release_step()

    def _substitution(self, state: StageState) -> Substitution:
        return Substitution(state.args.environment(state.run_config.env or ()), self.escape)


def _names_an_id(name: str) -> bool:
    """``sha256:<hex>`` or 64 hex digits: an image id, which no registry serves by that name."""
    text = name[len("sha256:"):] if name.startswith("sha256:") else name
    return name.startswith("sha256:") or (len(text) == 64 and all(c in "0123456789abcdef" for c in text))


def _check_platform(text: str) -> None:
    parts = text.lower().split("/")
    wanted_os = parts[0]
    arch = parts[1] if len(parts) > 1 else host_architecture()
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if wanted_os != "linux" or arch != host_architecture() or len(parts) > 3:
        raise errdefs.NotImplemented(
            f"platform {text} is not supported: lamina builds for linux/{host_architecture()} "
            f"({os.uname().machine}) only")

