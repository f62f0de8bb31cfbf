"""What the classic builder needs from the engine, and the options of one build.

The builder (:mod:`lamina.build.builder`) sits in layer 6: it may not import the services.
It consumes three small protocols, defined here and implemented by
:mod:`lamina.services.builds` on top of the image, layer and container stores:

- :class:`BuildImages`: resolve a base image, probe the build cache, commit a step;
- :class:`BuildLayers`: *read-write layers* the builder writes into itself (COPY, ADD, WORKDIR,
  and the root filesystem of an image named by ``COPY --from``).  A read-write layer is named
  by its *layer id* (the record name in ``layerdb/mounts``); :meth:`BuildLayers.mount` shows
  its full tree (the image's layers below, the read-write layer on top) at a host path;
- :class:`BuildContainers`: the containers of RUN steps, with the Docker Engine API's
  create-body shapes;
- :class:`BuildPulls`: fetch a base image from its registry (FROM of an image that is missing,
  or of every image with ``--pull``), reporting Docker's pull messages into the build output.  A container's read-write layer has the container's id as layer id, so
  :meth:`BuildImages.commit` takes either.

Vocabulary: *image id* is ``sha256:<hex>``, ``""`` for ``FROM scratch``; the *parent* of a
step is the image id the step starts from; a *container config* is Docker's
``container.Config`` (:class:`lamina.image.config.ContainerConfig`): the builder's *run
config* becomes the new image's ``config``, and the config whose ``Cmd`` describes the step
(``["/bin/sh", "-c", "#(nop) ", "CMD [\\"sh\\"]"]``) becomes its ``container_config`` and is
the step's build cache key (Docker's classic-builder rule: same parent, same container
config -> same image).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lamina import errdefs
from lamina.image.config import ContainerConfig, ImageConfig
from lamina.records import dataclass, field

__all__ = [
    "BuildContainers",
    "BuildImages",
    "BuildLayers",
    "BuildOptions",
    "BuildPulls",
    "Output",
    "RunFailed",
    "StepOutput",
]

#: Where the builder reports: Docker JSON messages (``{"stream": "Step 1/3 : FROM busybox\\n"}``,
#: ``{"aux": {"ID": "sha256:..."}}``).
Output = Callable[[dict[str, Any]], None]
#: What a RUN step's process writes: (stream, bytes) with stream 1 stdout, 2 stderr.
StepOutput = Callable[[int, bytes], None]


@dataclass(frozen=True)
class BuildOptions:
    """The options of ``docker build`` the builder itself uses (tags are the caller's).

    ``build_args`` maps names to values (None: ``--build-arg NAME`` given without a value the
    client could not resolve); ``network_mode`` is the default network of RUN steps
    (``default``, ``none`` or ``host``); ``remove`` / ``force_remove`` are ``--rm`` /
    ``--force-rm`` for the intermediate containers; ``pull`` is ``--pull``: pull the image of
    every FROM that names an image (not a stage, not ``scratch``) even when it is present.
    ``extra_hosts`` are ``--add-host`` entries (``host:ip``) of RUN steps' ``/etc/hosts``;
    ``cache_from`` names the images whose history the cache may match (``--cache-from``; when
    given, only those images and their parents are cache hits, as in Docker's classic builder).
    """

    build_args: Mapping[str, str | None] = field(default_factory=dict)
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    remove: bool = True
    force_remove: bool = False
    network_mode: str = "default"
    platform: str = ""
    pull: bool = False
    extra_hosts: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()


class RunFailed(errdefs.LaminaError):
    """A RUN step's command exited with ``exit_code`` != 0 (the text is Docker's message,
    ``The command '/bin/sh -c exit 3' returned a non-zero code: 3``)."""

    kind = "run_failed"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BuildImages(Protocol):
    def resolve(self, name: str) -> str:
        """The image id of a local image name or id (``errdefs.NotFound`` when missing)."""

    def config(self, image_id: str) -> ImageConfig:
        """The parsed config of a stored image."""

    def probe_cache(self, parent: str, container_config: ContainerConfig) -> str | None:
        """A locally built image whose parent is ``parent`` and whose container config equals
        ``container_config`` under Docker's comparison, or None."""

    def commit(self, parent: str, *, layer: str | None, config: ContainerConfig,
               container_config: ContainerConfig, author: str = "", container: str = "") -> str:
        """Store the step's image: the parent's layers plus the diff of the read-write layer
        ``layer`` (None: a metadata-only step, a history entry with ``empty_layer``), record
        the parent and the build cache entry; returns the new image id."""


class BuildLayers(Protocol):
    def create(self, image_id: str) -> str:
        """A new read-write layer on top of the image (``""``: on nothing); its layer id."""

    def mount(self, layer: str) -> str:
        """Mount the layer's full tree; the host path of its root."""

    def unmount(self, layer: str) -> None: ...

    def remove(self, layer: str) -> None:
        """Unmount (if needed) and delete the read-write layer."""


class BuildContainers(Protocol):
    def create(self, body: dict[str, Any]) -> str:
        """Create a container from a ``POST /containers/create`` body; its id."""

    def run(self, container_id: str, output: StepOutput) -> int:
        """Start the container, stream its output to ``output`` until it exits; its exit code."""

    def remove(self, container_id: str) -> None:
        """Remove the container (killing it first if it still runs)."""


class BuildPulls(Protocol):
    def pull(self, name: str, output: Output) -> None:
        """Pull the image ``name`` (``:latest`` when it names neither tag nor digest) from its
        registry, reporting Docker's JSON pull messages (``latest: Pulling from ...``,
        ``Status: Downloaded newer image for ...``) through ``output``; errdefs errors
        (``InvalidArgument``, ``NotFound``, ``Unavailable``, ``Unauthorized``) name the
        registry and the cause."""
