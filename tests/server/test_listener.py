"""Binding the daemon's unix socket: stale sockets are replaced, live ones and non-sockets
refused, permissions set before listening, the lock serialises concurrent starts, close
removes only our own socket file."""

from __future__ import annotations

import fcntl
import grp
import os
import socket
import stat

import pytest

from lamina import errdefs
from lamina.server.listener import group_id, open_unix_listener, socket_path_from_host


@pytest.fixture
def path(socket_dir) -> str:
    return os.path.join(socket_dir, "d.sock")


def test_a_fresh_socket_gets_mode_0660_and_accepts(path) -> None:
    listener = open_unix_listener(path, group="no-such-group-here")
    try:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == 0  # the group does not exist: root's group
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.close()
    finally:
        listener.close()
    assert not os.path.exists(path)


def test_the_socket_belongs_to_the_named_group_when_it_exists(path) -> None:
    names = [group.gr_name for group in grp.getgrall() if group.gr_gid != 0]
    if not names:
        pytest.skip("no non-root group on this machine")
    listener = open_unix_listener(path, group=names[0])
    try:
        assert os.lstat(path).st_gid == grp.getgrnam(names[0]).gr_gid
    finally:
        listener.close()


def test_a_stale_socket_is_replaced(path) -> None:
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves
    listener = open_unix_listener(path)
    listener.close()


def test_a_live_socket_is_refused_and_left_alone(path) -> None:
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(errdefs.Conflict, match="already serving"):
            open_unix_listener(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        live.close()


def test_a_path_that_is_not_a_socket_is_refused_and_kept(path) -> None:
    with open(path, "w") as file:
        file.write("precious")
    with pytest.raises(errdefs.Conflict, match="not a socket"):
        open_unix_listener(path)
    with open(path) as file:
        assert file.read() == "precious"


def test_a_held_lock_is_refused(path) -> None:
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(errdefs.Conflict, match="lock"):
            open_unix_listener(path)
    finally:
        os.close(fd)
    open_unix_listener(path).close()


def test_close_keeps_a_socket_file_that_someone_else_put_there(path) -> None:
    listener = open_unix_listener(path)
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)
    try:
        listener.close()
        assert os.path.exists(path)
    finally:
        other.close()


def test_listen_addresses() -> None:
    assert socket_path_from_host("unix:///run/lamina.sock") == "/run/lamina.sock"
    assert socket_path_from_host("/tmp/x.sock") == "/tmp/x.sock"
    with pytest.raises(errdefs.InvalidArgument, match="unix:// sockets only"):
        socket_path_from_host("tcp://0.0.0.0:2375")
    with pytest.raises(errdefs.InvalidArgument, match="no socket path"):
        socket_path_from_host("unix://")
    with pytest.raises(errdefs.InvalidArgument):
        socket_path_from_host("relative.sock")
    assert group_id(None) == 0
    assert group_id("1234") == 1234
    assert group_id("root") == 0
