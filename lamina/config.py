"""Engine configuration: immutable data passed to constructors (no globals)."""

from __future__ import annotations

import os
from lamina.records import dataclass

__all__ = ["EngineConfig", "DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_HOST",
           "DEFAULT_INSECURE_REGISTRIES", "DEFAULT_CERTS_DIRECTORIES"]

DEFAULT_DATA_ROOT = "/var/lib/lamina"
DEFAULT_EXEC_ROOT = "/run/lamina"
DEFAULT_HOST = "unix:///run/lamina.sock"
# Docker treats 127.0.0.0/8 as insecure (plain HTTP, or TLS without verification) by default
DEFAULT_INSECURE_REGISTRIES = ("127.0.0.0/8", "::1/128", "localhost")
DEFAULT_CERTS_DIRECTORIES = ("/etc/lamina/certs.d", "/etc/docker/certs.d")


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
    # --userns-remap (LAMINA_USERNS_REMAP): "" off, "default" (the dockremap user, made when
    # missing), or USER[:GROUP] with ranges in /etc/subuid and /etc/subgid
    userns_remap: str = ""

    @classmethod
    def from_environment(cls, data_root: str | None = None, storage_driver: str | None = None,
                         log_level: str | None = None, userns_remap: str | None = None) -> "EngineConfig":
        """Command-line values win over ``LAMINA_DATA_ROOT`` / ``LAMINA_STORAGE_DRIVER`` /
        ``LAMINA_USERNS_REMAP``."""
        return cls(
            data_root=os.path.abspath(data_root or os.environ.get("LAMINA_DATA_ROOT") or DEFAULT_DATA_ROOT),
            storage_driver=storage_driver or os.environ.get("LAMINA_STORAGE_DRIVER") or None,
            exec_root=os.environ.get("LAMINA_EXEC_ROOT") or DEFAULT_EXEC_ROOT,
            log_level=(log_level or os.environ.get("LAMINA_LOG_LEVEL") or "warning").lower(),
            insecure_registries=_list_from_environment("LAMINA_INSECURE_REGISTRIES", DEFAULT_INSECURE_REGISTRIES, ","),
            certs_directories=_list_from_environment("LAMINA_CERTS_D", DEFAULT_CERTS_DIRECTORIES, ":"),
            registry_mirrors=_list_from_environment("LAMINA_REGISTRY_MIRRORS", (), ","),
            userns_remap=(userns_remap if userns_remap is not None else os.environ.get("LAMINA_USERNS_REMAP", "")),
        )
