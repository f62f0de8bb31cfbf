"""A package's public names, each imported from its own module when first read (PEP 562).

A package whose parts are used apart (``lamina.archive``: a layer's tar stream without its
change walker; ``lamina.container.monitor``: a liveness check without the monitor's sockets)
lists where each of its names lives and imports none of them until one is read::

    __getattr__, __dir__ = lazy_exports(__name__, {"TarReader": "tarstream", ...}, __all__)

A home without a dot is a module of the package, one with a dot a module's full name.  A name
read once is set on the package, so later reads are plain attribute look-ups; an unknown name
raises :class:`AttributeError` as a module's attribute look-up does.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, str],
                 public: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose names live in ``homes``."""
    public = frozenset(public)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home if "." in home else f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | public)

    return __getattr__, __dir__
