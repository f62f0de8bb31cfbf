"""The Engine API router against a test double of the services: versions, ping, routing of
names with slashes and colons, the error table, query validation, streams."""

from __future__ import annotations

import io
import json
import os
import logging
import threading
import time

import pytest

from lamina import errdefs
from lamina.api.errors import STATUS_BY_KIND, status_for
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.api.router import ROUTES, Router

from .api_service_double import BUSYBOX_ID, UNTAGGED_ID, DoubleServices


@pytest.fixture
def services() -> DoubleServices:
    return DoubleServices()


@pytest.fixture
def router(services: DoubleServices) -> Router:
    return Router(lambda: services)


def send(router: Router, method: str, target: str, body: bytes | None = None) -> Response:
    return router.handle(Request.from_target(method, target, body=io.BytesIO(body) if body is not None else None))


def json_body(response: Response):
    return json.loads(response.read_body())


def json_lines(response: Response) -> list[dict]:
    return [json.loads(line) for line in response.read_body().splitlines() if line.strip()]


# -- ping and versions ----------------------------------------------------------------------

def test_ping_answers_ok_with_docker_headers_without_building_services() -> None:
    def explode():
        raise AssertionError("services must not be built for /_ping")

    router = Router(explode)
    response = send(router, "GET", "/_ping")
    assert response.status == 200
    assert response.read_body() == b"OK"
    headers = response.headers
    assert headers["api-version"] == "1.45"
    assert headers["API-Version"] == "1.45"
    assert headers["Builder-Version"] == "1"
    assert headers["OSType"] == "linux"
    assert headers["Docker-Experimental"] == "false"
    assert "no-cache" in headers["Cache-Control"]
    assert headers["Content-Type"].startswith("text/plain")


def test_ping_head_has_headers_and_no_body(router: Router) -> None:
    response = send(router, "HEAD", "/v1.45/_ping")
    assert response.status == 200
    assert response.read_body() == b""
    assert response.headers["API-Version"] == "1.45"


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.45"])
def test_supported_versions_and_unversioned_paths_are_served(router: Router, prefix: str) -> None:
    response = send(router, "GET", f"{prefix}/images/json")
    assert response.status == 200, response.read_body()


def test_a_newer_client_version_is_refused_with_docker_message(router: Router) -> None:
    response = send(router, "GET", "/v1.46/images/json")
    assert response.status == 400
    assert json_body(response) == {
        "message": "client version 1.46 is too new. Maximum supported API version is 1.45"}


def test_an_older_client_version_is_refused(router: Router) -> None:
    response = send(router, "GET", "/v1.23/version")
    assert response.status == 400
    assert json_body(response)["message"].startswith(
        "client version 1.23 is too old. Minimum supported API version is 1.24")


def test_versions_compare_numerically_not_as_text(router: Router) -> None:
    assert send(router, "GET", "/v1.9/_ping").status == 400     # 1.9 < 1.24
    assert send(router, "GET", "/v1.100/_ping").status == 400   # 1.100 > 1.45


def test_malformed_version_is_a_bad_request(router: Router) -> None:
    response = send(router, "GET", "/v1..2/_ping")
    assert response.status == 400
    assert "invalid API version" in json_body(response)["message"]


def test_unknown_endpoint_is_page_not_found(router: Router) -> None:
    for target in ("/v1.45/nothing/json", "/nothing", "/v1.x/_ping", "/images"):
        response = send(router, "GET", target)
        assert response.status == 404, target
        assert json_body(response) == {"message": "page not found"}
        assert response.headers["Content-Type"] == "application/json"


def test_known_path_with_wrong_method_is_405(router: Router) -> None:
    response = send(router, "PUT", "/v1.45/images/json")
    assert response.status == 405
    assert "PUT" in json_body(response)["message"]


def test_every_response_names_the_api_version(router: Router) -> None:
    for target in ("/_ping", "/nothing", "/v1.45/images/json", "/v1.99/info"):
        assert send(router, "GET", target).headers["Api-Version"] == "1.45"


def test_services_are_built_once_and_only_when_needed() -> None:
    built = []

    def factory():
        built.append(1)
        return DoubleServices()

    router = Router(factory)
    send(router, "GET", "/_ping")
    assert built == []
    send(router, "GET", "/images/json")
    send(router, "GET", "/info")
    assert built == [1]


