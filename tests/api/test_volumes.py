"""The /volumes endpoints through the router against the real volume service on a temporary
data root: Docker's shapes, status codes and error messages."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import pytest

from lamina.api.http import Request, Response
from lamina.api.router import Router
from lamina.services.volumes import VolumeServiceImpl
from lamina.volume.store import VolumeStore


@pytest.fixture
def volumes(tmp_path) -> VolumeServiceImpl:
    return VolumeServiceImpl(VolumeStore(str(tmp_path / "volumes")))


@pytest.fixture
def router(volumes: VolumeServiceImpl) -> Router:
    return Router(lambda: SimpleNamespace(volumes=volumes))


def send(router: Router, method: str, target: str, body: object = None, raw: bytes | None = None) -> Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return router.handle(Request.from_target(method, target, {"Content-Type": "application/json"},
                                             io.BytesIO(data) if data is not None else None))


def answer(response: Response):
    return json.loads(response.read_body())


def test_create_is_201_with_the_volume(router: Router, tmp_path) -> None:
    response = send(router, "POST", "/v1.45/volumes/create",
                    {"Name": "data", "Driver": "local", "DriverOpts": {}, "Labels": {"a": "b"}})
    assert response.status == 201
    volume = answer(response)
    assert set(volume) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert (volume["Name"], volume["Driver"], volume["Labels"], volume["Options"], volume["Scope"]) == (
        "data", "local", {"a": "b"}, {}, "local")
    assert volume["Mountpoint"] == str(tmp_path / "volumes" / "data" / "_data")


def test_an_empty_body_makes_an_anonymous_volume(router: Router) -> None:
    response = send(router, "POST", "/volumes/create")
    assert response.status == 201
    volume = answer(response)
    assert len(volume["Name"]) == 64 and volume["Labels"] == {"com.docker.volume.anonymous": ""}


@pytest.mark.parametrize("body,raw,status,message", [
    ({"Name": "a"}, None, 400, "create a: volume name is too short"),
    ({"Name": "x y"}, None, 400, 'create x y: "x y" includes invalid characters'),
    ({"Name": "data", "Driver": "flocker"}, None, 404,
     'create data: error looking up volume plugin flocker: plugin "flocker" not found'),
    ({"Name": "data", "DriverOpts": {"colour": "red"}}, None, 400, 'create data: invalid option: "colour"'),
    ({"Name": 5}, None, 400, "invalid JSON body: Name must be a string"),
    ({"Labels": {"a": 1}}, None, 400, "invalid JSON body: Labels must be an object of strings"),
    (None, b"{nope", 400, "invalid JSON body"),
    (None, b"[]", 400, "invalid JSON body: expected an object"),
])
def test_create_errors(router: Router, body, raw, status: int, message: str) -> None:
    response = send(router, "POST", "/volumes/create", body, raw)
    assert response.status == status
    assert message in answer(response)["message"]


def test_inspect_list_remove(router: Router, volumes: VolumeServiceImpl) -> None:
    created = answer(send(router, "POST", "/volumes/create", {"Name": "data"}))
    assert answer(send(router, "GET", "/volumes/data")) == created
    assert answer(send(router, "GET", "/volumes")) == {"Volumes": [created], "Warnings": []}
    volumes.acquire("data", "c1")
    in_use = send(router, "DELETE", "/volumes/data?force=1")
    assert in_use.status == 409
    assert answer(in_use) == {"message": "remove data: volume is in use - [c1]"}
    volumes.release("data", "c1")
    removed = send(router, "DELETE", "/volumes/data")
    assert removed.status == 204 and removed.read_body() == b""
    missing = send(router, "GET", "/volumes/data")
    assert missing.status == 404 and answer(missing) == {"message": "get data: no such volume"}
    assert send(router, "DELETE", "/volumes/data").status == 404
    assert send(router, "DELETE", "/volumes/data?force=true").status == 204


def test_list_filters(router: Router, volumes: VolumeServiceImpl) -> None:
    volumes.create("alpha", labels={"team": "a"})
    volumes.create("beta")
    volumes.acquire("beta", "c1")

    def names(filters: dict) -> list[str]:
        response = send(router, "GET", "/volumes?filters=" + json.dumps(filters))
        assert response.status == 200, response.read_body()
        return [volume["Name"] for volume in answer(response)["Volumes"]]

    assert names({"dangling": ["true"]}) == ["alpha"]
    assert names({"dangling": {"false": True}}) == ["beta"]   # the legacy map form
    assert names({"label": ["team=a"]}) == ["alpha"]
    assert names({"name": ["et"]}) == ["beta"]
    assert names({"driver": ["local"]}) == ["alpha", "beta"]
    bad = send(router, "GET", '/volumes?filters={"colour":["red"]}')
    assert bad.status == 400 and answer(bad)["message"] == "invalid filter 'colour'"
    assert send(router, "GET", '/volumes?filters={"dangling":["maybe"]}').status == 400


def test_prune(router: Router, volumes: VolumeServiceImpl) -> None:
    anonymous = volumes.create()
    with open(os.path.join(anonymous["Mountpoint"], "f"), "wb") as handle:
        handle.write(b"abc")
    volumes.create("named")
    response = send(router, "POST", "/volumes/prune")
    assert response.status == 200
    assert answer(response) == {"VolumesDeleted": [anonymous["Name"]], "SpaceReclaimed": 3}
    assert answer(send(router, "POST", '/volumes/prune?filters={"all":["true"]}')) == {
        "VolumesDeleted": ["named"], "SpaceReclaimed": 0}
    assert send(router, "POST", '/volumes/prune?filters={"dangling":["true"]}').status == 400


def test_methods_not_allowed(router: Router) -> None:
    assert send(router, "PUT", "/volumes/data").status == 405
    assert send(router, "GET", "/volumes/create").status == 404  # a volume named "create"
