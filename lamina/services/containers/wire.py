"""This side of the monitor's control protocol: requests are one JSON object on a line,
answers one JSON line (``{"error": {"kind": ..., "message": ...}}`` on failure), read byte by
byte because a stream may follow on the same connection."""

from __future__ import annotations

import json
import socket
from typing import Any

from lamina import errdefs

__all__ = ["json_line", "raise_error", "read_answer"]


def json_line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"


def read_answer(sock: socket.socket, timeout: float = 120.0) -> dict[str, Any]:
    """One JSON line from the monitor, read byte by byte (what follows it is a stream)."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise errdefs.Unavailable(f"the container's monitor did not answer: {exc}") from exc
    finally:
        sock.settimeout(None)
    if not data:
        raise errdefs.Unavailable("the container's monitor closed the connection without answering")
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise errdefs.System(f"the container's monitor answered {bytes(data)!r}") from exc
    if not isinstance(answer, dict):
        raise errdefs.System(f"the container's monitor answered {answer!r}")
    return answer


def raise_error(answer: dict[str, Any]) -> None:
    from lamina.container.monitor import ERROR_KINDS, StartError

    error = answer.get("error")
    if not error:
        return
    message = str(error.get("message") or "the monitor refused the request")
    if "exit_code" in error and error.get("kind") == "invalid_argument":
        raise StartError(message, int(error["exit_code"]))
    raise ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)
