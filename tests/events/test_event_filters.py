"""Docker's event filter semantics, case by case."""

from __future__ import annotations

import pytest

from lamina import errdefs
from lamina.events.filters import EventFilter
from lamina.events.message import build_message, container_attributes

WEB_ID = "3f4a" + "0" * 60
IMAGE_ID = "sha256:" + "ab" * 32

CONTAINER_START = build_message("container", "start", WEB_ID, container_attributes(
    {"Image": "busybox:latest", "Labels": {"team": "a", "tier": "web"}}, "/web"), 1)
CONTAINER_DIE = build_message("container", "die", WEB_ID, container_attributes(
    {"Image": "busybox:latest"}, "/web", {"exitCode": "3"}), 2)
EXEC_START = build_message("container", "exec_start: sh -c date", WEB_ID, container_attributes(
    {"Image": "busybox:latest"}, "/web", {"execID": "e1"}), 3)
IMAGE_TAG = build_message("image", "tag", IMAGE_ID, {"name": "example.org/box:1.0"}, 4)
VOLUME_CREATE = build_message("volume", "create", "data", {"driver": "local"}, 5)
EVERY = {"container start": CONTAINER_START, "container die": CONTAINER_DIE, "exec start": EXEC_START,
         "image tag": IMAGE_TAG, "volume create": VOLUME_CREATE}

CASES = [
    ("no filter passes everything", {}, set(EVERY)),
    ("type selects a kind of object", {"type": ["container"]}, {"container start", "container die", "exec start"}),
    ("several values of a name are alternatives", {"type": ["image", "volume"]}, {"image tag", "volume create"}),
    ("event is the exact action", {"event": ["die"]}, {"container die"}),
    ("exec_start matches the action with its command", {"event": ["exec_start"]}, {"exec start"}),
    ("container matches a prefix of the id", {"container": ["3f4a"]},
     {"container start", "container die", "exec start"}),
    ("container matches a prefix of the name", {"container": ["we"]},
     {"container start", "container die", "exec start"}),
    ("container excludes other objects", {"container": ["nothing"]}, set()),
    ("image matches a container's image without its tag", {"image": ["busybox"]},
     {"container start", "container die", "exec start"}),
    ("image matches a container's image with its tag", {"image": ["busybox:latest"]},
     {"container start", "container die", "exec start"}),
    ("image matches an image event's name without its tag", {"image": ["example.org/box"]}, {"image tag"}),
    ("image matches an image event's id", {"image": [IMAGE_ID]}, {"image tag"}),
    ("volume matches the volume name", {"volume": ["dat"]}, {"volume create"}),
    ("label with a value", {"label": ["team=a"]}, {"container start"}),
    ("label by key", {"label": ["tier"]}, {"container start"}),
    ("every label must match", {"label": ["team=a", "tier=db"]}, set()),
    ("label matches any attribute", {"label": ["exitCode=3"]}, {"container die"}),
    ("names combine with AND", {"type": ["container"], "event": ["die", "tag"]}, {"container die"}),
    ("scope local", {"scope": ["local"]}, set(EVERY)),
    ("scope swarm", {"scope": ["swarm"]}, set()),
    ("network filters out objects that are not that network", {"network": ["bridge"]}, set()),
]


@pytest.mark.parametrize(("filters", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_filter(filters, expected) -> None:
    event_filter = EventFilter(filters)
    assert {name for name, message in EVERY.items() if event_filter.include(message)} == expected


def test_unknown_filter_names_are_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid filter 'colour'"):
        EventFilter({"colour": ["red"]})
