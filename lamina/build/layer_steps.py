"""The steps that write a layer (Docker's ``dispatchers.go`` and ``internals.go`` for RUN,
COPY, ADD and WORKDIR).

- RUN runs its command in a container (:class:`~lamina.build.api.BuildContainers`) with the
  stage's environment (ENV plus the ARGs in scope), user, working directory and SHELL, and
  commits the container's read-write layer (its overlay upper directory, no tree walk).  The
  history Cmd is ``|1 A=b /bin/sh -c make`` (the build args it sees) or ``/bin/sh -c make``.
  ``RUN <<EOF`` with a ``#!`` body writes the script into the container and runs that file.
- COPY and ADD write into a fresh read-write layer mounted in this process
  (:class:`~lamina.build.api.BuildLayers`, :mod:`lamina.build.copy`) and commit it; the
  history Cmd is ``#(nop) COPY file:<sha256> in /dest`` (the sources' content checksum).
  ``COPY --from`` reads a finished stage or an image, mounted on a throwaway read-write layer.
- WORKDIR does the same when the directory is missing, and commits no layer otherwise.

Each probes the cache before doing any work (:meth:`lamina.build.commits.Commits.probe`).
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina.build.api import BuildContainers, BuildImages, BuildLayers, RunFailed
from lamina.build.commits import Commits
from lamina.build.context import (
    BuildContext,
    SourceMatch,
    SourceTree,
    is_url,
    normalize_destination,
    normalize_workdir,
    plan_copy,
)
from lamina.build.history import short_id
from lamina.build.state import BuiltStages, StageState
from lamina.dockerfile.instructions import AddInstruction, CopyInstruction, RunInstruction, WorkdirInstruction
from lamina.dockerfile.lexer import go_clean
from lamina.image.config import HealthConfig
from lamina.records import dataclass, replace

if TYPE_CHECKING:
    from lamina.build.copy import RootWriter

__all__ = ["LayerSteps"]

# how Docker's classic builder marks what a RUN step wrote to stderr in the build stream
_STDERR_PREFIX = "\x1b[91m"
_STDERR_SUFFIX = "\x1b[0m"


class _ImageTree(SourceTree):
    """An image's root filesystem as a COPY --from source, mounted on the throwaway read-write
    layer ``layer``: symlinks resolve inside it, as Docker's ``FollowSymlinkInScope`` does
    (absolute targets start at its root)."""

    def __init__(self, root: str, layer: str) -> None:
        super().__init__(root)
        self.layer = layer

    def _resolve(self, path: str, *, strict: bool, original: str) -> str:
        return super()._resolve(path, strict=False, original=original)


@dataclass(kw_only=True)
class LayerSteps:
    """RUN, COPY, ADD and WORKDIR of one build; ``stages`` are the stages finished so far
    (``COPY --from`` names them)."""

    commits: Commits
    context: BuildContext
    stages: BuiltStages

    @property
    def images(self) -> BuildImages:
        return self.commits.images

    @property
    def layers(self) -> BuildLayers:
        return self.commits.layers

    @property
    def containers(self) -> BuildContainers:
        return self.commits.containers

    def say(self, text: str) -> None:
        self.commits.say(text)

    def workdir(self, state: StageState, instruction: WorkdirInstruction) -> None:
        working_dir = normalize_workdir(state.run_config.working_dir, instruction.path)
        state.run_config = replace(state.run_config, working_dir=working_dir)
        container_config = replace(state.run_config, cmd=(*state.shell(), "#(nop) WORKDIR " + working_dir))
        if self.commits.probe(state, container_config):
            return
        layer = self.commits.new_layer(state.image_id)
        with self.commits.writer(layer) as writer:
            created = not writer.is_directory(working_dir)
            if created:
                from lamina.build.copy import ROOT

                os.close(writer.make_directories(working_dir, ROOT))
        self.commits.commit_layer(state, layer if created else None, container_config)

    def run(self, state: StageState, instruction: RunInstruction) -> None:
        if instruction.security != "sandbox":
            raise errdefs.InvalidArgument("RUN --security=insecure is not allowed: lamina's builder grants no "
                                          "extra privileges to build steps")
        command, script = instruction.heredoc_command()
        if script is not None:
            history = (*state.shell(), instruction.command[0] + "".join(
                "\n" + doc.content + doc.name for doc in instruction.heredocs))
            executed: tuple[str, ...] = (f"/.lamina-heredoc-{os.urandom(8).hex()}",)
        else:
            history = state.command(command, instruction.prepend_shell) or ()
            executed = history
        env = tuple(state.run_config.env or ())
        run_args = state.args.run_args(env)
        save_command = tuple(state.args.history_command(env, list(history)))
        probe_config = replace(state.run_config, cmd=save_command, args_escaped=False,
                               entrypoint=None if save_command else state.run_config.entrypoint)
        if self.commits.probe(state, probe_config):
            return
        if not state.image_id:
            raise errdefs.InvalidArgument("cannot RUN in a stage that has no image yet (FROM scratch): "
                                          "there is nothing to run the command with")
        options = self.commits.options
        network = _network_mode(instruction.network) if instruction.network != "default" else options.network_mode
        run_config = replace(state.run_config, cmd=executed, args_escaped=False, env=(*env, *run_args),
                             entrypoint=None, healthcheck=HealthConfig(test=("NONE",)))
        body = run_config.to_dict()
        body["Entrypoint"] = []  # Docker's [""]: the image's ENTRYPOINT does not wrap RUN
        body["Image"] = state.image_id
        body["HostConfig"] = {"NetworkMode": "default" if network in ("", "bridge") else network,
                              "ExtraHosts": list(options.extra_hosts), "LogConfig": {"Type": "none", "Config": {}}}
        container_id = self.containers.create(body)
        self.commits.add_container(container_id)
        self.say(f" ---> Running in {short_id(container_id)}\n")
        if script is not None:
            self._write_script(container_id, executed[0], script.data)
        exit_code = self.containers.run(container_id, self._step_output())
        if exit_code != 0:
            raise RunFailed(f"The command '{' '.join(executed if script is None else history)}' returned a "
                            f"non-zero code: {exit_code}", exit_code)
        if script is not None:
            self._remove_script(container_id, executed[0])
        self.commits.commit_layer(state, container_id, probe_config, container=container_id)

    def _write_script(self, container_id: str, path: str, data: str) -> None:
        from lamina.build.copy import ROOT

        with self.commits.writer(container_id) as writer:
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
            if text and stream == 2:
                # the classic builder's stderr writer: each write in bright red, then reset
                self.say(f"{_STDERR_PREFIX}{text}{_STDERR_SUFFIX}")
            elif text:
                self.say(text)

        return write

    def copy(self, state: StageState, instruction: CopyInstruction | AddInstruction) -> None:
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
            if self.commits.probe(state, container_config):
                return
            layer = self.commits.new_layer(state.image_id)
            with self.commits.writer(layer) as writer:
                self._write_sources(writer, state, instruction, tree, matches, mode, bool(copy_from))
            self.commits.commit_layer(state, layer, container_config)
        finally:
            if copy_from:
                self._release_tree(tree)

    def _write_sources(self, writer: RootWriter, state: StageState, instruction: CopyInstruction | AddInstruction,
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
            image_id = self.stages.copy_source(copy_from)
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


def _network_mode(network: str) -> str:
    if network in ("", "default", "bridge"):
        return "default"
    if network in ("none", "host"):
        return network
    raise errdefs.InvalidArgument(f"network mode {network!r} is not supported for builds (default, none or host)")
