"""Engine configuration: immutable data passed to constructors (no globals).

Rootless defaults (lamina run by an unprivileged user, see :mod:`lamina.rootless`): the data
root is ``$XDG_DATA_HOME/lamina`` (``~/.local/share/lamina``), the exec root
``$XDG_RUNTIME_DIR/lamina`` and the socket of ``lamina serve``
``$XDG_RUNTIME_DIR/lamina.sock``.  ``XDG_RUNTIME_DIR`` must be set and be a directory the user
owns (as Podman asks): there is no fallback under /tmp, where another user could have made the
directory first.  A process that joined the rootless namespaces runs as uid 0 inside them;
:func:`rootless_uid` still knows the user from :data:`ROOTLESS_UID_ENVIRONMENT`, which the join
sets for the process and its children (monitors, ``lamina serve``).
"""

from __future__ import annotations

import os
import stat

from lamina.defaults import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT, DEFAULT_HOST, rootless_data_root
from lamina.records import dataclass

__all__ = ["EngineConfig", "DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_HOST",
           "DEFAULT_INSECURE_REGISTRIES", "DEFAULT_CERTS_DIRECTORIES", "ROOTLESS_UID_ENVIRONMENT",
           "rootless_uid", "in_user_namespace", "runtime_directory", "default_data_root",
           "default_exec_root", "default_host"]

# Docker treats 127.0.0.0/8 as insecure (plain HTTP, or TLS without verification) by default
DEFAULT_INSECURE_REGISTRIES = ("127.0.0.0/8", "::1/128", "localhost")
DEFAULT_CERTS_DIRECTORIES = ("/etc/lamina/certs.d", "/etc/docker/certs.d")
# the host uid of the user a joined rootless process works for (set by lamina.rootless.join)
ROOTLESS_UID_ENVIRONMENT = "_LAMINA_ROOTLESS_UID"
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


def in_user_namespace() -> bool:
    """True inside a user namespace other than the host's (its uid_map is not the identity)."""
    try:
        with open("/proc/self/uid_map", "r", encoding="ascii") as handle:
            return handle.read().split() != _INITIAL_UID_MAP
    except OSError:
        return False


def rootless_uid() -> int | None:
    """The unprivileged host user lamina works for, or None when it runs as real root."""
    euid = os.geteuid()
    if euid != 0:
        return euid
    value = os.environ.get(ROOTLESS_UID_ENVIRONMENT, "")
    if value.isdigit() and in_user_namespace():
        return int(value)
    return None


def _home(uid: int) -> str:
    home = os.environ.get("HOME")
    if home:
        return home
    import pwd

    return pwd.getpwuid(uid).pw_dir


def runtime_directory(uid: int) -> str:
    """``$XDG_RUNTIME_DIR``, checked: set, absolute, a directory owned by ``uid`` (the host's
    uid; inside the rootless namespace it reads as 0).  InvalidArgument names the problem."""
    from lamina import errdefs

    path = os.environ.get("XDG_RUNTIME_DIR", "")
    if not path or not os.path.isabs(path):
        raise errdefs.InvalidArgument(
            "rootless lamina needs XDG_RUNTIME_DIR: set it to a directory you own "
            f"(usually /run/user/{uid}, made by systemd-logind)")
    try:
        status = os.stat(path)
    except OSError as exc:
        raise errdefs.InvalidArgument(f"XDG_RUNTIME_DIR {path} cannot be used: {exc.strerror}") from exc
    owners = {uid, 0} if os.geteuid() == 0 else {uid}  # inside the namespace the user is 0
    if not stat.S_ISDIR(status.st_mode) or status.st_uid not in owners:
        raise errdefs.InvalidArgument(
            f"XDG_RUNTIME_DIR {path} is not a directory owned by uid {uid}")
    return path


def default_data_root(uid: int | None) -> str:
    if uid is None:
        return DEFAULT_DATA_ROOT
    return rootless_data_root(os.environ) or os.path.join(_home(uid), ".local", "share", "lamina")


