"""What the API router needs from the engine: one small protocol per resource.

Every method takes and returns plain data shaped like the Docker Engine API's JSON (the
field names are Docker's: ``Id``, ``RepoTags``, ``Created`` ...), so handlers only translate
HTTP query strings and bodies.  Errors are :mod:`lamina.errdefs` kinds.

Progress: long operations take ``progress``, a callable receiving Docker JSON-message dicts
(``{"status": ..., "id": ..., "progressDetail": {"current": n, "total": m}}`` or
``{"stream": "Loaded image: busybox:latest\\n"}``); the router streams them to the client as
``application/json`` lines, which the CLI renders as progress bars (rich) or plain text.

The last section holds what services need from one another, each protocol as narrow as its
one consumer uses it (:mod:`lamina.services.compose` hands the services over).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    import threading

    from lamina.build.api import BuildOptions
    from lamina.distribution.registry.auth import Credentials
    from lamina.stdcopy import Duplex

__all__ = ["Progress", "ImageService", "SystemService", "ContainerLifecycle", "ContainerViews", "ContainerFiles",
           "ContainerStreams", "ExecService", "Services", "VolumeService", "BuildService", "EventService",
           "ContainerVolumes", "VolumeUsage", "BuildCacheUsage", "DistributionService", "ContainerUsage", "NetworkService",
           "ImagePulls"]

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

    def list_images_json(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                         digests: bool = False) -> bytes:
        """:meth:`list_images` newest first, encoded as the JSON body of ``GET /images/json``."""

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

    def disk_usage(self) -> dict[str, Any]:
        """Docker's /system/df: LayersSize, Images [...], Containers [...], Volumes [...],
        BuildCache [...], from cached sizes."""

    def check(self, *, repair: bool = False) -> dict[str, Any]:
        """``{"Problems": [{"Kind": ..., "Object": ..., "Message": ...}], "Repaired": [...]}``."""


class ContainerLifecycle(Protocol):
    """Containers' lifecycle (moby's ``stateBackend`` and the container prune of its
    ``systemBackend``), with the Docker Engine API's request and response shapes.

    ``create`` takes the body of ``POST /containers/create`` (Config fields at the top level,
    ``HostConfig``, ``NetworkingConfig``).  Ids may be given as full id, unique id prefix or
    name (with or without the leading "/").
    """

    def create(self, body: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        """``{"Id": ..., "Warnings": [...]}``."""

    def start(self, id: str) -> None: ...

    def stop(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None: ...

    def restart(self, id: str, *, timeout: int | None = None, signal: str | None = None) -> None: ...

    def kill(self, id: str, *, signal: str = "SIGKILL") -> None: ...

    def remove(self, id: str, *, force: bool = False, volumes: bool = False) -> None: ...

    def wait(self, id: str, *, condition: str = "not-running") -> dict[str, Any]:
        """``{"StatusCode": n, "Error": null}``; conditions not-running, next-exit, removed."""

    def begin_wait(self, id: str, *, condition: str = "not-running") -> Callable[[], dict[str, Any]]:
        """:meth:`wait` up to the point where the exit it waits for is fixed (errors such as
        NotFound are raised here), and the rest as a function that blocks: a start made after
        this call is never missed (the docker CLI's ``run``: wait, then start)."""

    def pause(self, id: str) -> None: ...

    def unpause(self, id: str) -> None: ...

    def rename(self, id: str, new_name: str) -> None: ...

    def remove_link(self, name: str) -> None:
        """Remove the legacy link ``/parent/alias`` from its parent (``rm --link``)."""

    def update(self, id: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]: ...


class ContainerViews(Protocol):
    """Reading containers (moby's ``monitorBackend``); ids may be given as full id, unique id
    prefix or name (with or without the leading "/")."""

    def list_containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                        filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]: ...

    def identify(self, id: str) -> dict[str, Any]:
        """``Id``, ``Name``, ``Config`` and the stored ``State``, from the record alone."""

    def inspect(self, id: str, *, size: bool = False) -> dict[str, Any]: ...

    def top(self, id: str, *, ps_args: str = "-ef") -> dict[str, Any]: ...

    def stats(self, id: str, *, stream: bool = True, one_shot: bool = False) -> Iterator[dict[str, Any]]: ...


