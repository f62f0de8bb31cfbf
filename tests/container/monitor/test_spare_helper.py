"""The spare helper's exchange (lamina.container.monitor.launch): begun with the start's
request, it prepares; the start goes on with stdio as descriptors and its answer comes back
as a forked helper's would; dismissed, it undoes what it prepared before the monitor goes on;
one that died after it began is a failed start.  The containers' own starts through it are
tested in tests/services/test_spare_monitor.py."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lamina import errdefs
from lamina.container.monitor.launch import Dismissed, fork_spare_helper


def _work(marker: str, *, fail_preparing: bool = False):
    """A start that "mounts" ``marker`` while it prepares, writes to the stdout it is given,
    and removes the marker when it fails (as the start's failure path unmounts)."""
    def work(request, receive):
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(request["id"])
        try:
            if fail_preparing:
                raise errdefs.InvalidArgument("bad mount for " + request["id"])
            message, fds = receive()
            os.write(fds[1], b"started\n")
            return {"logged": message["logged"], "descriptors": len(fds)}
        except BaseException:
            os.unlink(marker)
            raise
    return work


def test_a_begun_start_goes_on_with_the_monitors_stdio(tmp_path) -> None:
    marker = str(tmp_path / "mounted")
    helper = fork_spare_helper(_work(marker))
    assert helper is not None
    read_fd, write_fd = os.pipe()
    try:
        assert helper.begin({"id": "c1", "what": "start container c1"})
        answer = helper.launch({"logged": True}, [0, write_fd, 2], "start container c1")
        assert answer == {"ok": True, "logged": True, "descriptors": 3}
        assert os.read(read_fd, 100) == b"started\n"
        assert os.path.exists(marker)  # a started container keeps what was prepared
    finally:
        os.close(read_fd)
        os.close(write_fd)
        os.waitpid(helper.pid, 0)


def test_a_dismissed_helper_undoes_what_it_prepared_before_the_monitor_goes_on(tmp_path) -> None:
    marker = str(tmp_path / "mounted")
    helper = fork_spare_helper(_work(marker))
    assert helper is not None
    assert helper.begin({"id": "c1", "what": "start container c1"})
    deadline = time.monotonic() + 30
    while not os.path.exists(marker):  # it prepares
        assert time.monotonic() < deadline
        time.sleep(0.01)
    helper.dismiss()  # waits for its exit
    assert not os.path.exists(marker)
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)  # reaped by dismiss


@pytest.mark.parametrize("slow", [False, True], ids=["go sent after the answer", "go sent before the answer"])
def test_a_preparation_that_fails_is_the_starts_error(tmp_path, slow) -> None:
    # whether the monitor's go arrives before or after the helper's error answer, the answer
    # is what the start raises (a helper that exited with the go unread reset the socket)
    preparing = _work(str(tmp_path / "mounted"), fail_preparing=True)

    def work(request, receive):
        if slow:
            time.sleep(0.3)
        return preparing(request, receive)

    helper = fork_spare_helper(work)
    assert helper is not None
    assert helper.begin({"id": "c1", "what": "start container c1"})
    if not slow:
        time.sleep(0.3)  # it answered: the go comes after
    with pytest.raises(errdefs.InvalidArgument, match="bad mount for c1"):
        helper.launch({"logged": False}, [0, 1, 2], "start container c1")
    os.waitpid(helper.pid, 0)


@pytest.mark.parametrize("killed", ["before the go", "with the go unread"])
def test_a_helper_that_died_after_it_began_is_a_failed_start(monkeypatch, killed) -> None:
    """Killed before the monitor sends the go, or once the go is in its socket, unread (the
    monitor's read of the answer is then reset: a unix socket closed with unread data resets
    its peer): the same failed start."""
    from lamina.container.monitor import launch

    def work(request, receive):
        time.sleep(60)
        return {}

    helper = fork_spare_helper(work)
    assert helper is not None
    assert helper.begin({"id": "c1", "what": "start container c1"})

    def kill() -> None:
        os.kill(helper.pid, signal.SIGKILL)
        os.waitpid(helper.pid, 0)

    if killed == "before the go":
        kill()
    else:
        send_fds = launch.socket.send_fds

        def send_then_kill(*args, **kwargs):
            sent = send_fds(*args, **kwargs)  # in the helper's queue now
            kill()
            return sent

        monkeypatch.setattr(launch.socket, "send_fds", send_then_kill)
    with pytest.raises(errdefs.System, match="cannot start container c1: its helper process died"):
        helper.launch({"logged": False}, [0, 1, 2], "start container c1")


def test_a_helper_that_died_before_it_began_is_not_begun() -> None:
    helper = fork_spare_helper(lambda request, receive: {})
    assert helper is not None
    os.kill(helper.pid, signal.SIGKILL)
    os.waitpid(helper.pid, 0)
    assert not helper.begin({"id": "c1", "what": "start container c1"})  # the start forks one


def test_a_helper_dismissed_before_it_began_exits() -> None:
    helper = fork_spare_helper(lambda request, receive: {})
    assert helper is not None
    helper.dismiss()  # not begun: not waited for
    _, status = os.waitpid(helper.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_dismissed_is_no_exception_a_start_would_report() -> None:
    assert not issubclass(Dismissed, Exception)  # the start's "except Exception" paths never log it
