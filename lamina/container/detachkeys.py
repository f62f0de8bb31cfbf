"""Detach keys: the key sequence that detaches a client from a container's TTY (Docker's).

Grammar (``--detach-keys``, ``detachKeys`` in ``~/.docker/config.json``, the ``detachKeys``
query parameter of attach and exec start, ``DetachKeys`` of an exec): comma-separated keys,
each a single character (itself) or ``ctrl-<value>`` with ``<value>`` one of ``a``-``z``,
``@``, ``[``, ``\\``, ``]``, ``^``, ``_`` (the control codes 0-31), or ``DEL`` (127).
Anything else is refused.  Empty means the default, Ctrl-P Ctrl-Q.

Only a TTY's input is watched (as Docker does: binary stdin without a TTY passes untouched).
:class:`DetachMatcher` holds back the bytes that could be the start of the sequence, passes
them on when a key breaks the sequence, and reports a detach when the whole sequence arrived;
its answer does not depend on how the input was split into reads.
"""

from __future__ import annotations

from lamina import errdefs

__all__ = ["DEFAULT_DETACH_KEYS", "DetachMatcher", "format_detach_keys", "parse_detach_keys"]

DEFAULT_DETACH_KEYS = b"\x10\x11"   # ctrl-p, ctrl-q

# ctrl-@ is 0, ctrl-a 1, ... ctrl-z 26, ctrl-[ 27, ctrl-\ 28, ctrl-] 29, ctrl-^ 30, ctrl-_ 31
_CONTROL_NAMES = ("@abcdefghijklmnopqrstuvwxyz[\\]^_")


def parse_detach_keys(text: str | None) -> bytes:
    """The byte sequence of a detach-keys specification (the default for None or empty);
    InvalidArgument naming the specification and the key that is not one."""
    if not text:
        return DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            value = ord(key)
            if value > 127:
                raise errdefs.InvalidArgument(f"Invalid detach keys ({text}) provided: unknown character '{key}'")
            codes.append(value)
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in _CONTROL_NAMES:
            codes.append(_CONTROL_NAMES.index(key[5]))
        elif key == "DEL":
            codes.append(127)
        else:
            raise errdefs.InvalidArgument(f"Invalid detach keys ({text}) provided: unknown character '{key}'")
    return bytes(codes)


def format_detach_keys(keys: bytes) -> str:
    """The specification of a byte sequence (the inverse of :func:`parse_detach_keys`)."""
    names = []
    for value in keys:
        if value < 32:
            names.append("ctrl-" + _CONTROL_NAMES[value])
        elif value == 127:
            names.append("DEL")
        else:
            names.append(chr(value))
    return ",".join(names)


class DetachMatcher:
    """Watches an input stream for the detach sequence ``keys``."""

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        if not keys:
            raise ValueError("an empty detach sequence")
        self.keys = keys
        self.held = b""          # a prefix of keys, not passed on yet
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on; after the whole sequence arrived, :attr:`detached` is true and
        what followed it is dropped."""
        if self.detached:
            return b""
        out = bytearray()
        keys = self.keys
        held = self.held
        for value in data:
            candidate = held + bytes((value,))
            if keys.startswith(candidate):
                held = candidate
                if len(held) == len(keys):
                    self.detached = True
                    self.held = b""
                    return bytes(out)
                continue
            # the sequence is broken: pass on what cannot begin it, keep what still may
            cut = 1
            while not keys.startswith(candidate[cut:]):
                cut += 1
            out += candidate[:cut]
            held = candidate[cut:]
        self.held = held
        return bytes(out)

    def flush(self) -> bytes:
        """At the end of the input: the held bytes, passed on after all."""
        held, self.held = self.held, b""
        return b"" if self.detached else held