def test_route_table_is_data() -> None:
    pairs = {(route.method, route.pattern) for route in ROUTES}
    assert ("GET", "/images/{name}/json") in pairs
    assert ("DELETE", "/images/{name}") in pairs
    assert ("POST", "/lamina/system/check") in pairs


# -- names with slashes and colons ------------------------------------------------------------

@pytest.mark.parametrize("method, suffix, kind", [
    ("GET", "/json", "inspect"),
    ("GET", "/history", "history"),
    ("DELETE", "", "remove"),
])
def test_names_with_registry_port_path_and_tag_route_greedily(router: Router, services: DoubleServices,
                                                               method: str, suffix: str, kind: str) -> None:
    response = send(router, method, f"/v1.45/images/localhost:5000/a/b:tag{suffix}")
    assert response.status == 200, response.read_body()
    call = [c for c in services.images.calls if c[0] == kind][-1]
    name = call[1] if kind != "remove" else call[1][0]
    assert name == "localhost:5000/a/b:tag"


def test_tag_route_takes_the_name_before_the_last_segment(router: Router, services: DoubleServices) -> None:
    response = send(router, "POST", "/v1.45/images/localhost:5000/a/b:tag/tag?repo=example/c&tag=v1")
    assert response.status == 201
    assert response.read_body() == b""
    assert ("tag", ("localhost:5000/a/b:tag", "example/c", "v1")) in services.images.calls
    assert services.images.tags["example/c:v1"] == BUSYBOX_ID


def test_an_image_named_like_an_endpoint_is_still_an_image(router: Router, services: DoubleServices) -> None:
    services.images.tags["json:latest"] = BUSYBOX_ID
    response = send(router, "GET", "/images/json/json")
    assert response.status == 200
    assert json_body(response)["Id"] == BUSYBOX_ID


def test_percent_encoded_names_are_decoded() -> None:
    request = Request.from_target("GET", "/v1.45/images/localhost%3A5000%2Fa%2Fb%3Atag/json?x=a%20b&x=c")
    assert request.path == "/v1.45/images/localhost:5000/a/b:tag/json"
    assert request.query == {"x": ["a b", "c"]}


def test_request_target_round_trips_names_and_repeated_parameters() -> None:
    request = Request("GET", "/v1.45/images/localhost:5000/a b?/get", {"names": ["a", "b:c"], "f": ["{\"x\":1}"]})
    again = Request.from_target("GET", request.target())
    assert again.path == request.path
    assert again.query == request.query
    assert request.target().startswith("/v1.45/images/localhost:5000/a%20b%3F/get?")


def test_request_targets_are_encoded_as_urllib_encodes_them() -> None:
    import random
    from urllib.parse import quote, urlencode

    rng = random.Random(16)
    alphabet = "aZ09_.-~/:@!$&'()*+,;=?#%[] \t\"{}<>^`|\\\u00e9\u20ac\U0001f600\x00\x7f"
    for _ in range(500):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        query = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))):
                 ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(1, 2))]
                 for _ in range(rng.randint(0, 3))}
        pairs = [(name, value) for name, values in query.items() for value in values]
        expected = quote(path, safe="/:@!$&'()*+,;=~") + (f"?{urlencode(pairs)}" if pairs else "")
        assert Request("GET", path, query).target() == expected, (path, query)


def test_headers_are_case_insensitive_and_keep_their_spelling() -> None:
    headers = Headers({"Content-Type": "application/json"})
    headers["x-registry-auth"] = "e30="
    assert headers["content-type"] == "application/json"
    assert "X-Registry-Auth" in headers
    assert set(headers) == {"Content-Type", "x-registry-auth"}


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, status", sorted(
    ((kind.__name__, status) for kind, status in STATUS_BY_KIND.items())))
def test_error_kinds_map_to_http_statuses(kind: str, status: int) -> None:
    error = getattr(errdefs, kind)("what failed")

    class Failing:
        class images:
            @staticmethod
            def inspect_image(name):
                raise error

    router = Router(lambda: Failing)
    response = send(router, "GET", "/images/x/json")
    assert response.status == status
    assert json_body(response) == {"message": "what failed"}


def test_the_table_is_docker_where_docker_has_the_kind() -> None:
    assert status_for(errdefs.InvalidArgument("x")) == 400
    assert status_for(errdefs.NotFound("x")) == 404
    assert status_for(errdefs.Conflict("x")) == 409
    assert status_for(errdefs.AlreadyExists("x")) == 409
    assert status_for(errdefs.FailedPrecondition("x")) == 412
    assert status_for(errdefs.NotImplemented("x")) == 501
    assert status_for(errdefs.Unavailable("x")) == 503
    assert status_for(errdefs.DataLoss("x")) == 500
    assert status_for(errdefs.Cancelled("x")) == 500
    assert status_for(ValueError("x")) == 500


