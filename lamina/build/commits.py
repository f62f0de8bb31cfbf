"""How a build step ends (the part of Docker's ``builder/dockerfile/internals.go`` around
``commit`` and ``probeCache``): the cache probe, the commit of the step's image, and the
release of what the step held.

Cache: before doing any work a step asks :meth:`BuildImages.probe_cache` for an image made from
the same parent with the same container config (:meth:`Commits.probe`); the first miss in a
stage disables the cache for the rest of the stage, as in Docker.  ``--no-cache`` never probes.

A metadata step commits an image with no layer whose container config's Cmd is the shell, the
``#(nop) `` marker and the step's comment (:meth:`Commits.commit`); a step that wrote a
read-write layer (RUN's container, or a layer COPY/ADD/WORKDIR wrote through
:meth:`Commits.writer`) commits that layer (:meth:`Commits.commit_layer`).

Resources: the read-write layers a step creates (:meth:`Commits.new_layer`) and the containers
it runs (:meth:`Commits.add_container`) are released by :meth:`Commits.release_step` after the
step, successful or not: layers always, containers unless ``--rm=false``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lamina import errdefs
from lamina.build.api import BuildContainers, BuildImages, BuildLayers, BuildOptions
from lamina.build.history import short_id
from lamina.build.state import StageState
from lamina.image.config import ContainerConfig
from lamina.records import dataclass, field, replace

if TYPE_CHECKING:
    from lamina.build.copy import RootWriter

__all__ = ["Commits"]


@dataclass
class _Step:
    """Resources a step holds, released after it (containers per --rm, layers always)."""

    containers: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Commits:
    """Cache probes, commits and the resources of the current step of one build."""

    images: BuildImages
    layers: BuildLayers
    containers: BuildContainers
    options: BuildOptions
    say: Callable[[str], None]
    step: _Step = field(default_factory=_Step)

    def probe(self, state: StageState, container_config: ContainerConfig) -> bool:
        """Whether the cache holds this step's image (``state.image_id`` is then that image)."""
        if self.options.no_cache or state.cache_busted:
            return False
        cached = self.images.probe_cache(state.image_id, container_config)
        if cached is None:
            state.cache_busted = True
            return False
        self.say(" ---> Using cache\n")
        state.image_id = cached
        return True

    def commit(self, state: StageState, comment: str) -> None:
        """A metadata-only step (Docker's ``commit`` with the ``#(nop) `` comment)."""
        container_config = replace(state.run_config, cmd=(*state.shell(), "#(nop) ", comment))
        if self.probe(state, container_config):
            return
        state.image_id = self.images.commit(state.image_id, layer=None, config=state.run_config,
                                            container_config=container_config, author=state.maintainer)

    def commit_layer(self, state: StageState, layer: str | None, container_config: ContainerConfig,
                     container: str = "") -> None:
        """The step's image with ``layer`` (None: no layer) on top of ``state.image_id``."""
        state.image_id = self.images.commit(state.image_id, layer=layer, config=state.run_config,
                                            container_config=container_config, author=state.maintainer,
                                            container=container)

    def new_layer(self, image_id: str) -> str:
        """A read-write layer on ``image_id``, removed after the step."""
        layer = self.layers.create(image_id)
        self.step.layers.append(layer)
        return layer

    def add_container(self, container_id: str) -> None:
        """A container the step created, removed after the step unless ``--rm=false``."""
        self.step.containers.append(container_id)

    @contextmanager
    def writer(self, layer: str) -> Iterator[RootWriter]:
        """The read-write layer's tree mounted for writing; unmounted afterwards."""
        # the copy code (and the runtime's path and account helpers it uses) only for steps
        # that write: a build answered from the cache never loads it
        from lamina.build.copy import RootWriter

        root = self.layers.mount(layer)
        try:
            with RootWriter(root) as writer:
                yield writer
        finally:
            self.layers.unmount(layer)

    def release_step(self) -> None:
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
