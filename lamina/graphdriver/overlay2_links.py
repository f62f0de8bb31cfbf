"""overlay2's short links and lower records: how a layer names the layers below it.

On-disk format (``home`` is ``<data-root>/overlay2``; the rest of the layout is
:mod:`lamina.graphdriver.overlay2`'s), byte-compatible with Docker's::

    <home>/<id>/link          the layer's short id: 26 characters of uppercase base32, no newline
    <home>/<id>/lower         ``l/<short-id>`` of every ancestor joined by ``:``, nearest parent
                              first, no newline; absent for a base layer
    <home>/l/<short-id>       symlink ``../<id>/diff``

Short links keep the ``lowerdir=`` option of a deep stack within one page: the mount is made
from ``home`` with relative ``l/<short-id>`` entries.  The functions here read and check these
records (a record that cannot be read or is malformed is :class:`~lamina.errdefs.DataLoss`);
they are written by the driver with the layer directory, before its commit point.
"""

from __future__ import annotations

import os
import re

from lamina import errdefs

__all__ = ["LINK_DIR", "MAX_DEPTH", "SHORT_ID", "SHORT_ID_LENGTH", "link_target_id", "lower_diff_dirs",
           "lower_on", "lowers", "new_short_id", "remove_link_of", "short_id"]

LINK_DIR = "l"
SHORT_ID_LENGTH = 26
MAX_DEPTH = 128  # Docker's limit on the number of lower layers
SHORT_ID = re.compile(r"^[A-Z2-7]{26}$")


def new_short_id() -> str:
    # 17 random bytes give 136 bits; base32 of them truncated to 26 characters, like Docker
    import base64  # only when a layer is made

    return base64.b32encode(os.urandom(17)).decode("ascii")[:SHORT_ID_LENGTH]


def short_id(layer_dir: str) -> str:
    """The short id in the layer's ``link`` file."""
    try:
        with open(os.path.join(layer_dir, "link"), "r", encoding="ascii") as handle:
            found = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise errdefs.DataLoss(f"overlay2 layer {os.path.basename(layer_dir)} has no readable link file") from exc
    if not SHORT_ID.match(found):
        raise errdefs.DataLoss(f"overlay2 layer {os.path.basename(layer_dir)} has a malformed link file")
    return found


def lowers(layer_dir: str) -> list[str]:
    """The ``l/<short-id>`` entries of the layer's lower file; empty for a base layer."""
    try:
        with open(os.path.join(layer_dir, "lower"), "r", encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise errdefs.DataLoss(f"overlay2 layer {os.path.basename(layer_dir)}: unreadable lower file") from exc
    return text.split(":") if text else []


def link_target_id(home: str, lower_entry: str) -> str:
    """The layer id a ``l/<short-id>`` entry points to (``../<id>/diff``)."""
    try:
        target = os.readlink(os.path.join(home, lower_entry))
    except OSError as exc:
        raise errdefs.DataLoss(f"overlay2 short link {lower_entry} is missing") from exc
    parts = target.split("/")
    if len(parts) != 3 or parts[0] != ".." or parts[2] != "diff":
        raise errdefs.DataLoss(f"overlay2 short link {lower_entry} points to {target!r}")
    return parts[1]


def lower_diff_dirs(home: str, layer_dir: str) -> list[str]:
    """The ``diff`` directories of the layers below, nearest first."""
    return [os.path.join(home, link_target_id(home, entry), "diff") for entry in lowers(layer_dir)]


def lower_on(parent_dir: str, id: str) -> str:
    """The ``lower`` file's content of a layer ``id`` on the layer in ``parent_dir``."""
    entries = [f"{LINK_DIR}/{short_id(parent_dir)}"] + lowers(parent_dir)
    if len(entries) > MAX_DEPTH:
        raise errdefs.FailedPrecondition(f"cannot create layer {id}: more than {MAX_DEPTH} layers below it")
    return ":".join(entries)


def remove_link_of(home: str, layer_dir: str, id: str) -> None:
    """Delete ``l/<short-id>`` of a layer directory if it points to that layer."""
    try:
        found = short_id(layer_dir)
    except errdefs.DataLoss:
        return
    link_path = os.path.join(home, LINK_DIR, found)
    try:
        if os.readlink(link_path) == f"../{id}/diff":
            os.unlink(link_path)
    except OSError:
        pass
