"""Compression detection and (threaded) decompression."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import threading
import time
import tracemalloc
import zlib

import pytest
import zstandard
from isal import igzip

from lamina import errdefs
from lamina.archive import TarReader, decompressed, detect
from lamina.digest import Hasher

from .helpers import END, member

PAYLOAD = b"".join(member(f"file-{index}", bytes([index]) * (index * 997)) for index in range(40)) + END

COMPRESSORS = {
    "gzip": gzip.compress,
    "isal gzip": lambda data: igzip.compress(data),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def read_all(stream, size: int = 65536) -> bytes:
    parts = []
    buffer = bytearray(size)
    while True:
        count = stream.readinto(buffer)
        if not count:
            return b"".join(parts)
        parts.append(bytes(buffer[:count]))


@pytest.mark.parametrize("prefix, kind", [
    (b"\x1f\x8b\x08\x00", "gzip"), (b"\x28\xb5\x2f\xfd\x00", "zstd"), (b"BZh91AY", "bzip2"),
    (b"\xfd7zXZ\x00\x00", "xz"), (b"bin/\x00\x00", None), (b"", None), (b"\x1f", None),
])
def test_detect(prefix, kind):
    assert detect(prefix) == kind


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "inline"])
@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_decompressed_gives_the_original_bytes(name, threaded):
    stream = decompressed(io.BytesIO(COMPRESSORS[name](PAYLOAD)), threaded=threaded)
    try:
        assert read_all(stream) == PAYLOAD
    finally:
        stream.close()


@pytest.mark.parametrize("data", [b"", b"abc", PAYLOAD], ids=["empty", "shorter than a magic", "a tar"])
def test_plain_input_passes_through(data):
    assert read_all(decompressed(io.BytesIO(data))) == data


def test_sources_without_readinto_work():
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self.stream = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self.stream.read(min(size, 777) if size > 0 else 777)

    assert read_all(decompressed(ReadOnly(gzip.compress(PAYLOAD)))) == PAYLOAD  # type: ignore[arg-type]


def test_concatenated_members_and_frames_are_read_across():
    gz = gzip.compress(PAYLOAD[:5000]) + gzip.compress(PAYLOAD[5000:])
    assert read_all(decompressed(io.BytesIO(gz))) == PAYLOAD
    compressor = zstandard.ZstdCompressor()
    zst = compressor.compress(PAYLOAD[:5000]) + compressor.compress(PAYLOAD[5000:])
    assert read_all(decompressed(io.BytesIO(zst))) == PAYLOAD


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "inline"])
@pytest.mark.parametrize("damage, kind", [
    (lambda data: data[:10] + b"\xff" * 50 + data[60:], "gzip"),
    (lambda data: data[: len(data) // 2], "gzip"),
    (lambda data: data[:-4] + b"\0\0\0\0", "gzip"),
], ids=["corrupt deflate data", "truncated", "wrong length trailer"])
def test_corrupt_gzip_is_an_invalid_argument(damage, kind, threaded):
    data = damage(gzip.compress(PAYLOAD))
    stream = decompressed(io.BytesIO(data), threaded=threaded)
    try:
        with pytest.raises(errdefs.InvalidArgument, match=f"corrupt {kind} stream"):
            read_all(stream)
    finally:
        stream.close()


def test_corrupt_zstd_is_an_invalid_argument():
    data = zstandard.ZstdCompressor().compress(PAYLOAD)
    data = data[:20] + bytes(40) + data[60:]
    with pytest.raises(errdefs.InvalidArgument, match="corrupt zstd stream"):
        read_all(decompressed(io.BytesIO(data)))


def test_tar_reader_hashes_the_decompressed_stream():
    hasher = Hasher()
    stream = decompressed(io.BytesIO(gzip.compress(PAYLOAD)))
    reader = TarReader(stream, hasher=hasher)
    assert len(list(reader)) == 40
    reader.finish()
    stream.close()
    assert hasher.digest() == "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def test_the_background_thread_is_bounded_and_stops_on_close():
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)            # gzip framing
    zeros = bytes(1 << 20)
    huge = b"".join(compressor.compress(zeros) for _ in range(512)) + compressor.flush()   # 512 MiB of zeros
    tracemalloc.start()
    try:
        stream = decompressed(io.BytesIO(huge))
        buffer = bytearray(4096)
        assert stream.readinto(buffer) == 4096
        time.sleep(0.3)                                           # let the producer run ahead
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    stream.close()
    assert not any(thread.name == "lamina-decompress" and thread.is_alive() for thread in threading.enumerate())
