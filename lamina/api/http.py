"""The HTTP-shaped values the router consumes and produces, independent of any socket.

A :class:`Request` is what an HTTP server (``lamina serve``) or the in-process transport
hands to :meth:`lamina.api.router.Router.handle`: a method, a *percent-decoded* path
(``/v1.45/images/localhost:5000/a/b:tag/json``), the decoded query as ``name -> [values]``
(repeated parameters keep their order), case-insensitive headers and an optional body
stream that is read incrementally (image archives are never buffered whole).

A :class:`Response` carries a status, headers and a body that is either ``bytes`` or an
iterator of ``bytes`` chunks (a stream: the server sends it with chunked encoding and flushes
each chunk).  A stream that fails after it started, where no in-band error framing exists
(a tar archive), raises :class:`StreamAborted`; a server then closes the connection without
the final chunk so the peer sees a truncated transfer, and the in-process client turns it
into an error.  JSON-message streams report such failures in-band instead
(``{"errorDetail": ...}`` as the last line, see :mod:`lamina.api.streams`).

Hijacking (attach, exec start): a Response whose ``hijacked`` is set carries a :class:`Duplex`
(defined in :mod:`lamina.stdcopy` so that the engine below may produce one), a bidirectional byte channel to the container's stdio, instead of a body.  Its status is 101 when
the request asked for ``Upgrade: tcp`` (:meth:`Request.wants_upgrade`; headers ``Connection:
Upgrade``, ``Upgrade: tcp``) and 200 for older clients that expect a plain hijack.  A server
writes the status line and headers (no ``Content-Length``, no chunked encoding), then splices
the client's connection and the duplex both ways: bytes from the duplex to the client, bytes
from the client to the duplex, the client's half-close forwarded as
``duplex.shutdown(SHUT_WR)``; it closes both when the duplex reaches end of stream.  The
in-process transport hands the duplex straight to the client.  Whoever receives the Response owns
the duplex and must close it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping

from lamina.records import dataclass, field

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO

    from lamina.stdcopy import Duplex

__all__ = ["Headers", "Request", "Response", "StreamAborted"]


class Headers(MutableMapping[str, str]):
    """HTTP headers: case-insensitive lookup, names keep the spelling they were set with."""

    def __init__(self, values: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        if values is not None:
            pairs = values.items() if isinstance(values, Mapping) else values
            for name, value in pairs:
                self[name] = value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, str(value))

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


# Characters kept literally when a decoded path is put back on the wire: the sub-delimiters
# and ':' '@' are legal in a path segment, so image names like localhost:5000/a/b:tag stay
# readable; everything else (space, '?', '#', '%', non-ASCII) is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=~"
# what urllib.parse.quote never encodes; the client encodes targets itself because importing
# urllib.parse (with ipaddress) costs ~3 ms of every ``lamina -H`` command
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PATH_SAFE_BYTES = _UNRESERVED | frozenset(_PATH_SAFE.encode())
_FORM_SAFE_BYTES = _UNRESERVED | {ord(" ")}


def _percent_encode(text: str, safe: frozenset[int]) -> str:
    """``urllib.parse.quote(text, safe)``: UTF-8, every byte outside ``safe`` as ``%XX``."""
    data = text.encode("utf-8", "surrogateescape")
    if all(byte in safe for byte in data):
        return text
    return "".join(chr(byte) if byte in safe else f"%{byte:02X}" for byte in data)


def _form_encode(text: str) -> str:
    """``urllib.parse.quote_plus(text)``: as a query's names and values are encoded."""
    return _percent_encode(text, _FORM_SAFE_BYTES).replace(" ", "+")


@dataclass
class Request:
    """One API request as the router sees it (from the HTTP server or in-process)."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: BinaryIO | None = None

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    @classmethod
    def from_target(cls, method: str, target: str, headers: Headers | Mapping[str, str] | None = None,
                    body: BinaryIO | None = None) -> Request:
        """Build a request from an HTTP request-target such as ``/v1.45/images/json?all=1``."""
        # urllib.parse (and the ipaddress module it loads, ~3 ms) only where bytes go on a
        # socket: the in-process transport hands Request values over as they are
        from urllib.parse import parse_qsl, unquote, urlsplit

        parts = urlsplit(target)
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        return cls(method, unquote(parts.path) or "/", query,
                   headers if isinstance(headers, Headers) else Headers(headers), body)

    def target(self) -> str:
        """The request-target for the wire: the path percent-encoded (``urllib.parse.quote``
        with :data:`_PATH_SAFE`), then the query (``urllib.parse.urlencode``).  Bytes of a
        command line that are not UTF-8 (lone surrogates in Python) are sent as they came,
        percent-encoded, as the docker CLI sends them."""
        path = _percent_encode(self.path, _PATH_SAFE_BYTES)
        pairs = [f"{_form_encode(name)}={_form_encode(value)}" for name, values in self.query.items()
                 for value in values]
        return f"{path}?{'&'.join(pairs)}" if pairs else path

    def wants_upgrade(self) -> bool:
        """Whether the client asked to upgrade the connection to a raw stream (``Upgrade: tcp``
        with ``Connection: Upgrade``), as docker's attach and exec start do."""
        connection = {token.strip().lower() for token in self.headers.get("Connection", "").split(",")}
        return "upgrade" in connection and self.headers.get("Upgrade", "").strip().lower() == "tcp"


@dataclass
class Response:
    """One API response: status, headers and a body (bytes, a stream, or a hijacked connection)."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes | Iterator[bytes] = b""
    hijacked: Duplex | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    @property
    def is_stream(self) -> bool:
        return not isinstance(self.body, (bytes, bytearray))

    def iter_body(self) -> Iterator[bytes]:
        """The body as chunks (one chunk for a plain body)."""
        if isinstance(self.body, (bytes, bytearray)):
            if self.body:
                yield bytes(self.body)
            return
        yield from self.body

    def read_body(self) -> bytes:
        """The whole body; for short responses (JSON documents, error messages)."""
        return b"".join(self.iter_body())

    def close(self) -> None:
        """Release a stream that will not be read to its end (and a hijacked duplex)."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
        if self.hijacked is not None:
            hijacked, self.hijacked = self.hijacked, None
            hijacked.close()


class StreamAborted(Exception):
    """A streaming body failed after its first bytes were sent (status and message say why)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
