"""HTTPConnection on one end of a socketpair, a raw HTTP client on the other: keep-alive,
pipelining, request bodies (Content-Length, chunked, 100-continue, unread, read before a
refusal, lingering close while the client still sends), streaming
responses flushed per chunk, aborted streams, clients leaving mid-stream, malformed input,
handler failures, HEAD, hijacking with and without Upgrade, half-close both ways, output
held until the client read the hijack answer, shutdown (drain, cut)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lamina import errdefs
from lamina.api.http import Headers, Request, Response, StreamAborted
from lamina.server.connection import DRAIN_LIMIT, DRAIN_TIMEOUT, HTTPConnection
from server.conftest import RawConnection

JSON = Headers({"Content-Type": "application/json"})


class Handler:
    """Routes by path to functions ``(request) -> Response``; records what it was asked."""

    def __init__(self, routes: dict[str, Callable[[Request], Response]]) -> None:
        self.routes = routes
        self.requests: list[Request] = []

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        return self.routes[request.path](request)


def hello(request: Request) -> Response:
    return Response(200, Headers({"Content-Type": "text/plain"}), f"hello {request.query.get('n', ['?'])[0]}".encode())


def digest_body(request: Request) -> Response:
    body = request.body
    sizes = []
    hasher = hashlib.sha256()
    if body is not None:
        while True:
            data = body.read(10000)
            if not data:
                break
            sizes.append(len(data))
            hasher.update(data)
    answer = {"sha256": hasher.hexdigest(), "reads": sizes, "has_body": body is not None}
    return Response(200, JSON, json.dumps(answer).encode())


def refuse(request: Request) -> Response:
    return Response(400, JSON, b'{"message":"no"}\n')


class Served:
    """A connection served in a thread, and the client end."""

    def __init__(self, handler: Handler, **options: float) -> None:
        server_end, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.connection = HTTPConnection(server_end, handler, **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.connection.serve, daemon=True)
        self.thread.start()
        self.client = RawConnection(client_end, timeout=10)

    def finished(self, timeout: float = 5.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.client.close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    served: list[Served] = []

    def start(routes: dict[str, Callable[[Request], Response]], **options) -> Served:
        connection = Served(Handler(routes), **options)
        served.append(connection)
        return connection

    yield start
    for connection in served:
        connection.close()


def test_several_requests_share_one_connection(serve) -> None:
    served = serve({"/hello": hello})
    for number in range(3):
        served.client.request("GET", f"/hello?n={number}")
        response = served.client.read_response()
        assert (response.status, response.body) == (200, f"hello {number}".encode())
        assert response.header("content-length") == str(len(response.body))
        assert response.header("connection") is None
    assert not served.finished(0.1), "the connection must stay open between requests"


def test_pipelined_requests_are_answered_in_order(serve) -> None:
    served = serve({"/hello": hello})
    served.client.send(b"".join(f"GET /hello?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(4)))
    assert [served.client.read_response().body for _ in range(4)] == [f"hello {n}".encode() for n in range(4)]


def test_a_chunked_upload_reaches_the_handler_whole_and_read_calls_get_full_buffers(serve) -> None:
    served = serve({"/upload": digest_body, "/hello": hello})
    payload = bytes(range(256)) * 1000
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for start in range(0, len(payload), 7777):  # odd chunk sizes: reads must still be full
        piece = payload[start:start + 7777]
        served.client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    served.client.send(b"0\r\n\r\n")
    answer = json.loads(served.client.read_response().body)
    assert answer["sha256"] == hashlib.sha256(payload).hexdigest()
    assert answer["reads"][:-1] == [10000] * (len(answer["reads"]) - 1)
    served.client.request("GET", "/hello?n=after")
    assert served.client.read_response().body == b"hello after"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_and_the_next_request_sent_at_once_are_both_served(serve, framing) -> None:
    served = serve({"/upload": digest_body, "/hello": hello})
    payload = bytes(range(256)) * 300
    if framing == "chunked":  # with a chunk extension and a trailer, which are read and dropped
        head = b"Transfer-Encoding: chunked"
        body = b"%x;name=value\r\n%s\r\n%X\r\n%s\r\n0\r\nX-Trailer: yes\r\n\r\n" % (
            1000, payload[:1000], len(payload) - 1000, payload[1000:])
    else:
        head, body = b"Content-Length: %d" % len(payload), payload
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%sGET /hello?n=next HTTP/1.1\r\nHost: x\r\n\r\n"
                       % (head, body))
    assert json.loads(served.client.read_response().body)["sha256"] == hashlib.sha256(payload).hexdigest()
    assert served.client.read_response().body == b"hello next"
    assert not served.finished(0.1)


def test_with_an_h11_whose_length_reader_cannot_be_skipped_h11_counts_the_body_itself(serve, monkeypatch) -> None:
    import lamina.server.connection as connection_module
    # the installed h11 has the shortcut (the next test); without it the body is counted by h11
    monkeypatch.setattr(connection_module, "h11_skips_length_bodies", lambda connection: False)
    served = serve({"/upload": digest_body, "/hello": hello})
    payload = os.urandom(3 << 20)
    served.client.request("POST", "/upload", body=payload)
    assert json.loads(served.client.read_response().body)["sha256"] == hashlib.sha256(payload).hexdigest()
    served.client.request("GET", "/hello?n=after")
    assert served.client.read_response().body == b"hello after"


def test_the_installed_h11_lets_a_length_body_be_read_without_it() -> None:
    import h11

    from lamina.server.body import h11_skips_length_bodies

    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    assert isinstance(connection.next_event(), h11.Request)
    assert h11_skips_length_bodies(connection)


def test_requests_sent_a_byte_at_a_time_are_parsed_the_same(serve) -> None:
    served = serve({"/upload": digest_body, "/hello": hello})
    message = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n3\n de\r\n0\r\n\r\nGET /hello?n=2 HTTP/1.1\nHost: x\n\n")
    for index in range(len(message)):
        served.client.send(message[index:index + 1])
    assert json.loads(served.client.read_response().body)["sha256"] == hashlib.sha256(b"abc de").hexdigest()
    assert served.client.read_response().body == b"hello 2"


def read_all_or_report(request: Request) -> Response:
    try:
        request.body.read()
    except errdefs.LaminaError as exc:  # the router would map the kind; here we report it
        return Response(400, JSON, json.dumps({"message": str(exc), "kind": type(exc).__name__}).encode())
    return Response(200, JSON, b"{}")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_client_leaving_in_the_middle_of_a_body_is_reported_as_such(serve, framing) -> None:
    served = serve({"/upload": read_all_or_report})
    head = b"Content-Length: 1000" if framing == "content-length" else b"Transfer-Encoding: chunked"
    body = b"x" * 10 if framing == "content-length" else b"3e8\r\n" + b"x" * 10
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%s" % (head, body))
    served.client.sock.shutdown(socket.SHUT_WR)
    response = served.client.read_response()
    assert response.status == 400
    assert "closed the connection before the end of the request body" in json.loads(response.body)["message"]


def test_an_overlong_chunk_size_line_is_malformed(serve) -> None:
    served = serve({"/upload": read_all_or_report})
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;"
                       + b"e" * 5000 + b"\r\nx\r\n0\r\n\r\n")
    response = served.client.read_response()
    assert response.status == 400
    assert "malformed request body: a chunk size line longer than" in json.loads(response.body)["message"]


def test_a_request_without_body_gives_the_handler_none(serve) -> None:
    served = serve({"/upload": digest_body})
    served.client.request("POST", "/upload")
    assert json.loads(served.client.read_response().body)["has_body"] is False
    served.client.request("POST", "/upload", body=b"")
    assert json.loads(served.client.read_response().body)["has_body"] is False


def test_expect_100_continue_is_answered_when_the_handler_reads(serve) -> None:
    served = serve({"/upload": digest_body})
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = served.client.read_head()
    assert (interim.status, interim.reason) == (100, "Continue")
    served.client.send(b"hello")
    response = served.client.read_response()
    assert json.loads(response.body)["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert response.header("connection") is None


def test_expect_100_continue_refused_without_reading_closes_the_connection(serve) -> None:
    served = serve({"/upload": refuse})
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    response = served.client.read_response()
    assert response.status == 400
    assert response.header("connection") == "close"
    assert served.client.at_eof()


def test_an_unread_body_ends_the_connection_after_the_answer(serve) -> None:
    # the client never closes: the server ends its lingering close after lingering_time
    served = serve({"/upload": refuse}, lingering_time=0.2)
    served.client.request("POST", "/upload", headers={"Content-Length": str(4 << 20)})
    served.client.send(b"x" * 65536)
    response = served.client.read_response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert served.finished()


class BodyWriter:
    """Writes ``size`` bytes of request body (or, with ``size`` None, writes until the
    connection fails) from a thread, as a client still uploading while the answer comes."""

    def __init__(self, sock: socket.socket, size: int | None) -> None:
        self.sock = sock
        self.size = size
        self.written = 0
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        piece = memoryview(b"x" * 65536)
        try:
            while self.size is None or self.written < self.size:
                left = len(piece) if self.size is None else min(len(piece), self.size - self.written)
                self.written += self.sock.send(piece[:left])
        except OSError as exc:
            self.error = exc

    def finished(self, timeout: float = 10.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def test_a_client_still_sending_a_refused_body_reads_the_whole_answer_without_a_broken_pipe(serve) -> None:
    # The body is far larger than the socket buffers and the handler never reads it: the
    # client's writes only succeed if the server keeps reading after its answer.
    served = serve({"/upload": refuse}, lingering_time=30.0)
    size = 8 << 20
    served.client.request("POST", "/upload", headers={"Content-Length": str(size)})
    served.client.send(b"x" * 65536)
    writer = BodyWriter(served.client.sock, size - 65536)
    response = served.client.read_response()
    assert (response.status, response.body) == (400, b'{"message":"no"}\n')
    assert response.header("connection") == "close"
    assert writer.finished(), "the client could not finish writing its body"
    assert writer.error is None, f"the client's write failed: {writer.error!r}"
    assert writer.written == size - 65536
    assert served.client.sock.recv(1) == b"", "the server must end its side after the answer"
    assert not served.finished(0.2), "the server must wait for the client to close"
    started = time.monotonic()
    served.client.sock.shutdown(socket.SHUT_WR)
    assert served.finished()
    assert time.monotonic() - started < 3, "the client's close must end the lingering close"


def test_a_client_that_never_stops_sending_is_cut_off_after_the_lingering_time(serve) -> None:
    served = serve({"/upload": refuse}, lingering_time=0.5, lingering_limit=1 << 50)
    served.client.request("POST", "/upload", headers={"Content-Length": str(1 << 50)})
    writer = BodyWriter(served.client.sock, None)
    response = served.client.read_response()
    answered = time.monotonic()
    assert response.status == 400
    assert served.finished()
    assert 0.4 < time.monotonic() - answered < 3
    assert writer.finished()
    assert isinstance(writer.error, (BrokenPipeError, ConnectionResetError))


def test_a_client_that_never_stops_sending_is_cut_off_after_the_lingering_limit(serve) -> None:
    served = serve({"/upload": refuse}, lingering_time=60.0, lingering_limit=1 << 20)
    served.client.request("POST", "/upload", headers={"Content-Length": str(1 << 50)})
    writer = BodyWriter(served.client.sock, None)
    assert served.client.read_response().status == 400
    assert served.finished(10), "1 MiB read must end the lingering close long before its time limit"
    assert writer.finished()
    assert isinstance(writer.error, (BrokenPipeError, ConnectionResetError))
    assert writer.written >= 1 << 20


def test_a_small_body_sent_after_the_head_is_read_before_the_answer_and_the_connection_kept(serve) -> None:
    # The docker CLI writes the head and the body of `docker network create` separately: a
    # route refusing without reading must not answer and close between the two writes.
    handled = threading.Event()

    def refuse_at_once(request: Request) -> Response:
        handled.set()
        return Response(501, JSON, b'{"message":"lamina does not support user-defined networks"}\n')

    served = serve({"/networks/create": refuse_at_once, "/hello": hello})
    body = b'{"Name":"backend","Driver":"bridge"}'
    served.client.send(b"POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body))
    assert handled.wait(5)
    time.sleep(0.1)   # the answer would be out by now if the server did not wait for the body
    served.client.send(body)
    response = served.client.read_response()
    assert response.status == 501 and b"user-defined networks" in response.body
    assert response.header("connection") is None
    served.client.request("GET", "/hello?n=next")
    assert served.client.read_response().body == b"hello next"


def test_a_small_body_that_never_comes_delays_the_answer_only_by_the_drain_timeout(serve, monkeypatch) -> None:
    monkeypatch.setattr("lamina.server.connection.DRAIN_TIMEOUT", 0.3)
    served = serve({"/upload": refuse}, lingering_time=0.3)
    started = time.monotonic()
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    response = served.client.read_response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert 0.25 < time.monotonic() - started < 3
    assert served.finished()


def test_a_refused_body_larger_than_the_drain_limit_is_not_waited_for(serve) -> None:
    served = serve({"/upload": refuse}, lingering_time=0.5)
    started = time.monotonic()
    served.client.request("POST", "/upload", headers={"Content-Length": str(DRAIN_LIMIT + 1)})
    response = served.client.read_response()
    assert (response.status, response.header("connection")) == (400, "close")
    assert time.monotonic() - started < DRAIN_TIMEOUT / 2
    assert served.finished()


def test_a_small_unread_body_is_discarded_after_a_stream_and_the_connection_kept(serve) -> None:
    def stream(request: Request) -> Response:
        return Response(200, JSON, iter([b"a", b"b"]))

    served = serve({"/stream": stream, "/hello": hello})
    served.client.request("POST", "/stream", body=b"y" * 5000)
    assert served.client.read_response().body == b"ab"
    served.client.request("GET", "/hello?n=2")
    assert served.client.read_response().body == b"hello 2"


def test_a_stream_is_chunked_and_each_chunk_is_flushed_as_it_is_produced(serve) -> None:
    released = threading.Event()

    def stream(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            yield b'{"status":"first"}\n'
            assert released.wait(10)
            yield b'{"status":"second"}\n'

        return Response(200, JSON, chunks())

    served = serve({"/stream": stream})
    served.client.request("GET", "/stream")
    head = served.client.read_head()
    assert head.header("transfer-encoding") == "chunked"
    assert head.header("content-length") is None
    first_size = served.client.read_line()
    assert served.client.read_exact(int(first_size, 16) + 2) == b'{"status":"first"}\n\r\n'
    released.set()
    second_size = served.client.read_line()
    assert served.client.read_exact(int(second_size, 16) + 2) == b'{"status":"second"}\n\r\n'
    assert served.client.read_line() == b"0"


def test_an_aborted_stream_ends_the_connection_without_the_final_chunk(serve) -> None:
    def stream(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            yield b"tar-part-1"
            raise StreamAborted(500, "layer went missing")

        return Response(200, Headers({"Content-Type": "application/x-tar"}), chunks())

    served = serve({"/get": stream})
    served.client.request("GET", "/get")
    response = served.client.read_response()
    assert response.status == 200
    assert response.body == b"tar-part-1"
    assert response.complete is False
    assert served.finished()


def test_a_client_leaving_mid_stream_closes_the_producer(serve) -> None:
    closed = threading.Event()

    def stream(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            try:
                while True:
                    yield b"z" * 65536
            finally:
                closed.set()

        return Response(200, Headers({"Content-Type": "application/x-tar"}), chunks())

    served = serve({"/get": stream})
    served.client.request("GET", "/get")
    assert served.client.read_head().status == 200
    served.client.read_exact(1000)
    served.client.close()
    assert closed.wait(5), "the generator must see GeneratorExit when the client goes away"
    assert served.finished()


def test_malformed_http_gets_400_and_the_connection_closes(serve) -> None:
    served = serve({"/hello": hello})
    served.client.send(b"THIS IS NOT HTTP\r\n\r\n")
    response = served.client.read_response()
    assert response.status == 400
    assert "malformed HTTP request" in json.loads(response.body)["message"]
    assert served.client.at_eof()


def test_a_bad_chunked_body_is_a_client_error_not_a_crash(serve) -> None:
    def read_all(request: Request) -> Response:
        try:
            request.body.read()
        except errdefs.LaminaError as exc:  # the router would map the kind; here we report it
            return Response(400, JSON, json.dumps({"message": str(exc), "kind": type(exc).__name__}).encode())
        return Response(200, JSON, b"{}")

    served = serve({"/upload": read_all}, lingering_time=0.2)  # the client never closes
    served.client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    response = served.client.read_response()
    assert response.status == 400
    assert json.loads(response.body)["kind"] == "InvalidArgument"
    assert served.finished()


def test_a_failing_handler_gets_a_500_message_without_traceback(serve) -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    served = serve({"/broken": broken, "/hello": hello})
    served.client.request("GET", "/broken")
    response = served.client.read_response()
    assert response.status == 500
    assert json.loads(response.body) == {"message": "internal error: RuntimeError: boom"}
    assert b"Traceback" not in response.body
    served.client.request("GET", "/hello?n=still")
    assert served.client.read_response().body == b"hello still"


def test_invalid_response_headers_are_dropped_not_sent(serve) -> None:
    def bad_header(request: Request) -> Response:
        return Response(200, Headers({"X-Ok": "yes", "X-Bad": "a\r\nInjected: 1", "Content-Length": "999"}), b"ok")

    served = serve({"/h": bad_header})
    served.client.request("GET", "/h")
    response = served.client.read_response()
    assert response.header("x-ok") == "yes"
    assert response.header("x-bad") is None and response.header("injected") is None
    assert (response.header("content-length"), response.body) == ("2", b"ok")


def test_head_answers_headers_with_content_length_and_keeps_the_connection(serve) -> None:
    served = serve({"/hello": lambda request: Response(200, Headers({"API-Version": "1.45"}), b"")})
    served.client.request("HEAD", "/hello")
    response = served.client.read_response("HEAD")
    assert response.status == 200
    assert response.header("content-length") == "0"
    assert response.header("api-version") == "1.45"
    served.client.request("HEAD", "/hello")
    assert served.client.read_response("HEAD").status == 200


# -- hijacking --------------------------------------------------------------------------------


class RecordingDuplex:
    """One end of a socketpair, recording shutdown and close calls (the container side holds
    the other end)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.shutdowns: list[int] = []
        self.closed = threading.Event()

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self.shutdowns.append(how)
        self.sock.shutdown(how)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


