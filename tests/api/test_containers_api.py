"""Container and exec endpoints of the router against the container service double: shapes,
statuses, body checks, wait ordering, logs framing, hijacking, archives."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading

import pytest

from lamina.api.http import Request, Response
from lamina.api.router import Router
from lamina.stdcopy import demultiplex

from .container_service_double import STATS, ContainerDoubleServices


@pytest.fixture
def services(tmp_path) -> ContainerDoubleServices:
    return ContainerDoubleServices(str(tmp_path / "containers"))


@pytest.fixture
def router(services: ContainerDoubleServices) -> Router:
    return Router(lambda: services)


def send(router: Router, method: str, target: str, body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return router.handle(Request.from_target(method, target, headers=headers,
                                             body=io.BytesIO(body) if body is not None else None))


def json_body(response: Response):
    return json.loads(response.read_body())


def create(router: Router, name: str = "", **config) -> str:
    config.setdefault("Image", "busybox")
    response = send(router, "POST", f"/v1.45/containers/create?name={name}", config)
    assert response.status == 201, response.read_body()
    return json_body(response)["Id"]


def frames(data: bytes) -> list[tuple[int, bytes]]:
    return list(demultiplex(data))


def read_all(sock) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


# -- create ------------------------------------------------------------------------------------

def test_create_answers_201_with_id_and_warnings_and_passes_the_body(router, services) -> None:
    response = send(router, "POST", "/v1.45/containers/create?name=web",
                    {"Image": "busybox", "Cmd": "echo hi", "HostConfig": {"Memory": 64 << 20, "MemorySwap": -1}})
    assert response.status == 201
    answer = json_body(response)
    assert len(answer["Id"]) == 64
    assert answer["Warnings"] and "swap" in answer["Warnings"][0]
    call = [c for c in services.containers.calls if c[0] == "create"][-1][1]
    assert call["name"] == "web" and call["body"]["Cmd"] == "echo hi"


@pytest.mark.parametrize("body, field", [
    ({"Image": 5}, "Image must be a string, not a number"),
    ({"Image": "busybox", "Tty": "yes"}, "Tty must be a boolean, not a string"),
    ({"Image": "busybox", "Env": ["A=1", 2]}, "Env must be an array of strings"),
    ({"Image": "busybox", "Cmd": {"a": 1}}, "Cmd must be a string or an array of strings, not an object"),
    ({"Image": "busybox", "HostConfig": {"Memory": "1g"}}, "HostConfig.Memory must be an integer, not a string"),
    ({"Image": "busybox", "HostConfig": {"Memory": 1.5}}, "HostConfig.Memory must be an integer, not a number"),
    ({"Image": "busybox", "HostConfig": {"Privileged": 1}}, "HostConfig.Privileged must be a boolean, not a number"),
    ({"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": ["always"]}}},
     "HostConfig.RestartPolicy.Name must be a string, not an array"),
    ({"Image": "busybox", "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "x"}]}},
     "HostConfig.Ulimits[0].Soft must be an integer, not a string"),
    ({"Image": "busybox", "Labels": {"a": 1}}, "Labels must be an object of strings"),
    ({"Image": "busybox", "HostConfig": "none"}, "HostConfig must be an object, not a string"),
], ids=["image is a number", "tty is a string", "env holds a number", "cmd is an object",
        "memory is a string", "memory has a fraction", "privileged is a number", "restart name is a list",
        "ulimit soft is a string", "labels hold a number", "hostconfig is a string"])
def test_create_refuses_wrong_field_types_naming_the_field(router, services, body, field) -> None:
    response = send(router, "POST", "/containers/create", body)
    assert response.status == 400
    assert field in json_body(response)["message"]
    assert not [c for c in services.containers.calls if c[0] == "create"]


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"", b"\xff\xfe"],
                         ids=["truncated json", "an array", "no body", "not utf-8"])
def test_create_refuses_malformed_bodies_with_400(router, raw) -> None:
    response = send(router, "POST", "/containers/create", raw)
    assert response.status == 400
    assert json_body(response)["message"].startswith("invalid JSON body")


def test_null_fields_and_unknown_fields_are_accepted_like_go(router) -> None:
    id = create(router, Cmd=None, Entrypoint=None, HostConfig={"Memory": None, "SomethingNew": 1}, Future=True)
    assert id


def test_create_name_rules_unknown_image_and_conflict(router) -> None:
    response = send(router, "POST", "/containers/create?name=bad%20name", {"Image": "busybox"})
    assert response.status == 400 and "Invalid container name (bad name)" in json_body(response)["message"]
    response = send(router, "POST", "/containers/create", {"Image": "nosuch"})
    assert response.status == 404 and json_body(response)["message"] == "No such image: nosuch"
    create(router, "web")
    response = send(router, "POST", "/containers/create?name=web", {"Image": "busybox"})
    assert response.status == 409 and "is already in use" in json_body(response)["message"]


# -- lifecycle ----------------------------------------------------------------------------------

def test_start_is_204_then_304_and_stop_is_204_then_304(router, services) -> None:
    id = create(router, "sleeper", Cmd=["sleep", "60"])
    assert send(router, "POST", f"/containers/{id}/start").status == 204
    assert send(router, "POST", "/containers/sleeper/start").status == 304
    assert [c for c in services.containers.calls if c[0] == "start"] == [("start", id)]
    assert send(router, "POST", "/containers/sleeper/stop?t=3&signal=SIGINT").status == 204
    stop = [c for c in services.containers.calls if c[0] == "stop"][-1][1]
    assert stop == {"id": id, "timeout": 3, "signal": "SIGINT"}
    assert send(router, "POST", "/containers/sleeper/stop").status == 304


def test_lifecycle_errors_and_parameters(router, services) -> None:
    id = create(router, "web", Cmd=["sleep", "1"])
    assert send(router, "POST", "/containers/web/kill").status == 409
    assert send(router, "POST", "/containers/web/stop?t=soon").status == 400
    assert send(router, "POST", "/containers/nosuch/start").status == 404
    send(router, "POST", "/containers/web/start")
    assert send(router, "POST", "/containers/web/kill?signal=SIGUSR1").status == 204
    assert [c for c in services.containers.calls if c[0] == "kill"][-1][1]["signal"] == "SIGUSR1"
    send(router, "POST", "/containers/web/start")
    assert send(router, "DELETE", "/containers/web").status == 409
    assert send(router, "DELETE", "/containers/web?force=1&v=1").status == 204
    assert [c for c in services.containers.calls if c[0] == "remove"][-1][1] == {
        "id": id, "force": True, "volumes": True}
    assert send(router, "GET", f"/containers/{id}/json").status == 404


def test_pause_unpause_rename_update_restart(router, services) -> None:
    create(router, "web", Cmd=["sleep", "1"])
    send(router, "POST", "/containers/web/start")
    assert send(router, "POST", "/containers/web/pause").status == 204
    assert json_body(send(router, "GET", "/containers/web/json"))["State"]["Paused"] is True
    assert send(router, "POST", "/containers/web/unpause").status == 204
    assert send(router, "POST", "/containers/web/rename?name=").status == 400
    assert send(router, "POST", "/containers/web/rename?name=a%2Fb").status == 400
    assert send(router, "POST", "/containers/web/rename?name=api").status == 204
    response = send(router, "POST", "/containers/api/update", {"Memory": 128 << 20, "RestartPolicy": {"Name": "always"}})
    assert response.status == 200 and json_body(response) == {"Warnings": []}
    assert send(router, "POST", "/containers/api/update", {"CpuShares": "many"}).status == 400
    # The docker CLI sends every Resources field; zero values of non-pointer fields mean "unchanged".
    docker_cli_body = {"CpuShares": 0, "Memory": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": None,
                       "BlkioDeviceReadBps": None, "CpusetCpus": "", "Devices": None, "DeviceRequests": None,
                       "MemorySwap": 256 << 20, "MemorySwappiness": None, "NanoCpus": 0, "OomKillDisable": None,
                       "PidsLimit": 0, "Ulimits": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
    assert send(router, "POST", "/containers/api/update", docker_cli_body).status == 200
    assert [c for c in services.containers.calls if c[0] == "update"][-1][1]["body"] == {
        "MemorySwap": 256 << 20, "PidsLimit": 0}
    assert json_body(send(router, "GET", "/containers/api/json"))["HostConfig"]["Memory"] == 128 << 20
    assert send(router, "POST", "/containers/api/restart?t=1").status == 204


def test_resize_needs_both_dimensions(router, services) -> None:
    create(router, "web")
    assert send(router, "POST", "/containers/web/resize?h=40").status == 400
    assert send(router, "POST", "/containers/web/resize?h=40&w=x").status == 400
    assert send(router, "POST", "/containers/web/resize?h=40&w=120").status == 200
    assert services.containers._find("web").resized == [(40, 120)]


def test_prune_and_boot(router, services) -> None:
    create(router, "old")
    response = send(router, "POST", '/containers/prune?filters={"until":["10m"]}')
    assert response.status == 200
    assert len(json_body(response)["ContainersDeleted"]) == 1
    assert send(router, "POST", '/containers/prune?filters={"status":["x"]}').status == 400
    services.containers.boot_result = {"Restarted": ["abc"]}
    assert json_body(send(router, "POST", "/lamina/system/boot")) == {"Restarted": ["abc"]}


# -- wait ---------------------------------------------------------------------------------------

def test_wait_is_answered_at_once_and_sees_an_exit_right_after_start(router, services) -> None:
    id = create(router, "quick", Cmd=["sh", "-c", "exit 7"])
    response = send(router, "POST", f"/containers/{id}/wait?condition=next-exit")
    assert response.status == 200 and response.headers["Content-Type"] == "application/json"
    # The waiter is registered before the start: the immediate exit is the "next" one.
    send(router, "POST", f"/containers/{id}/start")
    assert json.loads(response.read_body()) == {"StatusCode": 7, "Error": None}


def test_wait_removed_sees_an_auto_removed_container(router, services) -> None:
    id = create(router, "gone", Cmd=["sh", "-c", "exit 3"], HostConfig={"AutoRemove": True})
    response = send(router, "POST", f"/containers/{id}/wait?condition=removed")
    send(router, "POST", f"/containers/{id}/start")
    assert json.loads(response.read_body())["StatusCode"] == 3
    assert send(router, "GET", f"/containers/{id}/json").status == 404


def test_wait_blocks_until_the_container_stops(router, services) -> None:
    create(router, "sleeper", Cmd=["sleep", "60"])
    send(router, "POST", "/containers/sleeper/start")
    response = send(router, "POST", "/containers/sleeper/wait")
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(response.read_body()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive(), "wait returned while the container was running"
    send(router, "POST", "/containers/sleeper/kill")
    reader.join(5)
    assert json.loads(result[0]) == {"StatusCode": 137, "Error": None}


def test_wait_checks_condition_and_container_before_answering(router) -> None:
    create(router, "web")
    assert send(router, "POST", "/containers/web/wait?condition=forever").status == 400
    response = send(router, "POST", "/containers/nosuch/wait")
    assert response.status == 404 and json_body(response)["message"] == "No such container: nosuch"


def test_a_failure_while_waiting_is_reported_in_band(router, services) -> None:
    create(router, "web", Cmd=["sleep", "1"])
    send(router, "POST", "/containers/web/start")

    def broken(id, *, condition="not-running"):
        def finish():
            raise RuntimeError("monitor vanished")

        return finish  # the wait is registered; what fails is the waiting

    services.containers.begin_wait = broken
    response = send(router, "POST", "/containers/web/wait")
    assert response.status == 200
    answer = json.loads(response.read_body())
    assert answer["StatusCode"] == -1 and "monitor vanished" in answer["Error"]["Message"]


# -- list and inspect ---------------------------------------------------------------------------

def test_list_is_newest_first_with_parameters_passed(router, services) -> None:
    first = create(router, "first", Cmd=["sleep", "1"])
    second = create(router, "second", Cmd=["sleep", "1"])
    services.containers._find(first).created -= 100
    send(router, "POST", "/containers/first/start")
    send(router, "POST", "/containers/second/start")
    listed = json_body(send(router, "GET", "/v1.45/containers/json?all=1&size=1"))
    assert [c["Id"] for c in listed] == [second, first]
    assert listed[0]["SizeRw"] == 12
    send(router, "GET", '/containers/json?limit=1&filters={"status":["running"],"label":["a=b"]}')
    call = services.containers.calls[-1][1]
    assert call["limit"] == 1 and call["filters"] == {"status": ["running"], "label": ["a=b"]}
    assert send(router, "GET", '/containers/json?filters={"colour":["red"]}').status == 400
    assert send(router, "GET", "/containers/json?limit=few").status == 400


def test_inspect_with_size(router) -> None:
    id = create(router, "web")
    answer = json_body(send(router, "GET", "/containers/web/json?size=1"))
    assert answer["Id"] == id and answer["Name"] == "/web" and answer["SizeRootFs"] == 4261562
    assert answer["State"]["Status"] == "created"


# -- logs ---------------------------------------------------------------------------------------

def test_logs_are_multiplexed_frames_without_a_tty(router, services) -> None:
    create(router, "talker", Cmd=["sh", "-c", "echo out; echo err >&2"])
    send(router, "POST", "/containers/talker/start")
    response = send(router, "GET", "/containers/talker/logs?stdout=1&stderr=1&tail=5&since=1.5&timestamps=1")
    assert response.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    got = frames(response.read_body())
    assert [stream for stream, _ in got] == [1, 2]
    assert got[0][1].endswith(b" out\n") and got[0][1][:4].isdigit()
    call = services.containers.calls[-1][1]
    assert call["tail"] == "5" and call["since"] == 1.5 and call["timestamps"] is True
    only_err = frames(send(router, "GET", "/containers/talker/logs?stderr=1").read_body())
    assert only_err == [(2, b"err\n")]


def test_logs_of_a_tty_container_are_raw(router) -> None:
    create(router, "tty", Cmd=["echo", "hello"], Tty=True)
    send(router, "POST", "/containers/tty/start")
    response = send(router, "GET", "/containers/tty/logs?stdout=1&stderr=1")
    assert response.headers["Content-Type"] == "application/vnd.docker.raw-stream"
    assert response.read_body() == b"hello\n"


def test_logs_parameters_are_checked(router) -> None:
    create(router, "web")
    assert send(router, "GET", "/containers/web/logs").status == 400
    assert send(router, "GET", "/containers/web/logs?stdout=1&tail=some").status == 400
    assert send(router, "GET", "/containers/web/logs?stdout=1&since=yesterday").status == 400
    assert send(router, "GET", "/containers/nosuch/logs?stdout=1").status == 404


def test_follow_streams_output_produced_later(router, services) -> None:
    create(router, "cat", Cmd=["cat"], OpenStdin=True)
    attach = send(router, "POST", "/containers/cat/attach?stream=1&stdin=1&stdout=1", headers=UPGRADE)
    send(router, "POST", "/containers/cat/start")
    response = send(router, "GET", "/containers/cat/logs?stdout=1&follow=1")
    assert response.status == 200
    chunks = iter(response.body)
    attach.hijacked.sendall(b"later\n")
    assert frames(next(chunks)) == [(1, b"later\n")]
    attach.hijacked.shutdown(socket.SHUT_WR)
    assert list(chunks) == []
    attach.close()


# -- attach and exec ----------------------------------------------------------------------------

def test_attach_upgrades_with_101_and_streams_frames_and_stdin(router, services) -> None:
    create(router, "cat", Cmd=["cat"], OpenStdin=True)
    response = send(router, "POST", "/v1.45/containers/cat/attach?stream=1&stdin=1&stdout=1&stderr=1",
                    headers=UPGRADE)
    assert response.status == 101
    assert response.headers["Upgrade"] == "tcp" and response.headers["Connection"] == "Upgrade"
    assert response.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    duplex = response.hijacked
    assert response.read_body() == b""
    send(router, "POST", "/containers/cat/start")
    duplex.sendall(b"ping\n")
    duplex.shutdown(socket.SHUT_WR)
    assert frames(read_all(duplex)) == [(1, b"ping\n")]
    duplex.close()
    assert services.containers._find("cat").status == "exited"


def test_attach_without_upgrade_is_a_plain_200_hijack_raw_with_a_tty(router) -> None:
    create(router, "tty", Cmd=["echo", "hi"], Tty=True)
    response = send(router, "POST", "/containers/tty/attach?stream=1&stdout=1")
    assert response.status == 200 and response.hijacked is not None
    assert "Upgrade" not in response.headers
    assert response.headers["Content-Type"] == "application/vnd.docker.raw-stream"
    send(router, "POST", "/containers/tty/start")
    assert read_all(response.hijacked) == b"hi\n"
    response.close()
    assert response.hijacked is None


def test_attach_logs_replays_output_and_needs_stream_or_logs(router) -> None:
    create(router, "done", Cmd=["echo", "before"])
    send(router, "POST", "/containers/done/start")
    response = send(router, "POST", "/containers/done/attach?logs=1&stdout=1", headers=UPGRADE)
    assert frames(read_all(response.hijacked)) == [(1, b"before\n")]
    response.close()
    assert send(router, "POST", "/containers/done/attach?stdout=1").status == 400
    assert send(router, "POST", "/containers/nosuch/attach?stream=1").status == 404


def test_exec_create_start_inspect(router, services) -> None:
    create(router, "box", Cmd=["sleep", "1"])
    assert send(router, "POST", "/containers/box/exec", {"Cmd": ["sh", "-c", "echo x; exit 3"]}).status == 409
    send(router, "POST", "/containers/box/start")
    assert send(router, "POST", "/containers/box/exec", {"Cmd": []}).status == 400
    assert send(router, "POST", "/containers/box/exec", {"Cmd": "ls"}).status == 400
    response = send(router, "POST", "/containers/box/exec",
                    {"Cmd": ["sh", "-c", "echo x; echo y >&2; exit 3"], "AttachStdout": True, "AttachStderr": True})
    assert response.status == 201
    exec_id = json_body(response)["Id"]
    started = send(router, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}, headers=UPGRADE)
    assert started.status == 101
    assert frames(read_all(started.hijacked)) == [(1, b"x\n"), (2, b"y\n")]
    started.close()
    answer = json_body(send(router, "GET", f"/exec/{exec_id}/json"))
    assert answer["ExitCode"] == 3 and answer["Running"] is False
    assert send(router, "GET", "/exec/nosuch/json").status == 404


def test_exec_start_detached_tty_and_console_size(router, services) -> None:
    create(router, "box", Cmd=["sleep", "1"])
    send(router, "POST", "/containers/box/start")
    detached = json_body(send(router, "POST", "/containers/box/exec", {"Cmd": ["true"]}))["Id"]
    response = send(router, "POST", f"/exec/{detached}/start", {"Detach": True})
    assert response.status == 200 and response.hijacked is None and response.read_body() == b""
    tty = json_body(send(router, "POST", "/containers/box/exec", {"Cmd": ["echo", "t"], "Tty": True}))["Id"]
    response = send(router, "POST", f"/exec/{tty}/start", {"Tty": True, "ConsoleSize": [30, 100]})
    assert response.status == 200 and response.headers["Content-Type"] == "application/vnd.docker.raw-stream"
    assert read_all(response.hijacked) == b"echo t\n"
    response.close()
    assert services.execs.execs[tty].resized == [(30, 100)]
    assert send(router, "POST", f"/exec/{tty}/resize?h=10&w=20").status == 200
    assert send(router, "POST", f"/exec/{tty}/start", {"Tty": "yes"}).status == 400
    assert send(router, "POST", f"/exec/{tty}/start", {"ConsoleSize": [1]}).status == 400


# -- top, stats, changes, export ----------------------------------------------------------------

def test_top_changes_export(router) -> None:
    create(router, "box", Cmd=["sleep", "1"])
    assert send(router, "GET", "/containers/box/top").status == 409
    send(router, "POST", "/containers/box/start")
    answer = json_body(send(router, "GET", "/containers/box/top?ps_args=aux"))
    assert answer["Titles"][1] == "PID" and answer["Processes"][0][-1] == "sleep 1"
    assert json_body(send(router, "GET", "/containers/box/changes"))[1] == {"Path": "/etc/motd", "Kind": 2}
    export = send(router, "GET", "/containers/box/export")
    assert export.headers["Content-Type"] == "application/x-tar"
    assert b"etc/hostname" in export.read_body()


def test_stats_one_document_or_a_json_stream(router) -> None:
    create(router, "box", Cmd=["sleep", "1"])
    single = send(router, "GET", "/containers/box/stats?stream=0")
    assert json_body(single)["memory_stats"] == STATS["memory_stats"]
    stream = send(router, "GET", "/containers/box/stats")
    lines = stream.read_body().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["name"] == "/box"
    assert send(router, "GET", "/containers/box/stats?stream=1&one-shot=1").status == 400


# -- archive and commit -------------------------------------------------------------------------

def _stat(response: Response) -> dict:
    return json.loads(base64.urlsafe_b64decode(response.headers["X-Docker-Container-Path-Stat"]))


def test_archive_head_get_put(router, services, tmp_path) -> None:
    from lamina.archive import TarWriter

    create(router, "box")
    head = send(router, "HEAD", "/containers/box/archive?path=/etc/hostname")
    assert head.status == 200 and head.read_body() == b""
    assert _stat(head)["name"] == "hostname" and _stat(head)["size"] == 13
    directory = _stat(send(router, "HEAD", "/containers/box/archive?path=/etc"))
    assert directory["mode"] & (1 << 31)
    got = send(router, "GET", "/containers/box/archive?path=/etc")
    assert got.headers["Content-Type"] == "application/x-tar" and _stat(got)["name"] == "etc"
    assert b"etc/hostname" in got.read_body()
    assert send(router, "GET", "/containers/box/archive").status == 400
    assert send(router, "HEAD", "/containers/box/archive?path=/nosuch").status == 404

    chunks: list[bytes] = []
    writer = TarWriter(lambda data: chunks.append(bytes(data)))
    writer.add_file("added.txt", 5, io.BytesIO(b"hello"))
    writer.close()
    put = send(router, "PUT", "/containers/box/archive?path=/etc&copyUIDGID=1&noOverwriteDirNonDir=1",
               b"".join(chunks))
    assert put.status == 200
    root = services.containers._find("box").root
    assert (tmp_path / "containers" / root.rsplit("/", 1)[1] / "etc" / "added.txt").read_bytes() == b"hello"
    call = [c for c in services.containers.calls if c[0] == "archive_put"][-1][1]
    assert call["copy_uid_gid"] is True and call["no_overwrite_dir_non_dir"] is True


def test_commit(router, services) -> None:
    create(router, "box")
    response = send(router, "POST", "/commit?container=box&repo=snap&tag=1&comment=msg&author=me&pause=0"
                                    "&changes=ENV%20A%3D1&changes=CMD%20sh", {"Cmd": ["sh"], "Env": ["B=2"]})
    assert response.status == 201 and json_body(response)["Id"].startswith("sha256:")
    call = [c for c in services.containers.calls if c[0] == "commit"][-1][1]
    assert call == {"id": services.containers._find("box").id, "repository": "snap", "tag": "1", "comment": "msg",
                    "author": "me", "pause": False, "changes": ["ENV A=1", "CMD sh"],
                    "config": {"Cmd": ["sh"], "Env": ["B=2"]}}
    assert send(router, "POST", "/commit?container=box").status == 201
    assert [c for c in services.containers.calls if c[0] == "commit"][-1][1]["pause"] is True
    assert send(router, "POST", "/commit").status == 400
    assert send(router, "POST", "/commit?container=box", {"Env": "A=1"}).status == 400
    assert send(router, "POST", "/commit?container=nosuch").status == 404
