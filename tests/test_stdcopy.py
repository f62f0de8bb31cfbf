"""Docker's stdio stream format: the encoder, and the incremental decoder fed in arbitrary pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina import errdefs
from lamina.stdcopy import HEADER_SIZE, STREAM_TYPES, FrameDecoder, demultiplex, frame

frames = st.lists(st.tuples(st.sampled_from(sorted(STREAM_TYPES)), st.binary(max_size=300)), max_size=12)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in zip(points, points[1:])]


def _feed(decoder: FrameDecoder, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    for piece in pieces:
        got.extend(decoder.feed(piece))
    return got


def _regroup(pieces: list[tuple[int, bytes]], sizes: list[int]) -> list[tuple[int, bytes]]:
    """Pieces put back together into frames of the given payload sizes."""
    whole: list[tuple[int, bytes]] = []
    position = 0
    for size in sizes:
        stream, payload = pieces[position]
        position += 1
        while len(payload) < size:
            assert pieces[position][0] == stream
            payload += pieces[position][1]
            position += 1
        whole.append((stream, payload))
    assert position == len(pieces)
    return whole


def test_a_frame_has_dockers_8_byte_header() -> None:
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(2, b"x" * 300)[:HEADER_SIZE] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"
    assert frame(3, b"") == b"\x03" + b"\x00" * 7


def test_an_empty_frame_decodes_to_an_empty_payload() -> None:
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"")
    assert list(demultiplex(data)) == [(1, b"out\n"), (2, b"err\n"), (1, b"")]


@pytest.mark.parametrize("data", [frame(1, b"abc")[:-1], frame(1, b"abc")[:5], b"\x07" + b"\x00" * 7],
                         ids=["a truncated payload", "a truncated header", "an unknown stream type"])
def test_demultiplex_refuses_a_broken_stream(data: bytes) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        list(demultiplex(data))


@pytest.mark.parametrize("stream", [-1, 4, 255, 256])
def test_frame_refuses_an_unknown_stream_type(stream: int) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="stream type"):
        frame(stream, b"x")


@given(frames, st.lists(st.integers(min_value=0), max_size=40))
def test_frames_split_anywhere_decode_to_the_frames_encoded(sequence: list[tuple[int, bytes]],
                                                             cuts: list[int]) -> None:
    data = b"".join(frame(stream, payload) for stream, payload in sequence)
    decoder = FrameDecoder()
    pieces = _feed(decoder, _split(data, cuts))
    assert sum(not piece for _, piece in pieces) == sum(not payload for _, payload in sequence)
    assert not decoder.incomplete
    decoder.close()
    assert _regroup(pieces, [len(payload) for _, payload in sequence]) == sequence
    assert list(demultiplex(data)) == sequence


@given(frames, st.integers(min_value=1))
def test_a_stream_that_ends_inside_a_frame_is_refused(sequence: list[tuple[int, bytes]], cut: int) -> None:
    data = b"".join(frame(stream, payload) for stream, payload in sequence) + frame(1, b"tail")
    truncated = data[: len(data) - 1 - cut % (HEADER_SIZE + 3)]   # 1 to 11 of the last 12 bytes
    decoder = FrameDecoder()
    _feed(decoder, _split(truncated, [cut, cut * 7]))
    assert decoder.incomplete
    with pytest.raises(errdefs.InvalidArgument, match="truncated frame"):
        decoder.close()
    with pytest.raises(errdefs.InvalidArgument, match="truncated frame"):
        list(demultiplex(truncated))


@given(frames, st.integers(min_value=4, max_value=255), st.integers(min_value=0), st.lists(st.integers(min_value=0)))
def test_an_unknown_stream_type_is_refused_where_it_appears(sequence: list[tuple[int, bytes]], bad: int,
                                                            length: int, cuts: list[int]) -> None:
    good = b"".join(frame(stream, payload) for stream, payload in sequence)
    data = good + bytes([bad, 0, 0, 0]) + (length % 2**32).to_bytes(4, "big")
    decoder = FrameDecoder()
    got: list[tuple[int, bytes]] = []
    with pytest.raises(errdefs.InvalidArgument, match=f"invalid stream type {bad}"):
        for piece in _split(data, cuts):
            for item in decoder.feed(piece):
                got.append(item)
    assert _regroup(got, [len(payload) for _, payload in sequence]) == sequence


def test_a_big_frame_is_given_out_as_it_arrives() -> None:
    decoder = FrameDecoder()
    data = frame(2, b"a" * 100_000)
    assert list(decoder.feed(data[:HEADER_SIZE + 10])) == [(2, b"a" * 10)]
    assert decoder.incomplete
    assert list(decoder.feed(data[HEADER_SIZE + 10:])) == [(2, b"a" * 99_990)]
    assert not decoder.incomplete