class ContainerFiles(Protocol):
    """A container's files (moby's ``copyBackend``, ``commitBackend`` and changes); ids
    may be given as full id, unique id prefix or name (with or without the leading "/")."""

    def changes(self, id: str) -> list[dict[str, Any]]:
        """``[{"Path": "/etc/x", "Kind": 0|1|2}]`` (0 modified, 1 added, 2 deleted)."""

    def export(self, id: str) -> Iterator[bytes]: ...

    def archive_stat(self, id: str, path: str) -> dict[str, Any]:
        """Docker's PathStat: name, size, mode (Go FileMode bits), mtime, linkTarget."""

    def archive_get(self, id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]: ...

    def archive_put(self, id: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> None: ...

    def commit(self, id: str, *, repository: str = "", tag: str = "", comment: str = "", author: str = "",
               pause: bool = True, changes: list[str] | None = None,
               config: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"Id": "sha256:..."}``."""


class ContainerStreams(Protocol):
    """A container's stdio (moby's ``attachBackend``, logs and resize); ids may be given as
    full id, unique id prefix or name (with or without the leading "/")."""

    def attach(self, id: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool = True,
               logs: bool = False, detach_keys: str | None = None) -> Duplex:
        """The container's stdio; with a TTY, ``detach_keys`` (Docker's grammar, default
        Ctrl-P Ctrl-Q) typed on stdin end the attach and leave the container running."""

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             since: float = 0, until: float = 0, timestamps: bool = False,
             tail: str = "all") -> Iterator[tuple[int, bytes]]:
        """(stream, payload) pairs: stream 1 stdout, 2 stderr; with ``timestamps`` each
        payload starts with the RFC 3339 time and a space, as Docker sends it."""

    def resize(self, id: str, *, height: int, width: int) -> None: ...


class ExecService(Protocol):
    def create(self, container: str, body: dict[str, Any]) -> dict[str, Any]:
        """``{"Id": exec_id}`` from Docker's ExecConfig (AttachStdin/Stdout/Stderr, Tty, Env,
        Cmd, WorkingDir, User, Privileged, DetachKeys)."""

    def start(self, exec_id: str, *, detach: bool = False, tty: bool = False,
              detach_keys: str | None = None) -> Duplex | None:
        """Start the exec; ``detach_keys`` override the exec's ``DetachKeys``."""

    def inspect(self, exec_id: str) -> dict[str, Any]: ...

    def resize(self, exec_id: str, *, height: int, width: int) -> None: ...


class VolumeService(Protocol):
    """Volumes, with the Docker Engine API's shapes (``Volume``: Name, Driver, Mountpoint,
    CreatedAt, Labels, Scope, Options, and UsageData {Size, RefCount} when asked), plus the
    references and mounts containers hold.  A *reference* (a container id) is taken when a
    container is created and dropped when it is removed; a referenced volume cannot be removed
    (``Conflict``: ``remove x: volume is in use - [<ids>]``) nor pruned."""

    def create(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, reference: str = "") -> dict[str, Any]:
        """The volume; an existing one of that name (same driver) is returned as it is.  No
        name: an anonymous volume.  ``reference``: take it atomically with the creation."""

    def list(self, *, filters: dict[str, list[str]] | None = None, usage: bool = False) -> dict[str, Any]:
        """``{"Volumes": [...], "Warnings": []}``; filters dangling, name, driver, label."""

    def inspect(self, name: str, *, usage: bool = False) -> dict[str, Any]: ...

    def remove(self, name: str, *, force: bool = False) -> None:
        """``force``: a missing volume is not an error (a volume in use still is)."""

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"VolumesDeleted": [...], "SpaceReclaimed": n}``; without ``all=true`` only
        anonymous volumes; filters label, label!, all."""

    def acquire(self, name: str, container_id: str) -> dict[str, Any]: ...

    def release(self, name: str, container_id: str) -> None: ...

    def users(self, name: str) -> list[str]:
        """Ids of the containers referencing the volume."""

    def mount(self, name: str, container_id: str) -> str:
        """The volume's host path, its filesystem mounted for volumes with driver options."""

    def unmount(self, name: str, container_id: str) -> None: ...


class NetworkService(Protocol):
    """Networks, with the Docker Engine API's shapes (NetworkResource: Name, Id, Created, Scope,
    Driver, EnableIPv6, IPAM, Internal, Attachable, Ingress, ConfigFrom, ConfigOnly, Containers,
    Options, Labels).  Networks are named by id, name or unique id prefix."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Docker's NetworkCreateRequest in, ``{"Id": ..., "Warning": ""}`` out."""

    def list(self, *, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]: ...

    def inspect(self, term: str, *, verbose: bool = False, scope: str = "") -> dict[str, Any]: ...

    def remove(self, term: str) -> None:
        """``Conflict`` while endpoints exist, ``Forbidden`` for the predefined networks."""

    def prune(self, *, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"NetworksDeleted": [...]}``; filters until, label, label!."""

    def connect(self, term: str, container: str, endpoint_config: dict[str, Any] | None = None) -> None: ...

    def disconnect(self, term: str, container: str, *, force: bool = False) -> None: ...


class BuildService(Protocol):
    """``docker build`` with the classic builder, and its cache."""

    def build(self, *, progress: Progress, stream: BinaryIO | None = None, directory: str | None = None,
              dockerfile: str = "", tags: list[str] | tuple[str, ...] = (),
              options: "BuildOptions | None" = None,
              registry_credentials: Mapping[str, Credentials] | None = None) -> str:
        """Build from a context tar ``stream`` (or, in-process, a local ``directory``); the
        output goes to ``progress`` as Docker's JSON messages (``{"stream": "Step 1/3 : ..."}``,
        ``{"aux": {"ID": ...}}``); tags are applied once the build succeeded; returns the image id.
        ``registry_credentials`` (by registry domain, ``docker.io`` for Docker Hub) authenticate
        the pulls of base images."""

    def prune(self, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``{"CachesDeleted": [...], "SpaceReclaimed": n}``; filter ``until``."""

    def cache_usage(self) -> list[dict[str, Any]]:
        """Docker's BuildCache items (ID, Parent, Type, Description, InUse, Shared, Size,
        CreatedAt, LastUsedAt, UsageCount)."""


