"""``lamina serve`` as a process, driven with raw HTTP/1.1 over its socket: ping headers,
keep-alive, chunked upload and streamed answers, versioned paths, errors, clients leaving
mid-download, shutdown on SIGTERM (finishing, then cutting), refusing a live socket,
replacing a stale one, and the lamina CLI through ``-H``."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from server.conftest import BUSYBOX_ARCHIVE, REPOSITORY, RawConnection

pytestmark = pytest.mark.privileged


def chunked(data: bytes, size: int = 50_000) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def load_busybox(connection) -> list[dict]:
    with open(BUSYBOX_ARCHIVE, "rb") as file:
        archive = file.read()
    connection.send(b"POST /v1.45/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(archive))
    response = connection.read_response()
    assert response.status == 200, response.body
    assert response.header("transfer-encoding") == "chunked"
    return [json.loads(line) for line in response.body.splitlines()]


def test_ping_answers_the_headers_clients_negotiate_with(server) -> None:
    connection = server.connect()
    for method in ("GET", "HEAD"):
        connection.request(method, "/_ping")
        response = connection.read_response(method)
        assert response.status == 200
        assert response.header("api-version") == "1.45"
        assert response.header("builder-version") == "1"
        assert response.header("ostype") == "linux"
        assert response.header("server").startswith("lamina/")
        assert response.header("content-length") == ("2" if method == "GET" else "0")
        assert response.body == (b"OK" if method == "GET" else b"")


def test_the_socket_has_mode_0660(server) -> None:
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o660


def test_several_requests_on_one_keep_alive_connection(server) -> None:
    connection = server.connect()
    answers = []
    for method, target in [("GET", "/_ping"), ("GET", "/version"), ("GET", "/v1.45/info"),
                           ("GET", "/v1.41/images/json"), ("GET", "/v1.45/no/such/endpoint"),
                           ("DELETE", "/images/nope"), ("GET", "/v1.99/version"), ("GET", "/v1.24/version")]:
        connection.request(method, target)
        response = connection.read_response(method)
        assert response.header("connection") is None, target
        answers.append((target, response.status, response.body))
    statuses = {target: status for target, status, _ in answers}
    assert statuses == {"/_ping": 200, "/version": 200, "/v1.45/info": 200, "/v1.41/images/json": 200,
                        "/v1.45/no/such/endpoint": 404, "/images/nope": 404, "/v1.99/version": 400,
                        "/v1.24/version": 200}
    bodies = {target: body for target, _, body in answers}
    assert json.loads(bodies["/v1.45/no/such/endpoint"]) == {"message": "page not found"}
    assert "too new" in json.loads(bodies["/v1.99/version"])["message"]
    assert json.loads(bodies["/version"])["ApiVersion"] == "1.45"
    assert "Traceback" not in server.output()


def test_a_chunked_upload_then_a_chunked_download_on_one_connection(server) -> None:
    connection = server.connect()
    messages = load_busybox(connection)
    assert {"stream": "Loaded image: busybox:latest\n"} in messages
    connection.request("GET", "/v1.45/images/json")
    images = json.loads(connection.read_response().body)
    assert [image["RepoTags"] for image in images] == [["busybox:latest"]]
    connection.request("GET", "/v1.45/images/busybox:latest/get")
    response = connection.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/x-tar"
    assert response.header("transfer-encoding") == "chunked" and response.complete
    assert len(response.chunks) > 1, "an archive is streamed, not sent as one piece"
    with tarfile.open(fileobj=io.BytesIO(response.body)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    connection.request("GET", "/_ping")
    assert connection.read_response().body == b"OK"


def test_expect_100_continue_upload(server) -> None:
    connection = server.connect()
    with open(BUSYBOX_ARCHIVE, "rb") as file:
        archive = file.read()
    connection.send(b"POST /images/load?quiet=1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(archive))
    assert connection.read_head().status == 100
    connection.send(archive)
    response = connection.read_response()
    assert response.status == 200
    assert b"Loaded image: busybox:latest" in response.body


def test_a_client_leaving_mid_download_does_not_disturb_another(server) -> None:
    load_busybox(server.connect())
    leaver = server.connect()
    leaver.request("GET", "/images/get?names=busybox")
    assert leaver.read_head().status == 200
    leaver.read_exact(20_000)
    failures: list[str] = []

    def keep_working() -> None:
        connection = server.connect()
        for _ in range(30):
            connection.request("GET", "/images/json")
            response = connection.read_response()
            if response.status != 200:
                failures.append(str(response.status))

    worker = threading.Thread(target=keep_working)
    worker.start()
    leaver.close()
    worker.join(30)
    assert failures == []
    def noticed() -> bool:
        return any("/images/get?names=busybox" in line and ("client gone" in line or "hung up" in line)
                   for line in server.output().splitlines())

    deadline = time.monotonic() + 10
    while not noticed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert noticed()
    # The server still streams whole archives to the next client.
    connection = server.connect()
    connection.request("GET", "/images/get?names=busybox")
    assert connection.read_response().complete


def test_malformed_requests_get_400_and_the_server_keeps_serving(server) -> None:
    bad = server.connect()
    bad.send(b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    response = bad.read_response()
    assert response.status == 400
    assert "message" in json.loads(response.body)
    assert bad.at_eof()
    truncated = server.connect()
    truncated.send(b"POST /images/load HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort")
    truncated.close()
    fine = server.connect()
    fine.request("GET", "/_ping")
    assert fine.read_response().status == 200
    assert "Traceback" not in server.output()


def test_sigterm_stops_the_server_and_removes_the_socket(server) -> None:
    idle = server.connect()
    idle.request("GET", "/_ping")
    idle.read_response()
    started = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - started < 2.5, "an idle keep-alive connection must not delay shutdown"
    assert not os.path.exists(server.socket_path)
    assert idle.at_eof()
    assert "stopping (received SIGTERM)" in server.output()


def test_sigterm_cuts_a_stream_that_does_not_finish_within_the_timeout(start_server) -> None:
    server = start_server("--shutdown-timeout", "1")
    load_busybox(server.connect())
    stuck = server.connect()
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.request("GET", "/images/get?names=busybox")
    assert stuck.read_head().status == 200   # then never read: the server blocks writing
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    elapsed = time.monotonic() - started
    assert 0.8 < elapsed < 6, f"shutdown took {elapsed:.1f} s with --shutdown-timeout 1"
    assert not os.path.exists(server.socket_path)
    assert "cutting 1 connection" in server.output()


def test_a_second_server_on_the_same_socket_refuses_to_start(server, start_server) -> None:
    second = start_server(wait=False, data_root=server.data_root + "-second")
    assert second.process.wait(20) == 5   # Conflict -> 409 -> exit code 5
    assert "already" in second.output()
    connection = server.connect()
    connection.request("GET", "/_ping")
    assert connection.read_response().status == 200


def test_a_stale_socket_from_a_killed_server_is_replaced(server, start_server) -> None:
    server.process.kill()
    server.process.wait()
    assert os.path.exists(server.socket_path)   # SIGKILL left it behind
    replacement = start_server(data_root=server.data_root)
    connection = replacement.connect()
    connection.request("GET", "/_ping")
    assert connection.read_response().status == 200


def test_the_lamina_cli_talks_to_the_server(server) -> None:
    environment = server.environment()
    def lamina(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lamina.cli.main", "-H", server.host, *argv],
                              env=environment, capture_output=True, cwd=REPOSITORY, timeout=60, check=False)

    loaded = lamina("load", "-q", "-i", BUSYBOX_ARCHIVE)
    assert loaded.returncode == 0, loaded.stderr
    assert b"Loaded image: busybox:latest" in loaded.stdout
    images = lamina("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert images.stdout.decode().split() == ["busybox:latest"]
    missing = lamina("rmi", "no-such-image")
    assert missing.returncode == 4 and b"No such image" in missing.stderr
    assert "pid " in server.wait_logged("/images/load")


def test_several_sockets_are_served_and_sigint_removes_them_all(start_server, socket_dir) -> None:
    other = os.path.join(socket_dir, "other.sock")
    server = start_server("-H", f"unix://{other}")
    for path in (server.socket_path, other):
        connection = RawConnection.connect(path)
        connection.request("GET", "/_ping")
        assert connection.read_response().status == 200
        connection.close()
    server.process.send_signal(signal.SIGINT)
    # the server waits at most --shutdown-timeout (3 s) for its connections (none here) and
    # SUPERVISOR_JOIN_TIMEOUT (1 s) for a restart round in progress; 10 s leaves room for a
    # loaded machine
    assert server.process.wait(10) == 0
    assert not os.path.exists(server.socket_path) and not os.path.exists(other)
    assert "received SIGINT" in server.output()


def test_concurrent_clients_share_the_services(server) -> None:
    """Threads of one server work on one store at once: loads, tags, lists, saves."""
    load_busybox(server.connect())
    failures: list[str] = []

    def tagger(worker: int) -> None:
        connection = server.connect()
        for number in range(10):
            connection.request("POST", f"/images/busybox/tag?repo=w{worker}/img&tag=t{number}")
            response = connection.read_response()
            if response.status != 201:
                failures.append(f"tag {worker}/{number}: {response.status} {response.body!r}")
            connection.request("GET", "/images/json")
            if connection.read_response().status != 200:
                failures.append("list")

    def loader() -> None:
        for _ in range(3):
            messages = load_busybox(server.connect())
            if {"stream": "Loaded image: busybox:latest\n"} not in messages:
                failures.append(f"load: {messages}")

    def saver() -> None:
        for _ in range(3):
            connection = server.connect()
            connection.request("GET", "/images/busybox/get")
            if not connection.read_response().complete:
                failures.append("save")

    threads = [threading.Thread(target=tagger, args=(worker,)) for worker in range(4)]
    threads += [threading.Thread(target=loader), threading.Thread(target=saver)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    connection = server.connect()
    connection.request("GET", "/images/json")
    tags = json.loads(connection.read_response().body)[0]["RepoTags"]
    assert len(tags) == 1 + 4 * 10


def _spools(server) -> list[str]:
    """The server's open load spools (memory files) and the spool files in its data root."""
    fds = os.path.join("/proc", str(server.process.pid), "fd")
    open_spools = []
    for name in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, name))
        except FileNotFoundError:
            continue
        if "lamina-load" in target or "/tmp/load-" in target:
            open_spools.append(target)
    spool_dir = os.path.join(server.data_root, "tmp")
    files = os.listdir(spool_dir) if os.path.isdir(spool_dir) else []
    return open_spools + files


