"""CPython's built-in sha256, which needs no OpenSSL.

Hashing a small value (a config, a chainID, a cache key) with ``hashlib`` first loads libcrypto,
~3 ms: a tenth of a short command, and ~3 MiB mapped into a long-lived process.  The built-in
implementation takes less than that for a few hundred KiB.  This module imports nothing, so
the ``lamina`` program's front (:mod:`lamina.cli.front`) can use it as cheaply as
:mod:`lamina.digest` does.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["builtin_sha256"]


def builtin_sha256() -> Any:
    """The sha256 constructor of CPython's built-in module (``_sha256`` in 3.11, ``_sha2`` from
    3.12), or ``hashlib``'s on a Python built without it."""
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[no-redef]  # CPython 3.12+
        except ImportError:
            from hashlib import sha256  # type: ignore[no-redef]
    return sha256
