"""``lamina events`` in-process, on a real event log (the
engine's other services are not needed and not built)."""

from __future__ import annotations

import json
import time

import pytest

from lamina.cli.commands.events import api_time, format_event
from lamina.cli.main import main
from lamina.client import transport as transport_module
from lamina.events.log import EventLog
from lamina.events.message import build_message, container_attributes

from .test_events_api import Services

SECOND = 1_000_000_000
WEB_ID = "3f4a" + "0" * 60


@pytest.fixture
def log(tmp_path, monkeypatch) -> EventLog:
    log = EventLog(str(tmp_path / "events"), poll_interval=0.01)
    services = Services(log)
    monkeypatch.setattr(transport_module, "build_default_services", lambda config: services)
    for name in ("LAMINA_HOST", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAMINA_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield log
    monkeypatch.undo()
    time.tzset()


def lamina(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_default_line_is_dockers(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        message = build_message("container", "die", WEB_ID, container_attributes(
            {"Image": "busybox", "Labels": {"team": "a"}}, "/web", {"exitCode": "0"}), 1_795_410_000_000_000_042)
        assert format_event(message) == (
            f"2026-11-23T05:00:00.000000042Z container die {WEB_ID} (exitCode=0, image=busybox, name=web, team=a)")
        monkeypatch.setenv("TZ", "Europe/Paris")
        time.tzset()
        assert format_event(message).startswith("2026-11-23T06:00:00.000000042+01:00 container die")
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000.123456789", "1700000000.123456789"),
    ("10m", "1699999400.000000000"),
    ("1h30m", "1699994600.000000000"),
    ("2023-11-14T22:13:20Z", "1700000000.000000000"),
], ids=["a unix time passes unchanged", "a duration before now", "a compound duration", "an RFC 3339 time"])
def test_cli_times_become_api_times(text, expected) -> None:
    assert api_time(text, 1_700_000_000.0, "--since") == expected


def test_events_prints_the_window_and_exits(log, capsys) -> None:
    now = time.time_ns()
    log.append(build_message("container", "start", WEB_ID, {"image": "busybox", "name": "web"}, now - 5 * SECOND))
    log.append(build_message("volume", "create", "data", {"driver": "local"}, now - 4 * SECOND))
    log.append(build_message("container", "start", WEB_ID, {"image": "busybox", "name": "web"}, now - 3600 * SECOND))
    code, out, err = lamina(capsys, "events", "--since", "1m", "--until", "0s")
    assert (code, err) == (0, "")
    assert [line.split(" ", 1)[1] for line in out.splitlines()] == [
        f"container start {WEB_ID} (image=busybox, name=web)", "volume create data (driver=local)"]


def test_events_format_and_filters(log, capsys) -> None:
    now = time.time_ns()
    log.append(build_message("container", "die", WEB_ID, {"image": "busybox", "name": "web", "exitCode": "3"},
                             now - SECOND))
    log.append(build_message("volume", "create", "data", {"driver": "local"}, now - SECOND))
    code, out, _ = lamina(capsys, "events", "--since", "1m", "--until", "0s", "--filter", "type=container",
                          "--format", "{{.Status}} {{.ID}} {{.From}} {{.Actor.Attributes.exitCode}} {{.Scope}}")
    assert code == 0 and out == f"die {WEB_ID} busybox 3 local\n"
    code, out, _ = lamina(capsys, "events", "--since", "1m", "--until", "0s", "-f", "event=create", "--format", "json")
    assert json.loads(out)["Actor"] == {"ID": "data", "Attributes": {"driver": "local"}}


def test_events_bad_filter_is_reported(log, capsys) -> None:
    code, _, err = lamina(capsys, "events", "--filter", "colour=red", "--until", "0s")
    assert code != 0 and "invalid filter 'colour'" in err
