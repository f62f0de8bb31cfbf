"""Bad requests other than container bodies (those are in test_host_options.py), through the
API router with the real services: each is a 4xx with a message, and nothing is created.
Nothing here reaches a registry: every pull is refused before a connection is made."""

from __future__ import annotations

import io
import json

import pytest

from lamina.api.http import Request
from lamina.api.router import Router

pytestmark = pytest.mark.privileged

NESTED = b"[" * 100_000 + b"]" * 100_000
TAR = {"Content-Type": "application/x-tar"}


def call(engine, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
    router = Router(lambda: engine.services)
    response = router.handle(Request.from_target(method, "/v1.45" + target,
                                                 headers or {"Content-Type": "application/json"},
                                                 io.BytesIO(body)))
    return response.status, response.read_body().decode(errors="replace")


def created(engine) -> tuple[list, list, list]:
    return (engine.container_views.list_containers(all=True),
            [volume["Name"] for volume in engine.volumes.list()["Volumes"]],
            sorted(tag for image in engine.images.list_images() for tag in image["RepoTags"] or []))


BAD_REQUESTS = {
    "a pull of a path": ("POST", "/images/create?fromImage=../../etc&tag=latest", b"", None,
                         400, "invalid reference format"),
    "a pull of an uppercase name": ("POST", "/images/create?fromImage=UPPER&tag=latest", b"", None,
                                    400, "must be lowercase"),
    "a pull for an unknown platform": ("POST", "/images/create?fromImage=busybox&tag=latest&platform=bogus",
                                       b"", None, 400, "unknown operating system or architecture"),
    "a pull with a path as its tag": ("POST", "/images/create?fromImage=busybox&tag=../../x", b"", None,
                                      400, "invalid tag format"),
    "a create for an unknown platform": ("POST", "/containers/create?platform=bogus",
                                         json.dumps({"Image": "busybox"}).encode(), None,
                                         400, "unknown operating system or architecture"),
    "a create for another platform": ("POST", "/containers/create?platform=windows/arm64",
                                      json.dumps({"Image": "busybox"}).encode(), None,
                                      404, "does not match the specified platform"),
    "a build memory that is not a number": ("POST", "/build?memory=abc", b"", TAR, 400, "expected an integer"),
    "a build memory limit lamina does not apply": ("POST", "/build?memory=1000000", b"", TAR, 501, "memory"),
    "a 300-character volume name": ("POST", "/volumes/create", json.dumps({"Name": "v" * 300}).encode(), None,
                                    400, "volume name is too long"),
    "an inspect of a 300-character volume name": ("GET", "/volumes/" + "v" * 300, b"", None, 404, "no such volume"),
    "a volume body nested 100,000 levels": ("POST", "/volumes/create", NESTED, None, 400, "invalid JSON body"),
    "a network body nested 100,000 levels": ("POST", "/networks/create", NESTED, None, 400, "nested too deeply"),
    "a tag with an uppercase repository": ("POST", "/images/busybox/tag?repo=UPPER", b"", None,
                                           400, "must be lowercase"),
    "an image path with dot-dot": ("GET", "/images/..%2F..%2Fetc/json", b"", None, 400, "invalid reference format"),
    "a boolean that is not one": ("POST", "/images/load?quiet=maybe", b"x", TAR, 400, "expected a boolean"),
    "filters that are not JSON": ("GET", "/containers/json?filters=%7B", b"", None, 400, "invalid filters"),
    "a limit that is not a number": ("GET", "/containers/json?limit=abc", b"", None, 400, "expected an integer"),
    "a body that is not UTF-8": ("POST", "/containers/create", b"\xff\xfe", None, 400, "invalid JSON body"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_requests_are_a_4xx_with_a_message(engine, name) -> None:
    method, target, body, headers, status, message = BAD_REQUESTS[name]
    before = created(engine)
    got, text = call(engine, method, target, body, headers)
    assert (got, message in json.loads(text)["message"]) == (status, True), text
    assert created(engine) == before


def test_a_create_for_the_image_s_own_platform_is_accepted(engine) -> None:
    status, text = call(engine, "POST", "/containers/create?platform=linux/amd64",
                        json.dumps({"Image": "busybox"}).encode())
    image = engine.images.inspect_image("busybox")
    expected = 201 if (image["Os"], image["Architecture"]) == ("linux", "amd64") else 404
    assert status == expected, text


def test_the_docker_cli_s_zero_build_limits_are_accepted(engine) -> None:
    status, text = call(engine, "POST", "/build?memory=0&memswap=-1&cpushares=0&cpuperiod=0&cpuquota=0&shmsize=0",
                        b"", TAR)
    assert "limit the resources" not in text and status != 501, text
