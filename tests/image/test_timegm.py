"""image.rfc3339's own timegm (parse_time without importing calendar) agrees with calendar.timegm."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina import errdefs
from lamina.image.rfc3339 import _timegm, parse_time, seconds_of


@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 60))
def test_timegm_agrees_with_calendar(year, month, day, hour, minute, second) -> None:
    assert _timegm(year, month, day, hour, minute, second) == calendar.timegm((year, month, day, hour, minute, second))


@pytest.mark.parametrize("fields", [(2024, 0, 1), (2024, 13, 1), (0, 1, 1), (10000, 1, 1)],
                         ids=["month zero", "month thirteen", "year zero", "year ten thousand"])
def test_timegm_refuses_what_calendar_refuses_with_its_message(fields) -> None:
    with pytest.raises(ValueError) as expected:
        calendar.timegm((*fields, 0, 0, 0))
    with pytest.raises(ValueError) as raised:
        _timegm(*fields, 0, 0, 0)
    assert str(raised.value) == str(expected.value)


def test_parse_time_of_known_instants() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == 0
    assert parse_time("2000-02-29T12:30:45.5+02:00") == (951827445 - 7200) * 1_000_000_000 + 500_000_000
    assert parse_time("2024-12-31T23:59:60Z") == 1735689600 * 1_000_000_000
    with pytest.raises(errdefs.InvalidArgument, match="month must be in 1..12"):
        parse_time("2024-13-01T00:00:00Z")


@pytest.mark.parametrize("text, seconds", [
    ("1970-01-01T00:00:10.5Z", 10.5),
    ("0001-01-01T00:00:00Z", 0.0),
    ("", 0.0),
    (None, 0.0),
    ("yesterday", 0.0),
    ("2024-13-01T00:00:00Z", 0.0),
], ids=["a time", "the zero time", "empty", "none", "garbage", "a month out of range"])
def test_seconds_of_reads_the_zero_time_and_garbage_as_never(text, seconds) -> None:
    assert seconds_of(text) == seconds
