"""Response bodies: JSON documents, JSON-message streams and byte streams.

JSON-message stream (``application/json``, Docker's ``jsonmessage`` framing): one JSON object
per line, e.g. ``{"status":"Loading layer","id":"ab12","progressDetail":{"current":1,"total":2}}``
or ``{"stream":"Loaded image: busybox:latest\\n"}``.  The service runs in a worker thread and
reports through its ``progress`` callback; the router waits for the first message (or the end)
before answering, so a failure that happens before anything was produced still gets a real
HTTP status (Docker does the same: it only writes errors in-band once output was flushed).
A failure after that is the stream's last line:
``{"errorDetail":{"message":"...","code":404},"error":"..."}`` (``code`` is the HTTP status
the error would have had; Docker's JSONError has the same optional field).
If the reader goes away, the next ``progress`` call raises :class:`lamina.errdefs.Cancelled`
in the worker, which lets the service stop at its next report.

Byte stream (``application/x-tar``): the first non-empty chunk is produced before answering
(same reason); a later failure raises :class:`lamina.api.http.StreamAborted`.  Streams that
may stay silent for a long time (``logs --follow``, ``wait``, ``stats``) are answered at once
instead (``prefetch=False``): their failures before the first byte are the caller's to check.

Container stdio streams: Docker's *multiplexed* format (frames, :mod:`lamina.stdcopy`); a
failure after the stream started ends it with a system-error frame whose payload is the
message.  A container with a TTY sends *raw* bytes instead, stdout and stderr merged.

JSON stream (``stats``): one JSON document per line, flushed as each is produced.

Hijacked streams (attach, exec start): :func:`hijacked_response`, see :mod:`lamina.api.http`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator

from lamina import errdefs
from lamina.api.errors import log_unexpected, message_for, status_for
from lamina.api.http import Headers, Request, Response, StreamAborted

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

    from lamina.stdcopy import Duplex

__all__ = [
    "JSON",
    "byte_stream",
    "empty_response",
    "error_message",
    "hijacked_response",
    "json_line",
    "json_response",
    "json_stream",
    "progress_stream",
    "stdio_stream",
    "StreamBody",
    "text_response",
]

JSON = "application/json"


def json_response(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return Response(status, Headers({"Content-Type": JSON}), body)


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, Headers({"Content-Type": "text/plain; charset=utf-8"}), text.encode())


def empty_response(status: int = 204) -> Response:
    return Response(status, Headers(), b"")


def json_line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def error_message(exc: BaseException) -> dict[str, Any]:
    """Docker's in-band error message for a JSON-message stream."""
    message = message_for(exc)
    return {"errorDetail": {"message": message, "code": status_for(exc)}, "error": message}


_MESSAGE, _DONE, _FAILED = "message", "done", "failed"


def progress_stream(run: Callable[[Callable[[dict[str, Any]], None]], Any], *,
                    finish: Callable[[Any, list[dict[str, Any]]], Iterable[dict[str, Any]]] | None = None,
                    context: str = "stream", errors_in_band: bool = False) -> Response:
    """Run ``run(progress)`` in a worker thread and stream what it reports.

    ``finish(result, sent)`` may add closing messages once ``run`` returned; ``sent`` holds
    the messages already streamed.  Raises what ``run`` raised when it failed before its
    first message (the router answers with that error's status), unless ``errors_in_band``:
    then every failure is the stream's last message in a 200 answer (Docker's load does so).
    """
    import queue  # with threading: only commands that stream progress load them
    import threading

    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    reader_gone = threading.Event()

    def progress(message: dict[str, Any]) -> None:
        if reader_gone.is_set():
            raise errdefs.Cancelled("the client stopped reading the progress stream")
        events.put((_MESSAGE, dict(message)))

    def work() -> None:
        try:
            result = run(progress)
        except BaseException as exc:  # handed to the reading thread, which reports it
            events.put((_FAILED, exc))
        else:
            events.put((_DONE, result))

    # A daemon thread: an interrupted CLI must be able to exit; the stores are crash-safe.
    threading.Thread(target=work, name=f"lamina-api-{context}", daemon=True).start()
    first = events.get()
    if first[0] == _FAILED and not errors_in_band:
        raise first[1]

    def body() -> Iterator[bytes]:
        sent: list[dict[str, Any]] = []
        event = first
        try:
            while True:
                kind, value = event
                if kind == _MESSAGE:
                    sent.append(value)
                    yield json_line(value)
                elif kind == _DONE:
                    for message in (finish(value, sent) if finish is not None else ()):
                        yield json_line(message)
                    return
                else:
                    log_unexpected(value, context)
                    yield json_line(error_message(value))
                    return
                event = events.get()
        finally:
            reader_gone.set()

    return Response(200, Headers({"Content-Type": JSON}), StreamBody(body(), reader_gone.set))


