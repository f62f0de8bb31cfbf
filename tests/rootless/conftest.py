"""Fixtures of the rootless tests (:mod:`rootless.users`): users made on demand and removed at
the end of each module, and ``/dev/net/tun`` usable by them for the duration of a test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rootless.users import FIXTURE, User, make_user, remove_users, tun_mode


@pytest.fixture(scope="module")
def users() -> Iterator[list[User]]:
    """Made on demand by :func:`~rootless.users.make_user`; all removed at the end of the module."""
    made: list[User] = []
    try:
        yield made
    finally:
        remove_users(made)


@pytest.fixture(scope="module")
def user(users: list[User]) -> User:
    """A user with the busybox image loaded."""
    made = make_user(users)
    assert made.subuid is not None
    made.ok("load", "-q", "-i", os.path.abspath(FIXTURE))
    return made




@pytest.fixture
def debian_tun() -> Iterator[None]:
    """``/dev/net/tun`` mode 0666 (Debian's udev default) for this test, this host's own mode
    (0600) restored after: rootless containers' pasta opens it as the user."""
    with tun_mode(0o666):
        yield
