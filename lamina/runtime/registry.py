"""Container runtimes by name: the one place a ``HostConfig.Runtime`` name becomes a
:class:`~lamina.runtime.api.Runtime`.

Every runtime lamina implements is in :data:`RUNTIMES` (name -> the module and the factory
in it): ``native`` (:mod:`lamina.runtime.native`, lamina's own) and the OCI runtimes ``crun``
and ``runc`` (:mod:`lamina.runtime.oci`, which hands a config.json to the binary of that
name).  A factory is called as ``factory(name, exec_root)`` (:class:`RuntimeFactory`); what a
runtime keeps under the exec root is its own business (the OCI runtimes their bundles in
``<exec-root>/oci``, the native one its compiled seccomp filters in ``<exec-root>/seccomp``).

Implementations are imported only when a runtime of theirs is asked for: starting a container
must not pay for the modules of the runtimes it does not use.

Selection: an empty ``HostConfig.Runtime`` is the engine's default runtime (``native``); an
unknown name is :class:`~lamina.errdefs.InvalidArgument` naming the known ones, a runtime whose
implementation cannot be loaded (a missing binary, a module that does not import)
:class:`~lamina.errdefs.FailedPrecondition` with the reason.  :class:`Runtimes` opens each
runtime of one engine once and keeps it (a long-running server pays for a runtime's set-up,
e.g. compiling Docker's seccomp profile, once); runtimes beyond the built-in ones (tests,
plugins) are given to its constructor and cannot replace a built-in name.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Mapping
from typing import Protocol

from lamina import errdefs
from lamina.runtime.api import Runtime

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "RuntimeFactory", "Runtimes", "open_runtime"]

DEFAULT_RUNTIME = "native"

# name -> (module, factory attribute): imported when the runtime is first asked for
RUNTIMES: Mapping[str, tuple[str, str]] = types.MappingProxyType({
    "native": ("lamina.runtime.native", "open_runtime"),
    "crun": ("lamina.runtime.oci", "open_runtime"),
    "runc": ("lamina.runtime.oci", "open_runtime"),
})


class RuntimeFactory(Protocol):
    def __call__(self, name: str, exec_root: str) -> Runtime:
        """The runtime called ``name``, keeping its state under ``exec_root``."""


def _factory(name: str, extra: Mapping[str, RuntimeFactory]) -> RuntimeFactory:
    if name in extra:
        return extra[name]
    if name not in RUNTIMES:
        known = ", ".join((*RUNTIMES, *sorted(extra)))
        raise errdefs.InvalidArgument(f"unknown runtime {name!r} (known: {known})")
    module_name, attribute = RUNTIMES[name]
    try:
        factory: RuntimeFactory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise errdefs.FailedPrecondition(f"runtime {name!r} is not available: {exc}") from exc
    return factory


def open_runtime(name: str, exec_root: str, *, extra: Mapping[str, RuntimeFactory] | None = None) -> Runtime:
    """A new runtime called ``name`` (see the module docstring for the errors)."""
    return _factory(name, extra or {})(name, exec_root)


class Runtimes:
    """The runtimes of one engine, by name, each opened once."""

    def __init__(self, exec_root: str, *, extra: Mapping[str, RuntimeFactory] | None = None) -> None:
        extra = dict(extra or {})
        for name in extra:
            if name in RUNTIMES:
                raise errdefs.AlreadyExists(f"runtime {name!r} is built in")
        self.exec_root = exec_root
        self._extra: Mapping[str, RuntimeFactory] = types.MappingProxyType(extra)
        self._opened: dict[str, Runtime] = {}

    def names(self) -> tuple[str, ...]:
        """Every name :meth:`get` knows, the built-in ones first."""
        return (*RUNTIMES, *sorted(self._extra))

    def get(self, name: str) -> Runtime:
        """The runtime called ``name``, opened on first use."""
        runtime = self._opened.get(name)
        if runtime is None:
            runtime = self._opened[name] = open_runtime(name, self.exec_root, extra=self._extra)
        return runtime
