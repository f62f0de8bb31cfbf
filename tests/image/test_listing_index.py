"""imagedb/listing.json: entries round-trip, any other content is damage (never a crash), and an
index is used only for the stamp it was written under."""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.image.listing import ListedImage, ListingIndex

HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
DIGESTS = HEX.map(lambda text: "sha256:" + text)
TEXT = st.text(max_size=12)
ENTRIES = st.builds(
    ListedImage, image_id=DIGESTS, parent=st.none() | DIGESTS,
    created=st.floats(0, 2**33, allow_nan=False) | st.integers(0, 2**33).map(float),
    labels=st.dictionaries(TEXT, TEXT, max_size=3), tags=st.lists(TEXT, max_size=3).map(tuple),
    repo_digests=st.lists(TEXT, max_size=2).map(tuple), chains=st.lists(DIGESTS, max_size=3).map(tuple),
    size=st.integers(0, 2**50))
STAMP = ((1, 2, 3, 4), (1, 5, 6, 7, 8))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(ENTRIES, max_size=4))
def test_entries_round_trip_through_the_file(tmp_path_factory, entries) -> None:
    index = ListingIndex(str(tmp_path_factory.mktemp("root")))
    os.makedirs(os.path.dirname(index.path), exist_ok=True)
    index.write(STAMP, entries)
    assert index.load(STAMP) == (entries, "")
    assert index.load(((1, 2, 3, 4), (1, 5, 6, 7, 9))) == (None, ""), "another stamp: outdated, not damaged"


@settings(max_examples=300, deadline=None)
@given(value=JSON | st.fixed_dictionaries({"Id": DIGESTS, "Parent": JSON, "Created": JSON, "Size": JSON,
                                           "Labels": JSON, "RepoTags": JSON, "RepoDigests": JSON, "Chains": JSON}))
def test_any_other_entry_is_refused_as_invalid(value) -> None:
    try:
        entry = ListedImage.from_json(value)
    except errdefs.InvalidArgument:
        return
    assert ListedImage.from_json(json.loads(json.dumps(entry.to_json()))) == entry


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64) | JSON.map(lambda value: json.dumps(value).encode())
       | JSON.map(lambda images: json.dumps({"Version": 1, "Stamp": [list(part) for part in STAMP],
                                             "Images": images}).encode()))
def test_any_other_file_is_damage_or_outdated_never_a_crash(tmp_path_factory, data) -> None:
    index = ListingIndex(str(tmp_path_factory.mktemp("root")))
    os.makedirs(os.path.dirname(index.path), exist_ok=True)
    with open(index.path, "wb") as handle:
        handle.write(data)
    entries, damage = index.load(STAMP)
    assert entries is None or damage == ""
    if entries is None and not damage:  # outdated: an index document of another stamp
        assert json.loads(data).get("Stamp") != [list(part) for part in STAMP]


def test_an_index_of_another_version_is_not_used(tmp_path) -> None:
    index = ListingIndex(str(tmp_path))
    os.makedirs(os.path.dirname(index.path))
    with open(index.path, "w") as handle:
        json.dump({"Version": 2, "Stamp": [list(part) for part in STAMP], "Images": []}, handle)
    assert index.load(STAMP) == (None, "has version 2, not 1")
    assert index.remove() and not index.remove()
