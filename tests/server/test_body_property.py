"""The request body decoder of lamina.server.body against a reference decoder written here
from the grammar its docstring states, on generated chunked bodies: well-formed ones (any
chunk sizes, extensions, bare LFs, trailers, a pipelined request behind) sent in arbitrary
pieces and read with arbitrary read sizes, and the same bodies truncated or with bytes
replaced or inserted.  A body the reference accepts must be decoded to the same bytes, with
what follows it left for the next request; one it refuses must raise InvalidArgument."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina import errdefs
from lamina.server.body import MAX_CHUNK_LINE, MAX_TRAILER_BYTES, RequestBody, SocketInput

_SIZE_LINE = re.compile(rb"[0-9A-Fa-f]{1,16}[ \t]*(?:;[^\r\n]*)?\r?\n")


class Refused(Exception):
    pass


def reference(wire: bytes) -> tuple[bytes, bytes]:
    """(the body, the bytes after it) of a chunked body at the start of ``wire``; Refused
    when it is malformed or incomplete."""
    position = 0
    body = []
    first = True
    while True:
        if not first:
            if wire.startswith(b"\r\n", position):
                position += 2
            elif wire.startswith(b"\n", position):
                position += 1
            else:
                raise Refused("no CRLF after a chunk")
        first = False
        end = wire.find(b"\n", position, position + MAX_CHUNK_LINE)
        if end < 0 or not _SIZE_LINE.fullmatch(wire, position, end + 1):
            raise Refused("bad size line")
        size = int(wire[position:end + 1].split(b";", 1)[0].strip(b" \t\r\n"), 16)
        position = end + 1
        if size == 0:
            break
        if len(wire) - position < size:
            raise Refused("truncated data")
        body.append(wire[position:position + size])
        position += size
    budget = MAX_TRAILER_BYTES
    while True:
        end = wire.find(b"\n", position, position + budget)
        if end < 0:
            raise Refused("bad trailer")
        line = wire[position:end + 1]
        position = end + 1
        if line in (b"\r\n", b"\n"):
            return b"".join(body), wire[position:]
        budget -= len(line)


def decode(wire: bytes, cuts: list[int], reads: list[int]) -> tuple[bytes, bytes]:
    """Send ``wire`` in pieces (cut at ``cuts``) on a socket, then close it; decode the body
    with RequestBody read ``reads`` bytes at a time (cycled); (body, what remained after it)."""
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server.settimeout(20)
    points = sorted({0, len(wire), *(cut % (len(wire) + 1) for cut in cuts)})

    def send() -> None:
        try:
            for start, end in zip(points, points[1:]):
                client.sendall(wire[start:end])
        except OSError:
            pass  # the reader gave up on a bad body
        finally:
            client.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    ended = []
    try:
        source = SocketInput(server, lambda: None)
        body = RequestBody(source, None, before_read=lambda: None, on_end=lambda: ended.append(True))
        buffer = bytearray(max(reads))
        decoded = bytearray()
        turn = 0
        while size := body.readinto(memoryview(buffer)[:reads[turn % len(reads)]]):
            decoded += buffer[:size]
            turn += 1
        assert ended == [True] and body.complete
        rest = source.take_buffered()
        while data := server.recv(65536):
            rest += data
        return bytes(decoded), rest
    finally:
        server.close()
        writer.join(20)
        client.close()


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    pieces = []
    for size in draw(st.lists(st.one_of(st.integers(1, 300), st.integers(30000, 70000)), max_size=6)):
        extension = draw(st.sampled_from([b"", b";name=value", b" ;x", b"\t"]))
        newline = draw(st.sampled_from([b"\r\n", b"\n"]))
        digits = draw(st.sampled_from(["%x", "%X", "%04x"])) % size
        pieces.append(digits.encode() + extension + newline + bytes([size % 251]) * size
                      + draw(st.sampled_from([b"\r\n", b"\n"])))
    pieces.append(b"0" + draw(st.sampled_from([b"\r\n", b"\n"])))
    for trailer in draw(st.lists(st.sampled_from([b"X-Check: 1\r\n", b"Y: z\n"]), max_size=2)):
        pieces.append(trailer)
    pieces.append(draw(st.sampled_from([b"\r\n", b"\n"])))
    pieces.append(draw(st.sampled_from([b"", b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"])))
    return b"".join(pieces)


CUTS = st.lists(st.integers(0, 1 << 20), max_size=8)
READS = st.lists(st.sampled_from([1, 5, 4096, 65536, 1 << 20]), min_size=1, max_size=4)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(chunked_bodies(), CUTS, READS)
def test_a_well_formed_chunked_body_is_decoded_whole_and_what_follows_it_is_kept(wire, cuts, reads):
    assert decode(wire, cuts, reads) == reference(wire)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    wire = draw(chunked_bodies())
    at = draw(st.integers(0, len(wire)))
    kind = draw(st.sampled_from(["truncate", "replace", "insert"]))
    if kind == "truncate":
        return wire[:at]
    inserted = draw(st.binary(min_size=1, max_size=3) | st.sampled_from([b"\r", b"\n", b"0", b"f", b";"]))
    return wire[:at] + inserted + wire[at + (kind == "replace"):]


@SETTINGS
@given(damaged(), CUTS, READS)
def test_a_damaged_chunked_body_is_decoded_as_the_reference_does_or_refused(wire, cuts, reads):
    try:
        expected = reference(wire)
    except Refused:
        with pytest.raises(errdefs.InvalidArgument):
            decode(wire, cuts, reads)
    else:
        assert decode(wire, cuts, reads) == expected


def test_a_body_of_many_chunks_received_at_once_is_decoded_in_place():
    """The path that cuts chunk heads out of a receive: 200 chunks in one send, 1 MiB reads."""
    chunks = [bytes([n]) * (1000 + n) for n in range(200)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\nNEXT"
    assert decode(wire, [], [1 << 20]) == (b"".join(chunks), b"NEXT")
