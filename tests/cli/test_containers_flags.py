"""The value parsers behind run/create/update/logs flags, with docker's vectors."""

from __future__ import annotations

import pytest

from lamina.cli.container_flags import (
    FlagError,
    parse_cpus,
    parse_duration,
    parse_env,
    parse_labels,
    parse_restart,
    parse_size,
    parse_swap,
    parse_time,
)
from lamina.cli.errors import UsageError
from lamina.cli.foreground import start_failure_code


@pytest.mark.parametrize("text, expected", [
    ("32", 32), ("32b", 32), ("32B", 32), ("32k", 32 * 1024), ("32K", 32 * 1024), ("32kb", 32 * 1024),
    ("32Kib", 32 * 1024), ("32mb", 32 << 20), ("32Gb", 32 << 30), ("32Tb", 32 << 40), ("32PB", 32 << 50),
    ("1.5g", int(1.5 * (1 << 30))), ("512 m", 512 << 20),
])
def test_sizes_are_go_units_ram_in_bytes(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12zz", "-1", "1.5.5x", "m", "32bm", "0x10"])
def test_bad_sizes_say_so_like_docker(text) -> None:
    with pytest.raises(FlagError) as caught:
        parse_size(text)
    assert caught.value.message == f'invalid argument "{text}" for "-m, --memory" flag: invalid size: \'{text}\''
    assert caught.value.exit_code == 125


def test_swap_accepts_minus_one() -> None:
    assert parse_swap("-1") == -1 and parse_swap("1g") == 1 << 30
    with pytest.raises(FlagError, match="--memory-swap"):
        parse_swap("-2")


@pytest.mark.parametrize("text, nano", [("1", 1_000_000_000), ("0.5", 500_000_000), ("1.25", 1_250_000_000),
                                        ("0", 0), ("0.000000001", 1)])
def test_cpus_become_nano_cpus(text, nano) -> None:
    assert parse_cpus(text) == nano


@pytest.mark.parametrize("text", ["-1", "x", "nan", "inf", "0.0000000001"])
def test_bad_cpus(text) -> None:
    with pytest.raises(FlagError, match='"--cpus" flag'):
        parse_cpus(text)


@pytest.mark.parametrize("text, policy", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:5", {"Name": "on-failure", "MaximumRetryCount": 5}),
])
def test_restart_policies(text, policy) -> None:
    assert parse_restart(text) == policy


@pytest.mark.parametrize("text, message", [
    (":3", "no policy provided before colon"), ("never", "unknown policy 'never'"),
    ("always:1", "only be used with 'on-failure'"), ("on-failure:x", "must be an integer"),
    ("on-failure:-1", "cannot be negative"),
])
def test_bad_restart_policies(text, message) -> None:
    with pytest.raises(FlagError, match=message):
        parse_restart(text)


def test_env_and_labels() -> None:
    environment = {"HOME": "/root", "EMPTY": ""}
    assert parse_env(["A=1", "HOME", "EMPTY", "MISSING", "B=x=y", "C="], environment) == [
        "A=1", "HOME=/root", "EMPTY=", "B=x=y", "C="]
    with pytest.raises(FlagError):
        parse_env(["=value"], environment)
    assert parse_labels(["a=b", "c", "d=e=f"]) == {"a": "b", "c": "", "d": "e=f"}


@pytest.mark.parametrize("text, seconds", [
    ("10m", 600.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("300ms", 0.3), ("2h45m10s", 9910.0),
    ("-5s", -5.0), ("0", 0.0), ("1µs", 1e-6), ("7ns", 7e-9),
])
def test_go_durations(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "m", "1x", "", "1h 30m"])
def test_not_durations(text) -> None:
    assert parse_duration(text) is None


def test_times_for_since_and_until() -> None:
    now = 1_700_000_000.0
    assert parse_time("10m", now) == now - 600
    assert parse_time("1700000123", now) == 1_700_000_123
    assert parse_time("1700000123.5", now) == 1_700_000_123.5
    assert parse_time("2023-11-14T22:13:20Z", now) == 1_700_000_000
    assert parse_time("2023-11-14T23:13:20+01:00", now) == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20.25Z", now) == 1_700_000_000.25
    assert isinstance(parse_time("2023-11-14", now), float)
    with pytest.raises(UsageError):
        parse_time("yesterday", now)


@pytest.mark.parametrize("message, code", [
    ('exec: "nosuch": executable file not found in $PATH', 127),
    ("exec /app: no such file or directory", 127),
    ('exec: "/etc": permission denied', 126),
    ("exec /bin: is a directory", 126),
    ("cgroup: cannot write memory.max", 125),
])
def test_start_failures_map_to_docker_exit_codes(message, code) -> None:
    assert start_failure_code(message) == code
    assert start_failure_code("Error response from daemon: " + message) == code