@pytest.fixture
def container_side() -> Iterator[tuple[RecordingDuplex, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.settimeout(10)
    duplex = RecordingDuplex(ours)
    yield duplex, theirs
    theirs.close()
    if not duplex.closed.is_set():
        ours.close()


def read_until_eof(sock: socket.socket, already: bytes = b"") -> bytes:
    data = already
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def attach_route(duplex: RecordingDuplex, content_type: str | None = None) -> Callable[[Request], Response]:
    def attach(request: Request) -> Response:
        if request.body is not None:
            json.loads(request.body.read())
        headers = Headers({"Content-Type": content_type} if content_type else {})
        return Response(101 if request.wants_upgrade() else 200, headers, b"", hijacked=duplex)

    return attach


def test_an_upgrade_request_gets_101_and_bytes_flow_both_ways_with_half_closes(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/containers/c/attach": attach_route(duplex)})
    # Like docker, the client may send stdin right behind the request: it must not be lost.
    served.client.send(b"POST /containers/c/attach?stream=1 HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly-stdin|")
    head = served.client.read_head()
    assert (head.status, head.reason) == (101, "UPGRADED")
    assert head.header("connection") == "Upgrade"
    assert head.header("upgrade") == "tcp"
    assert head.header("content-type") == "application/vnd.docker.raw-stream"
    assert head.header("content-length") is None and head.header("transfer-encoding") is None

    served.client.send(b"more-stdin")
    served.client.sock.shutdown(socket.SHUT_WR)           # the client's stdin ends
    assert read_until_eof(container) == b"early-stdin|more-stdin"   # ... so does the container's
    assert duplex.shutdowns == [socket.SHUT_WR]

    container.sendall(b"output after stdin closed")       # output keeps flowing after the half-close
    container.shutdown(socket.SHUT_WR)
    assert read_until_eof(served.client.sock, served.client.buffer) == b"output after stdin closed"
    assert served.finished()
    assert duplex.closed.is_set()


def test_a_plain_hijack_gets_200_with_the_handlers_content_type_and_a_request_body(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/exec/e/start": attach_route(duplex, "application/vnd.docker.multiplexed-stream")})
    served.client.request("POST", "/exec/e/start", headers={"Content-Type": "application/json"},
                          body=b'{"Detach":false,"Tty":false}')
    head = served.client.read_head()
    assert (head.status, head.reason) == (200, "OK")
    assert head.header("content-type") == "application/vnd.docker.multiplexed-stream"
    assert head.header("upgrade") is None
    frame = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    container.sendall(frame)
    container.close()   # the exec ended: the client sees the end of the stream
    assert read_until_eof(served.client.sock, served.client.buffer) == frame
    served.client.sock.shutdown(socket.SHUT_WR)   # docker closes its side once the output ended
    assert served.finished()


def test_the_duplex_ending_first_half_closes_the_client_then_the_connection_ends(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/a": attach_route(duplex)}, linger=0.5)
    served.client.request("POST", "/a", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert served.client.read_head().status == 101
    container.sendall(b"bye")
    container.shutdown(socket.SHUT_WR)
    assert read_until_eof(served.client.sock, served.client.buffer) == b"bye"
    # The client never closes its side: the server gives it `linger` seconds, then ends.
    started = time.monotonic()
    assert served.finished(5)
    assert time.monotonic() - started < 3
    assert duplex.closed.is_set()


def test_cutting_a_splice_forwards_no_half_close_to_the_container(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/a": attach_route(duplex)})
    served.client.request("POST", "/a", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert served.client.read_head().status == 101
    container.sendall(b"tick")
    assert served.client.read_exact(4) == b"tick"
    served.connection.cut()
    assert served.finished()
    assert duplex.shutdowns == []        # stdin was not closed on the container's behalf
    assert duplex.closed.is_set()        # the attach session itself is over
    assert served.client.at_eof()


def peek(sock: socket.socket) -> bytes:
    """What the client could read now, left in the socket (so the server still sees it unread)."""
    sock.settimeout(0)
    try:
        return sock.recv(65536, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
    finally:
        sock.settimeout(10)


def test_output_waiting_before_the_client_read_the_answer_is_not_read_with_its_head(serve, container_side) -> None:
    """Like docker-py: the head read by http.client's buffered reader, the stream then read
    from the socket underneath, so a byte that came in the same read as the head would be lost."""
    duplex, container = container_side
    served = serve({"/exec/e/start": attach_route(duplex, "application/vnd.docker.multiplexed-stream")})
    frame = b"\x01\x00\x00\x00\x00\x00\x00\x09exec-out\n"
    container.sendall(frame)   # the exec's output is ready before the answer went out
    served.client.request("POST", "/exec/e/start", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    time.sleep(0.3)            # a client slow to read the answer (a loaded machine)
    answer = http.client.HTTPResponse(served.client.sock, method="POST")
    answer.begin()
    assert answer.status == 101
    served.client.sock.settimeout(2)    # a frame swallowed by the buffered reader never comes
    assert served.client.sock.recv(65536) == frame
    container.close()
    assert served.client.sock.recv(65536) == b""
    served.client.sock.shutdown(socket.SHUT_WR)
    assert served.finished()


def test_a_client_that_does_not_read_the_answer_gets_the_output_after_the_hold_time(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/a": attach_route(duplex)}, hold=1.0)
    container.sendall(b"output")
    started = time.monotonic()
    served.client.request("POST", "/a", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    while not (seen := peek(served.client.sock)) and time.monotonic() - started < 5:
        time.sleep(0.01)  # the answer comes first
    if time.monotonic() - started < 1.0:  # peeked within the hold (a stalled client may peek later)
        assert seen.endswith(b"\r\n\r\n")   # the answer only: the output is held
    while not peek(served.client.sock).endswith(b"output") and time.monotonic() - started < 8:
        time.sleep(0.01)
    assert peek(served.client.sock).endswith(b"\r\n\r\noutput")
    assert 1.0 <= time.monotonic() - started < 6
    assert served.client.read_head().status == 101
    assert served.client.buffer == b"output"
    container.close()
    served.client.sock.shutdown(socket.SHUT_WR)
    assert served.finished()


def test_cutting_a_splice_that_holds_its_output_ends_it_at_once(serve, container_side) -> None:
    duplex, container = container_side
    served = serve({"/a": attach_route(duplex)})   # the default hold: 5 s
    container.sendall(b"output")
    served.client.request("POST", "/a", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    deadline = time.monotonic() + 5
    while served.connection._splice is None and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    served.connection.cut()
    assert served.finished(2)
    assert time.monotonic() - started < 1
    assert duplex.shutdowns == []
    assert duplex.closed.is_set()


def test_a_refused_upgrade_is_an_ordinary_answer(serve) -> None:
    served = serve({"/a": lambda request: Response(404, JSON, b'{"message":"No such container: a"}\n'),
                    "/hello": hello})
    served.client.request("POST", "/a", headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    response = served.client.read_response()
    assert response.status == 404
    assert response.header("upgrade") is None


# -- shutdown ---------------------------------------------------------------------------------


def test_drain_closes_an_idle_connection_at_once(serve) -> None:
    served = serve({"/hello": hello})
    served.client.request("GET", "/hello?n=1")
    served.client.read_response()
    served.connection.drain()
    assert served.finished()
    assert served.client.at_eof()


def test_drain_lets_a_stream_in_progress_finish_then_closes(serve) -> None:
    started, released = threading.Event(), threading.Event()

    def stream(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            started.set()
            yield b"one"
            released.wait(10)
            yield b"two"

        return Response(200, JSON, chunks())

    served = serve({"/stream": stream})
    served.client.request("GET", "/stream")
    assert started.wait(5)
    served.connection.drain()
    released.set()
    response = served.client.read_response()
    assert (response.body, response.complete) == (b"onetwo", True)
    assert served.finished()


# -- clients hanging up while a producer waits --------------------------------------------------


class WaitingBody:
    """A stream blocked until released (like a wait on a running container), optionally
    cancellable the way the server expects: a thread-safe ``cancel()``."""

    def __init__(self, cancellable: bool) -> None:
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.closed = threading.Event()
        self.started = threading.Event()
        if cancellable:
            self.cancel = self._cancel

    def _cancel(self) -> None:
        self.cancelled.set()
        self.release.set()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        try:
            self.started.set()
            self.release.wait(30)
            yield b'{"StatusCode":0}\n'
        finally:
            self.closed.set()


def test_a_client_hanging_up_cancels_a_waiting_stream(serve) -> None:
    body = WaitingBody(cancellable=True)
    served = serve({"/wait": lambda request: Response(200, JSON, body)})
    served.client.request("POST", "/wait")
    assert served.client.read_head().status == 200   # headers go out before the answer exists
    assert body.started.wait(5)
    served.client.close()
    assert body.cancelled.wait(5), "the server must cancel the producer when the client leaves"
    assert served.finished()
    assert body.closed.is_set()
    assert served.connection.abandoned


def test_a_client_hanging_up_abandons_an_uncancellable_stream_until_it_produces(serve) -> None:
    body = WaitingBody(cancellable=False)
    served = serve({"/wait": lambda request: Response(200, JSON, body)})
    served.client.request("POST", "/wait")
    assert served.client.read_head().status == 200
    assert body.started.wait(5)
    served.client.close()
    deadline = time.monotonic() + 5
    while not served.connection.abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.connection.abandoned
    assert not served.finished(0.2)          # the producer still waits ...
    body.release.set()
    assert served.finished()                 # ... its next chunk fails and closes it
    assert body.closed.is_set()


def test_a_stream_reading_its_request_body_is_not_taken_for_a_hangup(serve) -> None:
    def echo_later(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            yield b"started;"
            yield request.body.read()

        return Response(200, JSON, chunks())

    served = serve({"/echo": echo_later, "/hello": hello})
    served.client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    time.sleep(0.2)   # the answer has started while the body is incomplete
    served.client.send(b"def")
    assert served.client.read_response().body == b"started;abcdef"
    assert not served.connection.abandoned
