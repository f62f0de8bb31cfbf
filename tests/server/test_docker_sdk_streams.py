"""docker-py's exec and attach streams against ``lamina serve``: framing by the start request's
Tty, a refused exec's error as a frame docker-py can read, ``exec -t``'s pty, and an attach
with ``logs=1&stream=0`` that returns the log and ends."""

from __future__ import annotations

import pytest

from server.conftest import BUSYBOX_ARCHIVE

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


@pytest.fixture
def api(server):
    client = docker.APIClient(base_url=server.host, version="auto", timeout=30)
    with open(BUSYBOX_ARCHIVE, "rb") as archive:
        list(client.load_image(archive.read()))
    yield client
    client.close()


@pytest.fixture
def sleeper(api):
    container = api.create_container("busybox", ["sh", "-c", "echo ready; sleep 60"])
    api.start(container)
    yield container["Id"]
    api.remove_container(container, force=True)


def test_attach_logs_without_stream_returns_the_log(api, sleeper) -> None:
    for _ in range(100):
        if api.logs(sleeper) == b"ready\n":
            break
    assert api.attach(sleeper, stdout=True, stderr=True, stream=False, logs=True) == b"ready\n"


def test_exec_of_a_missing_command_is_readable_and_exits_127(api, sleeper) -> None:
    exec_id = api.exec_create(sleeper, ["nosuchcommand"])["Id"]
    output = api.exec_start(exec_id)  # "invalid stream type" if the error were raw text
    assert b"executable file not found" in output
    assert api.exec_inspect(exec_id)["ExitCode"] == 127


def test_exec_with_a_tty_reports_its_pty_and_a_demuxed_one_splits_streams(api, sleeper) -> None:
    exec_id = api.exec_create(sleeper, ["tty"], tty=True)["Id"]
    assert api.exec_start(exec_id, tty=True).startswith(b"/dev/pts/")
    exec_id = api.exec_create(sleeper, ["sh", "-c", "echo out; echo err >&2"])["Id"]
    assert api.exec_start(exec_id, demux=True) == (b"out\n", b"err\n")


def test_a_tty_container_s_terminal_is_dev_pts_0(api) -> None:
    container = api.create_container("busybox", ["tty"], tty=True)
    try:
        api.start(container)
        assert api.wait(container, timeout=30)["StatusCode"] == 0
        assert api.logs(container).strip() == b"/dev/pts/0"
    finally:
        api.remove_container(container, force=True)