def test_subclasses_of_a_kind_keep_its_status() -> None:
    class NoSuchImage(errdefs.NotFound):
        pass

    assert status_for(NoSuchImage("x")) == 404


def test_unexpected_exceptions_are_500_one_line_and_logged_with_traceback(caplog) -> None:
    class Broken:
        class images:
            @staticmethod
            def inspect_image(name):
                raise ValueError("boom")

    router = Router(lambda: Broken)
    with caplog.at_level(logging.ERROR, logger="lamina.api"):
        response = send(router, "GET", "/images/x/json")
    assert response.status == 500
    body = response.read_body()
    assert json.loads(body) == {"message": "internal error: ValueError: boom"}
    assert b"Traceback" not in body
    records = [r for r in caplog.records if r.name == "lamina.api"]
    assert records and records[0].exc_info is not None


def test_not_found_image_is_404_with_docker_message(router: Router) -> None:
    response = send(router, "GET", "/v1.45/images/nosuch/json")
    assert response.status == 404
    assert json_body(response) == {"message": "No such image: nosuch"}


# -- query validation -----------------------------------------------------------------------

@pytest.mark.parametrize("target, fragment", [
    ("/images/json?all=maybe", "'all'"),
    ("/images/json?digests=2", "'digests'"),
    ("/images/json?filters={not json", "not valid JSON"),
    ("/images/json?filters=[1,2]", "JSON object"),
    ('/images/json?filters={"dangling":"true"}', "list of strings"),
    ('/images/json?filters={"colour":["red"]}', "invalid filter 'colour'"),
    ('/images/json?filters={"dangling":["maybe"]}', "invalid filter 'dangling=maybe'"),
    ('/images/prune?filters={"reference":["x"]}', "invalid filter 'reference'"),
    ("/images/get?names=busybox&format=zip", "invalid format"),
    ("/images/get", "no image names"),
    ("/system/df?type=everything", "invalid type"),
    ("/images/busybox/tag", "repo parameter is required"),
])
def test_malformed_query_values_are_bad_requests(router: Router, target: str, fragment: str) -> None:
    method = "POST" if "/prune" in target or "/tag" in target else "GET"
    response = send(router, method, target)
    assert response.status == 400
    assert fragment in json_body(response)["message"]


def test_booleans_accept_docker_spellings(router: Router, services: DoubleServices) -> None:
    for value, expected in (("1", True), ("true", True), ("True", True), ("0", False),
                            ("false", False), ("", False), ("no", False)):
        assert send(router, "GET", f"/images/json?all={value}").status == 200
        assert services.images.calls[-1][1]["all"] is expected, value


def test_filters_are_decoded_in_both_docker_shapes(router: Router, services: DoubleServices) -> None:
    send(router, "GET", '/images/json?filters={"dangling":["true"],"reference":["busybox*"]}')
    assert services.images.calls[-1][1]["filters"] == {"dangling": ["true"], "reference": ["busybox*"]}
    send(router, "GET", '/images/json?filters={"reference":{"busybox*":true,"x":false}}')
    assert services.images.calls[-1][1]["filters"] == {"reference": ["busybox*"]}


# -- image endpoints ------------------------------------------------------------------------

def test_image_list_is_newest_first(router: Router) -> None:
    images = json_body(send(router, "GET", "/v1.45/images/json?all=1"))
    assert [image["Id"] for image in images] == [UNTAGGED_ID, BUSYBOX_ID]
    assert images[1]["RepoTags"] == ["busybox:latest", "localhost:5000/a/b:tag"]


def test_remove_maps_force_and_noprune(router: Router, services: DoubleServices) -> None:
    response = send(router, "DELETE", f"/images/{BUSYBOX_ID}?force=1&noprune=1")
    assert response.status == 200
    assert services.images.calls[-1] == ("remove", (BUSYBOX_ID, True, False))
    assert {"Deleted": BUSYBOX_ID} in json_body(response)


def test_remove_conflict_is_409(router: Router) -> None:
    response = send(router, "DELETE", f"/images/{BUSYBOX_ID}")
    assert response.status == 409
    assert "must be forced" in json_body(response)["message"]


