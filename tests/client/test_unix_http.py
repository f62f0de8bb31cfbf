"""The hand-written HTTP/1.1 client of :mod:`lamina.client.unix` against raw servers.

Each server is a listening unix socket whose thread accepts one connection per exchange,
reads the request (head, then a ``Content-Length`` or chunked body, decoded here
independently of the client), sends a hand-crafted answer in the given pieces (pausing
between them so that they reach the client in separate ``recv`` calls) and then either closes
or waits for the client to close first.  Framings: Content-Length, chunked with extensions and
trailers, until close; interim 100 Continue; bodies cut short; malformed and oversized heads;
streamed uploads; HEAD/204/304; an early error answer during an upload; hijacking.  Hypothesis
varies bodies, chunk sizes and the split of the answer across ``recv`` boundaries."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.api.http import Headers, Request, StreamAborted
from lamina.client.base import TransportError
from lamina.client.unix import hijack, send

CHUNK = 64 * 1024


@dataclass
class Exchange:
    """What the server saw of one connection."""

    head: bytes = b""
    body: bytes = b""
    chunk_sizes: list[int] = field(default_factory=list)
    client_closed: bool = False
    error: BaseException | None = None

    def header(self, name: str) -> str | None:
        for line in self.head.decode("iso-8859-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class Peer:
    """The server's side of one connection: bytes received but not consumed yet."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.pending = b""

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.pending:
            data = self.conn.recv(CHUNK)
            assert data, f"the client closed before sending {marker!r}"
            self.pending += data
        found, _, self.pending = self.pending.partition(marker)
        return found

    def read_exactly(self, size: int) -> bytes:
        while len(self.pending) < size:
            data = self.conn.recv(CHUNK)
            assert data, "the client closed inside the body"
            self.pending += data
        found, self.pending = self.pending[:size], self.pending[size:]
        return found


class RawServer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)

    def answer(self, *pieces: bytes, read_body: bool = True, close: bool = True) -> Served:
        """Serve one connection: read the request, send ``pieces``, then close (``close``) or
        wait until the client closes."""
        return Served(self, list(pieces), read_body, close)

    def close(self) -> None:
        self.listener.close()


class Served:
    def __init__(self, server: RawServer, pieces: list[bytes], read_body: bool, close: bool) -> None:
        self.exchange = Exchange()
        self.thread = threading.Thread(target=self._run, args=(server, pieces, read_body, close), daemon=True)
        self.thread.start()

    def _run(self, server: RawServer, pieces: list[bytes], read_body: bool, close: bool) -> None:
        exchange = self.exchange
        try:
            conn, _ = server.listener.accept()
            with conn:
                conn.settimeout(10)
                peer = Peer(conn)
                exchange.head = peer.read_until(b"\r\n\r\n")
                if read_body:
                    self._read_body(peer)
                for index, piece in enumerate(pieces):
                    if index:
                        time.sleep(0.0005)  # let the client's recv take the previous piece alone
                    conn.sendall(piece)
                if not close:
                    while conn.recv(CHUNK):
                        pass
                    exchange.client_closed = True
        except BaseException as exc:  # noqa: BLE001 - raised again by result()
            exchange.error = exc

    def _read_body(self, peer: Peer) -> None:
        exchange = self.exchange
        if (exchange.header("Transfer-Encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(peer.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    peer.read_until(b"\r\n")
                    break
                exchange.chunk_sizes.append(size)
                body += peer.read_exactly(size)
                assert peer.read_exactly(2) == b"\r\n"
            exchange.body = bytes(body)
        elif exchange.header("Content-Length"):
            exchange.body = peer.read_exactly(int(exchange.header("Content-Length") or 0))

    def result(self) -> Exchange:
        self.thread.join(15)
        assert not self.thread.is_alive(), "the server thread is still running"
        if self.exchange.error is not None:
            raise self.exchange.error
        return self.exchange


@pytest.fixture
def server() -> Iterator[RawServer]:
    # Socket paths are limited to 108 bytes: a short private directory, removed afterwards.
    directory = tempfile.mkdtemp(prefix="lamina-http-")
    instance = RawServer(os.path.join(directory, "raw.sock"))
    try:
        yield instance
    finally:
        instance.close()
        shutil.rmtree(directory)


def get(path: str = "/v1.45/info", method: str = "GET", body=None, headers=None) -> Request:
    return Request(method, path, {}, Headers(headers or {}), body)


def chunked(body: bytes, sizes: list[int], extensions: bool = False, trailers: bytes = b"") -> bytes:
    """``body`` in chunks of the given sizes (cycled), then the last chunk and trailers."""
    out = bytearray()
    position = index = 0
    while position < len(body):
        size = sizes[index % len(sizes)]
        index += 1
        piece = body[position:position + size]
        position += size
        extension = b";name=value;flag" if extensions and index % 2 else b""
        out += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
    out += b"0" + (b";end" if extensions else b"") + b"\r\n" + trailers + b"\r\n"
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points) if end > start]


