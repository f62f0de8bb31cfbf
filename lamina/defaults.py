"""Where root's engine lives by default: its data root, its exec root and ``lamina serve``'s
socket.  One home for :mod:`lamina.config` (which builds an engine's configuration from them)
and for the ``lamina`` program's front (:mod:`lamina.cli.front`), which must know them while
loading nothing else (:mod:`lamina.config` loads :mod:`lamina.records`).  An unprivileged
user's defaults are :mod:`lamina.config`'s functions of the user's directories."""

__all__ = ["DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_SOCKET", "DEFAULT_HOST"]

DEFAULT_DATA_ROOT = "/var/lib/lamina"
DEFAULT_EXEC_ROOT = "/run/lamina"
DEFAULT_SOCKET = "/run/lamina.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET
