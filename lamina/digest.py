"""Content digests and the identities built from them.

Vocabulary (used identically in code, logs and JSON):

- **digest**: ``<algorithm>:<hex>``; lamina computes sha256 and accepts sha256/sha512.
- **diff_id**: digest of a layer's *uncompressed* tar stream.
- **chainID**: ``chain_id([d1]) = d1``; ``chain_id([d1..dn]) = sha256(chain_id(d1..dn-1) + " " + dn)``.
- **image id**: digest of the exact bytes of an image config JSON.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import hashlib
    from typing import Any

from lamina import errdefs
from lamina.builtinhash import builtin_sha256

__all__ = ["Digest", "parse", "from_bytes", "chain_id", "chain_ids", "is_hex_id", "Hasher", "BackgroundHasher",
           "sha256_hex", "small_sha256"]

# Hashing small values (configs, chainIDs, cache keys) needs no OpenSSL: importing hashlib
# loads libcrypto (~3 ms, a tenth of a short command), more than CPython's built-in sha256
# takes for a few hundred KiB.  Streams (layers) use hashlib: OpenSSL is 3-7x faster per byte.
_SMALL = 256 * 1024


def small_sha256() -> Any:
    """A sha256 object for a value of at most a few hundred KiB: OpenSSL's when hashlib is
    loaded already, else CPython's built-in one (same ``update``/``hexdigest``)."""
    if "hashlib" in sys.modules:
        return sys.modules["hashlib"].sha256()
    return builtin_sha256()()


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` in hex (see :func:`small_sha256`; large values go to OpenSSL)."""
    if len(data) > _SMALL:
        import hashlib

        return hashlib.sha256(data).hexdigest()
    hasher = small_sha256()
    hasher.update(data)
    return hasher.hexdigest()

_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-fA-F0-9]{32,})$")
_HEX_DIGITS = frozenset("0123456789abcdef")


class Digest(str):
    """A validated ``algorithm:hex`` string; compares equal to the plain string."""

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if isinstance(value, Digest):
            return value
        match = _DIGEST_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise errdefs.InvalidArgument(f"invalid digest {value!r}: expected algorithm:hex")
        algorithm, hexpart = match.groups()
        expected = _ALGORITHMS.get(algorithm)
        if expected is None:
            raise errdefs.InvalidArgument(f"unsupported digest algorithm {algorithm!r} in {value!r}")
        if len(hexpart) != expected or hexpart != hexpart.lower():
            raise errdefs.InvalidArgument(f"invalid digest {value!r}: wrong length or case of hex part")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.split(":", 1)[1]

    def short(self, length: int = 12) -> str:
        return self.hex[:length]

    def new_hasher(self) -> "hashlib._Hash":
        import hashlib

        return hashlib.new(self.algorithm)


def parse(value: str) -> Digest:
    return Digest(value)


def from_bytes(data: bytes) -> Digest:
    return Digest("sha256:" + sha256_hex(data))


def is_hex_id(value: object, *, shortest: int = 64) -> bool:
    """True for a full 64-character lowercase hex id (without ``sha256:``): an image's, a
    layer's, a container's; with ``shortest``, also for a prefix of one that long or longer.
    No regular expression: listings check every id they read."""
    return isinstance(value, str) and shortest <= len(value) <= 64 and _HEX_DIGITS.issuperset(value)


def chain_id(diff_ids: Iterable[str]) -> Digest:
    """The chainID of the layer stack whose diff_ids are given bottom first."""
    result: str | None = None
    for diff_id in diff_ids:
        diff_id = Digest(diff_id)
        if result is None:
            result = diff_id
        else:
            result = "sha256:" + sha256_hex(f"{result} {diff_id}".encode())
    if result is None:
        raise errdefs.InvalidArgument("chain_id of an empty layer list")
    return Digest(result)


def chain_ids(diff_ids: Iterable[str]) -> list[Digest]:
    """chainIDs of every prefix of the stack: ``[chain_id(d[:1]), chain_id(d[:2]), ...]``."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        diff_id = Digest(diff_id)
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest("sha256:" + sha256_hex(f"{out[-1]} {diff_id}".encode())))
    return out


class Hasher:
    """sha256 over a stream, with a byte count; ``digest()`` gives the :class:`Digest`."""

    __slots__ = ("_hash", "size")

    def __init__(self) -> None:
        import hashlib

        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest("sha256:" + self._hash.hexdigest())


class BackgroundHasher:
    """A :class:`Hasher` that hashes on a thread of its own, beside the caller's reads and
    writes (hashlib releases the GIL on large buffers, so the two really run at once).

    :meth:`update` hands the object over: it must be ``bytes`` (or not change afterwards).
    At most ``depth`` chunks wait, so memory stays bounded.  :meth:`digest` waits for the
    rest; :meth:`close` stops the thread early (a reader that gave up)."""

    def __init__(self, depth: int = 4) -> None:
        import queue
        import threading

        self._hasher = Hasher()
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(depth)
        self._thread = threading.Thread(target=self._run, name="lamina-sha256", daemon=True)
        self._thread.start()

    @property
    def size(self) -> int:
        return self._hasher.size

    def _run(self) -> None:
        update = self._hasher.update
        while (chunk := self._chunks.get()) is not None:
            update(chunk)
            self._slots.release()

    def update(self, data: bytes) -> None:
        self._slots.acquire()
        self._chunks.put(data)

    def digest(self) -> Digest:
        self.close()
        return self._hasher.digest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()
