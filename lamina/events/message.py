"""Docker's event message (``events.Message``) and the attributes of container events.

A message, as stored and as sent by ``GET /events`` (field names and omissions are Docker's)::

    {"status": "start", "id": "<container id>", "from": "busybox",
     "Type": "container", "Action": "start",
     "Actor": {"ID": "<container id>", "Attributes": {"image": "busybox", "name": "x", ...}},
     "scope": "local", "time": 1700000000, "timeNano": 1700000000123456789}

``status``, ``id`` and ``from`` are Docker's deprecated fields, filled for container events
(``from`` is the ``image`` attribute) and image events (no ``from``) and left out otherwise, as
Go's ``omitempty`` leaves out empty strings.  ``time`` is whole seconds, ``timeNano`` the same
instant in nanoseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SCOPE", "build_message", "container_attributes"]

SCOPE = "local"


def build_message(type: str, action: str, actor_id: str, attributes: Mapping[str, str] | None,
                  time_ns: int) -> dict[str, Any]:
    """The message for one event at ``time_ns`` (nanoseconds since the epoch)."""
    attributes = {str(key): str(value) for key, value in (attributes or {}).items()}
    message: dict[str, Any] = {}
    if type in ("container", "image"):
        if action:
            message["status"] = action
        if actor_id:
            message["id"] = actor_id
        if type == "container" and attributes.get("image"):
            message["from"] = attributes["image"]
    message["Type"] = type
    message["Action"] = action
    message["Actor"] = {"ID": actor_id, "Attributes": attributes}
    message["scope"] = SCOPE
    message["time"] = time_ns // 1_000_000_000
    message["timeNano"] = time_ns
    return message


def container_attributes(config: Mapping[str, Any] | None, name: str,
                         extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A container event's attributes as Docker builds them: the container's labels, then
    ``image`` (the name it was created from) and ``name`` (without the leading ``/``), then the
    action's own attributes (``exitCode``, ``signal``, ...)."""
    config = config or {}
    attributes = {str(key): str(value) for key, value in (config.get("Labels") or {}).items()}
    image = config.get("Image")
    if image:
        attributes["image"] = str(image)
    attributes["name"] = name.lstrip("/")
    if extra:
        attributes.update((str(key), str(value)) for key, value in extra.items())
    return attributes
