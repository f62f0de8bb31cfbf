"""The contract between a container's monitor and its clients: both ends of every message.

A monitor (see :mod:`lamina.container.monitor`) is reached in three ways, all under its run
directory ``<exec-root>/containers/<id>/`` (:mod:`lamina.container.rundir`).  Every message is
one JSON object on one line (UTF-8, ``\\n``-terminated); what follows the line on the same
connection is a stream.

**The answer pipe** (starter <- monitor, once): :func:`~lamina.container.monitor.client.spawn`
hands the write end of a pipe to the monitor (through the template socket, below); the monitor answers one line when the first run
started (``{"ok": true}``) or could not start (``{"error": ERROR}``), then closes it.  A pipe
closed without a line means the monitor died (its own log, ``monitor.log``, says why).

**The attach socket** (``attach.sock``): the client connects and sends one hello line
``{"stdin": b, "stdout": b, "stderr": b, "logs": b, "stream": b, "detach_keys": [n, ...]}``
(:func:`attach_hello`; ``detach_keys`` optional, default Ctrl-P Ctrl-Q); no answer line follows.  From then on the connection carries Docker's hijacked-attach wire
format: output as 8-byte header frames (:func:`lamina.container.logs.frame`) without a TTY,
raw bytes with one; with ``logs`` the json-file log is replayed first; without ``stream`` the
connection is closed after that.  Bytes the client sends go to the container's stdin (with
``OpenStdin``); the client's half-close closes that stdin when the container has
``StdinOnce`` and no TTY (Docker's rule: a TTY's input is never closed by a client).  With a
TTY, the client's input is watched for the detach keys (:mod:`lamina.container.detachkeys`):
they are not passed on, and the whole sequence closes the connection (the container runs on;
a ``detach`` event).  Clients are closed when the run ends.

**The control socket** (``ctl.sock``): one request line per connection, one answer line:

- ``{"resize": [height, width]}`` / ``{"resize": [h, w], "exec": id}``: TIOCSWINSZ on the
  run's or the exec's pty; answer ``{"ok": true}``;
- ``{"exec": id, "start": {"detach": b, "detach_keys": [n, ...]}}``: start the exec ``id`` (its record in
  :class:`~lamina.container.execstore.ExecStore`); the monitor is its parent and records its
  exit code.  Answer ``{"ok": true, "pid": n}``; unless detached, after the answer the
  connection carries the exec's stdio in the attach wire format and is closed when the exec's
  output ended, after its record was written (or at the detach keys, with a TTY).

``ERROR`` is ``{"kind": k, "message": text}`` plus ``"exit_code": n`` for a command that cannot
be run (127 not found, 126 not executable).  ``kind`` is an :mod:`lamina.errdefs` kind
(:data:`ERROR_KINDS`): the client raises the same class the monitor raised, and
:class:`StartError` (an ``invalid_argument`` with an exit code) for a command that cannot be
run.  A request that is not a JSON object is answered ``invalid_argument`` and closed.

**The template socket** (``<exec-root>/monitor-template/<key>.sock``, :func:`template_socket`):
monitors are forked by a monitor template (:mod:`lamina.container.monitor.template`), one
small process per exec root and code tree (``key``: :func:`template_key`), started by the
first :func:`~lamina.container.monitor.client.spawn` that finds none (under
``monitor-template/lock``, which the template also takes to leave).  One request per
connection: the line ``{"spawn": id, "builder": "module:function", "arguments": {...},
"runtime": name, "pending": [hello, ...]}`` (:func:`spawn_request`) sent with the descriptors
(``SCM_RIGHTS``) of the answer pipe's write end and of each pending attach's socket, in that
order; ``builder(arguments)`` makes the :class:`~lamina.container.monitor.api.MonitorContext`
(built once per builder and arguments in the template, and the runtime ``name`` opened there,
so its set-up is shared), the template forks the monitor and answers ``{"ok": true, "pid": n}``
or ``{"error": ERROR}``.  The first run's outcome still comes on the answer pipe.  Two more
uses of that socket: a connection closed without a request is a probe (is a template
listening?) and gets no answer; the line ``{"lease": true, "prepare": {"builder": ..., "arguments": ..., "runtime": name}}``
(:func:`lease_request`) is answered ``{"ok": true, "pid": n}`` (then the template makes that
context and opens that runtime, ahead of the spawns) and the connection stays open, carrying nothing: while
any lease is open the template does not leave (``lamina serve`` holds one for its whole life;
the holder's exit closes it, and the template's exit shows as the end of the connection).

**Exits** are not a message: the monitor publishes each in ``running.lock``
(:class:`~lamina.container.rundir.ExitInfo`, with a ``Sequence`` bumped at every exit), which
waiters read without taking any lock (see :mod:`lamina.container.rundir`).
"""

