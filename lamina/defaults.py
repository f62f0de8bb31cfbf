"""Where root's engine lives by default: its data root, its exec root and ``lamina serve``'s
socket.  One home for :mod:`lamina.config` (which builds an engine's configuration from them)
and for the ``lamina`` program's front (:mod:`lamina.cli.front`), which must know them while
loading nothing else (:mod:`lamina.config` loads :mod:`lamina.records`).  An unprivileged
user's defaults are functions of the user's directories (:func:`rootless_data_root`,
:func:`rootless_exec_root`), which :mod:`lamina.config` checks and completes."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (the front loads this module)
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_SOCKET", "DEFAULT_HOST", "rootless_data_root",
           "rootless_exec_root"]

DEFAULT_DATA_ROOT = "/var/lib/lamina"
DEFAULT_EXEC_ROOT = "/run/lamina"
DEFAULT_SOCKET = "/run/lamina.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET


def rootless_data_root(environ: Mapping[str, str]) -> str | None:
    """An unprivileged user's data root: ``$XDG_DATA_HOME/lamina``, else
    ``$HOME/.local/share/lamina``; None when neither is set (the password database's home,
    :mod:`lamina.config`)."""
    home = environ.get("HOME")
    base = environ.get("XDG_DATA_HOME") or (os.path.join(home, ".local", "share") if home else None)
    return None if base is None else os.path.join(base, "lamina")


def rootless_exec_root(environ: Mapping[str, str]) -> str | None:
    """An unprivileged user's exec root: ``$XDG_RUNTIME_DIR/lamina``; None when that is unset or
    relative (:func:`lamina.config.runtime_directory` names the problem)."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    return os.path.join(runtime, "lamina") if runtime.startswith("/") else None
