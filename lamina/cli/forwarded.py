"""``lamina serve``'s side of :mod:`lamina.cli.front`: run a client's read-only command here.

:class:`CommandHandler` is the handler ``lamina serve`` gives its server: ``POST
/lamina/command`` (the exchange :mod:`lamina.cli.front` documents) runs one of
:data:`lamina.cli.front.FORWARDED` with :func:`lamina.cli.main.run_command`, the code an
in-process command runs, in the connection's thread, with:

* the daemon's router as the transport (an :class:`~lamina.client.transport.InProcessTransport`
  around it: requests are answered by the engine that is already built and warm);
* stdout and stderr that collect :mod:`lamina.stdcopy` frames (consecutive writes to one stream
  share a frame), sent back whole with the exit code once the command returned; argparse's
  usage and errors go there too (:class:`lamina.cli.main.CommandParser`), as wide as the
  client's terminal;
* no stdin (these commands read none).

Everything else goes to the router.  Refused, so that the client runs the command in-process:
a command that is not forwarded (400); from a client whose ``TZ`` is not this daemon's (local
times would print in the daemon's zone: 409); from a client that names the engine it would build (one
that found the daemon on the default socket), a data root or exec root other than this
daemon's (compared as real paths), or a daemon started with its own storage driver or user
namespace remapping (409).  A command line may take :data:`BODY_LIMIT` bytes (413 beyond).
"""

from __future__ import annotations

import io
import os

from lamina.api.http import Headers, Request, Response
from lamina.api.streams import json_response
from lamina.cli.context import Context, GlobalOptions
from lamina.cli.front import (
    COLUMNS_HEADER, COMMAND_PATH, DATA_ROOT_HEADER, EXEC_ROOT_HEADER, EXIT_CODE_HEADER, TIME_ZONE_HEADER,
    is_forwarded,
)
from lamina.client.transport import InProcessTransport
from lamina.stdcopy import MULTIPLEXED_STREAM, STDERR, STDOUT, frame

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from lamina.api.router import Router
    from lamina.config import EngineConfig

__all__ = ["CommandHandler", "BODY_LIMIT"]

BODY_LIMIT = 1 << 20


class _Output:
    """What one command prints: its stdout and stderr writes, in order, as frames."""

    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytearray]] = []

    def write(self, stream: int, text: str) -> int:
        data = text.encode("utf-8", "surrogateescape")
        if data:
            if self.pieces and self.pieces[-1][0] == stream:
                self.pieces[-1][1].extend(data)
            else:
                self.pieces.append((stream, bytearray(data)))
        return len(text)

    def frames(self) -> bytes:
        return b"".join(frame(stream, bytes(data)) for stream, data in self.pieces)


class _Stream(io.TextIOBase):
    """A text stream of :class:`_Output` (not a terminal, no file descriptor)."""

    def __init__(self, output: _Output, stream: int) -> None:
        super().__init__()
        self._output = output
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self._output.write(self._stream, text)


class _Watched:
    """A transport that remembers whether the engine failed one of the command's requests."""

    def __init__(self, transport: InProcessTransport) -> None:
        self.transport = transport
        self.failed = False

    @property
    def description(self) -> str:
        return self.transport.description

    def handle(self, request: Request) -> Response:
        response = self.transport.handle(request)
        if response.status >= 500:
            self.failed = True
        return response


class CommandHandler:
    """``lamina serve``'s handler: forwarded commands here, every other request to ``router``.

    ``refuse_internal_errors`` (the engine cache's): a command during which the engine failed
    a request (5xx: its view of the data root may be stale, the root replaced under it) is not
    answered; 503 instead, and the client runs the command in-process."""

    def __init__(self, router: Router, config: EngineConfig, *, refuse_internal_errors: bool = False) -> None:
        self.router = router
        self.transport = InProcessTransport(config, router=router)
        self.refuse_internal_errors = refuse_internal_errors
        self._roots = {DATA_ROOT_HEADER: os.path.realpath(config.data_root),
                       EXEC_ROOT_HEADER: os.path.realpath(config.exec_root)}
        # what a client that names its roots builds in-process: the storage driver the data
        # root holds, no user namespace remapping (lamina.cli.front forwards nothing else)
        self._default_engine = config.storage_driver is None and not config.userns_remap

    def handle(self, request: Request) -> Response:
        if request.path != COMMAND_PATH:
            return self.router.handle(request)
        if request.method != "POST":
            return json_response({"message": f"{request.method} {COMMAND_PATH}: only POST"}, 405)
        named = {header: request.headers[header] for header in self._roots if header in request.headers}
        if named and not self._default_engine:
            return json_response({"message": "this daemon's engine has its own storage driver or "
                                             "user namespace remapping"}, 409)
        for header, asked in named.items():
            if os.path.realpath(asked) != self._roots[header]:
                return json_response({"message": f"this daemon's {header} is {self._roots[header]}, not {asked}"}, 409)
        time_zone = request.headers.get(TIME_ZONE_HEADER, "")
        if time_zone != os.environ.get("TZ", ""):
            return json_response({"message": f"this daemon prints local times in TZ={os.environ.get('TZ', '')!r}, "
                                             f"not {time_zone!r}"}, 409)
        data = request.body.read(BODY_LIMIT + 1) if request.body is not None else b""
        if len(data) > BODY_LIMIT:
            return json_response({"message": f"a command line may take {BODY_LIMIT} bytes"}, 413)
        words = [os.fsdecode(word) for word in data.split(b"\0")] if data else []
        if not is_forwarded(words):
            return json_response({"message": "not a command lamina serve runs for a client"}, 400)
        columns = request.headers.get(COLUMNS_HEADER, "")
        output = _Output()
        transport = _Watched(self.transport) if self.refuse_internal_errors else self.transport
        context = Context(GlobalOptions(), stdin=io.StringIO(""), stdout=_Stream(output, STDOUT),
                          stderr=_Stream(output, STDERR), transport=transport,
                          columns=int(columns) if columns.isascii() and columns.isdigit() and int(columns) > 0 else None)
        from lamina.cli.main import run_command

        code = run_command(words, context, in_daemon=True)
        if isinstance(transport, _Watched) and transport.failed:
            return json_response({"message": "the engine failed a request of this command; run it in-process"}, 503)
        headers = Headers({"Content-Type": MULTIPLEXED_STREAM, EXIT_CODE_HEADER: str(code)})
        return Response(200, headers, output.frames())