def default_exec_root(uid: int | None) -> str:
    if uid is None:
        return DEFAULT_EXEC_ROOT
    return os.path.join(runtime_directory(uid), "lamina")  # rootless_exec_root, once checked


def default_host(uid: int | None) -> str:
    """The socket ``lamina serve`` listens on by default (and ``-H`` clients reach)."""
    if uid is None:
        return DEFAULT_HOST
    return "unix://" + os.path.join(runtime_directory(uid), "lamina.sock")


def _list_from_environment(name: str, default: tuple[str, ...], separator: str) -> tuple[str, ...]:
    value = os.environ.get(name)
    if value is None:
        return default
    return tuple(item.strip() for item in value.split(separator) if item.strip())


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its state and which storage driver it uses."""

    data_root: str = DEFAULT_DATA_ROOT
    storage_driver: str | None = None     # None: select (data root's driver, then priority)
    exec_root: str = DEFAULT_EXEC_ROOT
    log_level: str = "warning"
    # registries reached over plain HTTP or unverified TLS: host[:port] names or CIDRs
    # (LAMINA_INSECURE_REGISTRIES, comma-separated; "" for none)
    insecure_registries: tuple[str, ...] = DEFAULT_INSECURE_REGISTRIES
    # where <host:port>/{ca.crt,*.cert,*.key} are looked up (LAMINA_CERTS_D, colon-separated)
    certs_directories: tuple[str, ...] = DEFAULT_CERTS_DIRECTORIES
    # pull-through mirrors of docker.io, tried in order before it (LAMINA_REGISTRY_MIRRORS,
    # comma-separated URLs such as https://mirror.example or http://127.0.0.1:5000)
    registry_mirrors: tuple[str, ...] = ()
    # the host uid of the unprivileged user lamina runs for (rootless mode), None as root:
    # no cgroups of its own unless delegated, no bridge networks, userxattr overlay mounts
    rootless_uid: int | None = None
    # --userns-remap (LAMINA_USERNS_REMAP): "" off, "default" (the dockremap user, made when
    # missing), or USER[:GROUP] with ranges in /etc/subuid and /etc/subgid
    userns_remap: str = ""
    # --userns-remap-layers (LAMINA_USERNS_REMAP_LAYERS): how remapped containers see the image's
    # layers: "auto" (idmapped mounts where the kernel and filesystem allow them, else chowned
    # copies under <data-root>/<uid>.<gid>/), "idmap" (idmapped mounts or an error), "copy"
    userns_remap_layers: str = "auto"

    @classmethod
    def from_environment(cls, data_root: str | None = None, storage_driver: str | None = None,
                         log_level: str | None = None, userns_remap: str | None = None,
                         userns_remap_layers: str | None = None) -> "EngineConfig":
        """Command-line values win over ``LAMINA_DATA_ROOT`` / ``LAMINA_STORAGE_DRIVER`` /
        ``LAMINA_USERNS_REMAP`` / ``LAMINA_USERNS_REMAP_LAYERS``."""
        uid = rootless_uid()
        return cls(
            data_root=os.path.abspath(data_root or os.environ.get("LAMINA_DATA_ROOT") or default_data_root(uid)),
            storage_driver=storage_driver or os.environ.get("LAMINA_STORAGE_DRIVER") or None,
            exec_root=os.environ.get("LAMINA_EXEC_ROOT") or default_exec_root(uid),
            log_level=(log_level or os.environ.get("LAMINA_LOG_LEVEL") or "warning").lower(),
            insecure_registries=_list_from_environment("LAMINA_INSECURE_REGISTRIES", DEFAULT_INSECURE_REGISTRIES, ","),
            certs_directories=_list_from_environment("LAMINA_CERTS_D", DEFAULT_CERTS_DIRECTORIES, ":"),
            registry_mirrors=_list_from_environment("LAMINA_REGISTRY_MIRRORS", (), ","),
            rootless_uid=uid,
            userns_remap=(userns_remap if userns_remap is not None else os.environ.get("LAMINA_USERNS_REMAP", "")),
            userns_remap_layers=(userns_remap_layers or os.environ.get("LAMINA_USERNS_REMAP_LAYERS") or "auto"),
        )