# -- framings ----------------------------------------------------------------------------------

def test_a_content_length_body_is_read_without_waiting_for_close(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n",
                           b'{"a": "b"}\n', close=False)
    response = send(server.path, get())
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.read_body() == b'{"a": "b"}\n'
    assert served.result().client_closed


def test_bytes_past_the_content_length_are_ignored(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", close=False)
    assert send(server.path, get()).read_body() == b"abc"
    assert served.result().client_closed


def test_a_chunked_body_with_extensions_and_trailers(server: RawServer) -> None:
    body = os.urandom(200_000)
    served = server.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                           chunked(body, [1, 70_000, 17, 5000], extensions=True,
                                   trailers=b"X-Checksum: abc\r\nX-Other: 1\r\n"),
                           close=False)
    response = send(server.path, get())
    pieces = list(response.iter_body())
    assert b"".join(pieces) == body
    assert max(len(piece) for piece in pieces) <= CHUNK
    assert served.result().client_closed


def test_a_body_without_framing_is_read_until_close(server: RawServer) -> None:
    body = os.urandom(300_000)
    server.answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n\r\n", body)
    assert send(server.path, get()).read_body() == body


def test_a_transfer_coding_other_than_chunked_last_is_read_until_close(server: RawServer) -> None:
    server.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 2\r\n\r\n",
                  b"5\r\nhello")
    assert send(server.path, get()).read_body() == b"5\r\nhello"


def test_a_100_continue_before_the_answer_is_skipped(server: RawServer) -> None:
    server.answer(b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\nX-A: 1\r\n\r\n",
                  b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    response = send(server.path, get(method="POST"))
    assert (response.status, response.read_body()) == (201, b"ok")
    assert "X-A" not in response.headers


@pytest.mark.parametrize("method, status", [("HEAD", 200), ("GET", 204), ("GET", 304)],
                         ids=["a HEAD answer", "204 No Content", "304 Not Modified"])
def test_answers_that_have_no_body(server: RawServer, method: str, status: int) -> None:
    served = server.answer(b"HTTP/1.1 %d X\r\nContent-Length: 42\r\nTransfer-Encoding: chunked\r\n\r\n" % status,
                           close=False)
    response = send(server.path, get(method=method))
    assert response.status == status and response.headers["Content-Length"] == "42"
    assert response.read_body() == b""
    assert served.result().client_closed


def test_header_lines_bare_lf_folding_and_repeated_names(server: RawServer) -> None:
    server.answer(b"HTTP/1.0 200 OK\nX-Folded: one\r\n  two\r\nX-Twice: first\r\nx-twice: second\r\n"
                  b"Empty:\r\nContent-Length: 0\n\r\n")
    response = send(server.path, get())
    assert response.headers["X-Folded"] == "one two"
    assert response.headers["X-Twice"] == "second"
    assert response.headers["Empty"] == ""
    assert response.read_body() == b""


def test_closing_a_stream_early_closes_the_connection(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", close=False)
    response = send(server.path, get())
    assert next(response.iter_body()) == b"hello"
    response.close()
    assert served.result().client_closed


# -- bodies cut short ---------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: cut",
], ids=["a Content-Length body ends early", "no last chunk", "a chunk ends early",
        "a chunk without its CRLF", "a chunk size that is not hex", "trailers cut short"])
def test_a_body_cut_short_raises_stream_aborted(server: RawServer, answer: bytes) -> None:
    server.answer(answer)
    response = send(server.path, get())
    with pytest.raises(StreamAborted, match="ended early"):
        response.read_body()


# -- malformed answers --------------------------------------------------------------------------

