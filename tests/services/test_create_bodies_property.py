"""Generated create bodies through the API router with the real services: every answer is a
success or a 4xx with a message, never a 5xx (hypothesis over the fields of
:data:`lamina.api.bodies.CONTAINER_CREATE`, with right-typed, wrong-typed and extreme values)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lamina.api import bodies
from lamina.api.http import Request
from lamina.api.router import Router

pytestmark = pytest.mark.privileged

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 20), max_value=10 ** 20),
                     st.sampled_from([0, -1, 1, 5000, 2 ** 63, 10 ** 30]), st.floats(allow_nan=False),
                     st.text(max_size=20), st.sampled_from(["", "host", "5", "/proc", "a:b:c", "size=abc",
                                                            "\x00", "container:x", "net.ipv4.ip_forward"]))
_JSON = st.recursive(_SCALARS, lambda children: st.one_of(st.lists(children, max_size=3),
                                                          st.dictionaries(st.text(max_size=8), children, max_size=3)),
                     max_leaves=8)


def _value_for(kind) -> st.SearchStrategy:
    if isinstance(kind, dict):
        return st.one_of(_JSON, _body(kind))
    if isinstance(kind, tuple):
        return st.one_of(_JSON, st.lists(_value_for(kind[1]), max_size=2))
    typed = {
        "string": st.text(max_size=30), "boolean": st.booleans(), "integer": st.integers(-(2 ** 64), 2 ** 64),
        "number": st.floats(allow_nan=False), "strings": st.lists(st.text(max_size=30), max_size=3),
        "string-map": st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3),
        "strslice": st.lists(st.text(max_size=10), max_size=3),
    }.get(kind, _JSON)
    return st.one_of(typed, _JSON)


def _body(schema) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={name: _value_for(kind) for name, kind in schema.items()})


HOST_CONFIGS = _body(bodies.HOST_CONFIG)
CONFIGS = _body({name: kind for name, kind in bodies.CONTAINER_CONFIG.items() if name not in ("Image", "Cmd")})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(config=CONFIGS, host=HOST_CONFIGS)
def test_generated_bodies_get_success_or_a_4xx_never_a_5xx(engine, config, host) -> None:
    router = Router(lambda: engine.services)
    body = {**config, "Image": "busybox", "Cmd": ["true"], "HostConfig": host}
    response = router.handle(Request.from_target("POST", "/v1.45/containers/create",
                                                 {"Content-Type": "application/json"},
                                                 io.BytesIO(json.dumps(body).encode())))
    text = response.read_body().decode(errors="replace")
    event(f"HTTP {response.status}")
    assert response.status < 500, (response.status, text, body)
    if response.status >= 400:
        assert json.loads(text)["message"]
    else:
        engine.containers.remove(json.loads(text)["Id"], force=True)
