"""Detach keys (:mod:`lamina.container.detachkeys`): Docker's grammar, and a matcher whose
answer does not depend on how the input is split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina import errdefs
from lamina.container.detachkeys import DEFAULT_DETACH_KEYS, DetachMatcher, format_detach_keys, parse_detach_keys


@pytest.mark.parametrize("text, keys", [
    ("", b"\x10\x11"), (None, b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"),
    ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
    ("a,b,X", b"abX"), ("ctrl-x,e", b"\x18e"), ("DEL", b"\x7f"), (",", None),
], ids=["empty is the default", "none is the default", "ctrl-p ctrl-q", "ctrl-a", "punctuation controls",
        "single characters", "control then a letter", "DEL", "a lone comma is refused"])
def test_the_grammar(text, keys) -> None:
    if keys is None:
        with pytest.raises(errdefs.InvalidArgument):
            parse_detach_keys(text)
    else:
        assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-1", "ctrl-P", "ctrlp", "ab", "ctrl-p,,ctrl-q", "é", "alt-a"])
def test_unknown_keys_are_refused_naming_the_specification(text) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys(text)


def test_a_partial_sequence_followed_by_another_key_is_passed_through() -> None:
    matcher = DetachMatcher(DEFAULT_DETACH_KEYS)
    assert matcher.feed(b"ab\x10") == b"ab"
    assert matcher.feed(b"c") == b"\x10c"
    assert not matcher.detached
    assert matcher.feed(b"\x10\x10") == b"\x10"
    assert matcher.feed(b"\x11after") == b""
    assert matcher.detached
    assert matcher.feed(b"more") == b"" and matcher.flush() == b""


def test_held_keys_are_passed_on_at_the_end_of_input() -> None:
    matcher = DetachMatcher(b"\x10\x11")
    assert matcher.feed(b"x\x10") == b"x"
    assert matcher.flush() == b"\x10"


@given(st.lists(st.integers(0, 127).filter(lambda value: value != ord(",")), min_size=1, max_size=6).map(bytes))
def test_format_and_parse_are_inverse(keys: bytes) -> None:
    # (a comma cannot be a key: it separates them)
    assert parse_detach_keys(format_detach_keys(keys)) == keys


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@given(keys=st.binary(min_size=1, max_size=4),
       data=st.binary(max_size=64), cuts=st.lists(st.integers(0, 64), max_size=8))
def test_the_matcher_passes_what_precedes_the_first_sequence_however_the_input_is_split(keys, data, cuts) -> None:
    # draw inputs rich in the keys' bytes too
    data = data.replace(b"\x00", keys[:1])
    matcher = DetachMatcher(keys)
    passed = b"".join(matcher.feed(piece) for piece in _split(data, cuts)) + matcher.flush()
    if keys in data:
        assert matcher.detached
        assert passed == data[:data.index(keys)]
    else:
        assert not matcher.detached
        assert passed == data


@given(data=st.lists(st.sampled_from([b"\x10", b"\x11", b"a", b"\x10\x11", b"\x10a"]), max_size=12),
       cuts=st.lists(st.integers(0, 24), max_size=6))
def test_default_keys_over_streams_made_of_their_parts(data, cuts) -> None:
    stream = b"".join(data)
    matcher = DetachMatcher()
    passed = b"".join(matcher.feed(piece) for piece in _split(stream, cuts)) + matcher.flush()
    index = stream.find(DEFAULT_DETACH_KEYS)
    assert matcher.detached == (index >= 0)
    assert passed == (stream[:index] if index >= 0 else stream)
