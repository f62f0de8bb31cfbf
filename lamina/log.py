"""Loggers that load :mod:`logging` only when there is something to log.

Importing :mod:`logging` (with ``traceback``, ``linecache``, ``tokenize``, ``string`` and
``weakref``) costs a ``lamina`` command ~4 ms, and most commands log nothing.  Every lamina
module therefore takes its logger from :func:`get_logger`: a :class:`Logger` forwards each call
to ``logging.getLogger(name)``, importing :mod:`logging` on the first call that needs it.

Which calls need it: once :mod:`logging` is imported (by anyone), every call is forwarded, so
library users, tests (``caplog``) and ``lamina serve`` see exactly what :mod:`logging` would
show.  Before that, a call below the *threshold* is dropped without importing anything.  The
threshold is 0 (forward everything) until a program sets it with :func:`configure`, together
with the function that sets up its handlers; ``lamina``'s command line does so from
``--log-level`` (WARNING by default), and its handlers are installed the moment :mod:`logging`
is first needed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Logger", "get_logger", "configure", "load", "LEVELS"]

LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10}

_threshold = 0
_setup: Callable[[], None] | None = None


def configure(threshold: int, setup: Callable[[], None]) -> None:
    """Drop records below ``threshold`` while :mod:`logging` is not loaded, and call ``setup``
    (which imports and configures it) before the first record is handed to it.  If
    :mod:`logging` is loaded already, ``setup`` runs now."""
    global _threshold, _setup
    _threshold = threshold
    _setup = setup
    if "logging" in sys.modules:
        _run_setup()


def load() -> Any:
    """:mod:`logging`, imported and set up now (for code that configures it further)."""
    import logging

    _run_setup()
    return logging


def _run_setup() -> None:
    global _setup
    setup, _setup = _setup, None
    if setup is not None:
        setup()


class Logger:
    """The part of :class:`logging.Logger` lamina uses (debug to exception), forwarded when needed."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def _real(self, level: int) -> Any:
        if self._logger is None:
            if "logging" not in sys.modules and level < _threshold:
                return None
            _run_setup()
            import logging

            self._logger = logging.getLogger(self.name)
        elif _setup is not None:
            _run_setup()
        return self._logger

    def debug(self, message: object, *args: object, **kwargs: Any) -> None:
        self._forward(10, message, args, kwargs)

    def info(self, message: object, *args: object, **kwargs: Any) -> None:
        self._forward(20, message, args, kwargs)

    def warning(self, message: object, *args: object, **kwargs: Any) -> None:
        self._forward(30, message, args, kwargs)

    def error(self, message: object, *args: object, **kwargs: Any) -> None:
        self._forward(40, message, args, kwargs)

    def exception(self, message: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self._forward(40, message, args, {**kwargs, "exc_info": exc_info})

    def _forward(self, level: int, message: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        logger = self._real(level)
        if logger is not None:
            # stacklevel 3: the record names the caller of debug()/info()..., not this module
            kwargs.setdefault("stacklevel", 3)
            logger.log(level, message, *args, **kwargs)


_loggers: dict[str, Logger] = {}


def get_logger(name: str) -> Logger:
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers[name] = Logger(name)
    return logger