def test_prune_passes_filters_and_returns_the_report(router: Router, services: DoubleServices) -> None:
    report = json_body(send(router, "POST", '/images/prune?filters={"dangling":["true"]}'))
    assert services.images.calls[-1] == ("prune", {"dangling": ["true"]})
    assert report == {"ImagesDeleted": [{"Deleted": UNTAGGED_ID}], "SpaceReclaimed": 1000}


def test_load_streams_json_messages_one_per_line(router: Router, services: DoubleServices) -> None:
    response = send(router, "POST", "/v1.45/images/load", b"archive-bytes")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.is_stream
    raw = response.read_body()
    assert raw.endswith(b"\n")
    messages = [json.loads(line) for line in raw.splitlines()]
    assert messages[0] == {"status": "Loading layer", "id": "abcd1234",
                           "progressDetail": {"current": 1, "total": 2}}
    assert messages[-1] == {"stream": "Loaded image: busybox:latest\n"}
    assert services.images.calls[-1] == ("load", {"size": 13, "quiet": False})


def test_load_quiet_is_passed_to_the_service(router: Router, services: DoubleServices) -> None:
    messages = json_lines(send(router, "POST", "/images/load?quiet=1", b"archive"))
    assert messages == [{"stream": "Loaded image: busybox:latest\n"}]
    assert services.images.calls[-1][1]["quiet"] is True


def test_load_error_before_any_output_is_in_band_as_docker_reports_it(router: Router) -> None:
    response = send(router, "POST", "/images/load", b"bad archive")
    assert response.status == 200
    assert json_lines(response) == [{"errorDetail": {"message": "invalid archive: no manifest.json", "code": 400},
                                     "error": "invalid archive: no manifest.json"}]


def test_load_error_after_output_started_is_the_last_line(router: Router) -> None:
    response = send(router, "POST", "/images/load", b"fail-late")
    assert response.status == 200
    messages = json_lines(response)
    assert messages[0]["status"] == "Loading layer"
    assert messages[-1] == {"errorDetail": {"message": "layer abcd1234: digest mismatch", "code": 500},
                            "error": "layer abcd1234: digest mismatch"}


def test_load_messages_arrive_while_the_service_is_still_running(router: Router,
                                                                  services: DoubleServices) -> None:
    services.images.load_gate = threading.Event()
    response = send(router, "POST", "/images/load", b"archive")
    chunks = response.iter_body()
    first = json.loads(next(chunks))
    assert first["status"] == "Loading layer"
    services.images.load_gate.set()
    rest = [json.loads(chunk) for chunk in chunks]
    assert {"stream": "streamed\n"} in rest


def test_a_reader_that_goes_away_cancels_the_service(router: Router, services: DoubleServices) -> None:
    response = send(router, "POST", "/images/load", b"wait-cancel")
    chunks = response.iter_body()
    next(chunks)
    chunks.close()
    assert services.images.cancelled.wait(5)


def test_save_streams_a_tar_for_repeated_names(router: Router, services: DoubleServices) -> None:
    response = send(router, "GET", "/v1.45/images/get?names=busybox&names=localhost:5000/a/b:tag")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-tar"
    assert response.read_body() == b"docker-archive:busybox;localhost:5000/a/b:tag;"
    assert services.images.calls[-1] == ("save", {"names": ["busybox", "localhost:5000/a/b:tag"],
                                                   "format": "docker"})


def test_save_of_one_name_in_the_path_and_oci_format(router: Router, services: DoubleServices) -> None:
    response = send(router, "GET", "/images/localhost:5000/a/b:tag/get?format=oci")
    assert response.read_body() == b"oci-archive:localhost:5000/a/b:tag;"


def test_save_of_a_missing_image_is_404_before_streaming(router: Router) -> None:
    response = send(router, "GET", "/images/get?names=busybox&names=nosuch")
    assert response.status == 404
    assert json_body(response) == {"message": "No such image: nosuch"}


def test_save_failing_mid_stream_aborts_the_stream(router: Router) -> None:
    response = send(router, "GET", "/images/get?names=busybox&names=fail-mid")
    assert response.status == 200
    chunks = response.iter_body()
    assert next(chunks) == b"docker-archive:"
    with pytest.raises(StreamAborted) as caught:
        list(chunks)
    assert caught.value.status == 500
    assert "no space left" in caught.value.message


