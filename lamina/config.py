"""Engine configuration: immutable data passed to constructors (no globals)."""

from __future__ import annotations

import os
from lamina.records import dataclass

__all__ = ["EngineConfig", "DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_HOST"]

DEFAULT_DATA_ROOT = "/var/lib/lamina"
DEFAULT_EXEC_ROOT = "/run/lamina"
DEFAULT_HOST = "unix:///run/lamina.sock"


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its state and which storage driver it uses."""

    data_root: str = DEFAULT_DATA_ROOT
    storage_driver: str | None = None     # None: select (data root's driver, then priority)
    exec_root: str = DEFAULT_EXEC_ROOT
    log_level: str = "warning"

    @classmethod
    def from_environment(cls, data_root: str | None = None, storage_driver: str | None = None,
                         log_level: str | None = None) -> "EngineConfig":
        """Command-line values win over ``LAMINA_DATA_ROOT`` / ``LAMINA_STORAGE_DRIVER``."""
        return cls(
            data_root=os.path.abspath(data_root or os.environ.get("LAMINA_DATA_ROOT") or DEFAULT_DATA_ROOT),
            storage_driver=storage_driver or os.environ.get("LAMINA_STORAGE_DRIVER") or None,
            exec_root=os.environ.get("LAMINA_EXEC_ROOT") or DEFAULT_EXEC_ROOT,
            log_level=(log_level or os.environ.get("LAMINA_LOG_LEVEL") or "warning").lower(),
        )
