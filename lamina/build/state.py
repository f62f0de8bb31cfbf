"""What a build knows between steps: the state of the stage being built (Docker's
``dispatchState``) and the images of the stages already built.

:class:`StageState` is the stage's *run config* (the container config its next image gets:
Env, Cmd, WorkingDir, ...), the image the next step starts from (``image_id``, ``""`` for
``FROM scratch`` before its first commit), the ARGs in scope, the MAINTAINER, whether a CMD was
set in this stage (ENTRYPOINT keeps it then) and whether the cache already missed once (every
later step of the stage then misses, as in Docker).

:class:`BuiltStages` is the image of each finished stage, by index and by name: FROM and
``COPY --from`` name them.
"""

from __future__ import annotations

from lamina import errdefs
from lamina.build.buildargs import StageArgs
from lamina.image.config import ContainerConfig
from lamina.records import dataclass, replace

__all__ = ["DEFAULT_SHELL", "DEFAULT_PATH", "StageState", "BuiltStages"]

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class StageState:
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

    def command(self, command: tuple[str, ...] | None, prepend_shell: bool) -> tuple[str, ...] | None:
        """CMD, ENTRYPOINT or RUN's command as it runs: the shell form after the stage's SHELL."""
        if command is None:
            return None
        if prepend_shell and command:
            return (*self.shell(), *command)
        return tuple(command)

    def update_image(self) -> None:
        self.run_config = replace(self.run_config, image=self.image_id)


class BuiltStages:
    """The image id of each stage built so far, by index and by (lower-case) name."""

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}
        self.by_index: list[str] = []

    def add(self, name: str, image_id: str) -> None:
        if name:
            self.by_name[name] = image_id
        self.by_index.append(image_id)

    def base(self, name: str) -> str | None:
        """The image of the stage FROM names (by name, or by an index of a built stage)."""
        image_id = self.by_name.get(name.lower())
        if image_id is None and name.isdigit() and int(name) < len(self.by_index):
            image_id = self.by_index[int(name)]
        return image_id

    def copy_source(self, name: str) -> str | None:
        """The image of the stage ``COPY --from`` names; an index must name a finished stage."""
        image_id = self.by_name.get(name.lower())
        if image_id is None and name.isdigit():
            index = int(name)
            if index == len(self.by_index):
                raise errdefs.InvalidArgument("refers to current build stage")
            if index > len(self.by_index):
                raise errdefs.InvalidArgument("index out of bounds")
            image_id = self.by_index[index]
        return image_id
