"""lamina.digest's hashing of small values: the same digests as hashlib, without loading
OpenSSL (hashlib) until something large or streamed is hashed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from lamina import digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("size", [0, 1, 64, 4096, 256 * 1024, 256 * 1024 + 1, 3 << 20],
                         ids=lambda size: f"{size} bytes")
def test_sha256_hex_is_hashlibs_sha256(size: int) -> None:
    data = os.urandom(size)
    assert digest.sha256_hex(data) == hashlib.sha256(data).hexdigest()
    hasher = digest.small_sha256()
    hasher.update(data[: size // 2])
    hasher.update(data[size // 2:])
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_chain_ids_and_config_digests_do_not_load_openssl() -> None:
    code = ("import json, sys\nfrom lamina import digest\n"
            "ids = digest.chain_ids(['sha256:' + 'a' * 64, 'sha256:' + 'b' * 64])\n"
            "config = digest.from_bytes(b'{}')\n"
            "print(json.dumps([ids, config, 'hashlib' in sys.modules, '_hashlib' in sys.modules]))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    ids, config, hashlib_loaded, openssl_loaded = json.loads(output)
    second = "sha256:" + hashlib.sha256(f"sha256:{'a' * 64} sha256:{'b' * 64}".encode()).hexdigest()
    assert ids == ["sha256:" + "a" * 64, second]
    assert config == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert not hashlib_loaded and not openssl_loaded
