"""``Protocol``, the base of lamina's interfaces, without :mod:`typing` at run time.

A type checker sees :class:`typing.Protocol`.  At run time a protocol defined with this base is
a plain class: its methods document the interface and nothing checks an object against it.
Importing :mod:`typing` costs a command ~2.5 ms (a twelfth of ``lamina ps``), and the modules
every listing loads (the event sink, the graph driver registry, the container name index) use
it only to state what they need of a collaborator.  A protocol that is tested with
``isinstance`` (``@runtime_checkable``) takes typing's own.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Protocol
else:
    class Protocol:
        """The run-time base of an interface: a plain class (see the module docstring)."""

        __slots__ = ()

__all__ = ["Protocol"]