from __future__ import annotations

import json
import math
import os
import time

from lamina import errdefs

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import socket
    from typing import Any

__all__ = [
    "ERROR_KINDS",
    "OK",
    "StartError",
    "attach_hello",
    "decode_request",
    "detach_keys_of",
    "encode",
    "error_answer",
    "exec_start_request",
    "exit_code_of_start_error",
    "lease_request",
    "raise_error",
    "read_answer",
    "read_pipe_answer",
    "resize_request",
    "resize_size",
    "spawn_request",
    "template_key",
    "template_socket",
]

ERROR_KINDS: dict[str, type[errdefs.LaminaError]] = {
    cls.kind: cls for cls in (errdefs.NotFound, errdefs.AlreadyExists, errdefs.InvalidArgument, errdefs.Conflict,
                              errdefs.FailedPrecondition, errdefs.Unavailable, errdefs.DataLoss,
                              errdefs.NotImplemented, errdefs.System, errdefs.Cancelled)
}
OK: dict[str, Any] = {"ok": True}
_LINE_LIMIT = 1 << 16


class StartError(errdefs.InvalidArgument):
    """The container's command cannot be run; ``exit_code`` is Docker's: 127 (not found),
    126 (not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_of_start_error(exc: BaseException, default: int = 128) -> int:
    """Docker's exit code for a failed start or exec: 127 command not found, 126 cannot be
    invoked (from the runtime's error), ``default`` otherwise."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and code:
        return code
    text = str(exc).lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return default


# -- encoding ---------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """One message as its line."""
    return json.dumps(message).encode() + b"\n"


def attach_hello(*, stdin: bool, stdout: bool, stderr: bool, logs: bool = False, stream: bool = True,
                 detach_keys: bytes | None = None) -> dict[str, Any]:
    hello: dict[str, Any] = {"stdin": bool(stdin), "stdout": bool(stdout), "stderr": bool(stderr),
                             "logs": bool(logs), "stream": bool(stream)}
    if detach_keys:
        hello["detach_keys"] = list(detach_keys)
    return hello


def resize_request(height: int, width: int, exec_id: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"resize": [int(height), int(width)]}
    if exec_id is not None:
        request["exec"] = exec_id
    return request


def exec_start_request(exec_id: str, *, detach: bool, tty: bool | None = None,
                       detach_keys: bytes | None = None) -> dict[str, Any]:
    """``tty``: the start request's Tty, which decides the framing of the stream (Docker's
    rule); ``None``: the exec's own.  ``detach_keys``: the sequence that detaches the client."""
    start: dict[str, Any] = {"detach": bool(detach)}
    if tty is not None:
        start["tty"] = bool(tty)
    if detach_keys:
        start["detach_keys"] = list(detach_keys)
    return {"exec": exec_id, "start": start}


def spawn_request(container_id: str, *, builder: str, arguments: dict[str, Any], runtime: str,
                  pending: list[dict[str, Any]]) -> dict[str, Any]:
    """The template's request to fork the monitor of ``container_id`` (its descriptors: the
    answer pipe, then one socket per ``pending`` attach hello)."""
    return {"spawn": container_id, "builder": builder, "arguments": arguments, "runtime": runtime,
            "pending": pending}


def lease_request(builder: str, arguments: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The request that keeps the template from leaving while its connection is open; the
    template makes the context of ``builder`` and ``arguments`` and opens ``runtime`` in it
    at once (what the spawns will want)."""
    return {"lease": True, "prepare": {"builder": builder, "arguments": arguments, "runtime": runtime}}


def template_key(executable: str, paths: list[str], cgroup: str = "") -> str:
    """Which template serves a starter: one per interpreter and import path, so that two code
    trees on one exec root never run each other's monitor code, and per delegated cgroup leaf
    ``cgroup`` of a rootless starter (:func:`lamina.runtime.delegation.engine_leaf`), so that
    monitors are delegated exactly when their starter is."""
    from lamina.digest import sha256_hex  # not hashlib: OpenSSL's load would cost every run ~3 ms

    identity: list[object] = [executable, paths, cgroup] if cgroup else [executable, paths]
    return sha256_hex(json.dumps(identity).encode())[:16]


def template_socket(exec_root: str, key: str) -> str:
    return os.path.join(exec_root, "monitor-template", f"{key}.sock")


def error_answer(exc: BaseException) -> dict[str, Any]:
    """``{"error": ERROR}`` for an exception (a kind of :mod:`lamina.errdefs`, else ``system``)."""
    kind = exc.kind if isinstance(exc, errdefs.LaminaError) else "system"
    payload: dict[str, Any] = {"kind": kind, "message": str(exc) or type(exc).__name__}
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        payload["exit_code"] = code
    return {"error": payload}


# -- decoding ---------------------------------------------------------------------------------


def decode_request(line: bytes) -> dict[str, Any]:
    """A request or hello line; InvalidArgument when it is not a JSON object."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise errdefs.InvalidArgument("malformed request") from exc
    if not isinstance(request, dict):
        raise errdefs.InvalidArgument("malformed request")
    return request


def detach_keys_of(options: dict[str, Any]) -> bytes:
    """The detach keys of an attach hello or exec start (Ctrl-P Ctrl-Q when not given)."""
    from lamina.container.detachkeys import DEFAULT_DETACH_KEYS

    keys = options.get("detach_keys")
    if not keys:
        return DEFAULT_DETACH_KEYS
    if not isinstance(keys, list) or not all(isinstance(key, int) and 0 <= key < 128 for key in keys):
        raise errdefs.InvalidArgument("detach_keys must be a list of ASCII codes")
    return bytes(keys)


def resize_size(request: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of a resize request."""
    size = request.get("resize")
    if not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) for v in size):
        raise errdefs.InvalidArgument("resize needs [height, width]")
    return size[0], size[1]


def raise_error(answer: dict[str, Any], default_message: str = "the monitor refused the request") -> None:
    """Raise the error an answer carries (nothing for ``{"ok": true}``)."""
    error = answer.get("error")
    if not error:
        return
    if not isinstance(error, dict):
        raise errdefs.System(f"the container's monitor answered {answer!r}")
    message = str(error.get("message") or default_message)
    if "exit_code" in error and error.get("kind") == "invalid_argument":
        raise StartError(message, int(error["exit_code"]))
    raise ERROR_KINDS.get(str(error.get("kind")), errdefs.System)(message)


def _answer_of(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise errdefs.System(f"the container's monitor answered {data!r}") from exc
    if not isinstance(answer, dict):
        raise errdefs.System(f"the container's monitor answered {answer!r}")
    return answer


def read_answer(sock: socket.socket, timeout: float = 120.0) -> dict[str, Any]:
    """The answer line on a control connection, read byte by byte: what follows it (an exec's
    stdio) stays in the socket."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while not data.endswith(b"\n") and len(data) < _LINE_LIMIT:
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
    return _answer_of(bytes(data))


def read_pipe_answer(fd: int, timeout: float) -> dict[str, Any] | None:
    """The answer line on the answer pipe; None when the monitor closed it without one."""
    import select

    poller = select.poll()  # not selectors: a monitor waits here for each start's helper (launch)
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = bytearray()
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errdefs.Unavailable("the container's monitor did not answer in time")
        if not poller.poll(math.ceil(remaining * 1e3)):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    line = bytes(data.split(b"\n", 1)[0])
    return _answer_of(line) if line else None