def byte_stream(chunks: Iterable[bytes | memoryview], content_type: str, *, context: str = "stream",
                prefetch: bool = True) -> Response:
    """Stream ``chunks``; with ``prefetch``, errors before the first non-empty chunk propagate
    to the caller (without it the answer is immediate and every failure is a StreamAborted).
    Chunks pass without a copy (a ``bytearray`` is copied: its producer may reuse it)."""
    iterator = iter(chunks)
    first = b""
    try:
        for chunk in (iterator if prefetch else ()):
            if chunk:
                first = bytes(chunk) if isinstance(chunk, bytearray) else chunk
                break
    except BaseException:
        _close(iterator)
        raise

    def body() -> Iterator[bytes]:
        try:
            if first:
                yield first
            for chunk in iterator:
                if chunk:
                    yield bytes(chunk) if isinstance(chunk, bytearray) else chunk
        except StreamAborted:
            raise
        except Exception as exc:
            log_unexpected(exc, context)
            raise StreamAborted(status_for(exc), message_for(exc)) from exc
        finally:
            _close(iterator)

    return Response(200, Headers({"Content-Type": content_type}), StreamBody(body(), lambda: _close(iterator)))


def json_stream(documents: Iterable[dict[str, Any]], *, context: str = "stream") -> Response:
    """One JSON document per line as ``documents`` produces them (answered at once; a failure
    after the start breaks the stream, see :class:`StreamAborted`)."""
    iterator = iter(documents)

    def chunks() -> Iterator[bytes]:
        try:
            for document in iterator:
                yield json_line(document)
        finally:
            _close(iterator)  # type: ignore[arg-type]

    return byte_stream(chunks(), JSON, context=context, prefetch=False)


def stdio_stream(items: Iterable[tuple[int, bytes]], *, tty: bool, context: str = "stream",
                 prefetch: bool = True) -> Response:
    """A container's output as (stream, payload) pairs: multiplexed frames, or raw bytes when
    the container has a TTY.  With ``prefetch`` a failure before the first non-empty payload
    propagates to the caller; a later one ends a multiplexed stream with a system-error frame
    carrying the message (a raw stream just breaks)."""
    from lamina.stdcopy import MULTIPLEXED_STREAM, RAW_STREAM, SYSTEM_ERROR, frame  # stdio streams only

    iterator = iter(items)
    head: list[tuple[int, bytes]] = []
    try:
        for item in (iterator if prefetch else ()):
            head.append(item)
            if item[1]:
                break
    except BaseException:
        _close(iterator)  # type: ignore[arg-type]
        raise

    def chunks() -> Iterator[bytes]:
        try:
            for stream, payload in itertools.chain(head, iterator):
                if payload:
                    yield bytes(payload) if tty else frame(stream, payload)
        except Exception as exc:
            if tty:
                raise
            log_unexpected(exc, context)
            yield frame(SYSTEM_ERROR, message_for(exc).encode())
        finally:
            _close(iterator)  # type: ignore[arg-type]

    return byte_stream(chunks(), RAW_STREAM if tty else MULTIPLEXED_STREAM, context=context,
                       prefetch=False)


def hijacked_response(request: Request, duplex: Duplex, *, tty: bool) -> Response:
    """Hand ``duplex`` to the client: 101 Switching Protocols when it asked for ``Upgrade:
    tcp``, else a 200 plain hijack; the content type says whether frames are multiplexed."""
    from lamina.stdcopy import MULTIPLEXED_STREAM, RAW_STREAM

    headers = Headers({"Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM})
    if request.wants_upgrade():
        headers["Connection"] = "Upgrade"
        headers["Upgrade"] = "tcp"
        return Response(101, headers, b"", hijacked=duplex)
    return Response(200, headers, b"", hijacked=duplex)


def _close(iterator: Iterator[bytes]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class StreamBody:
    """A streaming body whose ``close()`` releases its producer even if it was never read
    (closing a generator that never started skips its ``finally``)."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        finally:
            self._release()
