"""APIClient over both transports.  The unix-socket transport talks HTTP/1.1 to a tiny threaded
server on a unix socket, which feeds the router (with the services test double): chunked
uploads, chunked streamed answers read while the service still runs, truncated streams,
error statuses, connection failures."""

from __future__ import annotations

import io
import json
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from lamina import errdefs
from lamina.api.http import Headers, Request, StreamAborted
from lamina.api.router import Router
from lamina.client.client import APIClient, ClientError
from lamina.client.base import TransportError
from lamina.client.transport import InProcessTransport, UnixSocketTransport, select_transport
from lamina.config import EngineConfig

from api.api_service_double import BUSYBOX_ID, DoubleServices


class ChunkedReader(io.RawIOBase):
    """Decodes a chunked request body from the server's rfile, on demand."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.left = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.done:
            return 0
        if self.left == 0:
            size_line = self.raw.readline()
            self.left = int(size_line.split(b";")[0].strip(), 16)
            if self.left == 0:
                while self.raw.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return 0
        data = self.raw.read(min(len(buffer), self.left))
        buffer[:len(data)] = data
        self.left -= len(data)
        if self.left == 0:
            self.raw.readline()
        return len(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # unix sockets have no client address
        pass

    def handle_request(self) -> None:
        server = self.server
        encoding = self.headers.get("Transfer-Encoding", "")
        body = None
        if "chunked" in encoding.lower():
            body = io.BufferedReader(ChunkedReader(self.rfile))
        elif int(self.headers.get("Content-Length") or 0):
            body = io.BytesIO(self.rfile.read(int(self.headers["Content-Length"])))
        request = Request.from_target(self.command, self.path, Headers(self.headers.items()), body)
        server.seen.append({"method": self.command, "path": self.path, "encoding": encoding,
                            "headers": dict(self.headers.items())})
        response = server.router.handle(request)
        if body is not None:
            body.read()  # drain what the handler left, keeping the connection in sync
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not response.is_stream:
            data = response.read_body()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in response.iter_body():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        except StreamAborted:
            self.close_connection = True  # no final chunk: the client must see a truncation
            return
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_DELETE = do_HEAD = handle_request


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def services() -> DoubleServices:
    return DoubleServices()


@pytest.fixture
def server(services) -> Iterator[UnixServer]:
    # Socket paths are limited to 108 bytes: a short private directory, removed afterwards.
    directory = tempfile.mkdtemp(prefix="lamina-sock-")
    instance = UnixServer(os.path.join(directory, "api.sock"), Handler)
    instance.router = Router(lambda: services)
    instance.seen = []
    thread = threading.Thread(target=instance.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield instance
    finally:
        instance.shutdown()
        instance.server_close()
        thread.join(5)
        shutil.rmtree(directory)


@pytest.fixture
def unix_client(server) -> APIClient:
    return APIClient(UnixSocketTransport(server.server_address))


@pytest.fixture
def in_process_client(services) -> APIClient:
    return APIClient(InProcessTransport(EngineConfig(data_root="/nonexistent"), lambda: services))


@pytest.fixture(params=["in-process", "unix-socket"])
def client(request) -> APIClient:
    return request.getfixturevalue("in_process_client" if request.param == "in-process" else "unix_client")


# -- the same client behaviour over both transports -----------------------------------------

def test_ping_negotiates_the_api_version(client: APIClient) -> None:
    answer = client.ping()
    assert answer["API-Version"] == "1.45" and answer["Body"] == "OK"
    assert client.api_version == "1.45"


def test_json_calls(client: APIClient) -> None:
    images = client.images(all=True, filters={"dangling": ["false"]})
    assert [image["Id"] for image in images][-1] == BUSYBOX_ID
    assert client.inspect_image("localhost:5000/a/b:tag")["Id"] == BUSYBOX_ID
    assert client.history("busybox")[1]["Id"] == "<missing>"
    assert client.info()["Driver"] == "overlay2"
    assert client.version()["ApiVersion"] == "1.45"
    assert client.system_df(types=["image"])["LayersSize"] == 4262550
    assert client.system_check(repair=True) == {"Problems": [], "Repaired": []}


def test_tag_remove_prune(client: APIClient, services: DoubleServices) -> None:
    client.tag("busybox", "example/x", "v1")
    assert services.images.tags["example/x:v1"] == BUSYBOX_ID
    assert client.remove_image("example/x:v1") == [{"Untagged": "example/x:v1"}]
    assert client.prune_images(filters={"dangling": ["true"]})["SpaceReclaimed"] == 1000


def test_errors_raise_client_error_with_status_and_message(client: APIClient) -> None:
    with pytest.raises(ClientError) as caught:
        client.inspect_image("nosuch")
    assert (caught.value.status, caught.value.message) == (404, "No such image: nosuch")
    with pytest.raises(ClientError) as caught:
        client.images(filters={"colour": ["red"]})
    assert caught.value.status == 400


def test_load_streams_messages(client: APIClient, services: DoubleServices) -> None:
    messages = list(client.load(io.BytesIO(b"x" * 300_000)))
    assert messages[-1] == {"stream": "Loaded image: busybox:latest\n"}
    assert services.images.calls[-1] == ("load", {"size": 300_000, "quiet": False})


def test_load_error_before_output_is_an_in_band_message(client: APIClient) -> None:
    messages = list(client.load(io.BytesIO(b"bad")))
    assert messages == [{"errorDetail": {"message": "invalid archive: no manifest.json", "code": 400},
                         "error": "invalid archive: no manifest.json"}]


def test_load_error_after_output_is_an_in_band_message(client: APIClient) -> None:
    messages = list(client.load(io.BytesIO(b"fail-late")))
    assert messages[-1]["errorDetail"] == {"message": "layer abcd1234: digest mismatch", "code": 500}


def test_save_streams_bytes(client: APIClient, services: DoubleServices) -> None:
    assert b"".join(client.save(["busybox", "localhost:5000/a/b:tag"], format="oci")) == \
        b"oci-archive:busybox;localhost:5000/a/b:tag;"
    assert services.images.calls[-1] == ("save", {"names": ["busybox", "localhost:5000/a/b:tag"], "format": "oci"})
    with pytest.raises(ClientError) as caught:
        client.save(["nosuch"])
    assert caught.value.status == 404


def test_save_broken_mid_stream_raises_while_reading(client: APIClient) -> None:
    chunks = client.save(["busybox", "fail-mid"])
    with pytest.raises(ClientError):
        b"".join(chunks)


def test_import_streams_and_ends_with_the_id(client: APIClient, services: DoubleServices) -> None:
    messages = list(client.import_image(io.BytesIO(b"rootfs"), repository="example/app",
                                        tag="v1", changes=["ENV A=1"], message="m"))
    assert messages[-1] == {"status": "sha256:" + "1" * 64}
    assert services.images.calls[-1][1]["changes"] == ["ENV A=1"]
    with pytest.raises(ClientError) as caught:
        client.import_image(None, source="http://example.com/x.tar")
    assert caught.value.status == 501


# -- unix socket specifics ------------------------------------------------------------------

def test_requests_carry_host_user_agent_and_the_version_prefix(unix_client: APIClient, server) -> None:
    unix_client.images()
    first, second = server.seen[0], server.seen[1]
    assert first["path"] == "/_ping"
    assert second["path"].startswith("/v1.45/images/json")
    assert second["headers"]["Host"] == "docker"
    assert second["headers"]["User-Agent"].startswith("lamina-cli/")


def test_names_are_percent_encoded_on_the_wire(unix_client: APIClient, server, services) -> None:
    services.images.tags["we?ird:latest"] = BUSYBOX_ID
    assert unix_client.inspect_image("we?ird")["Id"] == BUSYBOX_ID
    assert server.seen[-1]["path"] == "/v1.45/images/we%3Fird/json"


def test_stream_uploads_are_chunked(unix_client: APIClient, server, services) -> None:
    payload = os.urandom(1 << 20)
    list(unix_client.load(io.BytesIO(payload)))
    assert server.seen[-1]["encoding"] == "chunked"
    assert services.images.calls[-1][1]["size"] == len(payload)


def test_answers_are_read_while_the_service_still_runs(unix_client: APIClient, services) -> None:
    services.images.load_gate = threading.Event()
    messages = unix_client.load(io.BytesIO(b"archive"))
    assert next(messages)["status"] == "Loading layer"
    services.images.load_gate.set()
    assert {"stream": "streamed\n"} in list(messages)


def test_negotiation_uses_an_older_daemon_version(server) -> None:
    class OldPing:
        def __init__(self, transport):
            self.transport = transport

        def handle(self, request):
            response = self.transport.handle(request)
            if request.path == "/_ping":
                response.headers["API-Version"] = "1.41"
            return response

    client = APIClient(OldPing(UnixSocketTransport(server.server_address)))
    client.info()
    assert client.api_version == "1.41"
    assert server.seen[-1]["path"] == "/v1.41/info"


def test_a_missing_socket_is_a_transport_error(tmp_path) -> None:
    client = APIClient(UnixSocketTransport(str(tmp_path / "nothing.sock")))
    with pytest.raises(TransportError, match="Cannot connect to the daemon"):
        client.ping()


def test_a_socket_nobody_listens_on_is_a_transport_error() -> None:
    import socket

    directory = tempfile.mkdtemp(prefix="lamina-sock-")
    path = os.path.join(directory, "dead.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()  # bound, never listening: connect is refused
    try:
        with pytest.raises(TransportError):
            APIClient(UnixSocketTransport(path)).ping()
    finally:
        shutil.rmtree(directory)


def test_cli_over_the_unix_socket(server, lamina) -> None:
    result = lamina("-H", f"unix://{server.server_address}", "images", "--format", "{{.Repository}}")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["<none>", "busybox", "localhost:5000/a/b"]
    assert any(seen["path"].startswith("/v1.45/images/json") for seen in server.seen)


# -- transport selection --------------------------------------------------------------------

def test_select_transport(monkeypatch) -> None:
    config = EngineConfig(data_root="/nonexistent")
    for name in ("LAMINA_HOST", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(select_transport(None, config), InProcessTransport)
    transport = select_transport("unix:///run/x.sock", config)
    assert isinstance(transport, UnixSocketTransport) and transport.path == "/run/x.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    assert select_transport(None, config).path == "/run/docker.sock"
    monkeypatch.setenv("LAMINA_HOST", "unix:///run/lamina.sock")
    assert select_transport(None, config).path == "/run/lamina.sock"
    assert select_transport("unix:///explicit.sock", config).path == "/explicit.sock"
    for bad in ("tcp://127.0.0.1:2375", "ssh://host", "/run/x.sock", "unix://"):
        with pytest.raises(errdefs.InvalidArgument):
            select_transport(bad, config)


def test_in_process_transport_builds_services_lazily(monkeypatch) -> None:
    from lamina.client import transport as transport_module

    built = []
    monkeypatch.setattr(transport_module, "build_default_services",
                        lambda config: built.append(config) or DoubleServices())
    config = EngineConfig(data_root="/nonexistent")
    client = APIClient(InProcessTransport(config))
    client.ping()
    assert built == []
    client.images()
    assert built == [config]


def test_non_json_error_bodies_are_still_reported() -> None:
    class Plain:
        def handle(self, request):
            from lamina.api.http import Response

            if request.path == "/_ping":
                return Response(200, Headers({"API-Version": "1.45"}), b"OK")
            return Response(502, Headers({"Content-Type": "text/html"}), b"<h1>bad gateway</h1>")

    with pytest.raises(ClientError) as caught:
        APIClient(Plain()).info()
    assert caught.value.status == 502 and "bad gateway" in caught.value.message


def test_json_stream_split_across_chunks_is_reassembled() -> None:
    class Split:
        def handle(self, request):
            from lamina.api.http import Response

            if request.path == "/_ping":
                return Response(200, Headers({"API-Version": "1.45"}), b"OK")
            data = b'{"status":"a"}\n{"stream":"b\\n"}\n{"status":"c"}'
            return Response(200, Headers({"Content-Type": "application/json"}),
                            iter([data[i:i + 5] for i in range(0, len(data), 5)]))

    assert list(APIClient(Split()).load(io.BytesIO(b""))) == [
        {"status": "a"}, {"stream": "b\n"}, {"status": "c"}]


def test_json_of_the_wire_is_compact() -> None:
    # Filters are sent as Docker sends them: compact JSON of name -> [values].
    seen = []

    class Recorder:
        def handle(self, request):
            from lamina.api.http import Response

            seen.append(request)
            return Response(200, Headers({"API-Version": "1.45", "Content-Type": "application/json"}), b"[]")

    APIClient(Recorder()).images(filters={"reference": ["busy*"]}, all=True)
    assert seen[-1].query == {"all": ["1"], "filters": [json.dumps({"reference": ["busy*"]}, separators=(",", ":"))]}
