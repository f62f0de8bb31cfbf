"""Container runtimes by name: ``native`` (lamina's own, :mod:`lamina.runtime.native`) and the
OCI runtimes ``crun`` and ``runc`` (:mod:`lamina.runtime.oci`, which hands a config.json to
the binary of that name).

Implementations are imported only when asked for: starting a container must not pay for the
modules of the runtimes it does not use.  :func:`register_runtime` adds a factory under a new
name (tests, plugins); the built-in names cannot be replaced.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lamina import errdefs
from lamina.runtime.api import Runtime

__all__ = ["BUILTIN_RUNTIMES", "get_runtime", "register_runtime", "runtime_names"]

# name -> (module, factory attribute, arguments)
BUILTIN_RUNTIMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "native": ("lamina.runtime.native", "NativeRuntime", ()),
    "crun": ("lamina.runtime.oci", "OCIRuntime", ("crun",)),
    "runc": ("lamina.runtime.oci", "OCIRuntime", ("runc",)),
}


class _Registry:
    """Factories registered at run time, kept on an instance (no module-level mutable state
    other than this one registry object)."""

    def __init__(self) -> None:
        self.factories: dict[str, Callable[[], Runtime]] = {}


_registry = _Registry()


def register_runtime(name: str, factory: Callable[[], Runtime]) -> None:
    if name in BUILTIN_RUNTIMES:
        raise errdefs.AlreadyExists(f"runtime {name!r} is built in")
    _registry.factories[name] = factory


def runtime_names() -> tuple[str, ...]:
    return tuple(BUILTIN_RUNTIMES) + tuple(sorted(_registry.factories))


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; InvalidArgument for an unknown name, FailedPrecondition
    when its implementation is not available."""
    if name in _registry.factories:
        return _registry.factories[name]()
    if name not in BUILTIN_RUNTIMES:
        raise errdefs.InvalidArgument(f"unknown runtime {name!r} (known: {', '.join(runtime_names())})")
    module_name, attribute, arguments = BUILTIN_RUNTIMES[name]
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise errdefs.FailedPrecondition(f"runtime {name!r} is not available: {exc}") from exc
    return factory(*arguments)
