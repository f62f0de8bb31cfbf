"""Registries that hang, answer garbage, fail with 5xx then recover: the client's timeouts,
retries and errors, against small socket servers on 127.0.0.1 run by the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lamina import errdefs
from lamina.distribution.pull import MANIFEST_ACCEPT
from lamina.distribution.registry.client import Registry, RegistryOptions


class Peer:
    """Accepts connections on 127.0.0.1 and hands each to ``answer(connection, request_number)``."""

    def __init__(self, answer: Callable[[socket.socket, int], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.answer = answer
        self.count = 0
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.count += 1
            threading.Thread(target=self._handle, args=(connection, self.count), daemon=True).start()

    def _handle(self, connection: socket.socket, number: int) -> None:
        try:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.answer(connection, number)
        except OSError:
            return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for connection in self.connections:
            try:
                connection.close()
            except OSError:
                pass


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket, int], None]], Peer]]:
    started: list[Peer] = []

    def start(answer: Callable[[socket.socket, int], None]) -> Peer:
        started.append(Peer(answer))
        return started[-1]

    yield start
    for item in started:
        item.stop()


def _response(status: str, body: bytes = b"", headers: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


OPTIONS = RegistryOptions(timeout=0.5, attempts=3)


def test_a_registry_that_never_answers_times_out_naming_it(peer) -> None:
    hanging = peer(lambda connection, number: time.sleep(30))
    registry = Registry(hanging.host, options=OPTIONS)
    start = time.monotonic()
    with pytest.raises(errdefs.Unavailable) as failure:
        registry.get_manifest("app", "latest", MANIFEST_ACCEPT)
    assert time.monotonic() - start < 10
    assert hanging.host in str(failure.value) and "timed out" in str(failure.value)
    registry.close()


def test_a_peer_answering_garbage_is_unavailable(peer) -> None:
    garbage = peer(lambda connection, number: connection.sendall(b"\x16\x03garbage that is not HTTP\r\n\r\n"))
    registry = Registry(garbage.host, options=OPTIONS)
    with pytest.raises(errdefs.Unavailable) as failure:
        registry.get_manifest("app", "latest", MANIFEST_ACCEPT)
    assert garbage.host in str(failure.value)
    registry.close()


def test_a_manifest_that_is_not_json_is_refused(peer, tmp_path) -> None:
    from lamina.distribution.metadata import MetadataStore
    from lamina.distribution.pull import pull_image
    from lamina.image.reference import parse_normalized_named

    def answer(connection: socket.socket, number: int) -> None:
        connection.sendall(_response("200 OK", b"{not json", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"))

    server = peer(answer)
    registry = Registry(server.host, options=OPTIONS)
    reference = parse_normalized_named(f"{server.host}/app:1")
    with pytest.raises(errdefs.InvalidArgument) as failure:
        pull_image(registry, reference, platform=None, layers=None, images=None,  # type: ignore[arg-type]
                   references=None, metadata=MetadataStore(str(tmp_path)),  # type: ignore[arg-type]
                   progress=lambda message: None, registered=[])
    assert "app:1" in str(failure.value) and "not valid JSON" in str(failure.value)
    registry.close()


def test_5xx_answers_are_retried_with_back_off(peer) -> None:
    def answer(connection: socket.socket, number: int) -> None:
        if number <= 2:
            connection.sendall(_response("503 Service Unavailable", headers="Connection: close\r\n"))
            connection.close()
        else:
            connection.sendall(_response("200 OK", b'{"schemaVersion":2}',
                                         "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"))

    flaky = peer(answer)
    registry = Registry(flaky.host, options=RegistryOptions(timeout=2, attempts=4))
    body, media_type = registry.get_manifest("app", "latest", MANIFEST_ACCEPT)
    assert body == b'{"schemaVersion":2}' and media_type == "application/vnd.oci.image.manifest.v1+json"
    registry.close()


def test_a_401_without_a_challenge_names_the_missing_credentials(peer) -> None:
    denied = peer(lambda connection, number: connection.sendall(_response("401 Unauthorized")))
    registry = Registry(denied.host, options=OPTIONS)
    with pytest.raises(errdefs.Unauthorized) as failure:
        registry.get_manifest("private/app", "1", MANIFEST_ACCEPT)
    assert denied.host in str(failure.value) and "private/app" in str(failure.value)
    assert "without credentials" in str(failure.value)
    registry.close()