class EventService(Protocol):
    """Docker's ``GET /events`` over the event log every lamina process appends to."""

    def events(self, *, since_ns: int | None = None, until_ns: int | None = None,
               filters: dict[str, list[str]] | None = None,
               stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """Event messages (Docker's ``events.Message``): the stored ones between ``since_ns``
        and ``until_ns`` (nanoseconds, inclusive) when either is given, then new ones until
        ``until_ns`` passes or ``stop`` is set; filters ``type``, ``event``, ``container``,
        ``image``, ``volume``, ``network``, ``label``, ``scope`` ...  Arguments are checked
        before the iterator is returned."""


class DistributionService(Protocol):
    """Registries: pull, push, login (``/auth``), distribution inspect, catalog search."""

    def pull(self, from_image: str, *, tag: str = "", platform: str = "", credentials: Credentials | None = None,
             progress: Progress) -> list[str]: ...

    def push(self, name: str, *, tag: str = "", credentials: Credentials | None = None,
             progress: Progress, manifest_format: str = "docker") -> list[str]: ...

    def login(self, server: str, credentials: Credentials) -> dict[str, str]: ...

    def inspect_distribution(self, name: str, *, credentials: Credentials | None = None) -> dict[str, Any]: ...

    def manifest(self, name: str, *, credentials: Credentials | None = None) -> dict[str, Any]: ...

    def search(self, term: str, *, limit: int = 25, credentials: Credentials | None = None) -> list[dict[str, Any]]:
        ...


class Services(Protocol):
    images: ImageService
    system: SystemService
    containers: ContainerLifecycle
    container_views: ContainerViews
    container_files: ContainerFiles
    container_streams: ContainerStreams
    execs: ExecService
    volumes: VolumeService
    networks: NetworkService
    builds: BuildService
    events: EventService
    distribution: DistributionService


# -- what services need from one another --------------------------------------------------------


class ContainerVolumes(Protocol):
    """What the container service needs from the volume service: the volumes a container's
    mounts create and reference (:class:`lamina.volume.api.VolumeProvider`), and their
    filesystems mounted while a run or a copy into them needs them."""

    def create(self, name: str = "", *, driver: str = "", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, reference: str = "") -> dict[str, Any]: ...

    def acquire(self, name: str, container_id: str) -> dict[str, Any]: ...

    def release(self, name: str, container_id: str) -> None: ...

    def remove(self, name: str, *, force: bool = False) -> None: ...

    def mount(self, name: str, container_id: str) -> str: ...

    def unmount(self, name: str, container_id: str) -> None: ...


class VolumeUsage(Protocol):
    """What ``system df`` needs from the volume service."""

    def list(self, *, filters: dict[str, list[str]] | None = None, usage: bool = False) -> dict[str, Any]: ...


class ContainerUsage(Protocol):
    """What ``info``, ``system df`` and ``system check`` need from the container views: the
    summaries of every container (``size``: with SizeRw and SizeRootFs), the record and index checks."""

    def list_containers(self, *, all: bool = False, limit: int = -1, size: bool = False,
                        filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]: ...

    def check_index(self, *, repair: bool = False) -> tuple[list[str], list[str]]:
        """(problems, repairs) of the container store's name index against its records
        (``repair``: rebuild it); for ``system check``."""

    def check_records(self, *, repair: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
        """((container id, problem), repairs) of records a host crash left damaged
        (``repair``: remove them); for ``system check``."""


class BuildCacheUsage(Protocol):
    """What ``system df`` needs from the build service."""

    def cache_usage(self) -> list[dict[str, Any]]: ...


class ImagePulls(Protocol):
    """What the build service needs from the distribution service: the pull of a base image."""

    def pull(self, from_image: str, *, tag: str = "", platform: str = "", credentials: Credentials | None = None,
             progress: Progress) -> list[str]: ...
