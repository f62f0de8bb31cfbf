"""User-namespace id mappings (``--userns-remap``): the ranges of ``/etc/subuid`` and
``/etc/subgid``, the user namespaces that carry a mapping, and idmapped mounts.

Vocabulary (Docker's ``idtools``): an :class:`IDMap` maps ``size`` ids from ``container_id``
inside the user namespace to ``host_id`` outside; an :class:`IdentityMapping` holds the uid and
gid maps of one remapped engine.  ``/proc/<pid>/uid_map`` lines are ``container host size``.

Files read: ``/etc/subuid`` and ``/etc/subgid``, lines ``name-or-uid:start:count`` (the
shadow suite's format).  ``--userns-remap default`` makes the ``dockremap`` user and group
with ``useradd --system`` and gives it the first free 65536 ids from 100000 with
``usermod --add-subuids/--add-subgids`` (the shadow tools lock the files; lamina writes
neither).

A mapping reaches the kernel through a *user namespace descriptor* (:func:`userns_fd`): a
short-lived child unshares a user namespace, the parent writes its ``uid_map``/``gid_map``
from outside (writing a range needs CAP_SETUID in the parent namespace), opens
``/proc/<child>/ns/user`` and lets the child exit; the descriptor keeps the namespace, one
per process and mapping: a container's monitor mounts its root filesystem with it and the
native runtime starts the container in it.  An
*idmapped mount* (:func:`idmapped_tree`) is a detached clone of a directory's mount
(``open_tree(OPEN_TREE_CLONE)``) given that namespace with ``mount_setattr(MOUNT_ATTR_IDMAP)``:
a file owned by 0 on disk shows as ``host_id`` through it.  overlayfs (5.19+) takes such
mounts as lower layers through ``/proc/self/fd/N``; the overlay mount itself cannot be
idmapped (EINVAL on 6.18).  Whether the kernel and the data root's filesystem allow idmapped
mounts is probed once per boot (:func:`idmapped_mounts_problem`, cached under the exec root).

Where idmapped mounts are missing (an old kernel, a data root whose filesystem refuses
``MOUNT_ATTR_IDMAP``, the vfs driver), the layers are seen through *chowned copies* instead,
Docker's way (:mod:`lamina.graphdriver.remapcopy`, ``<data-root>/<uid>.<gid>/``).  Which one an
engine uses (:attr:`Remap.layers`) is chosen at its start by :func:`open_remap` from
``--userns-remap-layers`` (:data:`LAYER_MODES`): ``auto`` (idmapped mounts where the probe
says they work, else copies), ``idmap`` (idmapped mounts or a clear error) or ``copy``.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd

from lamina import errdefs
from lamina import fsutil
from lamina import sys as lsys
from lamina.records import dataclass

__all__ = ["IDMap", "IdentityMapping", "Remap", "open_remap", "DEFAULT_REMAP_USER", "SUBUID_FILE", "SUBGID_FILE", "parse_remap",
           "resolve_remap", "read_ranges", "userns_fd", "idmapped_tree", "idmapped_mounts_problem", "LAYER_MODES"]

DEFAULT_REMAP_USER = "dockremap"
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
_DEFAULT_RANGE_START = 100000
_DEFAULT_RANGE_SIZE = 65536
_PROBE_FILE = "idmapped-mounts"  # under the exec root (a tmpfs: cleared at boot)
# --userns-remap-layers: how a remapped container sees the image's layers
LAYER_MODES = ("auto", "idmap", "copy")
# drivers whose layers can be seen through chowned copies (fuse-overlayfs diffs compare mounted
# trees, which the copies would not show: not yet)
_COPY_DRIVERS = ("overlay2", "vfs")


@dataclass(frozen=True)
class IDMap:
    """``size`` ids from ``container_id`` (inside) are ``host_id``... on the host."""

    container_id: int
    host_id: int
    size: int

    def to_json(self) -> dict[str, int]:
        return {"ContainerID": self.container_id, "HostID": self.host_id, "Size": self.size}


def _maps_from_json(value: object, what: str) -> tuple[IDMap, ...]:
    if not isinstance(value, list) or not value:
        raise errdefs.DataLoss(f"malformed identity mapping: {what} must be a non-empty list")
    out = []
    for item in value:
        try:
            out.append(IDMap(int(item["ContainerID"]), int(item["HostID"]), int(item["Size"])))
        except (TypeError, KeyError, ValueError) as exc:
            raise errdefs.DataLoss(f"malformed identity mapping entry {item!r} in {what}") from exc
    return tuple(out)


def _to_host(maps: tuple[IDMap, ...], value: int) -> int | None:
    for item in maps:
        if item.container_id <= value < item.container_id + item.size:
            return item.host_id + value - item.container_id
    return None


def _to_container(maps: tuple[IDMap, ...], value: int) -> int | None:
    for item in maps:
        if item.host_id <= value < item.host_id + item.size:
            return item.container_id + value - item.host_id
    return None


@dataclass(frozen=True)
class IdentityMapping:
    """The uid and gid maps of a remapped engine (Docker's ``idtools.IdentityMapping``)."""

    uid_maps: tuple[IDMap, ...]
    gid_maps: tuple[IDMap, ...]

    def root_pair(self) -> tuple[int, int]:
        """The host uid and gid of the container's root."""
        uid, gid = _to_host(self.uid_maps, 0), _to_host(self.gid_maps, 0)
        if uid is None or gid is None:
            raise errdefs.InvalidArgument("the identity mapping does not map the container's root")
        return uid, gid

    def to_host(self, uid: int, gid: int) -> tuple[int, int] | None:
        """Host ids of container ids; ``None`` when one is outside the ranges."""
        host_uid, host_gid = _to_host(self.uid_maps, uid), _to_host(self.gid_maps, gid)
        return None if host_uid is None or host_gid is None else (host_uid, host_gid)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """Container ids of host ids; an id outside the ranges is the overflow id 65534, as
        the kernel shows it inside the namespace."""
        container_uid, container_gid = _to_container(self.uid_maps, uid), _to_container(self.gid_maps, gid)
        return (65534 if container_uid is None else container_uid, 65534 if container_gid is None else container_gid)

    def size(self) -> tuple[int, int]:
        """How many container uids and gids are mapped from 0 without a gap."""
        return _contiguous(self.uid_maps), _contiguous(self.gid_maps)

    def uid_map_text(self) -> str:
        return "".join(f"{item.container_id} {item.host_id} {item.size}\n" for item in self.uid_maps)

    def gid_map_text(self) -> str:
        return "".join(f"{item.container_id} {item.host_id} {item.size}\n" for item in self.gid_maps)

    def to_json(self) -> dict[str, list[dict[str, int]]]:
        return {"UIDMaps": [item.to_json() for item in self.uid_maps],
                "GIDMaps": [item.to_json() for item in self.gid_maps]}

    @classmethod
    def from_json(cls, value: object) -> "IdentityMapping":
        if not isinstance(value, dict):
            raise errdefs.DataLoss("malformed identity mapping: not an object")
        return cls(_maps_from_json(value.get("UIDMaps"), "UIDMaps"), _maps_from_json(value.get("GIDMaps"), "GIDMaps"))


@dataclass(frozen=True)
class Remap:
    """A remapped engine's settings, resolved at its start (:func:`open_remap`).  ``layers``:
    ``idmap`` (the layers are seen through idmapped mounts) or ``copy`` (through chowned
    copies); ``copy_reason`` says why copies are used."""

    user: str
    group: str
    mapping: IdentityMapping
    layers: str = "idmap"
    copy_reason: str = ""

    @property
    def layer_copies(self) -> bool:
        return self.layers == "copy"

    def describe(self) -> str:
        """``name=userns`` details for ``docker info``'s SecurityOptions: ``idmap=mounts`` or
        ``idmap=copy``."""
        return f"name=userns,user={self.user},group={self.group},idmap={'copy' if self.layer_copies else 'mounts'}"


def open_remap(value: str, layer_home: str, exec_root: str, driver_name: str, layers: str = "auto") -> Remap:
    """The engine's :class:`Remap` for ``--userns-remap value`` and ``--userns-remap-layers
    layers``, or a clear error: the user, its ranges, the storage driver and, unless copies are
    asked for, the kernel's idmapped mounts (probed once per boot).  ``auto`` falls back to
    chowned copies where idmapped mounts are missing; ``idmap`` refuses then."""
    if layers not in LAYER_MODES:
        raise errdefs.InvalidArgument(f"invalid --userns-remap-layers value {layers!r}: "
                                      f"expected {', '.join(LAYER_MODES)}")
    user, group, mapping = resolve_remap(value)
    if driver_name not in _COPY_DRIVERS:
        raise errdefs.FailedPrecondition(f"--userns-remap needs the overlay2 storage driver (idmapped mounts or "
                                         f"chowned copies of its layers) or vfs (chowned copies); this engine "
                                         f"uses {driver_name}")
    if driver_name == "vfs":
        if layers == "idmap":
            raise errdefs.FailedPrecondition("--userns-remap-layers idmap needs the overlay2 storage driver: vfs "
                                             "layers are plain directories that cannot be idmapped (use copy or auto)")
        return Remap(user, group, mapping, "copy", "the vfs driver cannot use idmapped mounts")
    if layers == "copy":
        return Remap(user, group, mapping, "copy", "--userns-remap-layers copy")
    problem = idmapped_mounts_problem(layer_home, exec_root)
    if problem is None:
        return Remap(user, group, mapping, "idmap")
    if layers == "idmap":
        raise errdefs.FailedPrecondition(f"--userns-remap-layers idmap: idmapped mounts are unavailable here: "
                                         f"{problem} (use copy or auto for chowned copies of the layers)")
    return Remap(user, group, mapping, "copy", f"idmapped mounts are unavailable: {problem}")


def _contiguous(maps: tuple[IDMap, ...]) -> int:
    covered = 0
    for item in sorted(maps, key=lambda entry: entry.container_id):
        if item.container_id != covered:
            break
        covered += item.size
    return covered


def parse_remap(value: str) -> tuple[str, str]:
    """(user, group) of a ``--userns-remap`` value: ``default``, ``USER`` or ``USER:GROUP``
    (names or numeric ids; the group defaults to the user's name, as Docker, or else to the
    user's primary group)."""
    if not value or value.strip() != value:
        raise errdefs.InvalidArgument(f"invalid --userns-remap value {value!r}: expected default, USER or USER:GROUP")
    user, separator, group = value.partition(":")
    if not user or (separator and not group) or ":" in group:
        raise errdefs.InvalidArgument(f"invalid --userns-remap value {value!r}: expected default, USER or USER:GROUP")
    if user == "default":
        if separator:
            raise errdefs.InvalidArgument("--userns-remap default takes no group")
        return DEFAULT_REMAP_USER, DEFAULT_REMAP_USER
    return user, group or user


def read_ranges(path: str, name: str, numeric_id: int | None) -> tuple[IDMap, ...]:
    """The subordinate ranges of ``name`` (or of its numeric id) in ``path``, in file order,
    mapped to container ids from 0 without a gap (Docker's ``createIDMap``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        raise errdefs.System(f"cannot read {path}: {exc.strerror}") from exc
    maps: list[IDMap] = []
    container_id = 0
    keys = {name} | ({str(numeric_id)} if numeric_id is not None else set())
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(":")
        if len(parts) != 3 or parts[0] not in keys:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"{path} line {number}: malformed range {text!r}") from exc
        if start < 0 or count <= 0:
            raise errdefs.InvalidArgument(f"{path} line {number}: malformed range {text!r}")
        maps.append(IDMap(container_id, start, count))
        container_id += count
    return tuple(maps)


def next_free_start(path: str, size: int) -> int:
    """The first start at or above 100000 where ``size`` ids overlap no range of ``path``."""
    taken: list[tuple[int, int]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    taken.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    except FileNotFoundError:
        pass
    start = _DEFAULT_RANGE_START
    for low, high in sorted(taken):
        if start + size <= low:
            break
        start = max(start, high)
    return start


def _run(command: list[str]) -> None:
    import subprocess

    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise errdefs.FailedPrecondition(f"cannot create the {DEFAULT_REMAP_USER} user: {command[0]} is not "
                                         "installed (the shadow suite, Debian package passwd)") from exc
    if result.returncode != 0:
        raise errdefs.System(f"{' '.join(command)} failed: {result.stderr.strip() or result.returncode}")


def _ensure_default_user(name: str, subuid_path: str, subgid_path: str) -> None:
    """Docker's ``AddNamespaceRangesUser``: the system user ``name`` (group of the same name)
    and a 65536-id range in each file, when missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name])
    uid = pwd.getpwnam(name).pw_uid
    if not read_ranges(subuid_path, name, uid):
        start = next_free_start(subuid_path, _DEFAULT_RANGE_SIZE)
        _run(["usermod", "--add-subuids", f"{start}-{start + _DEFAULT_RANGE_SIZE - 1}", name])
    if not read_ranges(subgid_path, name, uid):
        start = next_free_start(subgid_path, _DEFAULT_RANGE_SIZE)
        _run(["usermod", "--add-subgids", f"{start}-{start + _DEFAULT_RANGE_SIZE - 1}", name])


