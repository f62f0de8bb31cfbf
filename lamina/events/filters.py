"""Docker's event filters (``GET /events?filters=...``, ``docker events --filter``).

Filters are ``name -> [values]``; an event passes when it passes every name given (AND), and
a name passes when any of its values matches (OR), with Docker's matching rules:

- ``type``, ``scope``: exact (``container``; ``local``);
- ``event``: the exact action, or its prefix for ``exec_create``, ``exec_start`` and
  ``health_status``, whose actions carry details (``exec_start: sh -c date``);
- ``container``, ``volume``, ``network``, ``daemon``, ``plugin``, ``node``, ``service``,
  ``secret``, ``config``: a prefix of the actor's ID or of its ``name`` attribute (whatever
  the event's type: ``container=web`` also matches an image event named ``web``, as in
  Docker);
- ``image``: exactly the actor's ID or image name (the ``name`` attribute of image events,
  ``image`` of container events), or either without its tag (``busybox`` for
  ``busybox:latest``);
- ``label``: ``key`` or ``key=value``, every one given must be among the attributes.

Unknown filter names are refused (``invalid filter 'x'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lamina import errdefs

__all__ = ["EVENT_FILTERS", "EventFilter"]

_NAMED_TYPES = ("container", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config")
EVENT_FILTERS = frozenset({"type", "scope", "event", "image", "label", *_NAMED_TYPES})
_FUZZY_ACTIONS = frozenset({"exec_create", "exec_start", "health_status"})


def _strip_tag(name: str) -> str:
    """``busybox:latest`` -> ``busybox`` (Docker's familiar name); other text unchanged."""
    if not name:
        return name
    from lamina.image.reference import parse_normalized_named

    try:
        return parse_normalized_named(name).familiar_name
    except errdefs.LaminaError:
        return name


class EventFilter:
    def __init__(self, filters: Mapping[str, Iterable[str]] | None = None) -> None:
        self.filters: dict[str, frozenset[str]] = {}
        for key, values in (filters or {}).items():
            if key not in EVENT_FILTERS:
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
            wanted = frozenset(str(value) for value in values)
            if wanted:
                self.filters[key] = wanted

    def __bool__(self) -> bool:
        return bool(self.filters)

    def _exact(self, key: str, value: str) -> bool:
        wanted = self.filters.get(key)
        return wanted is None or value in wanted

    def _prefix(self, key: str, value: str) -> bool:
        wanted = self.filters.get(key)
        return wanted is None or value in wanted or any(value.startswith(prefix) for prefix in wanted)

    def include(self, message: Mapping[str, Any]) -> bool:
        if not self.filters:
            return True
        event_type = str(message.get("Type") or "")
        action = str(message.get("Action") or "")
        actor = message.get("Actor") or {}
        actor_id = str(actor.get("ID") or "")
        attributes = actor.get("Attributes") or {}
        name = str(attributes.get("name") or "")
        if self.filters.get("event", frozenset()) & _FUZZY_ACTIONS:
            if not self._prefix("event", action):
                return False
        elif not self._exact("event", action):
            return False
        if not self._exact("type", event_type) or not self._exact("scope", str(message.get("scope") or "")):
            return False
        for key in _NAMED_TYPES:
            if key in self.filters and not (self._prefix(key, actor_id) or self._prefix(key, name)):
                return False
        if "image" in self.filters:
            image = str(attributes.get("name" if event_type == "image" else "image") or "")
            if not any(self._exact("image", candidate)
                       for candidate in (actor_id, image, _strip_tag(actor_id), _strip_tag(image))):
                return False
        labels = self.filters.get("label")
        if labels:
            for wanted in labels:
                key, equals, value = wanted.partition("=")
                if key not in attributes or (equals and str(attributes[key]) != value):
                    return False
        return True
