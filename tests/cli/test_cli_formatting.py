"""Docker's text helpers: go-units sizes and durations, tabwriter layout, id/ref helpers."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.cli.formatting import (
    bytes_size, ellipsis, familiar_name, go_time, human_duration, human_size, rfc3339, since, split_reference,
    tabulate, truncate_id,
)


@pytest.mark.parametrize("size, precision, expected", [
    (0, 3, "0B"),
    (999, 3, "999B"),
    (1000, 3, "1kB"),
    (1024, 4, "1.024kB"),
    (4261550, 3, "4.26MB"),
    (4261550, 4, "4.262MB"),
    (77800000, 3, "77.8MB"),
    (999_999, 3, "1e+03kB"),          # Go's %.3g does the same
    (1_000_000_000_000, 4, "1TB"),
    (1e30, 4, "1e+06YB"),
])
def test_human_size_is_go_units_decimal(size: float, precision: int, expected: str) -> None:
    assert human_size(size, precision) == expected


@pytest.mark.parametrize("size, expected", [
    (0, "0B"), (1023, "1023B"), (1024, "1KiB"), (4105744384, "3.824GiB"), (1536, "1.5KiB"),
])
def test_bytes_size_is_go_units_binary(size: int, expected: str) -> None:
    assert bytes_size(size) == expected


@pytest.mark.parametrize("seconds, expected", [
    (0.5, "Less than a second"),
    (1, "1 second"),
    (59, "59 seconds"),
    (60, "About a minute"),
    (119, "About a minute"),
    (120, "2 minutes"),
    (59 * 60, "59 minutes"),
    (60 * 60, "About an hour"),
    (90 * 60, "2 hours"),           # hours are rounded: 1.5 h -> 2
    (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"),
    (13 * 86400, "13 days"),
    (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"),
    (60 * 86400, "2 months"),
    (729 * 86400, "24 months"),
    (730 * 86400, "2 years"),
])
def test_human_duration_is_go_units(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_since_appends_ago() -> None:
    assert since(1000, now=1000 + 14 * 86400) == "2 weeks ago"


def test_rfc3339_in_utc(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        assert rfc3339(1_700_000_000) == "2023-11-14T22:13:20Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.fixture
def time_zone():
    """Set TZ for the test; the process's own zone is restored after it."""
    before = os.environ.get("TZ")

    def use(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()
    yield use
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_go_time_is_gos_time_string(time_zone) -> None:
    time_zone("UTC")
    assert go_time(1_700_000_000) == "2023-11-14 22:13:20 +0000 UTC"
    time_zone("Europe/Paris")
    assert go_time(1_700_000_000.9) == "2023-11-14 23:13:20 +0100 CET"
    assert go_time(1_690_000_000) == "2023-07-22 06:26:40 +0200 CEST"


@settings(max_examples=300, deadline=None)
@given(timestamp=st.one_of(st.integers(0, 2**33), st.floats(0, 2**33)),
       zone=st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe"]))
def test_go_time_matches_datetimes_local_time(timestamp: float, zone: str) -> None:
    """go_time (per row of a listing: struct_time, no datetime) says what datetime says."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        moment = datetime.fromtimestamp(timestamp).astimezone()
        assert go_time(timestamp) == moment.strftime("%Y-%m-%d %H:%M:%S %z ") + (moment.tzname() or "")
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_tabulate_pads_like_docker_tabwriter() -> None:
    text = tabulate([
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        ["busybox", "latest", "a416a98b71e2", "2 weeks ago", "4.26MB"],
    ])
    assert text == (
        "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n"
        "busybox      latest    a416a98b71e2   2 weeks ago   4.26MB\n")


def test_tabulate_minimum_width_and_empty_last_cell() -> None:
    assert tabulate([["A", "B"], ["x", ""]]) == "A         B\nx         \n"


def test_truncate_id_and_ellipsis() -> None:
    assert truncate_id("sha256:" + "ab" * 32) == "abababababab"
    assert truncate_id("<missing>") == "<missing>"
    assert ellipsis("short", 45) == "short"
    assert ellipsis("x" * 50, 45) == "x" * 44 + "…"
    assert len(ellipsis("x" * 50, 45)) == 45


@pytest.mark.parametrize("reference, expected", [
    ("busybox", ("busybox", "")),
    ("busybox:latest", ("busybox", "latest")),
    ("localhost:5000/a/b", ("localhost:5000/a/b", "")),
    ("localhost:5000/a/b:tag", ("localhost:5000/a/b", "tag")),
    ("busybox@sha256:abc", ("busybox", "@sha256:abc")),
])
def test_split_reference(reference: str, expected: tuple[str, str]) -> None:
    assert split_reference(reference) == expected


def test_familiar_name() -> None:
    assert familiar_name("docker.io/library/busybox") == "busybox"
    assert familiar_name("docker.io/user/app") == "user/app"
    assert familiar_name("localhost:5000/a") == "localhost:5000/a"