def resolve_remap(value: str, *, subuid_path: str = SUBUID_FILE,
                  subgid_path: str = SUBGID_FILE) -> tuple[str, str, IdentityMapping]:
    """(user, group, mapping) of a ``--userns-remap`` value; ``default`` creates the
    ``dockremap`` user and its ranges when missing.  A user or group that does not exist, or
    has no range in the files, is InvalidArgument naming the file."""
    user, group = parse_remap(value)
    if user == DEFAULT_REMAP_USER and value == "default":
        _ensure_default_user(user, subuid_path, subgid_path)
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError as exc:
        raise errdefs.InvalidArgument(f"--userns-remap: no such user {user!r}") from exc
    try:
        group_entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except KeyError as exc:
        if ":" in value:
            raise errdefs.InvalidArgument(f"--userns-remap: no such group {group!r}") from exc
        try:  # no group of the user's name: the user's primary group
            group_entry = grp.getgrgid(entry.pw_gid)
        except KeyError:
            raise errdefs.InvalidArgument(f"--userns-remap: no such group {group!r}") from exc
    uid_maps = read_ranges(subuid_path, entry.pw_name, entry.pw_uid)
    if not uid_maps:
        raise errdefs.InvalidArgument(f"--userns-remap: no subordinate uid range for user {entry.pw_name!r} "
                                      f"in {subuid_path}")
    gid_maps = read_ranges(subgid_path, group_entry.gr_name, group_entry.gr_gid)
    if not gid_maps:
        raise errdefs.InvalidArgument(f"--userns-remap: no subordinate gid range for group {group_entry.gr_name!r} "
                                      f"in {subgid_path}")
    return entry.pw_name, group_entry.gr_name, IdentityMapping(uid_maps, gid_maps)


