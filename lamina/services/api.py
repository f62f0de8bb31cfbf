"""What the API router needs from the engine: one small protocol per resource.

Every method takes and returns plain data shaped like the Docker Engine API's JSON (the
field names are Docker's: ``Id``, ``RepoTags``, ``Created`` ...), so handlers only translate
HTTP query strings and bodies.  Errors are :mod:`lamina.errdefs` kinds.

Progress: long operations take ``progress``, a callable receiving Docker JSON-message dicts
(``{"status": ..., "id": ..., "progressDetail": {"current": n, "total": m}}`` or
``{"stream": "Loaded image: busybox:latest\\n"}``); the router streams them to the client as
``application/json`` lines, which the CLI renders as progress bars (rich) or plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

__all__ = ["Progress", "ImageService", "SystemService", "Services"]

Progress = Callable[[dict[str, Any]], None]


class ImageService(Protocol):
    def load(self, stream: BinaryIO, *, progress: Progress, quiet: bool = False) -> list[str]:
        """Load a ``docker save`` archive or an OCI layout tar; emits ``{"stream": "Loaded image: X\\n"}``
        (or ``Loaded image ID: sha256:...`` for untagged images) through ``progress`` and
        returns those names/ids."""

    def save(self, names: list[str], *, format: str = "docker") -> Iterator[bytes]:
        """The archive of the named images (``docker`` or ``oci``) as a byte stream."""

    def import_image(self, stream: BinaryIO, *, repository: str = "", tag: str = "",
                     changes: list[str] | None = None, message: str = "",
                     progress: Progress) -> str:
        """Create a one-layer image from a filesystem tar (``docker import``); returns its id."""

    def list_images(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                    digests: bool = False) -> list[dict[str, Any]]:
        """Docker's ImageSummary list: Id, ParentId, RepoTags, RepoDigests, Created (unix),
        Size, SharedSize, VirtualSize, Labels, Containers."""

    def inspect_image(self, name: str) -> dict[str, Any]:
        """Docker's ImageInspect: Id, RepoTags, RepoDigests, Parent, Comment, Created (RFC 3339),
        Container, ContainerConfig, DockerVersion, Author, Config, Architecture, Os, Size,
        VirtualSize, GraphDriver {Name, Data}, RootFS {Type, Layers}, Metadata {LastTagTime}."""

    def image_history(self, name: str) -> list[dict[str, Any]]:
        """Newest first: Id (or "<missing>"), Created (unix), CreatedBy, Tags, Size, Comment."""

    def tag_image(self, name: str, repository: str, tag: str) -> None: ...

    def remove_image(self, name: str, *, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """``[{"Untagged": "busybox:latest"}, {"Deleted": "sha256:..."}]``."""

    def prune_images(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"ImagesDeleted": [...], "SpaceReclaimed": n}``; default prunes dangling images."""


class SystemService(Protocol):
    def info(self) -> dict[str, Any]:
        """Docker's SystemInfo: ID, Containers, Images, Driver, DriverStatus [[k, v]...],
        DockerRootDir, KernelVersion, OperatingSystem, OSType, Architecture, NCPU, MemTotal,
        Name, ServerVersion, CgroupDriver, CgroupVersion... plus ``LaminaSkippedDrivers``
        [[name, reason]...] for drivers probed and skipped."""

    def version(self) -> dict[str, Any]: ...

    def disk_usage(self) -> dict[str, Any]:
        """Docker's /system/df: LayersSize, Images [...], Containers [...], Volumes [...],
        BuildCache [...], from cached sizes."""

    def check(self, *, repair: bool = False) -> dict[str, Any]:
        """``{"Problems": [{"Kind": ..., "Object": ..., "Message": ...}], "Repaired": [...]}``."""


class Services(Protocol):
    images: ImageService
    system: SystemService