def test_import_from_the_body_ends_with_the_image_id(router: Router, services: DoubleServices) -> None:
    response = send(router, "POST", "/v1.45/images/create?fromSrc=-&repo=example/imported:v1"
                                    "&message=hello&changes=ENV%20A%3D1&changes=CMD%20%5B%22sh%22%5D",
                    b"rootfs tar")
    assert response.status == 200
    messages = json_lines(response)
    assert messages[-1] == {"status": "sha256:" + "1" * 64}
    assert services.images.calls[-1] == ("import", {
        "size": 10, "repository": "example/imported:v1", "tag": "", "changes": ["ENV A=1", 'CMD ["sh"]'],
        "message": "hello"})


def test_import_does_not_repeat_an_id_the_service_already_sent(router: Router, services: DoubleServices) -> None:
    services.images.emit_import_status = True
    messages = json_lines(send(router, "POST", "/images/create?fromSrc=-", b"rootfs"))
    assert [m for m in messages if m.get("status") == "sha256:" + "1" * 64] == [{"status": "sha256:" + "1" * 64}]


def test_import_of_an_empty_body_is_a_bad_request(router: Router) -> None:
    response = send(router, "POST", "/images/create?fromSrc=-")
    assert response.status == 400


@pytest.mark.parametrize("query, status, fragment", [
    ("fromSrc=http://example.com/rootfs.tar", 501, "importing from a URL is not supported"),
    ("", 400, "either fromImage"),
])
def test_create_without_a_body_import(router: Router, query: str, status: int, fragment: str) -> None:
    response = send(router, "POST", f"/images/create?{query}")
    assert response.status == status
    assert fragment in json_body(response)["message"]


# -- system endpoints -----------------------------------------------------------------------

def test_version_fills_in_api_versions(router: Router) -> None:
    answer = json_body(send(router, "GET", "/v1.45/version"))
    assert answer["ApiVersion"] == "1.45"
    assert answer["MinAPIVersion"] == "1.24"
    assert answer["Version"] == "0.1.0"


def test_info_is_the_service_answer(router: Router) -> None:
    answer = json_body(send(router, "GET", "/info"))
    assert answer["Driver"] == "overlay2"
    assert answer["LaminaSkippedDrivers"][0] == ["fuse-overlayfs", "fuse-overlayfs binary not found"]


def test_system_df_whole_and_by_type(router: Router) -> None:
    whole = json_body(send(router, "GET", "/system/df"))
    assert set(whole) == {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    images_only = json_body(send(router, "GET", "/system/df?type=image"))
    assert set(images_only) == {"LayersSize", "Images"}


def test_system_check_passes_repair(router: Router, services: DoubleServices) -> None:
    services.system.check_problems = [{"Kind": "layer", "Object": "sha256:x", "Message": "missing diff"}]
    report = json_body(send(router, "POST", "/lamina/system/check"))
    assert report["Problems"] and report["Repaired"] == []
    report = json_body(send(router, "POST", "/v1.45/lamina/system/check?repair=1"))
    assert report["Repaired"] == report["Problems"]
    assert json_body(send(router, "POST", "/lamina/system/check"))["Problems"] == []


def test_router_is_usable_from_several_threads(router: Router) -> None:
    results: list[int] = []

    def worker() -> None:
        for _ in range(20):
            results.append(send(router, "GET", "/images/json").status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 10
    assert results == [200] * 80


def test_closing_an_unread_stream_cancels_the_service(router: Router, services: DoubleServices) -> None:
    response = send(router, "POST", "/images/load", b"wait-cancel")
    response.close()
    assert services.images.cancelled.wait(5)


def test_closing_an_unread_tar_stream_closes_the_producer(router: Router) -> None:
    closed = []

    def chunks():
        try:
            yield b"first"
            yield b"second"
        finally:
            closed.append(True)

    class Saving:
        class images:
            @staticmethod
            def save(names, format):
                return chunks()

    response = Router(lambda: Saving).handle(Request.from_target("GET", "/images/get?names=x"))
    response.close()
    assert closed == [True]


def test_a_target_with_bytes_that_are_not_utf8_is_sent_percent_encoded_and_read_back() -> None:
    name = os.fsdecode(b"x\xff")  # how Python holds such a command-line argument
    request = Request("GET", f"/containers/{name}/json", {"filters": [name]}, Headers(), None)
    assert request.target() == "/containers/x%FF/json?filters=x%FF"
    back = Request.from_target("GET", request.target())
    assert (back.path, back.query) == ("/containers/x\ufffd/json", {"filters": ["x\ufffd"]})