def _write_map(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


# one user namespace per process and mapping (keyed by pid: a forked child makes its own).
# A container's monitor is a process of its own: the namespace its root filesystem's idmapped
# mounts use is the one its container runs in, and no other container's.
_NAMESPACES: dict[tuple[int, IdentityMapping], int] = {}


def userns_fd(mapping: IdentityMapping) -> int:
    """A descriptor (close-on-exec; the caller closes it) of this process's user namespace
    with ``mapping``, made on first use: one fork of the calling process."""
    key = (os.getpid(), mapping)
    fd = _NAMESPACES.get(key)
    if fd is None:
        fd = _NAMESPACES[key] = _new_userns_fd(mapping)
    return os.dup(fd)


def _new_userns_fd(mapping: IdentityMapping) -> int:
    ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
    go_read, go_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only unshares and waits
        code = 1
        try:
            os.close(ready_read)
            os.close(go_write)
            lsys.unshare(lsys.CLONE_NEWUSER)
            os.write(ready_write, b"u")
            os.read(go_read, 1)  # EOF when the parent is done with the namespace
            code = 0
        finally:
            os._exit(code)
    os.close(ready_write)
    os.close(go_read)
    try:
        if os.read(ready_read, 1) != b"u":
            raise errdefs.System("cannot create a user namespace (unshare(CLONE_NEWUSER) failed; "
                                 "is user.max_user_namespaces 0?)")
        try:
            _write_map(f"/proc/{pid}/uid_map", mapping.uid_map_text())
            _write_map(f"/proc/{pid}/gid_map", mapping.gid_map_text())
            return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise errdefs.System(f"cannot write the user namespace's id maps: {exc.strerror}") from exc
    finally:
        os.close(ready_read)
        os.close(go_write)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover
                continue


def idmapped_tree(path: str, namespace_fd: int) -> int:
    """A detached, idmapped clone of the mount at ``path`` (a descriptor; its tree is reached
    as ``/proc/self/fd/N`` while it is open)."""
    try:
        fd = lsys.open_tree(-100, path, lsys.OPEN_TREE_CLONE | lsys.OPEN_TREE_CLOEXEC)
    except OSError as exc:
        raise errdefs.System(f"cannot clone the mount of {path}: {exc.strerror}") from exc
    try:
        lsys.mount_setattr(fd, "", lsys.AT_EMPTY_PATH, lsys.MOUNT_ATTR_IDMAP, userns_fd=namespace_fd)
    except OSError as exc:
        os.close(fd)
        raise errdefs.FailedPrecondition(f"cannot make an idmapped mount of {path}: {exc.strerror}") from exc
    return fd


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _probe(directory: str) -> str | None:
    """Why idmapped mounts cannot be used on ``directory``'s filesystem (None: they can)."""
    mapping = IdentityMapping((IDMap(0, 100000, 65536),), (IDMap(0, 100000, 65536),))
    try:
        namespace = _new_userns_fd(mapping)
    except errdefs.LaminaError as exc:
        return str(exc)
    try:
        try:
            fd = lsys.open_tree(-100, directory, lsys.OPEN_TREE_CLONE | lsys.OPEN_TREE_CLOEXEC)
        except OSError as exc:
            return f"open_tree(2) is missing (Linux 5.2+): {exc.strerror}" if exc.errno == errno.ENOSYS else \
                f"open_tree(2) failed: {exc.strerror}"
        try:
            lsys.mount_setattr(fd, "", lsys.AT_EMPTY_PATH, lsys.MOUNT_ATTR_IDMAP, userns_fd=namespace)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                return "mount_setattr(2) is missing (Linux 5.12+)"
            return f"the filesystem of {directory} refuses idmapped mounts (MOUNT_ATTR_IDMAP: {exc.strerror})"
        finally:
            os.close(fd)
    finally:
        os.close(namespace)
    return None


def idmapped_mounts_problem(directory: str, exec_root: str) -> str | None:
    """Why idmapped mounts cannot be used for layers under ``directory`` (None: they can);
    probed once per boot and data root filesystem, the answer kept in
    ``<exec_root>/idmapped-mounts``."""
    try:
        device = os.stat(directory).st_dev
    except OSError as exc:
        raise errdefs.System(f"cannot stat {directory}: {exc.strerror}") from exc
    key = f"{_boot_id()} {device}"
    cache = os.path.join(exec_root, _PROBE_FILE)
    try:
        with open(cache, encoding="utf-8") as handle:
            cached_key, _, answer = handle.read().partition("\n")
        if cached_key == key:
            return answer or None
    except (OSError, UnicodeDecodeError):
        pass
    problem = _probe(directory)
    try:
        fsutil.make_dirs(exec_root, 0o700)
        fsutil.atomic_write(cache, f"{key}\n{problem or ''}".encode(), 0o644)
    except OSError:
        pass  # only a cache
    return problem
