"""The router's ``/events`` and unsupported endpoints, on a real event log and a
double of the container service."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from lamina.api.events import parse_event_time
from lamina.api.http import Request, Response
from lamina.api.router import Router
from lamina.api.unsupported import NOT_A_SWARM_MANAGER
from lamina.events.log import EventLog
from lamina.events.message import build_message
from lamina.services.events import EventServiceImpl

SECOND = 1_000_000_000


class Containers:
    """What the events endpoints read of containers: their summaries (none run here)."""

    def __init__(self) -> None:
        self.running: list[dict[str, Any]] = []

    def list_containers(self, **_: Any) -> list[dict[str, Any]]:
        return list(self.running)


class Services:
    def __init__(self, log: EventLog) -> None:
        self.events = EventServiceImpl(log)
        self.container_views = Containers()


@pytest.fixture
def log(tmp_path) -> EventLog:
    return EventLog(str(tmp_path / "events"), poll_interval=0.01)


@pytest.fixture
def services(log) -> Services:
    return Services(log)


@pytest.fixture
def router(services) -> Router:
    return Router(lambda: services)


def send(router: Router, method: str, target: str, body: bytes | None = None) -> Response:
    return router.handle(Request.from_target(method, target, body=io.BytesIO(body) if body is not None else None))


def lines(response: Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.read_body().splitlines()]


def error(response: Response) -> str:
    return json.loads(response.read_body())["message"]


# -- /events ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000", 1_700_000_000 * SECOND),
    ("1700000000.5", 1_700_000_000 * SECOND + 500_000_000),
    ("1700000000.000000001", 1_700_000_000 * SECOND + 1),
    ("2023-11-14T22:13:20Z", 1_700_000_000 * SECOND),
    ("2023-11-14T23:13:20.25+01:00", 1_700_000_000 * SECOND + 250_000_000),
    ("", None),
], ids=["unix seconds", "a fraction", "nanoseconds kept exactly", "RFC 3339 in UTC", "RFC 3339 with an offset",
        "empty"])
def test_event_times(text, expected) -> None:
    assert parse_event_time(text) == expected


def test_a_window_replays_the_stored_events_and_ends(router, log) -> None:
    for seconds, action in ((10, "create"), (20, "start"), (30, "die")):
        log.append(build_message("container", action, "c1", {"name": "x"}, seconds * SECOND))
    response = send(router, "GET", "/v1.45/events?since=15&until=30")
    assert response.status == 200 and response.headers["Content-Type"] == "application/json"
    assert [message["Action"] for message in lines(response)] == ["start", "die"]


def test_filters_apply_to_the_stream(router, log) -> None:
    log.append(build_message("container", "start", "c1", {"name": "x"}, 10 * SECOND))
    log.append(build_message("volume", "create", "v1", {"driver": "local"}, 11 * SECOND))
    query = json.dumps({"type": {"volume": True}})  # the legacy shape the docker CLI sends
    response = send(router, "GET", f"/events?since=0&until=100&filters={query}")
    assert [message["Actor"]["ID"] for message in lines(response)] == ["v1"]


@pytest.mark.parametrize(("target", "message"), [
    ("/events?since=yesterday", "invalid value for since"),
    ("/events?until=12:00", "invalid value for until"),
    ("/events?since=20&until=10", "`since` time (20.000000000) cannot be after `until` time (10.000000000)"),
    ('/events?filters={"colour":["red"]}', "invalid filter 'colour'"),
], ids=["a word for since", "a clock time for until", "until before since", "an unknown filter"])
def test_bad_event_queries_are_400(router, target, message) -> None:
    response = send(router, "GET", target)
    assert response.status == 400
    assert message in error(response)


def test_a_followed_stream_delivers_new_events_and_cancel_ends_it(router, log) -> None:
    response = send(router, "GET", "/events")
    chunks = iter(response.body)
    received: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        for chunk in chunks:
            received.append(chunk)  # noqa: PERF402 - read while the test looks
        done.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.05)
    log.emit("container", "kill", "c9", {"signal": "9"})
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(received[0])["Actor"]["Attributes"] == {"signal": "9"}
    started = time.monotonic()
    response.body.cancel()  # what the server calls from its watcher thread when the client leaves
    assert done.wait(2)
    assert time.monotonic() - started < 0.1
    response.close()


def test_an_until_in_the_future_ends_the_stream_by_itself(router, log) -> None:
    until = time.time() + 0.3
    response = send(router, "GET", f"/events?until={until:.9f}")
    started = time.monotonic()
    threading.Timer(0.1, lambda: log.emit("image", "tag", "sha256:1", {"name": "a:b"})).start()
    assert [message["Action"] for message in lines(response)] == ["tag"]
    assert time.monotonic() - started < 2


# -- unsupported features --------------------------------------------------------------------

UNSUPPORTED = [
    ("GET", "/v1.45/swarm", 503, NOT_A_SWARM_MANAGER),
    ("GET", "/v1.45/nodes", 503, NOT_A_SWARM_MANAGER),
    ("GET", "/nodes/abc", 503, NOT_A_SWARM_MANAGER),
    ("POST", "/services/create", 503, NOT_A_SWARM_MANAGER),
    ("GET", "/tasks", 503, NOT_A_SWARM_MANAGER),
    ("DELETE", "/secrets/s1", 503, NOT_A_SWARM_MANAGER),
    ("GET", "/configs", 503, NOT_A_SWARM_MANAGER),
    ("POST", "/swarm/init", 503, "lamina does not support swarm mode"),
    ("POST", "/swarm/leave", 503, "This node is not part of a swarm"),
    ("GET", "/plugins/privileges", 501, "lamina does not support plugins"),
    ("POST", "/session", 501, "classic builder"),
    ("GET", "/containers/web/checkpoints", 501, "checkpoint"),
    ("DELETE", "/containers/web/checkpoints/first", 501, "checkpoint"),
]


@pytest.mark.parametrize(("method", "target", "status", "message"), UNSUPPORTED,
                         ids=[f"{method} {target}" for method, target, _, _ in UNSUPPORTED])
def test_unsupported_features_answer_like_docker_without_them(router, method, target, status, message) -> None:
    response = send(router, method, target, b"{}")
    assert response.status == status
    assert message in error(response)


def test_plugins_list_is_empty(router) -> None:
    response = send(router, "GET", "/v1.45/plugins")
    assert response.status == 200 and json.loads(response.read_body()) == []


def test_unknown_paths_are_still_404(router) -> None:
    assert send(router, "GET", "/swarmy").status == 404
    assert send(router, "PUT", "/events").status == 405