@pytest.mark.parametrize("ending", ["the client closes mid-body", "a malformed chunk head", "an overlong chunk size line"])
def test_a_broken_upload_loads_nothing_and_leaves_no_spool(server, ending) -> None:
    with open(BUSYBOX_ARCHIVE, "rb") as file:
        archive = file.read()
    body = chunked(archive[:len(archive) // 2])[:-len(b"0\r\n\r\n")]  # whole chunks, no last chunk
    connection = server.connect()
    connection.send(b"POST /v1.45/images/load HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    if ending == "the client closes mid-body":
        connection.sock.shutdown(socket.SHUT_WR)  # a hang-up for the server: whatever it answered ends
        connection.sock.settimeout(10)
        while connection.sock.recv(65536):
            pass
    else:
        connection.send(b"zz\r\n" if ending == "a malformed chunk head" else b"1;" + b"x" * 10_000)
        response = connection.read_response()
        assert response.status == 200  # Docker's way: the failure is the stream's last message
        assert "malformed request body" in json.loads(response.body.splitlines()[-1])["error"]
    connection.close()
    listing = server.connect()
    listing.request("GET", "/images/json")
    assert json.loads(listing.read_response().body) == []
    deadline = time.monotonic() + 10
    while _spools(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _spools(server) == []


def test_a_load_leaves_no_spool_open(server) -> None:
    load_busybox(server.connect())
    assert _spools(server) == []
