"""What emitters need: the :class:`EventSink` protocol, and a sink that discards.

Vocabulary (Docker's, used the same way in code, JSON and tests):

- **event**: one thing that happened to one object, as Docker's ``events.Message``.
- **type**: the kind of object: ``container``, ``image``, ``volume``, ``network``, ``daemon``
  (lamina emits the first three).
- **action**: what happened (``create``, ``start``, ``die``, ``untag``, ...); exec events carry
  the command after a colon (``exec_start: sh -c date``), as Docker's do.
- **actor**: the object: its ``ID`` (container id, image id, volume name; empty for ``prune``)
  and ``Attributes`` (string to string: ``name``, ``image``, labels, and per-action details
  such as ``exitCode`` or ``signal``).

An emitter calls ``sink.emit(type, action, actor_id, attributes)`` *after* the change it
reports was committed.  Emitting never fails the operation that emits: a sink that cannot
record an event logs why and carries on (events are a notification, not a record of state).
"""

from __future__ import annotations

from collections.abc import Mapping

from lamina.protocols import Protocol

__all__ = ["CONTAINER", "DISCARD", "IMAGE", "NETWORK", "VOLUME", "EventSink"]

CONTAINER = "container"
IMAGE = "image"
VOLUME = "volume"
NETWORK = "network"


class EventSink(Protocol):
    def emit(self, type: str, action: str, actor_id: str,
             attributes: Mapping[str, str] | None = None) -> None:
        """Record that ``action`` happened to the ``type`` object ``actor_id``; never raises."""


class _Discard:
    """The sink of stores and services built without an event log (unit tests, tools)."""

    def emit(self, type: str, action: str, actor_id: str,
             attributes: Mapping[str, str] | None = None) -> None:
        return None

    def __repr__(self) -> str:
        return "DISCARD"


DISCARD: EventSink = _Discard()
