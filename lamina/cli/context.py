"""What a command runs with: the global options, the standard streams, and a client built on
first use (so commands that fail argument checks, and ``--help``, never load the client)."""

from __future__ import annotations

from lamina.records import dataclass

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import IO, Any

    from lamina.config import EngineConfig
    from lamina.client.client import APIClient
    from lamina.client.api import Transport

__all__ = ["GlobalOptions", "Context", "is_terminal"]


@dataclass(frozen=True)
class GlobalOptions:
    data_root: str | None = None
    storage_driver: str | None = None
    log_level: str | None = None
    host: str | None = None
    userns_remap: str | None = None
    userns_remap_layers: str | None = None


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Context:
    def __init__(self, options: GlobalOptions, *, stdin: IO[str], stdout: IO[str], stderr: IO[str],
                 transport: "Transport | None" = None, columns: int | None = None) -> None:
        self.options = options
        #: the width of the terminal the command prints on, when it is not this process's
        #: (a command ``lamina serve`` runs for a client); None: this process's own
        self.columns = columns
        self.stdin = stdin
        self.out = stdout
        self.err = stderr
        self._transport = transport
        self._client: "APIClient | None" = None

    def config(self) -> "EngineConfig":
        from lamina.config import EngineConfig

        return EngineConfig.from_environment(data_root=self.options.data_root,
                                             storage_driver=self.options.storage_driver,
                                             log_level=self.options.log_level,
                                             userns_remap=self.options.userns_remap,
                                             userns_remap_layers=self.options.userns_remap_layers)

    @property
    def transport(self) -> "Transport":
        if self._transport is None:
            from lamina.client.transport import select_transport

            self._transport = select_transport(self.options.host, self.config)
        return self._transport

    @property
    def client(self) -> "APIClient":
        if self._client is None:
            from lamina.api.versions import API_VERSION
            from lamina.client.client import APIClient
            from lamina.client.transport import InProcessTransport

            transport = self.transport
            # the in-process router is this program's own: no ping to learn its API version
            version = API_VERSION if isinstance(transport, InProcessTransport) else None
            self._client = APIClient(transport, api_version=version)
        return self._client

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def error(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()