@pytest.mark.parametrize("answer, message", [
    (b"HTP/1.1 200 OK\r\n\r\n", "bad HTTP answer"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "bad HTTP answer"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "bad HTTP answer"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "bad HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad HTTP header"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad HTTP header"),
    (b"HTTP/1.1 200 OK\r\n folded first: x\r\n\r\n", "bad HTTP header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"", "closed the connection before answering"),
    (b"HTTP/1.1 200 OK\r\nX-A: b\r\n", "in the middle of its answer's head"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"y" * (70 * 1024) + b"\r\n\r\n", "larger than 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Many: yyyyyyyy\r\n" * 5000 + b"\r\n", "larger than 65536 bytes"),
    (b"HTTP/1.1 100 Continue\r\n" + b"X-Many: yyyyyyyy\r\n" * 2000 + b"\r\n" + b"HTTP/1.1 100 Continue\r\n"
     + b"X-Many: yyyyyyyy\r\n" * 2000 + b"\r\nHTTP/1.1 200 OK\r\n\r\n", "larger than 65536 bytes"),
], ids=["a bad protocol name", "a four-digit status", "a status that is not a number", "not HTTP at all",
        "a header line without colon", "a header name with a space", "a folded line first",
        "differing Content-Lengths", "a negative Content-Length", "an answer that never came",
        "a head cut short", "one huge header", "too many headers", "interim heads too large together"])
def test_a_malformed_or_oversized_head_raises_transport_error(server: RawServer, answer: bytes, message: str) -> None:
    served = server.answer(answer)
    with pytest.raises(TransportError, match=message):
        send(server.path, get())
    served.result()


def test_a_missing_socket_is_a_transport_error(tmp_path) -> None:
    path = str(tmp_path / "nothing.sock")
    with pytest.raises(TransportError, match=r"Cannot connect to the daemon at unix://.*nothing\.sock: "
                                             r".*\. Is the daemon running\?"):
        send(path, get())
    with pytest.raises(TransportError, match="Cannot connect to the daemon"):
        hijack(path, get(headers={"Connection": "Upgrade", "Upgrade": "tcp"}))


def test_header_values_with_line_breaks_are_refused(server: RawServer) -> None:
    with pytest.raises(ValueError, match="invalid HTTP"):
        send(server.path, get(headers={"X-Injected": "a\r\nHost: evil"}))


# -- requests -----------------------------------------------------------------------------------

def test_the_request_head(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    request = Request("GET", "/v1.45/images/we?ird/json", {"all": ["1"], "filters": ['{"a":["b c"]}']},
                      Headers({"X-Registry-Auth": "e30="}))
    send(server.path, request).read_body()
    exchange = served.result()
    lines = exchange.head.decode().split("\r\n")
    assert lines[0] == "GET /v1.45/images/we%3Fird/json?all=1&filters=%7B%22a%22%3A%5B%22b+c%22%5D%7D HTTP/1.1"
    assert exchange.header("Host") == "docker"
    assert (exchange.header("User-Agent") or "").startswith("lamina-cli/")
    assert exchange.header("Accept-Encoding") == "identity"
    assert exchange.header("X-Registry-Auth") == "e30="
    assert exchange.header("Content-Length") is None and exchange.header("Transfer-Encoding") is None


@pytest.mark.parametrize("body", ["file", "iterable"], ids=["a file-like body", "an iterable of bytes"])
def test_a_streamed_upload_is_chunked_and_arrives_intact(server: RawServer, body: str) -> None:
    payload = os.urandom(300_000)
    served = server.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    pieces = [payload[:100_000], b"", payload[100_000:]]
    stream = io.BytesIO(payload * 4) if body == "file" else iter(pieces)
    response = send(server.path, get("/v1.45/images/load", "POST", stream))
    assert response.read_body() == b"ok"
    exchange = served.result()
    assert exchange.header("Transfer-Encoding") == "chunked"
    assert exchange.header("Content-Length") is None
    if body == "file":  # read 64 KiB at a time
        assert exchange.body == payload * 4
        assert exchange.chunk_sizes == [CHUNK] * 18 + [4 * 300_000 - 18 * CHUNK]
    else:
        assert exchange.body == payload
        assert exchange.chunk_sizes == [100_000, 200_000]


def test_a_regular_file_goes_out_with_content_length_from_its_current_offset(server: RawServer, tmp_path) -> None:
    payload = os.urandom(300_000)
    (tmp_path / "archive.tar").write_bytes(payload)
    served = server.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with open(tmp_path / "archive.tar", "rb") as stream:
        stream.read(1000)  # what was read already is not sent
        response = send(server.path, get("/v1.45/images/load", "POST", stream))
        assert response.read_body() == b"ok"
    exchange = served.result()
    assert exchange.header("Content-Length") == str(len(payload) - 1000)
    assert exchange.header("Transfer-Encoding") is None
    assert exchange.body == payload[1000:]


def test_a_bytes_body_goes_out_with_content_length(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    send(server.path, get("/v1.45/containers/x/rename", "POST", b'{"a": 1}')).read_body()
    exchange = served.result()
    assert (exchange.header("Content-Length"), exchange.body) == ("8", b'{"a": 1}')


def test_a_post_without_body_says_content_length_zero(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    send(server.path, get("/v1.45/containers/x/start", "POST")).read_body()
    assert served.result().header("Content-Length") == "0"


def test_an_error_answered_before_the_upload_ends_is_reported(server: RawServer) -> None:
    served = server.answer(b'HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 20\r\n\r\n{"message":"no way"}',
                           read_body=False)
    response = send(server.path, get("/v1.45/images/load", "POST", io.BytesIO(bytes(16 << 20))))
    assert (response.status, response.read_body()) == (413, b'{"message":"no way"}')
    served.result()


def test_a_connection_closed_during_the_upload_without_answer_is_a_transport_error(server: RawServer) -> None:
    served = server.answer(read_body=False)
    with pytest.raises(TransportError, match="error sending the request"):
        send(server.path, get("/v1.45/images/load", "POST", io.BytesIO(bytes(16 << 20))))
    served.result()


# -- hijacking ----------------------------------------------------------------------------------

UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "application/json"}


def test_an_upgraded_connection_gives_out_the_bytes_that_came_with_the_head_first(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                           b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly", b" later", close=False)
    response = hijack(server.path, get("/v1.45/containers/x/attach", "POST", io.BytesIO(b'{"x":1}'), UPGRADE))
    duplex = response.hijacked
    assert response.status == 101 and duplex is not None
    received = b""
    while len(received) < len(b"early later"):
        received += duplex.recv(4)
    assert received == b"early later"
    duplex.sendall(b"bye")
    duplex.close()
    exchange = served.result()
    assert exchange.body == b'{"x":1}' and exchange.header("Content-Length") == "7"
    assert exchange.client_closed


def test_a_plain_hijack_is_recognised_by_its_content_type(server: RawServer) -> None:
    server.answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\r\n", b"out",
                  close=False)
    response = hijack(server.path, get("/v1.45/exec/x/start", "POST", io.BytesIO(b"{}"), UPGRADE))
    assert response.status == 200 and response.hijacked is not None
    assert response.hijacked.recv(10) == b"out"
    response.close()


def test_a_refused_hijack_is_an_ordinary_answer(server: RawServer) -> None:
    served = server.answer(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n", b"16\r\n", b'{"message":"no such x"}'[:22],
                           b"\r\n0\r\n\r\n", close=False)
    response = hijack(server.path, get("/v1.45/containers/x/attach", "POST", None, UPGRADE))
    assert response.status == 404 and response.hijacked is None
    assert response.read_body() == b'{"message":"no such x"'
    assert served.result().client_closed


# -- answers split across recv boundaries ---------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=3000) | st.integers(0, 200_000).map(lambda size: os.urandom(size)),
       framing=st.sampled_from(["content-length", "chunked", "until close"]),
       sizes=st.lists(st.integers(1, 100_000) | st.integers(1, 20), min_size=1, max_size=6),
       extensions=st.booleans(),
       cuts=st.lists(st.integers(0, 400_000), max_size=12),
       interim=st.booleans())
def test_any_answer_split_anywhere_is_read_back(server: RawServer, body: bytes, framing: str, sizes: list[int],
                                               extensions: bool, cuts: list[int], interim: bool) -> None:
    head = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    if framing == "content-length":
        answer = head + b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        answer = (head + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(body, sizes, extensions, trailers=b"X-T: 1\r\n" if extensions else b""))
    else:
        answer = head + b"HTTP/1.1 200 OK\r\n\r\n" + body
    served = server.answer(*split(answer, cuts), close=framing == "until close")
    response = send(server.path, get())
    pieces = list(response.iter_body())
    assert b"".join(pieces) == body
    assert all(0 < len(piece) <= CHUNK for piece in pieces)
    exchange = served.result()
    assert framing == "until close" or exchange.client_closed
