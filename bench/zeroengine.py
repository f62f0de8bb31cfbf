"""A zero-cost Engine API for ``docker run --rm busybox true``: what the docker CLI costs alone.

Issue 16 asks for ``docker run --rm`` through ``lamina serve`` within 35 ms.  The docker CLI
itself starts, pings, sends ``create``, ``attach``, ``wait`` and ``start``, and waits for the
wait's result and the attach stream's end; this server answers each at once (a container
"exits" with 0 the moment it is started), so a ``docker run`` against it measures the docker
CLI's own floor: what is left of the 35 ms for any engine, and for the container runtime in it.

The exchange, as dockerd's (API 1.45): ``HEAD``/``GET /_ping``; ``POST /containers/create``
-> 201 and an id; ``POST .../attach`` -> 101 and a raw stream that ends when the container is
started; ``POST .../wait?condition=...`` -> 200 headers at once, a chunked body with the
``StatusCode`` once started; ``POST .../start`` -> 204.  Anything else: 404.  One container at
a time (the benchmark runs one command at a time).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading

__all__ = ["ZeroCostEngine"]

_API_VERSION = "1.45"
_ID = "0" * 63 + "1"


class ZeroCostEngine:
    """The server, on a unix socket in a temporary directory, served by daemon threads."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="lamina-bench-zero-")
        self.path = os.path.join(self.directory, "engine.sock")
        self.started = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.directory)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                while len(pending) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                pending = pending[length:]
                if not self._answer(conn, method, target.split("?")[0]):
                    return

    def _answer(self, conn: socket.socket, method: str, path: str) -> bool:
        """Answer one request; False when the connection is done with (hijacked, streamed)."""
        if path.endswith("/_ping"):
            _respond(conn, "200 OK", b"" if method == "HEAD" else b"OK", "text/plain")
        elif path.endswith("/containers/create"):
            self.started.clear()
            _respond(conn, "201 Created", json.dumps({"Id": _ID, "Warnings": []}).encode())
        elif path.endswith("/attach"):
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            self.started.wait(30)
            return False  # the container ended: its stream ends
        elif path.endswith("/wait"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: " + _API_VERSION.encode() +
                         b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            self.started.wait(30)
            body = json.dumps({"StatusCode": 0, "Error": None}).encode() + b"\n"
            conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        elif path.endswith("/start"):
            _respond(conn, "204 No Content", b"", "text/plain")
            self.started.set()
        else:
            _respond(conn, "404 Not Found", json.dumps({"message": f"not in the zero-cost engine: {path}"}).encode())
        return True


def _respond(conn: socket.socket, status: str, body: bytes, content_type: str = "application/json") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nApi-Version: {_API_VERSION}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
